"""The zoo's initialisation storage: a portable rebuild of torch.randn that no CPU kernel changes,
and a correction to it that decodes to the shipped bits on every CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import mi_margin as mm
from mi_margin.errors import CheckpointError
from mi_margin.models.io import tensors_digest
from mi_margin.zoo import DATA, init, normals, store
from mi_margin.zoo.build import build_entry

SIZES = [5, 16, 17, 100, 1000, 4099]


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2                             # unit roundoff


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", SIZES)
def test_portable_randn_draws_what_torch_draws(n, dtype):
    """Same generator consumption as torch.randn (the next draw agrees), and the same normals up to
    the rounding of Box–Muller's steps. Each output is x = r·cos θ (or r·sin θ), r = √(−2 log u1),
    θ = 2π u2, from identical uniforms. Our log, sin, cos and torch's (its AVX2 kernel's or the C
    library's) are each within 2 units in the last place u of the exact value; with the roundings of
    r, the product and the square root's halving of log's error that is at most 8u|x|. torch's
    scalar float32 kernel also rounds θ = 2π·u2 differently (in double, then to float), which moves
    θ by at most one float ulp of [4, 8), 2^-21, so x by at most r·2^-21 with r ≤ √(−2 log 2^-24)
    (u1 ≥ 2^-24) in float32. Tensors under 16 entries are rebuilt as zeros (torch's serial path)."""
    portable_gen, torch_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with normals.PortableNormals():
        x = torch.randn((n,), generator=portable_gen, dtype=dtype)
    y = torch.randn((n,), generator=torch_gen, dtype=dtype)
    assert torch.equal(torch.rand(4, generator=portable_gen), torch.rand(4, generator=torch_gen))
    assert x.dtype == dtype and x.shape == y.shape
    if n < normals.BLOCK:
        assert not x.any()
        return
    theta_shift = math.sqrt(-2 * math.log(2.0 ** -24)) * 2.0 ** -21 if dtype == torch.float32 else 0.0
    bound = 8 * eps(dtype) * y.abs() + theta_shift
    assert bool(((x - y).abs() <= bound).all()), float(((x - y).abs() - bound).max())


def test_log_and_sincos_are_accurate():
    """The basic-operation log and sin/cos against the C library's, to a few units in the last place
    (their job is to be identical on every CPU; accuracy only keeps the stored correction small)."""
    x = np.linspace(2.0 ** -53, 1.0, 10_001)
    want = np.array([math.log(v) for v in x])
    assert np.all(np.abs(normals.log(x) - want) <= 4 * np.spacing(np.abs(want)) + 1e-300)
    theta = np.linspace(0.0, 2 * math.pi, 10_001)
    sin, cos = normals.sincos(theta)
    assert np.all(np.abs(sin - np.sin(theta)) <= 4 * 2.0 ** -53)
    assert np.all(np.abs(cos - np.cos(theta)) <= 4 * 2.0 ** -53)


PROBE = """
import json, sys, torch
from mi_margin.models.io import tensors_digest
from mi_margin.zoo.normals import portable_init
print(json.dumps([tensors_digest(portable_init(json.loads(c))) for c in sys.argv[1:]]))
"""


def test_the_portable_rebuild_does_not_depend_on_the_kernels():
    """The same models' portable initialisations, digested in processes on the CPU's own kernels
    and on the restricted ones (what an SSE4.2-only CPU gets), are bit for bit the same, while
    torch's own float32 initialisation is not."""
    cfgs = [json.dumps(store.read_meta(DATA / name)["model"])
            for name in ["chughtai_S4_mlp_seed0", "zhong_p59_clock_transformer", "morwani_S4_quadratic"]]
    restricted = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"}
    digests = [subprocess.run([sys.executable, "-c", PROBE, *cfgs], env=env, check=True, text=True,
                              capture_output=True).stdout for env in (dict(os.environ), restricted)]
    assert digests[0] == digests[1] and len(json.loads(digests[0])) == 3


def test_the_correction_round_trips_every_bit_pattern():
    """Signed zeros, infinities, NaN payloads, subnormals, signs that differ from the reference,
    other dtypes: decoding gives the encoded bits."""
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-45, -3.0, 2.0])
    state = {"a": special, "b": special.double() * 7, "c": torch.tensor([True, False]),
             "d": torch.randn(3, 40, dtype=torch.float64)}
    reference = {"a": -special.flip(0), "b": torch.zeros(8, dtype=torch.float64),
                 "c": torch.tensor([False, False]), "d": state["d"] * (1 + 1e-15)}
    decoded = init.decode(init.encode(state, reference), reference)
    for name, value in state.items():
        assert decoded[name].dtype == value.dtype and decoded[name].shape == value.shape
        assert torch.equal(decoded[name].view(torch.uint8), value.view(torch.uint8)), name
    with pytest.raises(CheckpointError, match="tensors"):
        init.decode({"a": init.encode(state, reference)["a"]}, reference)


def test_an_entry_stores_its_initialisation_and_loads_it_bit_for_bit(tmp_path):
    """Step 0 of a seeded run is stored as a correction (a few bytes per weight, not the weights);
    loading gives it back bit for bit; a wrong digest is a CheckpointError, never a dropped step."""
    task = mm.ModularAddition(p=7, train_fraction=0.6, seed=1)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, seed=3))
    run = mm.train(model, task, mm.TrainConfig(steps=40, lr=3e-3, eval_every=20, progress=False,
                                               checkpoint_schedule="linear", n_checkpoints=2))
    root = build_entry("li_p23_k3_cubic", run, tmp_path)
    meta = store.read_meta(root)
    assert meta["checkpoints"]["0"] == store.INIT
    tensors, _ = store.load_tensors(root / "weights.safetensors")
    assert not any(name.startswith("step_00000000/") for name in tensors)
    stored = sum(v.numel() for k, v in tensors.items() if k.startswith(store.INIT_PREFIX))
    weights = sum(v.numel() * v.element_size() for v in run.checkpoints[0].values())
    assert stored < weights / 2
    shipped = store.read_entry(root)
    for key, value in run.checkpoints[0].items():
        assert torch.equal(shipped.checkpoints[0][key], value)
    rebuild = store.portable_init

    def drifted(cfg):                 # a portable rebuild that no longer matches the stored one
        return {name: value * (1 + 2**-20) for name, value in rebuild(cfg).items()}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "portable_init", drifted)
        with pytest.raises(CheckpointError, match="initialisation decodes to other weights"):
            store.read_entry(root)
    meta["init_digest"] = "0" * 64    # an edited digest is refused by the weights' seal
    (root / "entry.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="init_digest"):
        store.read_entry(root)


@pytest.mark.parametrize("name", mm.zoo.list())
def test_every_entry_loads_its_initialisation_on_this_cpu(name):
    """Every shipped entry's step 0 decodes to the SHA-256 it was built with, whatever this CPU's
    kernels (CI repeats the suite with them restricted)."""
    run = mm.zoo.load(name)
    meta = store.read_meta(DATA / name)
    assert sorted(run.checkpoints) == sorted(int(s) for s in meta["checkpoints"])
    zero = [s for s, d in meta["checkpoints"].items() if d == store.INIT]
    assert zero == ["0"] and tensors_digest(run.checkpoints[0]) == meta["init_digest"]

"""The report's neuron inspector (viz.inspector) recovers what was planted in hand-built networks:
a cosine neuron's frequency, its weights in the Fourier basis and its activation; a sign neuron's
irrep and its ρ(a)/ρ(b)/ρ(ab) split; and the compact encodings round-trip within their bounds.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

import mi_margin as mm
from mi_margin import groups
from mi_margin.models.activations import activation
from mi_margin.viz.inspector import (
    IDS,
    decode_factors,
    decode_int8,
    decode_int16,
    encode_int8,
    encode_int16,
    inspector,
    inspector_html,
    payload,
    preactivations,
)

P, F1, F2 = 11, 3, 5


def _mlp(task, W_in: torch.Tensor, W_out: torch.Tensor) -> mm.HookedMLP:
    """A quadratic float64 MLP with the given W_in [k, n, m] and W_out [m, n], no biases."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=W_out.shape[0], act_fn="quadratic",
                                               dtype="float64"))
    with torch.no_grad():
        model.W_in.copy_(W_in)
        model.W_out.copy_(W_out)
    return model


@pytest.fixture(scope="module")
def cosine_model():
    """Neuron j reads cos(ω_j a) and cos(ω_j b) and writes cos(ω_j c), ω_j = 2π f_j / p; the
    third neuron is zero (dead)."""
    task = mm.ModularAddition(p=P)
    x = torch.arange(P, dtype=torch.float64)
    waves = torch.stack([torch.cos(2 * math.pi * f * x / P) for f in (F1, F2)] +
                        [torch.zeros(P, dtype=torch.float64)], dim=1)       # [p, 3]
    return task, _mlp(task, torch.stack([waves, waves]), waves.T)


def test_planted_cosine_neurons(cosine_model):
    task, model = cosine_model
    ins = inspector(model, task)
    # (cos ωa + cos ωb)² − mean = ½cos 2ωa + ½cos 2ωb + 2 cos ωa cos ωb: variance 1/8 + 1/8 at
    # frequency 2f and 4·¼ = 1 in the block of f, so f explains 1 / (1 + 1/4) of the variance.
    for j, f in enumerate((F1, F2)):
        assert int(ins.spectrum[j, :, 0].argmax()) + 1 == f
        assert ins.spectrum[j, f - 1, 0] == pytest.approx(1 / (1 + 1 / 4), abs=1e-9)
        assert ins.info[j].startswith(f"n{j}: frequency {f} (80%")
        # the read and written vectors are cos(ω_f ·): one coefficient, ||cos||₂ = sqrt(p/2)
        for name, coef in ins.weights.items():
            row = dict(zip(ins.weight_labels, coef[j]))
            assert row.pop(f"cos {f}") == pytest.approx(math.sqrt(P / 2)), name
            assert max(abs(v) for v in row.values()) < 1e-9, name
    assert ins.info[2].startswith("n2: no frequency dominates")
    labels = {c.label: c.neurons for c in ins.clusters}
    assert labels == {f"frequency {F1}": [0], f"frequency {F2}": [1], "no dominant frequency": [2]}
    assert ins.clusters[-1].label == "no dominant frequency"
    a = 2 * math.pi * np.arange(P) / P
    for j in range(3):
        f = (F1, F2, 0)[j]
        expected = (np.cos(f * a)[:, None] + np.cos(f * a)[None, :]) ** 2 * (j < 2)
        np.testing.assert_allclose(ins.grid[j], expected, atol=1e-9)


def test_payload_decodes_to_the_inspector_data(cosine_model):
    task, model = cosine_model
    ins = inspector(model, task)
    html = inspector_html(ins)
    data = json.loads(re.search(rf'id="{IDS["data"]}">(.*?)</script>', html).group(1))
    assert data == json.loads(json.dumps(payload(ins)))
    n = len(ins.info)
    spectrum = decode_int16(data["spectrum"]).reshape(ins.spectrum.shape)
    np.testing.assert_allclose(spectrum, ins.spectrum, atol=0.5 / 32767)
    for got, want in zip(data["weights"], ins.weights.values()):
        np.testing.assert_allclose(decode_int8(got), want, atol=np.abs(want).max() / 127)
    assert data["grid"]["side"] == P and data["grid"]["act"] == "quadratic"
    assert html.count("<option") == len(ins.clusters) + n


def _heatmaps(ins, data=None):
    """Every neuron's heatmap as the page computes it (from the payload's factors)."""
    factors = ins.factors if data is None else decode_factors(data)
    pre = torch.from_numpy(preactivations(factors))
    return activation(*ins.activation)(pre).numpy()


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.GroupComposition("S3")], ids=["p7", "p5k3", "S3"])
def test_every_neurons_heatmap_is_computed_from_the_factors(kind, task):
    """The factors give every neuron's activation over the slice exactly (float64 model), and
    the page's 8-bit data within its rounding: |error| <= the int8 steps through the sums."""
    if kind == "mlp":
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, act_fn="relu",
                                                   dtype="float64"))
    else:
        model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
            task, d_model=16, n_heads=2, d_head=8, d_mlp=12, act_fn="gelu", dtype="float64",
            seed=1))
    ins = inspector(model, task)
    assert ins.grid.shape == (12, task.d_vocab, task.d_vocab)
    np.testing.assert_allclose(_heatmaps(ins), ins.grid, atol=1e-10)
    page = _heatmaps(ins, payload(ins)["grid"])
    assert np.abs(page - ins.grid).max() <= 0.02 * np.abs(ins.grid).max()


@pytest.fixture(scope="module")
def sign_model():
    """S3: neuron 0 reads sign(a) and sign(b) and writes sign(c); neuron 1 is zero (dead)."""
    task = mm.GroupComposition(groups.symmetric(3))
    G = task.group
    sign = next(rho for rho in G.irreps() if rho.dim == 1 and rho.name != "trivial")
    s = torch.tensor(np.asarray(sign.character).real, dtype=torch.float64)
    maps = torch.stack([s, torch.zeros_like(s)], dim=1)                   # [n, 2]
    return task, sign.name, _mlp(task, torch.stack([maps, maps]), maps.T)


def test_planted_sign_neuron(sign_model):
    task, sign, model = sign_model
    ins = inspector(model, task)
    names = [rho.name for rho in task.group.irreps()]
    assert ins.basis == "irrep" and ins.labels == names
    assert ins.terms == ["ρ(a)", "ρ(b)", "ρ(ab)"]
    # (sign a + sign b)² = 2 + 2 sign(ab): all of its variance lies in ρ(ab) of the sign irrep
    expected = np.zeros((len(names), 3))
    expected[names.index(sign), 2] = 1.0
    np.testing.assert_allclose(ins.spectrum[0], expected, atol=1e-12)
    assert ins.info[0] == (f"n0: irrep {sign} (weight purity 100%); share of its activation "
                           f"variance in {sign}'s ρ(a), ρ(b), ρ(ab): 0%, 0%, 100%")
    assert "dead" in ins.info[1]
    assert {c.label: c.neurons for c in ins.clusters} == {f"irrep {sign}": [0],
                                                          "no dominant irrep": [1]}
    np.testing.assert_allclose(ins.clusters[0].spectrum, expected, atol=1e-12)
    for name, coef in ins.weights.items():                  # ||sign||₂ = sqrt(|G|)
        row = dict(zip(ins.weight_labels, coef[0]))
        assert abs(row.pop(sign)) == pytest.approx(math.sqrt(task.group.order)), name
        assert max(abs(v) for v in row.values()) < 1e-9, name


def test_transformer_reads_through_the_embedding():
    task = mm.ModularAddition(p=7)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, n_heads=2, d_head=4, d_model=8, d_mlp=16, seed=0))
    ins = inspector(model, task)
    assert list(ins.weights) == ["reads (W_E·W_in)", "writes (W_out·W_U)"]
    expected = (model.W_E[:7] @ model.W_in[0]).detach().double()
    coef = ins.weights["reads (W_E·W_in)"]
    np.testing.assert_allclose(np.linalg.norm(coef, axis=1),
                               expected.norm(dim=0).numpy(), rtol=1e-6)
    assert ins.grid.shape == (16, 7, 7)


def test_k3_heatmap_is_the_slice_with_the_third_operand_zero():
    task = mm.ModularAddition(p=5, k=3)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=6, act_fn="relu", dtype="float64"))
    ins = inspector(model, task)
    rows = (task.inputs[:, 2] == 0).nonzero().flatten()
    _, cache = model.run_with_cache(task.inputs[rows])
    acts = cache["blocks.0.mlp.hook_post"].detach().numpy()
    a1, a2 = task.inputs[rows, 0].numpy(), task.inputs[rows, 1].numpy()
    for j in range(6):
        np.testing.assert_allclose(ins.grid[j][a1, a2], acts[:, j], rtol=1e-12)


def test_encodings_round_trip_within_their_bounds():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 40)) * rng.uniform(0.01, 100, size=(5, 1))
    rows[2] = 0.0
    back = decode_int16(encode_int16(rows))
    assert np.all(np.abs(back - rows) <= np.abs(rows).max(1, keepdims=True) / 32767 / 2 + 1e-15)
    back = decode_int8(encode_int8(rows))
    peak = np.abs(rows).max(1, keepdims=True)
    assert np.all(np.abs(back - rows) <= peak / 127 / 2 * (1 + 1e-5) + 1e-15)


def test_inspector_rejects_other_tasks():
    task = mm.SparseParity(6, 2, train_fraction=0.5, seed=0)
    with pytest.raises(mm.MiMarginError, match="frequencies or irreps, got subsets"):
        inspector(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4)), task)

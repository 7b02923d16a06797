"""The report's neuron inspector (viz.inspector) recovers what was planted in hand-built networks:
a cosine neuron's frequency, its weights in the Fourier basis and its activation; a sign neuron's
irrep and its ρ(a)/ρ(b)/ρ(ab) split; a parity neuron's Walsh character, the bits it reads and its
activation over the cube (its spectrum checked against a brute-force sum over the cube); and the
compact encodings round-trip within their bounds.
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
            row = dict(zip(ins.weight_labels[name], coef[j]))
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


def small_model(kind: str, task):
    """A float64 model with 12 neurons: a ReLU MLP or a GELU one-layer transformer."""
    if kind == "mlp":
        return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, act_fn="relu", dtype="float64"))
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=12, act_fn="gelu", dtype="float64", seed=1))


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.GroupComposition("S3")], ids=["p7", "p5k3", "S3"])
def test_every_neurons_heatmap_is_computed_from_the_factors(kind, task):
    """The factors give every neuron's activation over the slice exactly (float64 model), and
    the page's 8-bit data within its rounding: |error| <= the int8 steps through the sums."""
    model = small_model(kind, task)
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
        row = dict(zip(ins.weight_labels[name], coef[0]))
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


# -- sparse parity: the Walsh basis of Z_2^n ----------------------------------------------------
BITS = 6


def _parity_mlp(task, W: torch.Tensor, b: torch.Tensor, act_fn: str, degree=None) -> mm.HookedMLP:
    """A float64 MLP reading x ∈ {±1}^n with W_in = W [n, m], b_in = b and W_out = (1, −1)."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=W.shape[1], act_fn=act_fn,
                                               act_degree=degree, dtype="float64"))
    with torch.no_grad():
        model.W_in.copy_(W[None])
        model.b_in.copy_(b)
        model.W_out.copy_(torch.tensor([[1.0, -1.0]] * W.shape[1]))
    return model


def _walsh_shares(values: np.ndarray, x: np.ndarray) -> dict[tuple[int, ...], float]:
    """Brute force over the cube: ⟨v − mean, χ_S⟩² / ||v − mean||² for every S ≠ ∅, with χ_S the
    product of the bits of S (no Walsh–Hadamard transform)."""
    v = values - values.mean()
    shares = {}
    for mask in range(1, 2 ** x.shape[1]):
        S = tuple(j for j in range(x.shape[1]) if mask >> j & 1)
        chi = np.prod(x[:, list(S)], axis=1)
        shares[S] = float((v @ chi) ** 2 / len(v) / (v @ v)) if v @ v > 0 else 0.0
    return shares


@pytest.fixture(scope="module")
def parity_planted():
    """Quadratic neurons over {±1}^6: n0 = (x_0 + x_2)² = 2 + 2χ_{0,2}; n1 = (x_3 + 1)² =
    2 + 2χ_{3}; n2 reads nothing (dead); n3 = (x_1 − x_4 + x_5)² = 3 − 2χ_{1,4} + 2χ_{1,5} −
    2χ_{4,5}, a third of its variance on each pair."""
    task = mm.SparseParity(BITS, 2)
    W = torch.zeros(BITS, 4, dtype=torch.float64)
    W[[0, 2], 0] = 1.0
    W[3, 1] = 1.0
    W[[1, 4, 5], 3] = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    return task, _parity_mlp(task, W, b, "quadratic"), W


def test_planted_walsh_characters_are_recovered(parity_planted):
    task, model, W = parity_planted
    ins = inspector(model, task)
    assert ins.basis == "subset" and ins.terms == ["share"]
    assert len(ins.labels) == 2**BITS - 1 and ins.labels[:BITS] == [f"({j},)" for j in range(BITS)]
    share = {lab: ins.spectrum[:, i, 0] for i, lab in enumerate(ins.labels)}
    for j, S in ((0, "(0, 2)"), (1, "(3,)")):
        assert share[S][j] == pytest.approx(1.0, abs=1e-12)
        assert ins.spectrum[j, :, 0].sum() == pytest.approx(1.0, abs=1e-12)
    assert ins.info[0].startswith("n0: subset (0, 2) (100% of its energy in order-2 subsets); "
                                  "reads bits (0, 2)")
    assert ins.info[1].startswith("n1: no subset of order 2 dominates")   # χ_{3} is of order 1
    assert "dead" in ins.info[2]
    for S in ("(1, 4)", "(1, 5)", "(4, 5)"):
        assert share[S][3] == pytest.approx(1 / 3, abs=1e-12)
    assert ins.info[3] == ("n3: no subset of order 2 dominates (best (1, 4), 33%); reads bits "
                           "(1, 4, 5) most (100% of ||w_in||²)")
    clusters = {c.label: c.neurons for c in ins.clusters}
    assert clusters == {"subset (0, 2)": [0], "reads bits (0, 2)": [0],
                        "reads bits (3,)": [1], "reads bits (1, 4, 5)": [3],
                        "no dominant subset": [3, 1, 2]}         # strongest first
    assert ins.clusters[-1].label == "no dominant subset"
    # the weights are the planted ones: per input bit, and (1, −1) per class
    np.testing.assert_array_equal(ins.weights["reads operand 1"], W.T.numpy())
    assert ins.weight_labels["reads operand 1"] == [f"x_{i}" for i in range(BITS)]
    np.testing.assert_array_equal(ins.weights["writes (W_out)"], [[1.0, -1.0]] * 4)
    # the heatmap: rows x_0..x_2, columns x_3..x_5, each a sign pattern
    x = task.inputs.double().numpy()                       # the cube in the task's order
    assert ins.axes[0][:2] == ["+++", "−++"] and ins.axis_titles == ("x_0 … x_2", "x_3 … x_5")
    value = ((x @ W.numpy()) + [0.0, 1.0, 0.0, 0.0]) ** 2    # [64, 4]
    for r in range(2**BITS):
        np.testing.assert_allclose(ins.grid[:, r % 8, r // 8], value[r], atol=1e-12)


def test_walsh_spectrum_matches_a_brute_force_sum_over_the_cube():
    """Random weights under x⁴, and Morwani et al.'s max-margin neuron (Σ_{i∈S} x_i)⁴: its
    multinomial expansion (x_i² = 1) is 24·χ_S + 32·Σ_{pairs T⊂S} χ_T + constant, so each pair
    has 32²/(6·32² + 24²) of the variance and S itself 24²/(6·32² + 24²)."""
    task = mm.SparseParity(BITS, 4)
    W = torch.randn(BITS, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    W[:, 2] = torch.tensor([1.0, -1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    model = _parity_mlp(task, W, b, "power", 4)
    ins = inspector(model, task)
    x = task.inputs.double().numpy()
    post = ((x @ W.numpy()) + b.numpy()) ** 4
    index = {lab: i for i, lab in enumerate(ins.labels)}
    for j in range(3):
        for S, want in _walsh_shares(post[:, j], x).items():
            assert ins.spectrum[j, index[str(S)], 0] == pytest.approx(want, abs=1e-12), (j, S)
    total = 6 * 32**2 + 24**2
    assert ins.spectrum[2, index["(0, 1, 2, 3)"], 0] == pytest.approx(24**2 / total, abs=1e-12)
    assert ins.spectrum[2, index["(1, 3)"], 0] == pytest.approx(32**2 / total, abs=1e-12)
    assert ins.info[2].endswith("reads bits (0, 1, 2, 3) most (100% of ||w_in||²)")


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_parity_heatmaps_come_from_the_factors(kind):
    """MLP: the two half-cube maps; transformer: its table of pre-activations; exact from the
    factors, within the int8 rounding from the page's data; equal to the model's activations."""
    task = mm.SparseParity(5, 3)
    model = small_model(kind, task)
    ins = inspector(model, task)
    assert ins.grid.shape == (12, 4, 8) and ins.factors["kind"] == ("mlp" if kind == "mlp"
                                                                    else "table")
    _, cache = model.run_with_cache(task.model_inputs(kind))
    post = cache["blocks.0.mlp.hook_post"].detach().double().numpy()
    post = post[:, -1] if post.ndim == 3 else post
    for r in range(32):
        np.testing.assert_allclose(ins.grid[:, r % 4, r // 4], post[r], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_heatmaps(ins), ins.grid, atol=1e-10)
    page = _heatmaps(ins, payload(ins)["grid"])
    assert np.abs(page - ins.grid).max() <= 0.02 * np.abs(ins.grid).max()
    html = inspector_html(ins)
    assert html.count("<option") == len(ins.clusters) + 12
    if kind == "transformer":
        assert list(ins.weights) == ["reads (W_E·W_in)", "writes (W_out·W_U)"]
        assert all("reads bits" not in line for line in ins.info)


def test_shipped_parity_entry_reads_the_support():
    """The zoo's (10, 4)-parity x⁴ MLP (Morwani et al. 2024 Thm 8): its largest clusters are the
    support, as a subset (the one of order 4 its neurons carry most) and as the bits they read
    with equal weights, so each neuron of them has the spectrum of (Σ_{i∈S} ±x_i)⁴ (see the
    brute-force test above)."""
    run = mm.zoo.load("morwani_parity_n10_k4_quartic")
    ins = inspector(run.model, run.task)
    assert ins.spectrum.shape == (40, 2**10 - 1, 1) and ins.grid.shape == (40, 32, 32)
    by_label = {c.label: c.neurons for c in ins.clusters}
    assert [c.label for c in ins.clusters[:2]] == [f"subset {run.task.support}",
                                                   f"reads bits {run.task.support}"]
    top = ins.clusters[1]
    assert set(top.neurons) <= set(by_label[f"subset {run.task.support}"])
    assert len(top.neurons) >= 10
    index = {lab: i for i, lab in enumerate(ins.labels)}
    total = 6 * 32**2 + 24**2
    j = top.neurons[0]
    assert ins.spectrum[j, index[str(run.task.support)], 0] == pytest.approx(24**2 / total,
                                                                              abs=1e-3)
    np.testing.assert_allclose(_heatmaps(ins), ins.grid, rtol=1e-9, atol=1e-9)


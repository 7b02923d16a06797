"""Fourier analyzers on networks with planted frequencies and phases (oracles, k = 2 and 3)."""

import math

import pytest
import torch
from oracles.planted import cosine_mlp, exact_cosine_mlp, gromov_mlp

import mi_margin as mm
from mi_margin.analysis.neurons import neuron_clusters, neuron_frequencies, wrap
from mi_margin.analysis.spectrum import (
    fourier_gini,
    fourier_spectrum,
    gini,
    key_frequencies,
    logit_similarity,
)
from mi_margin.errors import MiMarginError

CASES = [(11, 2, [2, 5]), (7, 3, [1, 3]), (13, 3, [4])]


@pytest.mark.parametrize("p,k,planted", CASES)
def test_exact_network_logits_are_the_planted_waves(p, k, planted):
    """Sanity of the oracle itself: logits = κ Σ_{f∈S} cos(ω_f(Σa − c)) with κ > 0."""
    task = mm.ModularAddition(p=p, k=k)
    logits = exact_cosine_mlp(task, planted)(task.inputs).detach()
    s, c = task.inputs.sum(1).double(), torch.arange(p).double()
    waves = sum(torch.cos(2 * math.pi * f * (s[:, None] - c) / p) for f in planted)
    kappa = (logits * waves).sum() / waves.square().sum()
    assert kappa > 0
    assert torch.allclose(logits, kappa * waves, atol=1e-9 * float(kappa))


@pytest.mark.parametrize("p,k,planted", CASES)
def test_key_frequencies_recover_the_planted_set_by_every_method(p, k, planted):
    task = mm.ModularAddition(p=p, k=k)
    model = exact_cosine_mlp(task, planted)
    for method in ["logits", "embed", "W_L"]:
        assert key_frequencies(model, task, method=method) == sorted(planted)


@pytest.mark.parametrize("p,k,planted", CASES)
def test_logit_similarity_is_equal_on_the_planted_frequencies(p, k, planted):
    """Logits κ Σ_{f∈S} T_f with orthogonal, equal-norm T_f: similarity 1/sqrt(|S|) on S, 0 off S."""
    task = mm.ModularAddition(p=p, k=k)
    sim = logit_similarity(exact_cosine_mlp(task, planted), task)
    expected = torch.zeros(p // 2, dtype=torch.float64)
    expected[[f - 1 for f in planted]] = 1 / math.sqrt(len(planted))
    assert torch.allclose(sim.similarity, expected, atol=1e-10)
    assert sim.fve() == pytest.approx(1.0, abs=1e-10)
    assert sim.top(len(planted))["frequency"].sort_values().tolist() == sorted(planted)


@pytest.mark.parametrize("p,k,planted", CASES)
def test_neuron_clusters_recover_frequencies_and_phase_relation(p, k, planted):
    task = mm.ModularAddition(p=p, k=k)
    res = neuron_clusters(exact_cosine_mlp(task, planted), task)
    per_frequency = 2 ** (2 * k - 1)                   # docs/mathematics.md §2.2 construction
    assert res.counts == {f: per_frequency for f in planted}
    assert neuron_frequencies(exact_cosine_mlp(task, planted), task) == list(res.label)
    assert res.phase_error is not None and float(res.phase_error.max()) < 1e-9


def test_quadratic_cosine_neuron_explains_its_variance_as_derived():
    """(cos(ωa+φ1) + cos(ωb+φ2))²: the a·b cross term has variance 1 (two waves of variance 1/2),
    cos² terms give 1/8 each in frequency 2f, so the frequency-f block holds 1 / (1 + 2/8)."""
    task = mm.ModularAddition(p=13)
    model = cosine_mlp(task, torch.tensor([3]), torch.tensor([[0.4, -1.1]], dtype=torch.float64))
    res = neuron_clusters(model, task)
    assert int(res.frequency[0]) == 3
    assert float(res.purity[0]) == pytest.approx(1 / (1 + 2 / 8), abs=1e-12)
    assert float(res.shares[0, 6]) == pytest.approx((2 / 8) / (1 + 2 / 8), abs=1e-12)


@pytest.mark.parametrize("p,k", [(23, 2), (11, 3)])
def test_gromov_random_phases_are_recovered(p, k):
    task = mm.ModularAddition(p=p, k=k)
    model = gromov_mlp(task, [3, 5], neurons_per_frequency=6, seed=7)
    gen = torch.Generator().manual_seed(7)                 # the phases gromov_mlp drew
    planted = (torch.rand((12, k), generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    res = neuron_clusters(model, task)
    assert res.frequency.tolist() == [3] * 6 + [5] * 6
    assert res.phases is not None
    assert torch.allclose(wrap(res.phases[:, :k] - planted), torch.zeros(12, k,
                          dtype=torch.float64), atol=1e-10)
    assert torch.allclose(wrap(res.phases[:, k] - planted.sum(1)), torch.zeros(12,
                          dtype=torch.float64), atol=1e-10)
    assert float(res.phase_error.max()) < 1e-9
    assert {"theta_1", "theta_w", "phase_error"} <= set(res.to_dataframe().columns)


def test_phase_error_measures_a_planted_phase_offset():
    task = mm.ModularAddition(p=17, k=2)
    offsets = torch.tensor([0.0, 0.3, -1.2, 2.9], dtype=torch.float64)
    phases = torch.tensor([[0.5, 1.0]] * 4, dtype=torch.float64)
    model = cosine_mlp(task, torch.tensor([4, 4, 6, 6]), phases)
    with torch.no_grad():                                  # rebuild w with θ_w = θ_1 + θ_2 + δ
        c = torch.arange(17, dtype=torch.float64)
        for j, (f, d) in enumerate(zip([4, 4, 6, 6], offsets.tolist(), strict=True)):
            model.W_out[j] = torch.cos(2 * math.pi * f * c / 17 + 1.5 + d)
    res = neuron_clusters(model, task)
    assert torch.allclose(res.phase_error, offsets.abs(), atol=1e-10)


@pytest.mark.parametrize("p,k", [(11, 2), (7, 3)])
def test_gini_of_planted_networks_matches_its_formula(p, k):
    """All frequencies with equal cos/sin norms and no constant: one zero among p equal norms,
    Gini 1/p. A single frequency: two equal norms among p, Gini (p − 2)/p."""
    task = mm.ModularAddition(p=p, k=k)
    every = fourier_gini(exact_cosine_mlp(task, list(range(1, p // 2 + 1))), task)
    assert every["embed"] == pytest.approx(1 / p, abs=1e-10)
    assert every["W_L"] == pytest.approx(1 / p, abs=1e-10)
    one = fourier_gini(exact_cosine_mlp(task, [2]), task)
    assert one["embed"] == pytest.approx((p - 2) / p, abs=1e-10)
    assert gini(torch.tensor([0.0, 1.0, 3.0])) == pytest.approx((1 + 3 + 2) * 2 / (2 * 3 * 4))


def test_spectrum_of_a_planted_mlp_is_supported_on_the_planted_frequencies():
    p, k, planted = 11, 3, [2, 5]
    task = mm.ModularAddition(p=p, k=k)
    spec = fourier_spectrum(exact_cosine_mlp(task, planted), task)
    assert set(spec.weights) == {"embed[0]", "embed[1]", "embed[2]", "unembed"}
    off = [f for f in range(p // 2 + 1) if f not in planted]
    for name, shares in spec.weights.items():
        assert float(shares.sum()) == pytest.approx(1.0)
        assert float(shares[off].abs().max()) < 1e-12, name
    logit_share = spec.shares("logits")
    assert float(logit_share[[f - 1 for f in planted]].sum()) == pytest.approx(1.0, abs=1e-10)
    assert spec.neuron_tuples is not None
    assert tuple(spec.neuron_tuples.shape) == (p // 2 + 1,) * k
    top = spec.top(2)
    assert set(top[top["component"] == "unembed"]["frequency"]) == set(planted)
    components = set(top["component"])
    assert all((top["component"] == c).sum() == 2 for c in components)   # n rows per component
    unembed = spec.top(2, "unembed")
    assert list(unembed["component"]) == ["unembed"] * 2 and set(unembed["frequency"]) == set(planted)
    with pytest.raises(mm.MiMarginError, match="no component 'logit'"):
        spec.top(2, "logit")


def test_spectrum_of_a_transformer_has_every_documented_part():
    task = mm.ModularAddition(p=11, k=2)
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=32)
    spec = fourier_spectrum(mm.HookedOneLayerTransformer(cfg), task)
    assert set(spec.weights) == {"embed", "neuron_in", "unembed", "W_L"}
    assert set(spec.grid) == {"neurons", "attention", "logits"}
    assert tuple(spec.grid["attention"].shape) == (2 * 2, 5)
    assert tuple(spec.grid["neurons"].shape) == (32, 5)
    for fractions in spec.grid.values():
        assert torch.all(fractions >= 0) and torch.all(fractions.sum(1) <= 1 + 1e-9)
    only = fourier_spectrum(mm.HookedOneLayerTransformer(cfg), task, where=["embed", "logits"])
    assert set(only.weights) == {"embed", "neuron_in"} - {"neuron_in"} and set(only.grid) == {
        "logits"}
    table = spec.to_dataframe()
    assert {"component", "kind", "frequency", "fraction"} <= set(table.columns)


def test_bad_inputs_raise_clear_errors():
    task = mm.ModularAddition(p=7)
    model = exact_cosine_mlp(task, [1])
    with pytest.raises(MiMarginError, match="where"):
        fourier_spectrum(model, task, where=["nope"])
    with pytest.raises(MiMarginError, match="min_share"):
        key_frequencies(model, task, min_share=0)
    with pytest.raises(MiMarginError, match="method"):
        key_frequencies(model, task, method="vibes")
    with pytest.raises(MiMarginError, match="reads frequencies"):
        fourier_spectrum(model, mm.SparseParity(n=4, k=2))
    with pytest.raises(MiMarginError, match="d_vocab_out"):
        fourier_spectrum(model, mm.ModularAddition(p=11))
    with pytest.raises(MiMarginError, match="min_purity"):
        neuron_clusters(model, task, min_purity=1.5)

"""Predictions: formulas agree with each other and with the numerical single-neuron optimum ψ*;
hypotheses (prime p, activation, width, biases, real irreps, sign condition) are reported
correctly, with the reason when a theorem does not apply."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mi_margin as mm
from mi_margin import groups
from mi_margin.errors import MiMarginError
from mi_margin.tasks import NonPrimeModulusWarning
from mi_margin.theory import lp_max_margin, max_margin, prediction_for, single_neuron_optimum
from mi_margin.theory.group_theory import theorem9_gamma
from mi_margin.theory.predictions import modular_gamma, parity_gamma

# -- formulas ------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [3, 5, 7, 11, 13, 71])
def test_li_formula_reduces_to_morwani_for_k2_and_to_thm_i1_for_k3(p):
    """Li et al. Thm 4.1 at k=2 is Morwani's sqrt(2/27)/(sqrt(p)(p-1)); at k=3 Thm I.1's
    3/(16p(p-1))."""
    assert modular_gamma(p, 2) == pytest.approx(math.sqrt(2 / 27) / (math.sqrt(p) * (p - 1)),
                                                rel=1e-14)
    assert modular_gamma(p, 3) == pytest.approx(3 / (16 * p * (p - 1)), rel=1e-14)


@pytest.mark.parametrize("task", [mm.ModularAddition(p=5), mm.ModularAddition(p=7),
                                  mm.ModularAddition(p=5, k=3), mm.SparseParity(n=4, k=2),
                                  mm.SparseParity(n=5, k=3), mm.GroupComposition("S3"),
                                  mm.GroupComposition("D5"), mm.GroupComposition("C5")],
                         ids=["Z5", "Z7", "Z5k3", "par42", "par53", "S3", "D5", "C5"])
def test_single_neuron_optimum_equals_gamma(task):
    """ψ* found by random-restart L-BFGS equals γ*, and no restart exceeds it (Lemma 6)."""
    gamma = max_margin(task).gamma
    opt = single_neuron_optimum(task, restarts=4, steps=150)
    assert opt.value == pytest.approx(gamma, rel=1e-7)
    assert max(opt.values) <= gamma * (1 + 1e-9)


def test_single_neuron_optimum_a5_matches_lp():
    """Under the LP's dual class weights the best single neuron is worth exactly γ_LP: the LP
    certificate passes Lemma 6's single-neuron test."""
    task = mm.GroupComposition("A5")
    gamma = max_margin(task).gamma
    opt = single_neuron_optimum(task, restarts=4, steps=150)
    assert opt.value == pytest.approx(gamma, rel=1e-7)
    assert max(opt.values) <= gamma * (1 + 1e-9)


def test_parity_formula_single_neuron_value():
    """Closed form of the single-neuron value: k!·prod u_j·(w+ - w-) at |u_j| = 1/sqrt(k+1)."""
    for k in range(1, 7):
        u, w = 1 / math.sqrt(k + 1), 1 / math.sqrt(2 * (k + 1))
        assert parity_gamma(k) == pytest.approx(math.factorial(k) * u**k * 2 * w, rel=1e-14)


# -- modular / parity applicability ----------------------------------------------------------


def test_modular_prediction_structure():
    pred = max_margin(mm.ModularAddition(p=11), act_fn="quadratic", width=100)
    assert pred.applies and pred.reasons == ()
    assert pred.frequencies == (1, 2, 3, 4, 5) and pred.width_bound == 40 and pred.nu == 3
    assert sum(pred.budget_share.values()) == pytest.approx(1.0)
    assert set(pred.neurons_per_irrep.values()) == {8}
    assert "θ_1 + θ_2 = θ_w" in pred.phase_relation
    assert list(pred.to_dataframe()["label"]) == [f"freq_{z}" for z in range(1, 6)]
    k3 = max_margin(mm.ModularAddition(p=5, k=3), act_fn="power")
    assert k3.applies and k3.width_bound == 64 and "Li et al." in k3.theorem


@pytest.mark.parametrize("kwargs, word", [
    ({"act_fn": "relu"}, "activation"), ({"act_fn": "power", "act_degree": 3}, "x^3"),
    ({"biases": True}, "biases"), ({"width": 10}, "width 10"),
    ({"model_kind": "transformer"}, "transformer"), ({"input_style": "embed"}, "input_style")])
def test_modular_network_reasons(kwargs, word):
    pred = max_margin(mm.ModularAddition(p=7), **kwargs)
    assert not pred.applies and pred.gamma is not None
    assert any(word in r for r in pred.reasons), pred.reasons


def test_non_prime_and_split_are_reported():
    with pytest.warns(NonPrimeModulusWarning):
        task = mm.ModularAddition(p=9)
    pred = max_margin(task)
    assert not pred.applies and pred.gamma is None and "odd prime" in pred.reasons[0]
    split = max_margin(mm.ModularAddition(p=7, train_fraction=0.5))
    assert not split.applies and "train_fraction" in split.reasons[0]


def test_parity_prediction_and_sample():
    pred = max_margin(mm.SparseParity(n=10, k=4), act_fn="power", width=40)
    assert pred.applies and pred.width_bound == 8 and pred.nu == 5
    sampled = max_margin(mm.SparseParity(n=20, k=2))
    assert not sampled.applies and "sample" in sampled.reasons[0]
    assert not max_margin(mm.SparseParity(n=6, k=3), act_fn="quadratic").applies


def test_prediction_for_model_reads_config():
    task = mm.ModularAddition(p=7)
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, act_fn="quadratic"))
    pred = prediction_for(mlp, task)
    assert not pred.applies and any("width 12" in r for r in pred.reasons)
    relu = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=64, act_fn="relu", use_biases=True))
    assert len(prediction_for(relu, task).reasons) == 2


def test_bad_arguments():
    with pytest.raises(MiMarginError, match="act_fn"):
        max_margin(mm.ModularAddition(p=5), act_fn="tanh")
    with pytest.raises(MiMarginError, match="width"):
        max_margin(mm.ModularAddition(p=5), width=0)


# -- groups ----------------------------------------------------------------------------------


def _sign_sums_from_character_table(G):
    """Σ_{ρ≠1} d^{1.5} χ_ρ(C) from the complex character table (independent of G.irreps())."""
    ct = G.character_table()
    chi, dims = ct.values, ct.dims.astype(float)
    nontrivial = [i for i in range(len(dims)) if not np.allclose(chi[i], 1.0)]
    assert int(G.class_representatives[0]) == G.identity
    return (dims[nontrivial, None] ** 1.5 * chi[nontrivial]).real.sum(0)[1:]


@pytest.mark.parametrize("name", ["S3", "S4", "S5", "D4", "D5", "D7"])
def test_theorem9_groups(name):
    G = groups.get(name)
    pred = max_margin(mm.GroupComposition(G), act_fn="quadratic")
    assert pred.applies and not pred.extension
    assert pred.hypotheses == {"all_irreps_real": True, "sign_condition": True}
    dims = np.array([r.dim for r in G.irreps() if r.name != "trivial"], dtype=float)
    assert pred.irreps == tuple(r.name for r in G.irreps() if r.name != "trivial")
    assert pred.width_bound == int(2 * (dims**3).sum())
    assert pred.gamma == pytest.approx(theorem9_gamma(dims, G.order), rel=1e-14)
    share = np.array([pred.budget_share[n] for n in pred.irreps])
    np.testing.assert_allclose(share, dims**2.5 / (dims**2.5).sum(), rtol=1e-12)
    assert [pred.neurons_per_irrep[n] for n in pred.irreps] == [int(2 * d**3) for d in dims]
    assert (_sign_sums_from_character_table(G) < 0).all()
    # the LP reproduces Theorem 9 when the sign condition holds
    assert lp_max_margin(G).gamma == pytest.approx(pred.gamma, rel=1e-9)
    # Lemma 19's class weights are a distribution over the wrong labels
    tau = np.array(list(pred.class_weights.values()))
    sizes = G.class_sizes[[c for c in range(G.num_classes)
                           if G.class_representatives[c] != G.identity]]
    assert (tau >= 0).all() and float((tau * sizes).sum()) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("name, n_failed", [("A5", 1), ("S6", 2)])
def test_sign_condition_failures_use_lp(name, n_failed):
    G = groups.get(name)
    pred = max_margin(mm.GroupComposition(G))
    assert pred.hypotheses == {"all_irreps_real": True, "sign_condition": False}
    sums = _sign_sums_from_character_table(G)
    assert len(pred.failed_classes) == int((sums >= 0).sum()) == n_failed
    assert pred.extension and not pred.applies and "LP extension" in pred.theorem
    assert any("sign condition fails" in r for r in pred.reasons)
    dims = np.array([r.dim for r in G.irreps() if r.name != "trivial"], dtype=float)
    assert pred.gamma > theorem9_gamma(dims, G.order)     # x ∝ d is feasible, not optimal
    assert 0 < len(pred.irreps) < len(dims)
    assert pred.width_bound == sum(pred.neurons_per_irrep.values())
    sol = lp_max_margin(G)
    assert (sol.class_weights >= 0).all() and sol.class_weights.sum() == pytest.approx(1.0)


def test_a5_fails_at_double_transpositions():
    G = groups.get("A5")
    pred = max_margin(mm.GroupComposition(G))
    (label,) = pred.failed_classes
    rep = next(c for c in range(G.num_classes) if label.startswith(G.labels[
        G.class_representatives[c]] + " "))
    g = int(G.class_representatives[rep])
    assert G.element_orders[g] == 2 and G.class_sizes[rep] == 15


@pytest.mark.parametrize("name, kind", [("A4", "complex"), ("Q8", "quaternionic"),
                                        ("C6", "complex")])
def test_non_real_irreps_not_covered(name, kind):
    pred = max_margin(mm.GroupComposition(name))
    assert pred.gamma is None and not pred.applies
    assert pred.hypotheses == {"all_irreps_real": False}
    assert kind in pred.reasons[0]


@pytest.mark.parametrize("n", [5, 7, 11])
def test_cyclic_prime_routed_to_theorem7(n):
    pred = max_margin(mm.GroupComposition(groups.cyclic(n)))
    assert "Theorem 7" in pred.theorem and pred.applies
    assert pred.gamma == pytest.approx(max_margin(mm.ModularAddition(p=n)).gamma, rel=1e-15)
    assert any("routed" in note for note in pred.notes)


def test_group_k3_not_covered():
    pred = max_margin(mm.GroupComposition("S3", k=3))
    assert pred.gamma is None and "k=2" in pred.reasons[0]

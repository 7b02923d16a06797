"""On a cyclic group of odd order the irrep analysis and the Fourier analysis agree.

C_p's non-trivial real irreps are the rotations freq_f, whose matrix coefficients span cos/sin of
frequency f, and χ_freq_f(a+b−c) = 2cos(ω_f(a+b−c)). So on the same model, GroupComposition(C_p)
and ModularAddition(p) (same grid order, labels and split) must give the same logit similarities,
weight spectra, restricted/excluded losses and, on planted networks, the same key set and neuron
assignments (Chughtai et al. 2023 §3: Nanda's algorithm is the cyclic case of GCR).
"""

import pytest
import torch
from oracles.planted import exact_cosine_mlp

import mi_margin as mm
from mi_margin import groups
from mi_margin.analysis.core import subject
from mi_margin.analysis.neurons import (
    neuron_clusters,
    neuron_frequencies,
    neuron_irrep_clusters,
    neuron_irreps,
)
from mi_margin.analysis.restricted import irrep_restricted_loss, restricted_loss
from mi_margin.analysis.spectrum import (
    character_similarity,
    fourier_spectrum,
    irrep_logit_similarity,
    irrep_spectrum,
    key_frequencies,
    key_irreps,
    logit_similarity,
)

P = 13


def _tasks(p=P, train_fraction=0.6):
    add = mm.ModularAddition(p, train_fraction=train_fraction, seed=0)
    grp = mm.GroupComposition(groups.cyclic(p), train_fraction=train_fraction, seed=0)
    assert torch.equal(add.labels, grp.labels) and torch.equal(add.train_idx, grp.train_idx)
    return add, grp


def _freq(name):
    return None if name is None else int(name.removeprefix("freq_"))


@pytest.fixture(scope="module")
def trained():
    add, grp = _tasks()
    model = mm.HookedMLP(mm.MLPConfig.for_task(add, d_mlp=48, act_fn="quadratic", seed=1))
    run = mm.train(model, add, mm.TrainConfig(steps=1000, lr=1e-2, weight_decay=1.0,
                                              eval_every=100, progress=False))
    return add, grp, run.model


def _models(trained):
    add, grp, model = trained
    random = mm.HookedMLP(mm.MLPConfig.for_task(add, d_mlp=20, act_fn="relu", seed=3))
    return add, grp, [model, random, exact_cosine_mlp(add, [2, 5])]


def test_irrep_names_of_odd_cyclic_groups_are_frequencies():
    assert [r.name for r in groups.cyclic(P).irreps()] == \
        ["trivial", *[f"freq_{f}" for f in range(1, P // 2 + 1)]]


def test_logit_similarities_are_identical(trained):
    add, grp, models = _models(trained)
    for model in models:
        fourier = logit_similarity(model, add).similarity
        irrep = irrep_logit_similarity(model, grp).similarity           # non-trivial irreps
        every = character_similarity(subject(model, grp).run()[0], grp)  # trivial first
        assert float(every[0]) == pytest.approx(0.0, abs=1e-12)       # trivial
        assert torch.allclose(every[1:], fourier, atol=1e-12)
        assert torch.allclose(irrep, fourier, atol=1e-12)


def test_weight_spectra_are_identical(trained):
    add, grp, models = _models(trained)
    for model in models:
        fourier = fourier_spectrum(model, add, where=["embed", "unembed"]).weights
        irrep = irrep_spectrum(model, grp, where=["embed", "unembed"]).weights
        assert sorted(fourier) == sorted(irrep)
        for comp in fourier:                 # index 0 = constant = trivial, f = freq_f
            assert torch.allclose(irrep[comp], fourier[comp], atol=1e-12), comp


def test_restricted_and_excluded_losses_are_identical(trained):
    add, grp, model = trained
    freqs = key_frequencies(model, add)
    assert freqs
    fourier = restricted_loss(model, add, freqs)
    irrep = irrep_restricted_loss(model, grp, [f"freq_{f}" for f in freqs])
    for name in ["full_loss", "restricted", "restricted_acc", "full_train_loss", "excluded",
                 "excluded_acc"]:
        assert getattr(irrep, name) == pytest.approx(getattr(fourier, name), rel=1e-9, abs=1e-12)
    assert irrep.restricted < irrep.excluded


@pytest.mark.parametrize("planted", [[1], [2, 5], [1, 3, 6]])
def test_planted_cosine_network_same_keys_and_neurons(planted):
    add, grp = _tasks()
    model = exact_cosine_mlp(add, planted)
    assert [_freq(n) for n in key_irreps(model, grp)] == key_frequencies(model, add) == planted
    by_irrep = [_freq(n) for n in neuron_irreps(model, grp)]
    assert by_irrep == neuron_frequencies(model, add)
    assert torch.allclose(neuron_irrep_clusters(model, grp).purity,
                          torch.ones(model.cfg.d_mlp, dtype=torch.float64), atol=1e-12)


def test_trained_neuron_assignments_agree_where_both_assign(trained):
    """Fourier dominance is measured on activations, irrep purity on weights (docs/mathematics.md §6.3): the
    measures differ, but a neuron assigned by both must get the same frequency."""
    add, grp, model = trained
    fourier = neuron_clusters(model, add).frequency.tolist()
    irrep = [_freq(n) for n in neuron_irreps(model, grp)]
    both = [(f, g) for f, g in zip(fourier, irrep) if f != 0 and g is not None]
    assert len(both) >= model.cfg.d_mlp // 2
    assert all(f == g for f, g in both)

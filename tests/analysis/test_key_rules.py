"""One key-label rule per basis: the analyzers' defaults, recorded on the result; a warning and a
field when the model has not generalized; output harmonics told apart from embedded frequencies."""

from __future__ import annotations

import warnings

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.key_rules import (
    GENERALIZED,
    KEY_RULES,
    KEY_SIMILARITY,
    irrep_threshold,
    output_harmonics,
    rule_for,
)
from mi_margin.analysis.spectrum import component_shares


def test_every_basis_has_one_rule_and_the_analyzers_default_to_it():
    assert set(KEY_RULES) == {"frequency", "irrep", "subset"}
    task = mm.ModularAddition(p=7)
    cert = mm.theory.certificate(task)
    keys = mm.key_frequencies(cert, task)
    assert keys.rule == rule_for(task) and keys.rule.threshold == pytest.approx(0.5 / 3)
    group = mm.GroupComposition("S3")
    gcert = mm.theory.certificate(group)
    irreps = mm.key_irreps(gcert, group)
    assert irreps.rule == rule_for(group)
    assert irreps.rule.threshold == max(KEY_SIMILARITY, 4 * 6 ** -1.5)
    assert all(irreps.values[lab] > irreps.rule.threshold for lab in irreps)
    assert mm.key_irreps(gcert, group, 0.005).rule.threshold == 0.005


def test_irrep_threshold_is_chughtais_on_large_groups_and_four_times_chance_on_small_ones():
    for order in (60, 120, 720):
        assert irrep_threshold(order) == max(0.005, 4 * order ** -1.5)
    assert irrep_threshold(120) == KEY_SIMILARITY
    assert irrep_threshold(24) == pytest.approx(4 / 24 ** 1.5)


def test_a_model_that_has_not_generalized_is_named_with_its_accuracy():
    task = mm.ModularAddition(p=11, train_fraction=0.5, seed=0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, seed=0))
    with pytest.warns(mm.NotGeneralizedWarning, match=r"accuracy 0\.\d{4}"):
        keys = mm.key_frequencies(model, task)
    logits = model(task.model_inputs("mlp"))
    acc = float((logits[task.test_idx].argmax(-1) == task.labels[task.test_idx]).double().mean())
    assert keys.accuracy == pytest.approx(acc) and keys.generalized is (acc >= GENERALIZED)
    assert not keys.generalized


def test_a_max_margin_certificate_generalizes_without_a_warning():
    task = mm.ModularAddition(p=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mm.NotGeneralizedWarning)
        keys = mm.key_frequencies(mm.theory.certificate(task), task)
    assert keys.generalized and keys.accuracy == 1.0 and keys == list(range(1, 6))
    assert keys.harmonics == ()


def test_output_harmonics_are_sums_or_differences_of_embedded_frequencies():
    p = 113
    assert output_harmonics([1, 8, 21, 42], [1, 8, 21], p) == [42]      # 2·21
    assert output_harmonics([3, 5, 8], [3, 5], p) == [8]                  # 3 + 5
    assert output_harmonics([3, 5, 2], [3, 5], p) == [2]                  # 5 − 3
    assert output_harmonics([3, 5, 40], [3, 5], p) == []                  # not made by 3 and 5
    assert output_harmonics([56], [57 % p, 1], p) == [56]                 # −(57 + ...) up to sign


def test_a_planted_harmonic_is_labelled_and_the_embedded_frequency_is_not():
    """An x^4 MLP whose embeddings are cosines at frequency 2 only and whose output map is at
    frequency 4: the fourth power makes cos(4(a + b)) from the embedded frequency, so the logits
    have key frequency 4 = 2 + 2 with no embedding share: an output harmonic."""
    p = 13
    task = mm.ModularAddition(p=p)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4, act_fn="power", act_degree=4,
                                               dtype="float64"))
    a = torch.arange(p, dtype=torch.float64)
    w = 2 * torch.pi / p
    with torch.no_grad():
        for i, phi in enumerate(torch.arange(4, dtype=torch.float64) * torch.pi / 8):
            model.W_in[0, :, i] = model.W_in[1, :, i] = torch.cos(2 * w * a + phi)
            model.W_out[i, :] = torch.cos(4 * w * a + 4 * phi)
    embed = component_shares(model, task, "embed")
    assert embed[3] == pytest.approx(0.0, abs=1e-12) and embed[1] == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.NotGeneralizedWarning)
        keys = mm.key_frequencies(model, task)
    assert 4 in keys and keys.harmonics == (4,) and keys.embedded == [k for k in keys if k != 4]
    assert 2 in keys.embedded

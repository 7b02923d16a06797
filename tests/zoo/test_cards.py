"""Every card and README row says what the loaded object shows: numbers on the card are recomputed
from the shipped weights and compared with the tolerance of their printed precision (the
computation's own floating-point error is far below it), key labels are compared exactly where
they are not within rounding of the rule's threshold, and each verdict is checked against the
model."""

from __future__ import annotations

import re
import warnings
from types import SimpleNamespace

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.certify import BOUNDS
from mi_margin.analysis.key_rules import rule_for
from mi_margin.errors import NotGeneralizedWarning
from mi_margin.zoo.build import recipe, reproductions_table
from mi_margin.zoo.cards import RESULT, explanation_lines, initial_model
from mi_margin.zoo.checks import key_labels, margin_ratio
from mi_margin.zoo.phases import LEVEL, generalization

ENTRIES = mm.zoo.list()
LIGHT = [n for n in ENTRIES if not recipe(n).heavy]
#: relative distance from the threshold below which a label's key status is left to rounding
KEY_RTOL = 1e-4


def _result(name: str) -> str:
    return next(ln for ln in mm.zoo.card(name).splitlines() if ln.startswith(RESULT))


def _printed(text: str, pattern: str) -> tuple[float, float]:
    """The number matched by ``pattern``'s group and half a unit of its last printed digit."""
    match = re.search(pattern, text)
    assert match, pattern
    digits = match.group(1)
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return float(digits), 0.5 * 10.0 ** -decimals


def _keys(run: mm.Run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeneralizedWarning)
        return key_labels(run.model, run.task)


@pytest.mark.parametrize("name", LIGHT)
def test_card_margins_are_those_of_the_trained_weights_and_the_variants(name):
    run = mm.zoo.load(name)
    ratio = margin_ratio(run.model, run.task)
    result = _result(name)
    if ratio is None:
        assert "of γ*" not in result
        return
    printed, half = _printed(result, r"margin (-?[\d.]+) of γ\* \(trained weights\)")
    assert abs(printed - ratio) <= half + 1e-9
    for variant in mm.zoo.variants(name):
        model = mm.zoo.load(name, variant=variant).model
        printed, half = _printed(result, rf"(-?[\d.]+) for variant `{variant}`")
        assert abs(printed - margin_ratio(model, run.task)) <= half + 1e-9


@pytest.mark.parametrize("name", LIGHT)
def test_card_key_labels_are_the_api_defaults(name):
    """The card's key labels are ``mm.key_frequencies`` / ``mm.key_irreps`` at their defaults (one
    rule per basis), with the rule's threshold printed; output harmonics labelled as such."""
    run = mm.zoo.load(name)
    if run.task.kind == "sparse_parity":
        return
    keys = _keys(run)
    card = mm.zoo.card(name)
    line = next(ln for ln in card.splitlines() if ln.startswith(("Key frequencies:", "Key irreps:")))
    threshold, _ = _printed(line, r"threshold ([\d.e-]+) on this task")
    rule = rule_for(run.task)
    assert keys.rule == rule if run.task.kind == "group_composition" else keys.rule.basis == rule.basis
    assert abs(threshold - rule.threshold) <= 5e-3 * rule.threshold        # 3 significant digits
    listed = line.split(": ", 1)[1].split(". Rule")[0]
    for label, value in keys.values.items():
        if abs(value - rule.threshold) <= KEY_RTOL * rule.threshold:
            continue                                # within rounding of the threshold: unstable
        name_in_card = re.search(rf"(^|[ (,]){re.escape(str(label))}(,| |$|\))", listed)
        assert (label in keys) == bool(name_in_card), (label, value, listed)
    for harmonic in keys.harmonics:
        assert f"output harmonic {harmonic}" in line or f"output harmonics {harmonic}" in line
    assert ("has NOT generalized" in line) == (not keys.generalized)


@pytest.mark.parametrize("name", ENTRIES)
def test_grokked_means_a_delay_after_memorization(name):
    """A card says "grokked" exactly when the history shows test accuracy still below LEVEL / 4
    at memorization and ≥ LEVEL for good later; otherwise it says there was no delay."""
    run = mm.zoo.load(name)
    if recipe(name).kind != "grokking":
        return
    g = generalization(run.history, LEVEL)
    result = _result(name)
    assert ("grokked" in result) == g["grokked"]
    if g["generalized"] is not None and not g["grokked"]:
        assert "no delay" in result
    if g["grokked"]:
        assert f"a delay of {g['delay']} steps" in result


@pytest.mark.parametrize("name", [n for n in LIGHT if n.startswith("zhong")])
def test_structural_metrics_are_shown_beside_their_value_at_initialization(name):
    run = mm.zoo.load(name)
    init = mm.clock_pizza(initial_model(run), run.task)
    card = mm.zoo.card(name)
    printed, half = _printed(card, r"s_g.*?\(at initialization: ([\d.]+)%")
    assert abs(printed / 100 - init.gradient_symmetricity) <= half / 100 + 1e-9
    printed, half = _printed(card, r"\| ([\d.]+) \(at initialization: ")
    assert abs(printed - mm.clock_pizza(run.model, run.task).distance_irrelevance) <= half + 1e-9


@pytest.mark.parametrize("name", LIGHT)
def test_each_verdict_holds_for_the_shipped_model(name):
    rec, run = recipe(name), mm.zoo.load(name)
    _, acc = mm.models.evaluation.evaluate(run.model, run.task, torch.arange(len(run.task.labels)))
    assert rec.verdict in ("reproduced", "partly", "not reproduced", "not in the paper")
    if rec.verdict == "reproduced":
        assert acc >= LEVEL and _keys(run).generalized if run.task.kind != "sparse_parity" else True
        if rec.kind == "max_margin":
            assert margin_ratio(run.model, run.task) >= 0.99
    else:
        assert rec.differs, "a row that does not reproduce says what differs"
    if rec.verdict == "not in the paper":
        assert "not in the paper" in rec.paper and "Fig." not in rec.paper.split(" (")[0]


def test_readme_rows_state_verdicts_and_timing_conditions():
    for row in reproductions_table().splitlines()[2:]:
        cells = row.split(" | ")
        assert re.match(r"\*\*(reproduced|partly|not reproduced|not in the paper)\*\*", cells[1])
        if " s wall" in row:
            assert "torch thread" in row and "wall/CPU" in row


def test_s4_rows_do_not_cite_the_paper_figure_as_theirs():
    for name in [n for n in ENTRIES if n.startswith("chughtai_S4")]:
        assert "not in the paper" in recipe(name).paper
        assert "Fig. 7" not in recipe(name).paper


def _table_row(lines, first):
    """The cells of the markdown row of ``lines`` whose first cell is ``first``."""
    row = next(ln for ln in "\n".join(lines).splitlines() if ln.startswith(f"| {first} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


@pytest.mark.parametrize("name", ["morwani_parity_n10_k4_quartic", "chughtai_S4_mlp_seed0"])
def test_card_explanation_section_is_what_the_api_computes(name):
    run = mm.zoo.load(name)
    lines = explanation_lines(run, draws=1)
    expl = mm.explain(run.model, run.task)
    assert f"`mm.explain`: {expl.summary()}" in lines
    fid = mm.analysis.fidelity(expl, draws=1).to_dataframe().set_index("measure")
    for measure in fid.index:
        printed = float(_table_row(lines, measure)[1])
        assert printed == pytest.approx(fid.loc[measure, "loss"], rel=1e-3)
    for bound in BOUNDS:
        cells = _table_row(lines, bound)
        try:
            cert = mm.analysis.certify(expl, bound)
        except mm.MiMarginError:
            assert cells[3].startswith("not applicable")
            continue
        assert float(cells[1]) == pytest.approx(cert.certified_accuracy, abs=5e-5)
        assert float(cells[2]) == pytest.approx(cert.min_certified_margin, rel=1e-3)
    ratio = margin_ratio(run.model, run.task)
    assert any(ln.startswith("Certified margin / γ*") for ln in lines) == (ratio is not None)


def test_card_explanation_section_certifies_a_transformer_per_input():
    task = mm.ModularAddition(p=7)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=32, n_heads=2, d_head=8, d_mlp=24))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeneralizedWarning)
        lines = explanation_lines(SimpleNamespace(model=model, task=task), draws=1)
        cert = mm.analysis.certify(mm.explain(model, task), "per_input")
    assert float(_table_row(lines, "per_input")[1]) == pytest.approx(cert.certified_accuracy,
                                                                      abs=5e-5)
    for bound in ("uniform", "harmonic"):
        assert _table_row(lines, bound)[3].startswith("not applicable: a one-layer transformer")
    assert _table_row(lines, "embedding replaced")

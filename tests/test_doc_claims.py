"""What the docs and docstrings say a function does is what it does (the audit's mismatches)."""

import inspect
import math
import re
from pathlib import Path

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis import agop, certify, nfa_correlation, nfm
from mi_margin.analysis.explain import LabelSet
from mi_margin.analysis.nfa import matrix_correlation, psd_power
from mi_margin.training import batched

ROOT = Path(__file__).resolve().parents[1]


def section(path: Path, heading: str) -> str:
    """The text of the markdown section whose heading starts with ``heading``."""
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    following = re.search(r"^#{1,3} ", text[start + len(heading):], flags=re.M)
    return text[start:start + len(heading) + (following.start() if following else len(text))]


def test_the_transformer_explanation_keeps_labelled_neurons_weights_as_documented():
    """The explain docstring said each labelled neuron writes only its own label; the code (and
    explain_transformer's docstring, docs/mathematics.md §6.4) keep its weights."""
    doc = " ".join(mm.explain.__doc__.split())
    assert "writing only its own label" not in doc
    assert "each labelled neuron keeping its weights" in doc
    run = mm.zoo.load("zhong_p59_clock_transformer")
    expl = mm.explain(run.model, run.task)
    labelled = torch.tensor([lab is not None for lab in expl.label])
    W_out, W_hat = run.model.W_out[0].detach(), expl.model.W_out[0].detach()
    assert labelled.any() and (~labelled).any()
    assert torch.equal(W_hat[labelled], W_out[labelled])
    assert not W_hat[~labelled].any()


def test_the_nfa_section_states_what_nfa_correlation_computes():
    """§5.1 gave the correlation of WᵀW with WᵀKW (power 1); the code's default is G^(1/2)."""
    text = " ".join(section(ROOT / "docs" / "mathematics.md", "### §5.1").split())
    assert inspect.signature(nfa_correlation).parameters["power"].default == 0.5
    assert "G^s = (WᵀKW)^s, with s = `power` = 1/2 by default" in text
    assert "`nfa_over_training` (module `mi_margin.analysis.nfa_training`)" in text
    task = mm.ModularAddition(p=5, train_fraction=0.6)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
    res = nfa_correlation(model, task)
    root = psd_power(agop(model, task).matrix, 0.5)
    assert torch.allclose(res.agop_power.matrix, root)
    assert res.pearson == pytest.approx(matrix_correlation(nfm(model).matrix, root)[0], abs=1e-12)


def test_the_readme_does_not_promise_a_harmonic_certificate_without_a_pass():
    """certify's default compare=True runs the model on every input (the brute-force accuracy
    beside the bound); the README's comment said "no pass over the inputs"."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if 'certify(expl, "harmonic")' in line)
    assert "no pass over the inputs" not in line and "compare=False" in line
    assert inspect.signature(certify).parameters["compare"].default is True
    task = mm.ModularAddition(p=7)
    expl = mm.explain(mm.theory.certificate(task), task)
    assert certify(expl, "harmonic").accuracy == 1.0
    assert math.isnan(certify(expl, "harmonic", compare=False).accuracy)


def test_batched_cites_the_performance_section_on_loops_against_train_batched():
    cited = re.findall(r"docs/performance\.md §(\d+)", batched.__doc__)
    headings = dict(re.findall(r"^## (\d+)\. (.*)$", (ROOT / "docs" / "performance.md").read_text(),
                               flags=re.M))
    assert cited and all("train_batched" in headings[number] for number in cited)


def test_the_summary_of_label_sets_says_neurons_keep_several_labels():
    """With labels_per_neuron=2 the summary said "each neuron reads one real irrep ρ"."""
    task = mm.GroupComposition("S3")
    expl = mm.explain(mm.theory.certificate(task), task, labels_per_neuron=2)
    assert any(isinstance(lab, LabelSet) for lab in expl.label)
    text = expl.summary()
    assert "reads one real irrep" not in text
    assert "each neuron keeps a set of up to 2 real irreps" in text
    one = mm.explain(mm.theory.certificate(task), task).summary()
    assert "each neuron reads one real irrep ρ" in one


def test_the_explanation_section_states_what_the_zoo_models_neurons_write():
    """§6.4's examples of labels whose neurons write little, recomputed: the parity model's
    subset of the task holds all but 0.01% (six one-neuron subsets beside it), the A5 MLP's
    (3,2) labels 29 neurons that write about 1%."""
    text = " ".join(section(ROOT / "docs" / "mathematics.md", "### §6.4").split())
    assert "all but 0.01%, which six other subsets of one neuron each" in text
    assert "29 neurons that write about 1%" in text
    run = mm.zoo.load("morwani_parity_n10_k4_quartic")
    expl = mm.explain(run.model, run.task)
    ours = tuple(sorted(run.task.support))
    others = {lab: n for lab, n in expl.counts.items() if lab is not None and tuple(lab) != ours}
    assert expl.counts[ours] == 15 and list(others.values()) == [1] * 6
    assert round(100 * (1 - expl.written_share(ours)), 2) == 0.01
    run = mm.zoo.load("chughtai_A5_mlp_seed1")
    expl = mm.explain(run.model, run.task)
    assert expl.counts["(3,2)"] == 29 and 0.005 <= expl.written_share("(3,2)") < 0.015

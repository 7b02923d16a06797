"""The report's verdict: every number in it comes from the run."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

import mi_margin as mm
from mi_margin.theory.certificates import certificate
from mi_margin.theory.compare import compare_to_theory
from mi_margin.theory.verdict import (
    first_step,
    structure_story,
    theory_story,
    training_story,
    verdict,
)


def history(train_acc, test_acc, every=50):
    return pd.DataFrame({"step": [every * i for i in range(len(train_acc))],
                         "train_acc": train_acc, "test_acc": test_acc})


def test_grokking_is_told_with_the_recorded_steps():
    h = history([0.1, 1.0, 1.0, 1.0, 1.0], [0.0, 0.1, 0.5, 0.995, 1.0])
    assert first_step(h, "train_acc", 1.0) == 50 and first_step(h, "test_acc", 0.99) == 150
    text = training_story(h)
    assert "step 50" in text and "step 150" in text and "100 steps after" in text


def test_memorization_and_no_fit_are_told():
    assert "not generalized" in training_story(history([0.2, 1.0], [0.0, 0.3]))
    assert "30.0%" in training_story(history([0.1, 0.3], [0.0, 0.1]))
    assert "together" in training_story(history([0.1, 1.0], [0.0, 1.0]))


def test_certificate_meets_the_theory():
    task = mm.ModularAddition(p=7, train_fraction=1.0)
    net = certificate(task)
    text = theory_story(net, task, SimpleNamespace(weight_decay=0.0, norm_penalty=1e-4))
    assert "100.0% of the max margin" in text and "theory meet" in text


def test_weight_decay_and_split_are_named_as_reasons():
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, dtype="float64"))
    text = theory_story(mlp, task, mm.TrainConfig(weight_decay=1.0))
    ratio = compare_to_theory(mlp, task).ratio
    assert f"{ratio:.1%}" in text
    assert "weight decay 1" in text and "train_fraction=0.5" in text


@pytest.mark.parametrize("group", ["S3"])
def test_verdict_of_a_group_run(group):
    task = mm.GroupComposition(group, train_fraction=1.0)
    net = certificate(task)
    run = SimpleNamespace(model=net, task=task, config=mm.TrainConfig(weight_decay=0.0,
                                                                      norm_penalty=1e-4),
                          history=history([1.0], [float("nan")]))
    text = verdict(run)
    assert "irreps" in text and "theory meet" in text


@pytest.mark.parametrize("task", [mm.ModularAddition(p=11, train_fraction=0.4),
                                  mm.GroupComposition("S4", train_fraction=0.5)])
def test_a_model_that_has_not_generalized_is_not_said_to_compute_the_task(task):
    """An untrained network's logits have labels that stand out, but they describe no algorithm:
    the verdict says so instead of 'it computes the task with ...'."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32, seed=1))
    story = structure_story(model, task)
    assert "computes the task" not in story and "uses the irreps" not in story
    assert story.startswith("It has not generalized") or "stands out" in story

"""Grokking steps, the stop rule, N_δ and key labels re-derived from stored rows."""

from __future__ import annotations

import itertools
import random

import pandas as pd
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.spectrum import key_components
from mi_margin.studies.keys import key_labels
from mi_margin.studies.stop import StopRule, grokking_steps
from mi_margin.studies.summary import n_delta, structure_columns


def history(train, test, every=100):
    return pd.DataFrame({"step": [i * every for i in range(len(train))], "train_acc": train,
                         "test_acc": test})


def brute_grokking(train, test, level, patience, every=100):
    """The definitions read literally, by scanning every start index."""
    mem = next((i for i, x in enumerate(train) if x >= level), None)
    if mem is None:
        return None, None, None
    first = next((i for i in range(mem, len(test)) if test[i] >= level), None)
    stable = next((i for i in range(mem, len(test) - patience + 1)
                   if all(test[j] >= level for j in range(i, i + patience))), None)
    f = None if first is None else first * every
    return mem * every, f, None if stable is None else stable * every


def test_grokking_steps_match_the_definitions_on_random_histories():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randrange(1, 25)
        train = [rng.choice([0.5, 0.99, 1.0]) for _ in range(n)]
        test = [rng.choice([0.1, 0.98, 0.99, 1.0]) for _ in range(n)]
        patience = rng.randrange(1, 5)
        got = grokking_steps(history(train, test), 0.99, patience)
        mem, first, stable = brute_grokking(train, test, 0.99, patience)
        assert (got["memorized"], got["first_crossing"], got["stable"]) == (mem, first, stable)
        assert got["delay"] == (None if stable is None else stable - mem)


def test_a_spike_that_falls_back_is_not_stable_and_a_run_that_never_groks_is_counted():
    h = history([1] * 8, [0, 1, 0, 0, 1, 1, 1, 1])
    assert grokking_steps(h, patience=3)["first_crossing"] == 100
    assert grokking_steps(h, patience=3)["stable"] == 400
    never = grokking_steps(history([1] * 5, [0.2] * 5))
    assert never["memorized"] == 0 and never["stable"] is None and never["delay"] is None


def test_stop_rule_waits_for_cleanup_and_checks_only_at_chunk_ends():
    rule = StopRule(patience=2, cleanup=0.5, chunk=1000)
    h = history([1] * 12, [0] * 4 + [1] * 8)            # stable at 400
    assert not rule.done(h, 500) and rule.done(h, 600)  # 400 · 1.5
    assert rule.next_stop(0, 5000) == 1000 and rule.next_stop(1000, 5000) == 2000
    assert rule.next_stop(4500, 4700) == 4700


@pytest.mark.parametrize("bad", [{"level": 0}, {"patience": 0}, {"cleanup": -1}, {"chunk": 0},
                                 {"level": 1.5}, {"patience": 2.5}])
def test_stop_rule_refuses_bad_values(bad):
    with pytest.raises(mm.MiMarginError):
        StopRule(**bad)


def test_n_delta_is_the_smallest_subset_holding_the_share():
    rng = random.Random(1)
    for _ in range(200):
        shares = [rng.random() ** 3 for _ in range(rng.randrange(1, 7))]
        delta = rng.choice([0.0, 0.05, 0.3])
        total = sum(shares)
        best = min(len(c) for r in range(len(shares) + 1)
                   for c in itertools.combinations(shares, r)
                   if sum(c) >= (1 - delta) * total - 1e-12 * total)
        assert n_delta(shares, delta) == best


@pytest.mark.parametrize("task", [mm.ModularAddition(p=11, train_fraction=0.5),
                                  mm.GroupComposition("S3", train_fraction=0.5)])
def test_key_labels_from_a_row_equal_the_api_on_the_model(task):
    """A row stores similarities and shares; re-keying it gives what the analyzers give."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, seed=3))
    mm.train(model, task, mm.TrainConfig(steps=150, lr=3e-3, progress=False))
    with torch.no_grad():
        row = structure_columns(model, task)
    if isinstance(task, mm.GroupComposition):
        expected = mm.key_irreps(model, task)
    else:
        expected = [str(f) for f in key_components(model, task)]
    assert key_labels(row) == [str(x) for x in expected]

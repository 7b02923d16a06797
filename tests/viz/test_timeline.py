"""The report's checkpoint slider (viz.timeline): checkpoint selection, data that equals the
analyzers' at each checkpoint and changes over a real training run, and its figures.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import mi_margin as mm
import mi_margin.analysis as A
from mi_margin import groups
from mi_margin.analysis import progress
from mi_margin.viz.timeline import (
    IDS,
    curves_figure,
    payload,
    select_steps,
    timeline,
    timeline_html,
)


def _train(model, task, steps: int = 60, n_checkpoints: int = 6):
    return mm.train(model, task, mm.TrainConfig(steps=steps, lr=1e-2, eval_every=10,
                                                n_checkpoints=n_checkpoints, progress=False))


@pytest.fixture(scope="module")
def addition_run():
    task = mm.ModularAddition(p=11, train_fraction=0.6, seed=0)
    return _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32, act_fn="quadratic")), task)


@pytest.fixture(scope="module")
def group_run():
    task = mm.GroupComposition(groups.symmetric(3), train_fraction=0.7, seed=0)
    return _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="quadratic")), task)


def test_select_steps_keeps_first_last_and_the_bound():
    for n in range(1, 30):
        steps = [3 * s + 1 for s in range(n)]
        for limit in range(2, 12):
            chosen = select_steps(steps[::-1], limit)
            assert len(chosen) == min(n, limit)
            assert chosen[0] == steps[0] and chosen[-1] == steps[-1]
            assert chosen == sorted(set(chosen)) and set(chosen) <= set(steps)
    with pytest.raises(mm.MiMarginError, match="at least 2"):
        select_steps([0, 1, 2], limit=1)


def _slider_y(data: dict, step_index: int) -> list:
    return [trace[step_index] for fig in data["figures"] for trace in fig["y"]]


def test_addition_timeline_equals_the_analyzers_and_changes_over_training(addition_run):
    run, task = addition_run, addition_run.task
    t = timeline(run, progress=False)
    assert t.steps == sorted(run.checkpoints) and t.basis == "frequency"
    assert t.cluster_labels == [*map(str, range(1, task.p // 2 + 1)), "none"]
    data = payload(t)
    for i in (0, len(t.steps) - 1):
        model = run.model_at(t.steps[i])
        spec = A.fourier_spectrum(model, task)
        spectra, counts = data["figures"][0]["y"], data["figures"][1]["y"][0]
        embed = np.mean([spec.shares(c).numpy() for c in ("embed[0]", "embed[1]")], 0)
        expected = [embed, spec.shares("neurons"), spec.shares("logits")]
        for row, values in zip(spectra, expected):
            np.testing.assert_allclose(row[i], values, rtol=1e-3, atol=1e-6)
        clusters = A.neuron_clusters(model, task).counts
        # the slot of neurons no frequency dominates (the core labels them None) comes last
        assert counts[i] == [clusters.get(f, 0) for f in (*range(1, task.p // 2 + 1), None)]
        assert sum(counts[i]) == model.cfg.d_mlp
    first, last = _slider_y(data, 0), _slider_y(data, -1)
    assert any(not np.allclose(a, b, atol=1e-2) for a, b in zip(first, last))
    keys = A.key_frequencies(run.model, task)
    loss = A.restricted_loss(run.model_at(t.steps[-1]), task, keys)
    assert t.keys == keys and t.snapshots[-1].restricted == pytest.approx(loss.restricted)


def test_group_timeline_reads_irreps_with_the_same_measures(group_run):
    task = group_run.task
    t = timeline(group_run, progress=False)
    names = [rho.name for rho in task.group.irreps()][1:]
    assert t.basis == "irrep" and t.labels == names and t.cluster_labels == [*names, "none"]
    model = group_run.model_at(t.steps[0])
    spec = A.irrep_spectrum(model, task)
    np.testing.assert_allclose(t.snapshots[0].spectra["logits"], spec.shares("logits"),
                               rtol=1e-12)
    np.testing.assert_allclose(t.snapshots[0].spectra["neurons"], spec.shares("neurons"),
                               rtol=1e-12)
    counts = A.neuron_clusters(model, task).counts
    assert t.snapshots[0].counts == [counts.get(lab, 0) for lab in (*names, None)]
    for snap in t.snapshots:
        assert sum(snap.counts) == 24 and sum(snap.spectra["neurons"]) <= 1 + 1e-9
    data = payload(t)
    assert any(not np.allclose(a, b, atol=1e-2)
               for a, b in zip(_slider_y(data, 0), _slider_y(data, -1)))


def test_timeline_is_bounded_and_marks_the_selected_step(addition_run):
    t = timeline(addition_run, max_checkpoints=3, progress=False)
    kept = sorted(addition_run.checkpoints)
    assert t.steps == select_steps(kept, 3) and len(t.steps) == 3
    fig = curves_figure(t, 1)
    assert [s.x0 for s in fig.layout.shapes] == [t.steps[1]]
    names = [trace.name for trace in fig.data]
    assert names == ["train loss", "test loss", "restricted loss", "excluded loss"]
    html = timeline_html(t)
    data = json.loads(re.search(rf'id="{IDS["data"]}">(.*?)</script>', html).group(1))
    assert data["steps"] == t.steps and f'max="{len(t.steps) - 1}"' in html


def test_timeline_needs_checkpoints_and_reads_a_parity_basis(addition_run):
    one = mm.Run(model=addition_run.model, task=addition_run.task, config=addition_run.config,
                 history=addition_run.history, checkpoints={0: addition_run.checkpoints[0]})
    with pytest.raises(mm.MiMarginError, match="at least 2 checkpoints"):
        timeline(one, progress=False)
    task = mm.SparseParity(4, 2, train_fraction=0.5, seed=0)
    run = _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task, steps=4,
                 n_checkpoints=2)
    t = timeline(run, progress=False)
    assert t.basis == "subset" and len(t.labels) == 2**4 - 1
    assert sorted(t.snapshots[0].spectra) == ["logits", "neurons"]     # no map over elements
    assert "subsets" in curves_figure(t).layout.title.text


def test_timeline_streams_one_pass_per_checkpoint_and_holds_the_progress_measures(
        addition_run, monkeypatch):
    """Each checkpoint is one pass over the grid, from which both the slider's data and the
    progress measures come; those equal progress_measures' own."""
    run = addition_run
    keys = A.key_frequencies(run.model, run.task)
    passes = []
    real = progress.grid_cache

    def counted(*args, **kwargs):
        cache = real(*args, **kwargs)
        passes.append(cache)
        return cache

    monkeypatch.setattr(progress, "grid_cache", counted)
    t = timeline(run, max_checkpoints=4, progress=False)
    assert [c.passes for c in passes] == [1] * len(t.steps)
    monkeypatch.undo()
    expected = A.progress_measures(run, keys, t.steps, progress=False).table
    pd.testing.assert_frame_equal(t.measures.table, expected)
    assert [s.restricted for s in t.snapshots] == expected["restricted_loss"].tolist()
    assert [s.excluded for s in t.snapshots] == expected["excluded_loss"].tolist()

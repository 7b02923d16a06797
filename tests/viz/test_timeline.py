"""The report's checkpoint slider (viz.timeline): checkpoint selection, data that equals the
analyzers' at each checkpoint and changes over a real training run, and its figures.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import mi_margin as mm
import mi_margin.analysis as A
from mi_margin import groups
from mi_margin.analysis import restricted
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
        # the slot of neurons no frequency dominates (the core labels them None) comes first
        assert counts[i] == [clusters.get(f, 0) for f in (None, *range(1, task.p // 2 + 1))]
        assert sum(counts[i]) == model.cfg.d_mlp
    first, last = _slider_y(data, 0), _slider_y(data, -1)
    assert any(not np.allclose(a, b, atol=1e-2) for a, b in zip(first, last))
    keys = A.key_frequencies(run.model, task)
    loss = A.restricted_loss(run.model_at(t.steps[-1]), task, keys)
    assert t.keys == keys and t.snapshots[-1].restricted == pytest.approx(loss.restricted)


def test_group_timeline_reads_irreps(group_run):
    t = timeline(group_run, progress=False)
    names = [rho.name for rho in group_run.task.group.irreps()]
    assert t.basis == "irrep" and t.labels == names and t.cluster_labels == [*names, "none"]
    model = group_run.model_at(t.steps[0])
    sim = A.irrep_logit_similarity(model, group_run.task).similarity.square().numpy()
    np.testing.assert_allclose(t.snapshots[0].spectra["logits"], sim, rtol=1e-12)
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


def test_timeline_needs_checkpoints_and_an_algebraic_task(addition_run):
    one = mm.Run(model=addition_run.model, task=addition_run.task, config=addition_run.config,
                 history=addition_run.history, checkpoints={0: addition_run.checkpoints[0]})
    with pytest.raises(mm.MiMarginError, match="at least 2 checkpoints"):
        timeline(one, progress=False)
    task = mm.SparseParity(6, 2, train_fraction=0.5, seed=0)
    run = _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task, steps=4,
                 n_checkpoints=2)
    with pytest.raises(mm.MiMarginError, match="sparse_parity"):
        timeline(run, progress=False)


def test_timeline_reads_the_losses_of_given_progress_measures(addition_run, monkeypatch):
    """Given progress measures, the slider's restricted/excluded losses are their columns and no
    restricted loss is computed again; measures for other labels or steps are refused."""
    run = addition_run
    keys = A.key_frequencies(run.model, run.task)
    steps = select_steps(run.checkpoints, 4)
    measures = A.progress_measures(run, keys, steps)

    def no_ablation(*args, **kwargs):
        raise AssertionError("restricted loss computed again")

    monkeypatch.setattr(restricted, "_ablated", no_ablation)
    t = timeline(run, max_checkpoints=4, progress=False, measures=measures)
    table = measures.table.set_index("step")
    assert [s.restricted for s in t.snapshots] == table.loc[t.steps, "restricted_loss"].tolist()
    assert [s.excluded for s in t.snapshots] == table.loc[t.steps, "excluded_loss"].tolist()
    monkeypatch.undo()
    fewer = A.progress_measures(run, keys, steps[:2])
    with pytest.raises(mm.MiMarginError, match=re.escape(f"no rows at steps {steps[2:]}")):
        timeline(run, max_checkpoints=4, progress=False, measures=fewer)
    other = [f for f in range(1, run.task.p // 2 + 1) if f not in keys][:1] or keys[1:]
    assert other and other != keys
    with pytest.raises(mm.MiMarginError, match="progress measures are for frequencies"):
        timeline(run, max_checkpoints=4, progress=False,
                 measures=A.progress_measures(run, other, steps))

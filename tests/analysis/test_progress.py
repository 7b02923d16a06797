"""Progress measures over a run's checkpoints, checked against the analyzers run by hand."""

import pytest

import mi_margin as mm
from mi_margin.analysis.progress import COLUMNS, progress_measures
from mi_margin.analysis.restricted import restricted_loss
from mi_margin.analysis.spectrum import fourier_gini
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import evaluate


@pytest.fixture(scope="module")
def run():
    task = mm.ModularAddition(p=11, k=2, train_fraction=0.6, seed=0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=48))
    config = mm.TrainConfig(steps=60, lr=2e-2, eval_every=20, n_checkpoints=4, progress=False)
    return mm.train(model, task, config)


def test_one_row_per_checkpoint_matching_the_analyzers(run):
    res = progress_measures(run, [1, 2])
    table = res.to_dataframe()
    assert list(table.columns) == COLUMNS + [f"sim[{f}]" for f in range(1, run.task.p // 2 + 1)]
    assert table["step"].tolist() == sorted(run.checkpoints)
    for step in [0, run.step]:
        row = table[table["step"] == step].iloc[0]
        model = run.model_at(step)
        rl = restricted_loss(model, run.task, [1, 2])
        assert row["restricted_loss"] == pytest.approx(rl.restricted, rel=1e-12)
        assert row["excluded_loss"] == pytest.approx(rl.excluded, rel=1e-12)
        assert row["gini_W_L"] == pytest.approx(fourier_gini(model, run.task)["W_L"])
        assert row["train_loss"] == pytest.approx(evaluate(model, run.task, run.task.train_idx)[0])
    history = run.history.set_index("step")
    last = table.set_index("step").loc[run.step]
    assert last["weight_norm_sq"] == pytest.approx(history.loc[run.step, "weight_norm_sq"])
    assert last["test_loss"] == pytest.approx(history.loc[run.step, "test_loss"])


def test_default_frequencies_come_from_the_final_model(run):
    from mi_margin.analysis.spectrum import key_frequencies

    res = progress_measures(run, steps=[run.step])
    assert res.frequencies == tuple(key_frequencies(run.model, run.task))


def test_unknown_step_is_a_clear_error(run):
    with pytest.raises(MiMarginError, match="no checkpoints at steps"):
        progress_measures(run, [1], steps=[12345])

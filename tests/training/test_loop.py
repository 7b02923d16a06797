"""Training: learns, schedules, penalties, checkpoints, resume exactness, divergence handling."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm
from mi_margin.training import checkpoint_steps


def quick(**kw):
    base = {"steps": 150, "lr": 0.01, "weight_decay": 0.0, "progress": False, "eval_every": 50}
    return mm.TrainConfig(**{**base, **kw})


def mlp(task, **kw):
    return mm.HookedMLP(mm.MLPConfig.for_task(task, **{"d_mlp": 64, **kw}))


def test_tiny_mlp_reaches_full_train_accuracy():
    task = mm.ModularAddition(p=7)
    run = mm.train(mlp(task), task, quick())
    assert run.history["train_acc"].iloc[-1] == 1.0
    assert run.status == "finished" and run.step == 150


def test_tiny_transformer_learns():
    task = mm.ModularAddition(p=5)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=32, n_heads=2, d_head=16, d_mlp=64))
    run = mm.train(model, task, quick(steps=300, lr=3e-3))
    assert run.history["train_acc"].iloc[-1] == 1.0


def test_history_and_checkpoints():
    task = mm.ModularAddition(p=5, train_fraction=0.6)
    run = mm.train(mlp(task), task, quick(steps=100, eval_every=25, n_checkpoints=5))
    assert run.history["step"].tolist() == [0, 25, 50, 75, 100]
    assert {"train_loss", "test_loss", "train_acc", "test_acc", "weight_norm_sq"} <= set(
        run.history.columns)
    assert sorted(run.checkpoints) == checkpoint_steps(run.config)
    assert 0 in run.checkpoints and 100 in run.checkpoints
    initial = run.model_at(0)
    assert torch.equal(initial.W_in, mlp(task).W_in)


def test_lr_schedule_warmup_and_doubling():
    cfg = mm.TrainConfig(lr=0.05, warmup_steps=0, lr_milestones=(10, 20), lr_gamma=2.0)
    assert [cfg.lr_at(s) for s in (0, 9, 10, 19, 20, 99)] == [0.05, 0.05, 0.1, 0.1, 0.2, 0.2]
    warm = mm.TrainConfig(lr=1.0, warmup_steps=4)
    assert [warm.lr_at(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_minibatch_gd_and_full_batch_chunks_agree():
    task = mm.ModularAddition(p=7)
    a = mm.train(mlp(task), task, quick(steps=20, microbatch=None, optimizer="sgd", lr=0.1))
    b = mm.train(mlp(task), task, quick(steps=20, microbatch=7, optimizer="sgd", lr=0.1))
    assert torch.allclose(a.model.W_in, b.model.W_in, atol=1e-5)
    c = mm.train(mlp(task), task, quick(steps=20, batch_size=16, optimizer="sgd", lr=0.1))
    assert not torch.allclose(a.model.W_in, c.model.W_in, atol=1e-5)


def test_norm_penalty_shrinks_neurons():
    task = mm.ModularAddition(p=5)
    plain = mm.train(mlp(task), task, quick(steps=50, optimizer="sgd", lr=0.05))
    pen = mm.train(mlp(task), task, quick(steps=50, optimizer="sgd", lr=0.05, norm_penalty=0.1))
    assert pen.model.neuron_norms().pow(3).sum() < plain.model.neuron_norms().pow(3).sum()


def test_norm_penalty_needs_a_homogeneous_model():
    task = mm.ModularAddition(p=5)
    model = mlp(task, use_biases=True)
    with pytest.raises(mm.MiMarginError, match="homogeneous"):
        mm.train(model, task, quick(norm_penalty=0.1))


def test_early_stop_on_target():
    task = mm.ModularAddition(p=7)
    run = mm.train(mlp(task), task, quick(steps=1000, eval_every=10, target_train_loss=0.5))
    assert run.status == "stopped_early" and run.step < 1000


@pytest.mark.parametrize("batch_size", [None, 20])
def test_resume_is_exact(tmp_path, batch_size):
    task = mm.ModularAddition(p=7, train_fraction=0.7)
    cfg = quick(steps=40, eval_every=10, batch_size=batch_size, weight_decay=0.5)
    straight = mm.train(mlp(task), task, cfg)
    half = mm.train(mlp(task), task, cfg.replace(steps=20), out_dir=tmp_path / "run")
    resumed = mm.resume(tmp_path / "run", steps=40)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.step == 40 and half.step == 20
    assert resumed.history["step"].tolist() == straight.history["step"].tolist()
    assert torch.allclose(torch.tensor(resumed.history["train_loss"].to_numpy()),
                          torch.tensor(straight.history["train_loss"].to_numpy()))


def test_divergence_names_the_step_and_keeps_checkpoints(tmp_path):
    task = mm.ModularAddition(p=7)
    model = mlp(task, act_fn="power", act_degree=6, init_scale=30.0)
    with pytest.raises(mm.TrainingDivergedError, match=r"at step \d+") as info:
        mm.train(model, task, quick(steps=200, lr=10.0, optimizer="sgd", eval_every=20),
                 out_dir=tmp_path / "run")
    run = info.value.run
    assert run.status == "diverged" and 0 in run.checkpoints
    assert all(torch.isfinite(t).all() for t in run.checkpoints[0].values())
    loaded = mm.load(tmp_path / "run")
    assert loaded.status == "diverged"
    assert torch.equal(loaded.checkpoints[0]["blocks.0.mlp.W_in"],
                       run.checkpoints[0]["blocks.0.mlp.W_in"])


@pytest.mark.parametrize(("kw", "match"), [
    ({"steps": 0}, "steps"), ({"lr": 0}, "lr"), ({"optimizer": "lbfgs"}, "optimizer"),
    ({"batch_size": 0}, "batch_size"), ({"betas": (0.9, 1.0)}, "betas"),
    ({"checkpoint_schedule": "every"}, "checkpoint_schedule"),
])
def test_train_config_errors(kw, match):
    with pytest.raises(mm.MiMarginError, match=match):
        mm.TrainConfig(**kw)


def test_tqdm_disable_hides_the_bars_a_config_asks_for(monkeypatch, capsys):
    task = mm.ModularAddition(p=5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    mm.train(model, task, mm.TrainConfig(steps=3, eval_every=1, progress=True))
    assert "train" in capsys.readouterr().err                 # the bar is shown by default
    monkeypatch.setenv("TQDM_DISABLE", "1")
    mm.train(model, task, mm.TrainConfig(steps=3, eval_every=1, progress=True))
    assert capsys.readouterr().err == ""

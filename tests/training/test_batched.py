"""Batched multi-model training: every instance must reproduce ``train()`` on its model alone.

The oracle is ``mm.train`` itself: each batched run is compared with the single run of a copy of
the same model under the same config and task (weights at every checkpoint, history, optimizer
state, status), bit for bit (both runs on this machine). A negative control checks that the
comparison can fail (the instances' hyperparameters really differ).
"""

from __future__ import annotations

import copy

import pytest
import torch

import mi_margin as mm
from mi_margin.models.evaluation import evaluate
from mi_margin.tasks import Task
from mi_margin.training import batched
from mi_margin.training.batched import evaluate_batched, train_batched

# each instance runs its model's own operations, so on one machine the runs agree to the bit
ATOL, RTOL = 0, 0


def cfg(**kw):
    base = {"steps": 30, "eval_every": 10, "n_checkpoints": 4, "progress": False}
    return mm.TrainConfig(**{**base, **kw})


def small_transformer(task, seed, **kw):
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, **{"d_model": 24, "n_heads": 2, "d_head": 12, "d_mlp": 48, "seed": seed, **kw}))


def small_mlp(task, seed, **kw):
    return mm.HookedMLP(mm.MLPConfig.for_task(task, **{"d_mlp": 40, "seed": seed, **kw}))


def assert_same_run(batched, single):
    """Same checkpoints, final weights, history, optimizer state and status."""
    assert batched.status == single.status and batched.step == single.step
    assert sorted(batched.checkpoints) == sorted(single.checkpoints)
    for step, state in single.checkpoints.items():
        assert state.keys() == batched.checkpoints[step].keys()
        for key, value in state.items():
            torch.testing.assert_close(batched.checkpoints[step][key], value, atol=ATOL, rtol=RTOL)
    for (key, value), ref in zip(batched.model.state_dict().items(),
                                 single.model.state_dict().values(), strict=True):
        torch.testing.assert_close(value, ref, atol=ATOL, rtol=RTOL, msg=key)
    assert list(batched.history.columns) == list(single.history.columns)
    assert batched.history["step"].tolist() == single.history["step"].tolist()
    torch.testing.assert_close(torch.tensor(batched.history.to_numpy(dtype=float)),
                               torch.tensor(single.history.to_numpy(dtype=float)),
                               atol=ATOL, rtol=RTOL, equal_nan=True)
    assert batched.train_state.keys() == single.train_state.keys()
    for key, value in single.train_state.items():
        torch.testing.assert_close(batched.train_state[key], value, atol=ATOL, rtol=RTOL, msg=key)


def train_both(models, task, configs):
    singles = [copy.deepcopy(m) for m in models]
    runs = train_batched(models, task, configs, device="cpu")
    if isinstance(configs, mm.TrainConfig):
        configs = [configs] * len(models)
    tasks = [task] * len(models) if isinstance(task, Task) else task
    refs = [mm.train(m, t, c) for m, t, c in zip(singles, tasks, configs, strict=True)]
    return runs, refs


def test_transformer_seeds_and_hyperparameters_match_single_runs():
    task = mm.ModularAddition(p=11, train_fraction=0.5)
    configs = [cfg(lr=3e-3), cfg(lr=1e-2, weight_decay=0.3),
               cfg(lr=3e-3, betas=(0.8, 0.99), warmup_steps=0, lr_milestones=(15,))]
    models = [small_transformer(task, seed) for seed in range(3)]
    runs, refs = train_both(models, task, configs)
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)
    assert runs[0].model is models[0] and runs[0].config is configs[0]
    # negative control: instance 1 is not what instance 0's config gives
    with pytest.raises(AssertionError):
        torch.testing.assert_close(runs[1].model.W_U, refs[0].model.W_U, atol=ATOL, rtol=RTOL)


def test_transformer_variants_with_minibatches_and_microbatches():
    task = mm.ModularAddition(p=11, train_fraction=0.6)
    kw = {"act_fn": "quadratic", "use_biases": True, "use_pos_embed": False}
    configs = [cfg(batch_size=40, microbatch=16, seed=3, lr=lr) for lr in (1e-3, 1e-2)]
    runs, refs = train_both([small_transformer(task, s, **kw) for s in (5, 6)], task, configs)
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)


def test_attention_only_transformer_one_optimizer_group_over_the_stack():
    task = mm.ModularAddition(p=7)
    models = [small_transformer(task, s, attn_only=True) for s in (0, 1)]
    engine = batched.StackEngine(models, [task] * 2, [cfg(lr=1e-2, steps=9)] * 2, "cpu")
    assert engine.shared and engine.opt.param_groups[0]["params"][0].shape[0] == 2
    runs, refs = train_both(models, task, [cfg(lr=1e-2), cfg(lr=1e-2, steps=20)])
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)


def test_mlp_sgd_momentum_and_norm_penalty_per_instance():
    task = mm.ModularAddition(p=7, train_fraction=0.7)
    configs = [cfg(optimizer="sgd", lr=0.05, momentum=0.9, norm_penalty=1e-2, weight_decay=0),
               cfg(optimizer="sgd", lr=0.02, momentum=0.0, norm_penalty=0.0, weight_decay=1e-3),
               cfg(optimizer="sgd", lr=0.05, momentum=0.5, norm_penalty=0.1, weight_decay=0)]
    runs, refs = train_both([small_mlp(task, s) for s in range(3)], task, configs)
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)


@pytest.mark.parametrize("kw", [{"input_style": "embed", "d_embed": 12, "act_fn": "relu"},
                                {"act_fn": "power", "k": 3, "use_biases": True}])
def test_mlp_styles(kw):
    task = mm.ModularAddition(p=5, k=kw.get("k", 2), train_fraction=0.8)
    kw = {k: v for k, v in kw.items() if k != "k"}
    runs, refs = train_both([small_mlp(task, s, **kw) for s in (0, 1)], task,
                            [cfg(lr=1e-2), cfg(lr=3e-3, weight_decay=0.0)])
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)


def test_each_instance_its_own_split_as_a_study_of_seeds():
    """Chughtai et al.'s recipe draws the split with the seed: instance n trains on task n."""
    tasks = [mm.GroupComposition("S3", train_fraction=0.5, seed=s) for s in (0, 1, 2)]
    assert not torch.equal(tasks[0].train_idx, tasks[1].train_idx)
    models = [small_mlp(t, s, input_style="embed", d_embed=8, act_fn="relu")
              for s, t in enumerate(tasks)]
    runs, refs = train_both(models, tasks, cfg(lr=1e-2, betas=(0.9, 0.98), weight_decay=1.0))
    for run, ref, t in zip(runs, refs, tasks, strict=True):
        assert run.task is t
        assert_same_run(run, ref)


def test_hooks_on_a_batched_model_keep_their_meaning():
    """A hook on ``hook_embed`` takes the ordinary path in ``train()``; batched, the same."""
    task = mm.ModularAddition(p=7)
    models = [small_mlp(task, s) for s in (0, 1)]
    seen = []
    models[1].hook_embed.add_hook(lambda tensor, hook: seen.append(tensor.shape) or tensor * 0.5)
    runs, refs = train_both(models, task, cfg(lr=1e-2))
    assert seen                      # it ran in the batch (and in train() on the copy)
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)
    with pytest.raises(AssertionError):                # the hook changed instance 1's training
        assert_same_run(runs[1], mm.train(small_mlp(task, 1), task, cfg(lr=1e-2)))


def test_parity_vector_input_and_per_instance_early_stop():
    task = mm.SparseParity(n=8, k=2, train_fraction=0.5)
    configs = [cfg(steps=60, lr=0.05, target_train_loss=0.6, eval_every=5),
               cfg(steps=40, lr=0.01, eval_every=5)]
    runs, refs = train_both([small_mlp(task, s, act_fn="relu") for s in (0, 1)], task, configs)
    assert runs[0].status == "stopped_early" and runs[1].status == "finished"
    for run, ref in zip(runs, refs, strict=True):
        assert_same_run(run, ref)


def test_diverged_instance_is_frozen_and_others_go_on():
    task = mm.ModularAddition(p=5)
    configs = [cfg(optimizer="sgd", lr=1e12, weight_decay=0), cfg(optimizer="sgd", lr=0.05)]
    models = [small_mlp(task, s, act_fn="power", act_degree=4) for s in (0, 1)]
    singles = [copy.deepcopy(m) for m in models]
    with pytest.warns(RuntimeWarning, match=r"models\[0\] diverged"):
        runs = train_batched(models, task, configs, device="cpu")
    with pytest.raises(mm.TrainingDivergedError):
        mm.train(singles[0], task, configs[0])
    assert runs[0].status == "diverged" and runs[1].status == "finished"
    assert all(torch.isfinite(v).all() for s in runs[0].checkpoints.values() for v in s.values())
    assert_same_run(runs[1], mm.train(singles[1], task, configs[1]))


def test_resume_continues_a_batched_run_alone():
    task = mm.ModularAddition(p=7)
    models = [small_mlp(task, s) for s in (0, 1)]
    reference = mm.train(copy.deepcopy(models[1]), task, cfg(steps=50, lr=0.01))
    runs = train_batched(models, task, [cfg(steps=30, lr=0.01)] * 2, device="cpu")
    resumed = mm.resume(runs[1], steps=50)
    torch.testing.assert_close(resumed.model.W_in, reference.model.W_in, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(resumed.model.W_out, reference.model.W_out, atol=ATOL, rtol=RTOL)


def test_out_dirs_are_run_folders(tmp_path):
    task = mm.ModularAddition(p=5)
    dirs = [tmp_path / "a", tmp_path / "b"]
    runs = train_batched([small_mlp(task, s) for s in (0, 1)], task, cfg(lr=0.01), device="cpu",
                         out_dirs=dirs)
    for run, path in zip(runs, dirs, strict=True):
        loaded = mm.load(path)
        assert loaded.status == "finished" and sorted(loaded.checkpoints) == sorted(run.checkpoints)
        assert torch.equal(loaded.model.W_in, run.model.W_in)


def test_metrics_see_each_instance():
    task = mm.ModularAddition(p=5)
    models = [small_mlp(task, s) for s in (0, 1)]
    runs = train_batched(models, task, cfg(lr=0.01), device="cpu",
                         metrics=[lambda m, t: {"w00": float(m.W_in[0, 0, 0].detach())}])
    for run in runs:
        assert run.history["w00"].iloc[-1] == float(run.model.W_in[0, 0, 0].detach())
    assert runs[0].history["w00"].iloc[-1] != runs[1].history["w00"].iloc[-1]


def test_evaluate_batched_matches_evaluate():
    task = mm.ModularAddition(p=11, train_fraction=0.4)
    models = [small_transformer(task, s) for s in range(3)]
    losses, accs = evaluate_batched(models, task, task.test_idx, chunk=50)
    for n, model in enumerate(models):
        loss, acc = evaluate(model, task, task.test_idx, chunk=50)
        assert float(losses[n]) == loss and float(accs[n]) == acc


def test_mismatches_are_named():
    task = mm.ModularAddition(p=5)
    with pytest.raises(mm.MiMarginError, match="d_mlp"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1, d_mlp=8)], task, cfg())
    with pytest.raises(mm.MiMarginError, match="HookedOneLayerTransformer"):
        train_batched([small_mlp(task, 0), small_transformer(task, 1)], task, cfg())
    with pytest.raises(mm.MiMarginError, match="microbatch"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1)], task,
                      [cfg(microbatch=8), cfg(microbatch=16)])
    with pytest.raises(mm.MiMarginError, match="seed"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1)], task,
                      [cfg(batch_size=8, seed=0), cfg(batch_size=8, seed=1)])
    with pytest.raises(mm.MiMarginError, match="3 TrainConfigs for 2 models"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1)], task, [cfg()] * 3)
    with pytest.raises(mm.MiMarginError, match=r"one size in a batch, got \[12, 8\]"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1)],
                      [mm.ModularAddition(p=5, train_fraction=0.5),
                       mm.ModularAddition(p=5, train_fraction=0.3)], cfg())
    with pytest.raises(mm.MiMarginError, match="1 tasks for 2 models"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1)], [task], cfg())
    same = small_mlp(task, 0)
    with pytest.raises(mm.MiMarginError, match="same object"):
        train_batched([same, same], task, cfg())
    with pytest.raises(mm.MiMarginError, match="at least one model"):
        train_batched([], task, cfg())
    with pytest.raises(mm.MiMarginError, match="exponent"):
        train_batched([small_mlp(task, 0), small_mlp(task, 1)], task,
                      [cfg(norm_penalty=0.1), cfg(norm_penalty=0.1, norm_penalty_power=2.0)])

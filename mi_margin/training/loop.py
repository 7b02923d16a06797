"""``train()``: full-batch (or minibatch) training with float64 loss, metrics, checkpoints, resume.

Speed (docs/performance.md): ``model.last_logits`` takes the exact table fast path of
models/fast_paths.py (first layers as per-(position, token) tables; the transformer computes only
the last position); the full-batch gradient is accumulated over micro-batches that stay in cache;
nothing synchronises with the host between evaluations (no ``.item()`` per step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from mi_margin.errors import MiMarginError, TrainingDivergedError
from mi_margin.models.evaluation import cross_entropy64, evaluate, model_inputs, weight_norm_sq
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig, checkpoint_steps
from mi_margin.training.run import (
    Run,
    load_run,
    write_checkpoint,
    write_history,
    write_meta,
    write_state,
)

Metric = Callable[[Any, Task], dict[str, float]]


def penalty_power(model: Any, config: TrainConfig) -> float:
    """Exponent r of the L_{2,ν} penalty; checks that the model has separable neurons."""
    if not hasattr(model, "homogeneity"):
        raise MiMarginError("norm_penalty needs a theory-style HookedMLP (per-neuron parameters)")
    nu, reason = model.homogeneity()
    if config.norm_penalty_power is not None:
        return float(config.norm_penalty_power)
    if nu is None:
        raise MiMarginError(f"norm_penalty needs a homogeneous model: {reason}; "
                            "set norm_penalty_power to use it anyway")
    return float(nu)


def make_optimizer(model: Any, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas,
                                 weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _state_to_tensors(opt: torch.optim.Optimizer, gen: torch.Generator
                      ) -> dict[str, torch.Tensor]:
    out = {"rng": gen.get_state()}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                out[f"opt.{i}.{key}"] = value.detach().clone()
    return out


def _load_state(opt: torch.optim.Optimizer, gen: torch.Generator,
                tensors: dict[str, torch.Tensor]) -> None:
    gen.set_state(tensors["rng"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _batches(n_train: int, config: TrainConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """Index chunks (into the training set) whose summed gradient is this step's gradient."""
    if config.batch_size is None or config.batch_size >= n_train:
        idx = torch.arange(n_train)
    else:
        idx = torch.randperm(n_train, generator=gen)[: config.batch_size]
    return list(idx.split(config.microbatch or len(idx)))


def train(model: Any, task: Task, config: TrainConfig | None = None, *,
          out_dir: str | Path | None = None, metrics: Sequence[Metric] = (),
          run: Run | None = None) -> Run:
    """Train ``model`` on ``task``'s training split and return the :class:`Run`.

    Args:
        model: a :class:`HookedOneLayerTransformer` or :class:`HookedMLP` (trained in place).
        task: the task; only ``task.train_idx`` is trained on.
        config: :class:`TrainConfig` (defaults: Nanda et al.'s AdamW recipe).
        out_dir: if given, the run folder is written there as training goes (history and
            checkpoints as they are made), so nothing is lost if the process dies.
        metrics: extra callables ``f(model, task) -> dict`` evaluated at every evaluation step.
        run: continue this run (use :func:`resume`).

    Raises:
        TrainingDivergedError: the loss became NaN/inf; the message names the step. Checkpoints
            kept so far stay in ``err.run`` (and on disk with ``out_dir``).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=64))
        >>> run = mm.train(model, task, mm.TrainConfig(steps=200, lr=0.01, weight_decay=0,
        ...                                           progress=False))
        >>> float(run.history["train_acc"].iloc[-1])
        1.0
    """
    config = config or TrainConfig()
    root = Path(out_dir) if out_dir is not None else (run.path if run else None)
    if run is None:
        run = Run(model=model, task=task, config=config)
        run.checkpoints[0] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    run.config, run.status, run.path = config, "running", root
    opt, gen = make_optimizer(model, config), torch.Generator().manual_seed(config.seed)
    if run.train_state:
        _load_state(opt, gen, run.train_state)
    power = penalty_power(model, config) if config.norm_penalty > 0 else None
    x, y = model_inputs(model, task), task.labels
    x_train, y_train = x[task.train_idx], y[task.train_idx]
    n_train = len(y_train)
    keep = set(checkpoint_steps(config))
    rows: list[dict[str, Any]] = run.history.to_dict("records") if len(run.history) else []
    pending: list[torch.Tensor] = []

    def record(step: int) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step, "lr": config.lr_at(max(step - 1, 0))}
        row["train_loss"], row["train_acc"] = evaluate(model, task, task.train_idx)
        row["test_loss"], row["test_acc"] = evaluate(model, task, task.test_idx)
        row["weight_norm_sq"] = weight_norm_sq(model)
        for metric in metrics:
            row.update(metric(model, task))
        rows.append(row)
        run.history = pd.DataFrame(rows)
        return row

    def snapshot(step: int) -> None:
        run.step = step
        run.train_state = _state_to_tensors(opt, gen)
        if step in keep or step == config.steps:
            run.checkpoints[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if root is not None:
            if step in run.checkpoints:
                write_checkpoint(run, root, step)
            write_state(run, root)
            write_history(run, root)
            write_meta(run, root)

    def check_finite(last_step: int) -> None:
        if not pending:
            return
        losses = torch.stack(pending)
        pending.clear()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            step = last_step - len(losses) + int(bad[0]) + 1
            run.status = "diverged"
            if root is not None:
                write_meta(run, root)
            err = TrainingDivergedError(
                f"loss became {float(losses[int(bad[0])])} at step {step}; checkpoints up to "
                f"step {max(run.checkpoints)} are kept" + (f" in {root}" if root else ""))
            err.run = run  # type: ignore[attr-defined]
            raise err

    if run.step == 0 and not rows:
        record(0)
        snapshot(0)
    start, batch_len = run.step, _batch_len(n_train, config)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not config.progress, desc="train", leave=False)
    for step in bar:
        lr = config.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for part in _batches(n_train, config, gen):
            loss = cross_entropy64(model.last_logits(x_train[part]), y_train[part], "sum")
            loss = loss / batch_len
            loss.backward()
            total = total + loss.detach()
        if power is not None:
            pen = config.norm_penalty * model.neuron_norms().pow(power).sum()
            pen.backward()
        pending.append(total)
        opt.step()
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps or done in keep:
            check_finite(done)
            row = record(done) if (done % config.eval_every == 0 or done == config.steps) else None
            snapshot(done)
            if row is not None:
                bar.set_postfix(train=f"{row['train_loss']:.2e}", test_acc=f"{row['test_acc']:.3f}")
                if _target_reached(row, config):
                    run.status = "stopped_early"
                    break
    bar.close()
    if run.status == "running":
        run.status = "finished"
    if root is not None:
        write_meta(run, root)
    return run


def _batch_len(n_train: int, config: TrainConfig) -> int:
    return n_train if config.batch_size is None else min(config.batch_size, n_train)


def _target_reached(row: dict[str, Any], config: TrainConfig) -> bool:
    acc, loss = config.target_test_acc, config.target_train_loss
    return bool((acc is not None and row["test_acc"] >= acc)
                or (loss is not None and row["train_loss"] <= loss))


def resume(run_or_path: Run | str | Path, steps: int | None = None, **changes: Any) -> Run:
    """Continue a run exactly where it stopped (weights, optimizer state, RNG, history).

    ``steps`` raises the total step count; other ``TrainConfig`` fields may be changed too
    (changing the optimizer's hyperparameters of course changes the trajectory).

    Example:
        >>> run = mm.resume("runs/p113", steps=40_000)    # doctest: +SKIP
    """
    run = load_run(run_or_path) if isinstance(run_or_path, (str, Path)) else run_or_path
    if steps is not None:
        changes["steps"] = steps
    config = run.config.replace(**changes)
    if config.steps < run.step:
        raise MiMarginError(f"steps={config.steps} is before the run's current step {run.step}")
    return train(run.model, run.task, config, run=run)

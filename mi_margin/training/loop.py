"""``train()``: full-batch (or minibatch) training with float64 loss, metrics, checkpoints, resume.

Speed (docs/performance.md): ``model.last_logits`` takes the exact table fast path of
models/fast_paths.py (first layers as per-(position, token) tables; the transformer computes only
the last position); the full-batch gradient is accumulated over micro-batches that stay in cache;
nothing synchronises with the host between evaluations (no ``.item()`` per step).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from mi_margin._progress import progress_bar
from mi_margin.errors import CheckpointError, MiMarginError, TrainingDivergedError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import cross_entropy64, evaluate, model_inputs, weight_norm_sq
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig
from mi_margin.training.recorder import LossWatch, Metric, Recorder, SnapshotClock
from mi_margin.training.run import Run
from mi_margin.training.run_folder import RunWriter, load_run

__all__ = ["Metric", "make_optimizer", "penalty_power", "resume", "train", "weight_norm_sq"]


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
                tensors: dict[str, torch.Tensor], where: Any) -> None:
    """Restore the optimizer and RNG state saved by :func:`_state_to_tensors`; a state that does
    not fit this optimizer's parameters is a :class:`CheckpointError` naming ``where``."""
    params = opt.param_groups[0]["params"]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name == "rng":
            continue
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "opt" or not parts[1].isdigit() \
                or int(parts[1]) >= len(params) \
                or (value.dim() > 0 and value.shape != params[int(parts[1])].shape):
            raise CheckpointError(f"the training state in {where} does not fit this model's "
                                  f"optimizer (entry {name!r}, shape {tuple(value.shape)})")
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    try:
        gen.set_state(tensors["rng"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"the RNG state in {where} is missing or damaged: {err}") from err
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
          run: Run | None = None, overwrite: bool = False) -> Run:
    """Train ``model`` on ``task``'s training split and return the :class:`Run`.

    Args:
        model: a :class:`HookedOneLayerTransformer` or :class:`HookedMLP` (trained in place) that
            fits ``task`` (:func:`~mi_margin.models.compat.check_fits`).
        task: the task; only ``task.train_idx`` is trained on.
        config: :class:`TrainConfig` (defaults: Nanda et al.'s AdamW recipe).
        out_dir: if given, the run folder is written there as training goes: snapshots that
            appear all at once or not at all (:mod:`~mi_margin.training.run_folder`), so a process
            killed at any moment can be resumed exactly. A folder that already holds a run is
            refused unless ``overwrite=True``; continue one with :func:`resume`.
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
    if not isinstance(config, TrainConfig):
        raise MiMarginError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_fits(model, task)
    if run is None:
        writer = RunWriter.start(out_dir, overwrite) if out_dir is not None else None
        run = Run(model=model, task=task, config=config, path=writer.root if writer else None)
        run.checkpoints[0] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        writer = RunWriter.reopen(run) if run.path is not None else None
    run.config, run.status, run.error = config, "running", None
    opt, gen = make_optimizer(model, config), torch.Generator().manual_seed(config.seed)
    if run.train_state:
        _load_state(opt, gen, run.train_state, run.path or "the run")
    power = penalty_power(model, config) if config.norm_penalty > 0 else None
    x, y = model_inputs(model, task), task.labels
    x_train, y_train = x[task.train_idx], y[task.train_idx]
    n_train = len(y_train)
    rec, watch = Recorder(run, metrics, writer), LossWatch()
    clock = SnapshotClock(config.snapshot_every, writer is not None, run.step)

    def evals() -> tuple[float, ...]:
        return evaluate(model, task, task.train_idx) + evaluate(model, task, task.test_idx)

    if run.step == 0 and not rec.rows:
        rec.record(0, model, evals())
        with clock.writing(0):
            rec.snapshot(0, _state_to_tensors(opt, gen), "running", write=True)
    start, batch_len = run.step, _batch_len(n_train, config)
    bar = progress_bar(range(start, config.steps), initial=start, total=config.steps,
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
        watch.add(total)
        opt.step()
        done = step + 1
        write = clock.due(done)
        if write or rec.wants_eval(done) or rec.wants_checkpoint(done):
            bad = watch.check(done)
            if bad:
                err = TrainingDivergedError(rec.diverge(*bad[0]))
                err.run = run  # type: ignore[attr-defined]
                raise err
            if rec.wants_checkpoint(done):
                rec.keep(done, model.state_dict())
            row = rec.record(done, model, evals()) if rec.wants_eval(done) else None
            status = ("stopped_early" if row is not None and rec.target_reached(row)
                      else "finished" if done == config.steps else "running")
            with clock.writing(done) if write else nullcontext():
                rec.snapshot(done, _state_to_tensors(opt, gen), status, write)
            if row is not None:
                bar.set_postfix(train=f"{row['train_loss']:.2e}", test_acc=f"{row['test_acc']:.3f}")
            if status == "stopped_early":
                break
    bar.close()
    if run.status == "running":  # no step was left to take
        rec.finish()
    return run


def _batch_len(n_train: int, config: TrainConfig) -> int:
    return n_train if config.batch_size is None else min(config.batch_size, n_train)


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

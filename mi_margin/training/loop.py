"""The training loop, ``train()`` and ``resume()``.

One loop, :func:`fit`, trains N runs at once and makes every decision of training: which examples
each step uses (minibatch and micro-batches), each run's learning rate, when the losses are checked
for NaN/inf, when a run is evaluated, keeps a checkpoint, writes a snapshot, stops early or
finishes. How the N models compute is left to an :class:`Engine`: :class:`ModelEngine` trains one
model in place, by its own forward and a ``torch.optim`` optimizer (``train()``, N = 1);
``StackEngine`` (:mod:`~mi_margin.training.batched`) trains N models with stacked weights, each by
the same loss on its slice (``train_batched()``). So a batched run is the single run with N
models, not a second loop nor a second forward.

Speed (docs/performance.md): the exact table fast paths (:class:`ModelEngine`); a full-batch
gradient accumulated over micro-batches that stay in cache; no synchronisation with the host
between evaluations (no ``.item()`` per step).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from mi_margin._progress import progress_bar
from mi_margin.errors import CheckpointError, MiMarginError, TrainingDivergedError
from mi_margin.models.compat import check_fits, refuse_bridge
from mi_margin.models.evaluation import evaluate, model_inputs
from mi_margin.models.fast_paths import summed_cross_entropy
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig
from mi_margin.training.recorder import (
    LossWatch,
    Metric,
    Recorder,
    SnapshotClock,
    check_checkpoint_memory,
)
from mi_margin.training.run import Run
from mi_margin.training.run_folder import (
    RunWriter,
    as_run,
    existing_run_error,
    holds_run,
    lock_folder,
)

__all__ = ["Engine", "ModelEngine", "fit", "penalty_power", "resume", "start_run", "take_step",
           "train"]


# -- what the loop needs from the models ------------------------------------------------------------
class Engine(Protocol):
    """N models' weights, optimizer state and computation; :func:`fit` makes every decision."""

    def gradients(self, parts: list[Tensor], batch_len: int) -> Tensor:
        """Set the gradients to those of the step's loss on the micro-batches ``parts`` (Σ float64
        cross-entropy / ``batch_len``, plus the norm penalty); return the [N] losses."""

    def update(self, lrs: Sequence[float]) -> None:
        """One optimizer step, instance n at learning rate ``lrs[n]``."""

    def evaluate(self) -> list[Sequence[float]]:
        """Per instance: (train loss, train acc, test loss, test acc)."""

    def model(self, n: int) -> Any:
        """Instance n's model, holding its current weights."""

    def optimizer_state(self, n: int) -> dict[str, Tensor]:
        """Instance n's optimizer state as ``opt.{parameter index}.{name}`` CPU tensors."""


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
    if config.optimizer == "adamw":   # foreach: the for-loop's operations on all parameters at
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas,   # once, the same bits
                                 weight_decay=config.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


class ModelEngine:
    """One model trained in place: its own forward ``model.last_logits`` (which takes the exact
    table fast paths of models/fast_paths.py unless a hook needs the ordinary path) and a
    ``torch.optim`` AdamW or SGD."""

    def __init__(self, model: Any, task: Task, config: TrainConfig):
        self.net, self.task, self.config = model, task, config
        self.power = penalty_power(model, config) if config.norm_penalty > 0 else None
        self.opt = make_optimizer(model, config)
        x = model_inputs(model, task)
        self.x, self.y = x[task.train_idx], task.labels[task.train_idx]

    def gradients(self, parts: list[Tensor], batch_len: int) -> Tensor:
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for part in parts:
            x, y = (self.x, self.y) if len(parts) == 1 and len(part) == len(self.y) else \
                (self.x[part], self.y[part])   # one chunk of the full batch is arange: no copy
            loss = summed_cross_entropy(self.net, x, y) / batch_len
            loss.backward()
            total = total + loss.detach()
        if self.power is not None:
            (self.config.norm_penalty * self.net.neuron_norms().pow(self.power).sum()).backward()
        return total.view(1)

    def update(self, lrs: Sequence[float]) -> None:
        self.opt.param_groups[0]["lr"] = lrs[0]  # the one group of make_optimizer
        self.opt.step()

    def evaluate(self) -> list[Sequence[float]]:
        task = self.task
        return [evaluate(self.net, task, task.train_idx) + evaluate(self.net, task, task.test_idx)]

    def model(self, n: int) -> Any:
        return self.net

    def optimizer_state(self, n: int) -> dict[str, Tensor]:
        return {f"opt.{i}.{key}": value.detach().clone()
                for i, state in self.opt.state_dict()["state"].items()
                for key, value in state.items() if isinstance(value, Tensor)}


def _load_state(opt: torch.optim.Optimizer, gen: torch.Generator,
                tensors: dict[str, Tensor], where: Any) -> None:
    """Restore the optimizer and RNG state of a ``train_state``; a state that does not fit this
    optimizer's parameters is a :class:`CheckpointError` naming ``where``."""
    params = opt.param_groups[0]["params"]
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name == "rng":
            continue
        parts = name.split(".", 2)
        ok = len(parts) == 3 and parts[0] == "opt" and parts[1].isdigit()
        i = int(parts[1]) if ok else len(params)
        if i >= len(params) or (value.dim() > 0 and value.shape != params[i].shape):
            raise CheckpointError(f"the training state in {where} does not fit this model's "
                                  f"optimizer (entry {name!r}, shape {tuple(value.shape)})")
        state.setdefault(i, {})[parts[2]] = value
    try:
        gen.set_state(tensors["rng"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"the RNG state in {where} is missing or damaged: {err}") from err
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


# -- the loop ---------------------------------------------------------------------------------------
def _batches(n_train: int, config: TrainConfig, gen: torch.Generator) -> list[Tensor]:
    """Index chunks (into the training set) whose summed gradient is this step's gradient."""
    if config.batch_size is None or config.batch_size >= n_train:
        idx = torch.arange(n_train)
    else:
        idx = torch.randperm(n_train, generator=gen)[: config.batch_size]
    return list(idx.split(config.microbatch or len(idx)))


def _batch_len(n_train: int, config: TrainConfig) -> int:
    return n_train if config.batch_size is None else min(config.batch_size, n_train)


def take_step(engine: Engine, configs: Sequence[TrainConfig], step: int, n_train: int,
              gen: torch.Generator) -> Tensor:
    """Optimizer step ``step`` (0-based) of every instance; their [N] training losses."""
    shared = configs[0]
    losses = engine.gradients(_batches(n_train, shared, gen), _batch_len(n_train, shared))
    engine.update([c.lr_at(step) for c in configs])
    return losses


def fit(engine: Engine, recorders: Sequence[Recorder], gen: torch.Generator,
        diverged: Callable[[int, str], None], desc: str = "train") -> None:
    """Train instance n of ``engine`` as the run of ``recorders[n]`` until every run has stopped.

    The runs start at one step, and share their configs' ``batch_size``, ``microbatch``,
    ``snapshot_every`` (and, with minibatches, ``seed``: ``gen`` draws them). Instance n trains
    at its own learning rate until its own ``steps``; after each step the runs that are due are
    checked for NaN/inf losses (a diverged run is stopped and ``diverged(n, message)`` called),
    evaluated, checkpointed and snapshotted, and stop early when they reach their target. A
    stopped run stays frozen; the engine may keep computing its weights.

    Example (what ``train()`` does, without its checks and resume):
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> config = mm.TrainConfig(steps=20, eval_every=10, progress=False)
        >>> rec = start_run(model, task, config, metrics=(), out_dir=None, overwrite=False)
        >>> fit(ModelEngine(model, task, config), [rec], torch.Generator().manual_seed(0), print)
        >>> rec.run.status, rec.run.history["step"].tolist()
        ('finished', [0, 10, 20])
    """
    runs = [rec.run for rec in recorders]
    configs, task, start = [run.config for run in runs], runs[0].task, runs[0].step
    clock = SnapshotClock(configs[0].snapshot_every, any(r.writer for r in recorders), start)
    watch, n_train = LossWatch(), len(task.train_idx)

    def train_state(n: int) -> dict[str, Tensor]:
        """As ``train()`` holds it: a full-batch run's generator is never drawn from."""
        rng = gen if configs[n].batch_size is not None else \
            torch.Generator().manual_seed(configs[n].seed)
        return {"rng": rng.get_state(), **engine.optimizer_state(n)}

    def save(due: list[int], done: int, write: bool) -> None:
        """Evaluate, keep, record and snapshot the runs ``due`` after ``done`` steps."""
        evals = engine.evaluate() if any(recorders[n].wants_eval(done) for n in due) else []
        with clock.writing(done) if write else nullcontext():
            for n in due:
                recorders[n].save(done, engine.model(n), evals[n] if evals else None,
                                  train_state(n), write)

    if start == 0 and not recorders[0].rows:  # the initial weights and their evaluation
        save(list(range(len(runs))), 0, write=True)
    total = max(c.steps for c in configs)
    with progress_bar(range(start, total), initial=start, total=total, desc=desc, leave=False,
                      disable=not any(c.progress for c in configs)) as bar:
        for step in bar:
            if all(run.status != "running" for run in runs):
                break
            watch.add(take_step(engine, configs, step, n_train, gen))
            done, write = step + 1, clock.due(step + 1)
            due = [n for n, rec in enumerate(recorders) if runs[n].status == "running"
                   and (write or rec.wants_eval(done) or rec.wants_checkpoint(done))]
            if not due:
                continue
            for n, (at, loss) in watch.check(done).items():
                if runs[n].status == "running":
                    diverged(n, recorders[n].diverge(at, loss))
            save([n for n in due if runs[n].status == "running"], done, write)
            rows = [rec.rows[-1] for rec in recorders if rec.rows and rec.rows[-1]["step"] == done]
            if rows:
                bar.set_postfix(train=f"{min(r['train_loss'] for r in rows):.2e}",
                                test_acc=f"{max(r['test_acc'] for r in rows):.3f}")
    for rec in recorders:
        if rec.run.status == "running":  # no step was left to take
            rec.finish()


# -- train() and resume() ---------------------------------------------------------------------------
def start_run(model: Any, task: Task, config: TrainConfig, metrics: Sequence[Metric],
              out_dir: str | Path | None, overwrite: bool) -> Recorder:
    """A new run of ``model``, in a new run folder if ``out_dir`` (a folder holding a run is
    refused unless ``overwrite``, with the way on: :func:`existing_run_error`)."""
    if out_dir is not None and (not isinstance(out_dir, (str, os.PathLike)) or str(out_dir) == ""):
        raise MiMarginError(f"out_dir must name a folder for the run (or be None), got {out_dir!r}")
    if out_dir is not None and not overwrite and holds_run(Path(out_dir)):
        lock_folder(Path(out_dir)).close()     # a folder another process writes: refused first
        raise existing_run_error(Path(out_dir), {"task": task.to_dict(), "model": model.cfg.to_dict(),
                                                 "train": config.to_dict()})
    writer = RunWriter.start(out_dir, overwrite) if out_dir is not None else None
    run = Run(model=model, task=task, config=config, path=writer.root if writer else None)
    return Recorder(run, metrics, writer)


def train(model: Any, task: Task, config: TrainConfig | None = None, *,
          out_dir: str | Path | None = None, metrics: Sequence[Metric] = (),
          run: Run | None = None, overwrite: bool = False) -> Run:
    """Train ``model`` on ``task``'s training split and return the :class:`Run`; the model is
    left in eval mode (also when training stops on an error), ready for analysis and
    ``transformer_lens.patching``.

    Args:
        model: a :class:`HookedOneLayerTransformer` or :class:`HookedMLP` (trained in place) that
            fits ``task`` (:func:`~mi_margin.models.compat.check_fits`). A ``TransformerBridge``
            is refused: train its native twin (``HookedOneLayerTransformer.from_bridge``).
        task: the task; only ``task.train_idx`` is trained on.
        config: :class:`TrainConfig` (defaults: Nanda et al.'s AdamW recipe).
        out_dir: if given, the run folder is written there as training goes: snapshots that
            appear all at once or not at all (:mod:`~mi_margin.training.run_folder`), so a process
            killed at any moment can be resumed exactly. A folder that already holds a run is
            refused unless ``overwrite=True``, with the way on in the message (re-running a
            notebook cell: ``mm.load(out_dir)`` for the same finished run, :func:`resume` for an
            unfinished one). One process at a time writes a folder: another writer's folder is
            refused, naming its pid.
        metrics: extra callables ``f(model, task) -> dict`` evaluated at every evaluation step.
        run: continue this run (use :func:`resume`).

    Raises:
        TrainingDivergedError: the loss became NaN/inf; the message names the step. Checkpoints
            kept so far stay in ``err.run`` (and on disk with ``out_dir``).
        KeyboardInterrupt: an interrupt (the notebook's stop button) passes through. With
            ``out_dir`` the last snapshot stays on disk and :func:`resume` continues it exactly;
            without, the model keeps the weights it had but the run's history and checkpoints
            are lost: give long runs an ``out_dir``.

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
    refuse_bridge(model, "mm.train", "train that (model.to_bridge() then gives the trained "
                  "bridge)")
    check_fits(model, task)
    check_checkpoint_memory(model, config)
    engine = ModelEngine(model, task, config)
    gen = torch.Generator().manual_seed(config.seed)
    if run is None:
        rec = start_run(model, task, config, metrics, out_dir, overwrite)
    else:
        writer = RunWriter.reopen(run) if run.path is not None else None
        run.config, run.status, run.error = config, "running", None
        rec = Recorder(run, metrics, writer)

    def raise_diverged(_: int, message: str) -> None:
        err = TrainingDivergedError(message)
        err.run = rec.run  # type: ignore[attr-defined]
        raise err

    with rec.writer or nullcontext():   # the run folder's lock, released however training ends
        if run is not None and run.train_state:
            _load_state(engine.opt, gen, run.train_state, run.path or "the run")
        try:
            fit(engine, [rec], gen, raise_diverged)
        finally:
            model.eval()
    return rec.run


def resume(run_or_path: Run | str | Path, steps: int | None = None, **changes: Any) -> Run:
    """Continue a run exactly where it stopped (weights, optimizer state, RNG, history).

    ``steps`` raises the total step count; other ``TrainConfig`` fields may be changed too
    (changing the optimizer's hyperparameters of course changes the trajectory).

    Example:
        >>> run = mm.resume("runs/p113", steps=40_000)    # doctest: +SKIP
    """
    run = as_run(run_or_path, "resume continues a run")
    if steps is not None:
        changes["steps"] = steps
    config = run.config.replace(**changes)
    if config.steps < run.step:
        raise MiMarginError(f"steps={config.steps} is before the run's current step {run.step}")
    return train(run.model, run.task, config, run=run)

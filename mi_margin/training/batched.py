"""Train N models of one architecture at once: stacked weights [N, ...] and one batched step.

Many seeds, and per-instance learning rates, LR schedules, weight decays, betas, momenta and norm
penalties, train as one computation with an explicit instance axis (docs/performance.md, "stacked
module"): every parameter is stacked to [N, ...], the loss is Σ_n mean_n (so instance n receives
exactly its own gradient), and one elementwise AdamW or SGD whose hyperparameters are [N, 1, ...]
tensors updates the whole stack. On a GPU this turns N launch-bound steps into one step (not
measured yet). On CPU the instances are computed in groups whose activations fit in cache
(:data:`CPU_CACHE_FLOATS`), which makes the per-model time equal to a single run's on a quiet
2-core machine and several times shorter on a contended one (bench/bench_training.py).

The stacked forward repeats the single model's operations with an extra leading axis (same matmul
shapes per instance, same micro-batches), and the optimizer update repeats the operations of
``torch.optim.AdamW`` / ``SGD`` with tensor instead of scalar hyperparameters. On CPU each batched run
therefore reproduces :func:`~mi_margin.train` on the model's ordinary path bit for bit
(tests/training/test_batched.py), and ``train()``'s default table fast path (models/fast_paths.py)
to float rounding. The stacked forward does not use the tables, so on CPU a single ``train()`` per
model is faster (docs/performance.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mi_margin._progress import progress_bar
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import cross_entropy64, model_inputs
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig
from mi_margin.training.loop import _batch_len, _batches, penalty_power
from mi_margin.training.recorder import LossWatch, Metric, Recorder, SnapshotClock
from mi_margin.training.run import Run
from mi_margin.training.run_folder import RunWriter
from mi_margin.training.stacked import (
    CPU_CACHE_FLOATS,
    Stack,
    evaluate_stack,
    neuron_norms,
)
from mi_margin.training.stacked_optim import StackedAdamW, StackedSGD

#: TrainConfig fields every instance must share (they decide which examples are computed when,
#: and when the instances' snapshots are written: all together).
SHARED_FIELDS = ("optimizer", "batch_size", "microbatch", "snapshot_every")

# -- configs ----------------------------------------------------------------------------------------
def check_configs(configs: TrainConfig | Sequence[TrainConfig] | None, n: int) -> list[TrainConfig]:
    """One :class:`TrainConfig` per model; raise naming any field that must be shared but is not."""
    if configs is None or isinstance(configs, TrainConfig):
        return [configs or TrainConfig()] * n
    configs = list(configs)
    if len(configs) != n:
        raise MiMarginError(f"got {len(configs)} TrainConfigs for {n} models; pass one, or one each")
    shared = list(SHARED_FIELDS) + (["seed"] if configs[0].batch_size is not None else [])
    for name in shared:
        values = [getattr(c, name) for c in configs]
        if len(set(values)) > 1:
            raise MiMarginError(f"TrainConfig.{name} must be the same for every model in a batch, "
                                f"got {name}={values}")
    return configs


# -- per-instance bookkeeping -----------------------------------------------------------------------
@dataclass
class _Instance:
    """One model's run and its bookkeeping (:class:`Recorder`) inside a batched training loop."""

    index: int
    model: Any
    rec: Recorder
    power: float | None
    active: bool = True

    @property
    def run(self) -> Run:
        return self.rec.run

    @property
    def config(self) -> TrainConfig:
        return self.rec.run.config

    def due(self, done: int) -> bool:
        return self.rec.wants_eval(done) or self.rec.wants_checkpoint(done)


def _penalty_powers(models: Sequence[Any], configs: Sequence[TrainConfig]) -> list[float | None]:
    powers = [penalty_power(m, c) if c.norm_penalty > 0 else None for m, c in zip(models, configs)]
    used = {p for p in powers if p is not None}
    if len(used) > 1:
        raise MiMarginError(f"the norm-penalty exponent must be the same for every model in a batch, "
                            f"got {[p for p in powers if p is not None]}")
    return powers


# -- the training loop ------------------------------------------------------------------------------
class _BatchedTrainer:
    """State shared by the steps of :func:`train_batched` (kept out of one long function)."""

    def __init__(self, models: Sequence[Any], task: Task, configs: list[TrainConfig],
                 device: torch.device, metrics: Sequence[Metric],
                 out_dirs: Sequence[str | Path] | None, overwrite: bool):
        self.task, self.configs, self.metrics, self.device = task, configs, metrics, device
        self.stack = Stack(models, device)
        for model in models:
            check_fits(model, task)
        powers = _penalty_powers(models, configs)
        roots = [Path(p) for p in out_dirs] if out_dirs is not None else [None] * len(models)
        if len(roots) != len(models):
            raise MiMarginError(f"got {len(roots)} out_dirs for {len(models)} models")
        writers = [RunWriter.start(root, overwrite) if root is not None else None
                   for root in roots]
        self.clock = SnapshotClock(configs[0].snapshot_every, out_dirs is not None)
        self.watch = LossWatch()
        self.items: list[_Instance] = []
        for n, (model, cfg, writer) in enumerate(zip(models, configs, writers, strict=True)):
            run = Run(model=model, task=task, config=cfg, status="running",
                      path=writer.root if writer else None)
            run.checkpoints[0] = self.stack.state_dict(n)
            self.items.append(_Instance(n, model, Recorder(run, metrics, writer), powers[n]))
        opt_cls = StackedAdamW if configs[0].optimizer == "adamw" else StackedSGD
        self.opt = opt_cls(self.stack.params, configs)
        self.gen = torch.Generator().manual_seed(configs[0].seed)
        self.x = model_inputs(models[0], task).to(device)
        self.y = task.labels.to(device)
        self.train_idx = task.train_idx.to(device)
        self.penalty = torch.tensor([c.norm_penalty for c in configs], device=device)
        self.group = self.group_size()

    def group_size(self) -> int:
        """Instances computed together: all of them on a GPU; on CPU as many as keep one
        micro-batch's widest activation within :data:`CPU_CACHE_FLOATS` (docs/performance.md: stacked
        activations that overflow the cache make a stacked step slower than N single ones)."""
        if self.device.type != "cpu":
            return self.stack.n
        chunk = self.configs[0].microbatch or len(self.train_idx)
        per_instance = min(chunk, len(self.train_idx)) * self.stack.activation_width()
        return max(1, min(self.stack.n, CPU_CACHE_FLOATS // per_instance))

    # one optimizer step for every instance
    def step(self, step: int) -> None:
        cfg0, n_train, N = self.configs[0], len(self.train_idx), self.stack.n
        batch_len = _batch_len(n_train, cfg0)
        params = self.stack.params
        grads = [torch.zeros_like(p) for p in params]
        total = torch.zeros(N, dtype=torch.float64, device=self.device)
        parts = [self.train_idx[part.to(self.device)] for part in _batches(n_train, cfg0, self.gen)]
        g = self.group
        for lo in range(0, N, g):
            group = slice(lo, min(lo + g, N))
            views = [p[group] for p in params]
            tensors = {**{k: v[group] for k, v in self.stack.tensors.items()},
                       **dict(zip(self.stack.names, views, strict=True))}
            for rows in parts:
                logits = self.stack.logits(self.x[rows], tensors)
                n = logits.shape[0]
                losses = cross_entropy64(logits.flatten(0, 1), self.y[rows].repeat(n),
                                         reduction="none").view(n, -1).sum(1) / batch_len
                found = torch.autograd.grad(losses.sum(), views, allow_unused=True)
                for acc, d in zip(grads, found, strict=True):
                    if d is not None:
                        acc[group] += d
                total[group] += losses.detach()
        for p, d in zip(params, grads, strict=True):
            p.grad = d
        power = next((it.power for it in self.items if it.power is not None), None)
        if power is not None:
            pen = neuron_norms(self.stack.tensors).pow(power).sum(1)
            (self.penalty.to(pen.dtype) * pen).sum().backward()
        self.watch.add(total)
        self.opt.step([c.lr_at(step) for c in self.configs])

    def evaluate(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tr = evaluate_stack(self.stack, self.x, self.y, self.train_idx)
        te = evaluate_stack(self.stack, self.x, self.y, self.task.test_idx.to(self.device))
        return tr[0], tr[1], te[0], te[1]

    def check_finite(self, done: int) -> None:
        """Mark instances whose loss became NaN/inf since the last check as diverged."""
        for n, (step, loss) in self.watch.check(done).items():
            it = self.items[n]
            if it.active:
                it.active = False
                warnings.warn(f"models[{n}] diverged: {it.rec.diverge(step, loss)}",
                              RuntimeWarning, stacklevel=4)

    def save(self, it: _Instance, done: int, evals: tuple[Tensor, ...], write: bool) -> None:
        """Record, keep and snapshot what instance ``it`` asks for at ``done``."""
        n, rec = it.index, it.rec
        self.stack.write_to(it.model, n)
        if rec.wants_checkpoint(done):
            rec.keep(done, self.stack.state_dict(n))
        row = None
        if rec.wants_eval(done):
            row = rec.record(done, it.model, [float(e[n]) for e in evals])
        status = ("stopped_early" if row is not None and rec.target_reached(row)
                  else "finished" if done == it.config.steps else "running")
        rec.snapshot(done, {"rng": self.rng_state(it), **self.opt.state(n)}, status, write)
        it.active = status == "running"

    def rng_state(self, it: _Instance) -> Tensor:
        """The minibatch generator's state as ``train()`` would hold it for this instance."""
        if it.config.batch_size is not None:
            return self.gen.get_state()
        return torch.Generator().manual_seed(it.config.seed).get_state()

    def after_step(self, done: int) -> None:
        """Evaluate, checkpoint, snapshot, stop early or finish the instances due at ``done``."""
        write = self.clock.due(done)
        due = [it for it in self.items if it.active and (write or it.due(done))]
        if not due:
            return
        self.check_finite(done)
        due = [it for it in due if it.active]
        evals: tuple[Tensor, ...] = ()
        if any(it.rec.wants_eval(done) for it in due):
            evals = self.evaluate()
        with self.clock.writing(done) if write else nullcontext():
            for it in due:
                self.save(it, done, evals, write)

    def start(self) -> None:
        evals = self.evaluate()
        with self.clock.writing(0):
            for it in self.items:
                self.stack.write_to(it.model, it.index)
                it.rec.record(0, it.model, [float(e[it.index]) for e in evals])
                it.rec.snapshot(0, {"rng": self.rng_state(it), **self.opt.state(it.index)},
                                "running", write=True)


def train_batched(models: Sequence[Any], task: Task,
                  configs: TrainConfig | Sequence[TrainConfig] | None = None, *,
                  device: torch.device | str | None = None, metrics: Sequence[Metric] = (),
                  out_dirs: Sequence[str | Path] | None = None,
                  overwrite: bool = False) -> list[Run]:
    """Train N models of one architecture together and return one :class:`Run` per model.

    Instance n's run is the run ``train(models[n], task, configs[n])`` would give (bit for bit on
    CPU): same history columns, checkpoints, ``train_state`` (so :func:`~mi_margin.resume` continues
    it alone) and status. The models are trained in place. What may differ between instances: the
    models' ``seed``/``init_scale`` (or any starting weights), and in the configs the learning rate
    and its schedule, weight decay, betas, momentum, norm penalty, step count, evaluation and
    checkpoint schedule and early-stopping targets; ``optimizer``, ``batch_size``, ``microbatch``
    and ``snapshot_every`` (and ``seed`` with minibatches) must agree. An instance that stops
    (finished, target reached, or diverged: status ``"diverged"`` where ``train()`` would raise)
    keeps its run frozen while the others go on; its weights in the stack keep being computed
    until the last instance stops.
    Forward hooks attached to the models are not run during batched training.

    Args:
        models: :class:`HookedOneLayerTransformer` or :class:`HookedMLP` instances of one config
            (up to seed).
        task: the shared task (its ``train_idx`` is trained on).
        configs: one :class:`TrainConfig` for all, or one per model.
        device: where the stack lives (default: CUDA when available, else CPU). Checkpoints and
            training state are kept on CPU; trained weights are written back into ``models``.
        metrics: callables ``f(model, task) -> dict`` evaluated at every evaluation step.
        out_dirs: one run folder per model, written as training goes (as ``train(out_dir=...)``);
            folders holding a run are refused unless ``overwrite=True``.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> models = [mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=64, seed=s)) for s in range(3)]
        >>> runs = mm.train_batched(models, task, [mm.TrainConfig(steps=200, lr=lr, weight_decay=0,
        ...                         progress=False) for lr in (0.003, 0.01, 0.03)])
        >>> [float(r.history["train_acc"].iloc[-1]) for r in runs]
        [1.0, 1.0, 1.0]
    """
    configs = check_configs(configs, len(models))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = _BatchedTrainer(models, task, configs, torch.device(device), metrics, out_dirs,
                              overwrite)
    trainer.start()
    total = max(c.steps for c in configs)
    bar = progress_bar(range(total), disable=not any(c.progress for c in configs), desc="train_batched",
               leave=False)
    for step in bar:
        if not any(it.active for it in trainer.items):
            break
        trainer.step(step)
        trainer.after_step(step + 1)
    bar.close()
    return [it.run for it in trainer.items]

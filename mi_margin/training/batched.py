"""``train_batched()``: N models of one architecture trained as one computation, by the training
loop of :mod:`~mi_margin.training.loop` driving a :class:`StackEngine`.

Every parameter is stacked to [N, ...] (:mod:`~mi_margin.training.stacked`), the loss is Σ_n mean_n
(so instance n receives exactly its own gradient), and one elementwise AdamW or SGD with [N, 1, ...]
hyperparameter tensors (:mod:`~mi_margin.training.stacked_optim`) updates the stack; so seeds,
learning rates and their schedules, weight decays, betas, momenta and norm penalties may differ
between instances (docs/performance.md, "stacked module"). On a GPU this turns N launch-bound steps
into one (not measured yet); on CPU the instances are computed in groups whose activations fit in
cache (:data:`CPU_CACHE_FLOATS`).

The stacked forward and update repeat the single model's operations with an extra leading axis, so
on CPU each batched run reproduces :func:`~mi_margin.train` on the model's ordinary path bit for bit
(tests/training/test_batched.py), and its default table fast path (models/fast_paths.py) to float
rounding. The stacked forward has no tables, so on CPU one ``train()`` per model is faster.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import cross_entropy64, model_inputs
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig
from mi_margin.training.loop import fit, penalty_power, start_run
from mi_margin.training.recorder import Metric
from mi_margin.training.run import Run
from mi_margin.training.stacked import CPU_CACHE_FLOATS, Stack, evaluate_stack, neuron_norms
from mi_margin.training.stacked_optim import StackedAdamW, StackedSGD

#: TrainConfig fields every instance must share (they decide which examples are computed when,
#: and when the instances' snapshots are written: all together).
SHARED_FIELDS = ("optimizer", "batch_size", "microbatch", "snapshot_every")


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


class StackEngine:
    """N same-architecture models as one :class:`~mi_margin.training.stacked.Stack` with a stacked
    AdamW or SGD (an :class:`~mi_margin.training.loop.Engine`). The models receive their
    instance's weights when the loop asks for them (:meth:`model`)."""

    def __init__(self, models: Sequence[Any], task: Task, configs: list[TrainConfig],
                 device: torch.device):
        self.models, self.task, self.configs, self.device = list(models), task, configs, device
        self.stack = Stack(models, device)
        for model in models:
            check_fits(model, task)
        powers = {penalty_power(m, c) for m, c in zip(models, configs) if c.norm_penalty > 0}
        if len(powers) > 1:
            raise MiMarginError(f"the norm-penalty exponent must be the same for every model in a "
                                f"batch, got {sorted(powers)}")
        self.power = powers.pop() if powers else None
        self.penalty = torch.tensor([c.norm_penalty for c in configs], device=device)
        opt_cls = StackedAdamW if configs[0].optimizer == "adamw" else StackedSGD
        self.opt = opt_cls(self.stack.params, configs)
        self.x, self.y = model_inputs(models[0], task).to(device), task.labels.to(device)
        self.train_idx = task.train_idx.to(device)
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

    def gradients(self, parts: list[Tensor], batch_len: int) -> Tensor:
        N, params = self.stack.n, self.stack.params
        grads = [torch.zeros_like(p) for p in params]
        total = torch.zeros(N, dtype=torch.float64, device=self.device)
        rows_of = [self.train_idx[part.to(self.device)] for part in parts]
        for lo in range(0, N, self.group):
            group = slice(lo, min(lo + self.group, N))
            views = [p[group] for p in params]
            tensors = {**{k: v[group] for k, v in self.stack.tensors.items()},
                       **dict(zip(self.stack.names, views, strict=True))}
            for rows in rows_of:
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
        if self.power is not None:
            pen = neuron_norms(self.stack.tensors).pow(self.power).sum(1)
            (self.penalty.to(pen.dtype) * pen).sum().backward()
        return total

    def update(self, lrs: Sequence[float]) -> None:
        self.opt.step(lrs)

    def evaluate(self) -> list[Sequence[float]]:
        train = evaluate_stack(self.stack, self.x, self.y, self.train_idx)
        test = evaluate_stack(self.stack, self.x, self.y, self.task.test_idx.to(self.device))
        return list(zip(*(t.tolist() for t in train + test), strict=True))

    def model(self, n: int) -> Any:
        self.stack.write_to(self.models[n], n)
        return self.models[n]

    def optimizer_state(self, n: int) -> dict[str, Tensor]:
        return self.opt.state(n)


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
    (finished, target reached, or diverged: status ``"diverged"`` and a ``RuntimeWarning`` where
    ``train()`` would raise) keeps its run frozen while the others go on; its weights in the stack
    keep being computed until the last instance stops.
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
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    engine = StackEngine(models, task, configs, torch.device(device))
    roots = list(out_dirs) if out_dirs is not None else [None] * len(models)
    if len(roots) != len(models):
        raise MiMarginError(f"got {len(roots)} out_dirs for {len(models)} models")
    recorders = [start_run(model, task, cfg, metrics, root, overwrite)
                 for model, cfg, root in zip(models, configs, roots, strict=True)]

    def warn_diverged(n: int, message: str) -> None:
        warnings.warn(f"models[{n}] diverged: {message}", RuntimeWarning, stacklevel=4)

    fit(engine, recorders, torch.Generator().manual_seed(configs[0].seed), warn_diverged,
        desc="train_batched")
    return [rec.run for rec in recorders]

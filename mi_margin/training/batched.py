"""``train_batched()``: N models of one architecture trained together, by the training loop of
:mod:`~mi_margin.training.loop` driving a :class:`StackEngine`.

There is one model definition per architecture. The engine stacks the models' weights to
[N, ...] tensors (``torch.func.stack_module_state``) and computes instance n by the single
model's own loss, ``summed_cross_entropy`` with its exact table fast paths
(models/fast_paths.py), through ``torch.func.functional_call`` on instance n's slice of the stack.
A ``torch.optim`` AdamW or SGD steps the stack: AdamW and SGD are elementwise, so one optimizer
over the stacked tensors is N ``train()`` optimizers when the instances share their optimizer
settings, and otherwise it has one parameter group per instance's slices, so that seeds, learning
rates and their schedules, weight decays, betas, momenta and norm penalties may differ. Each
instance may train on its own task (for example its own seed's split), as long as the training
sets have one size.

So each batched run reproduces :func:`~mi_margin.train` on its model bit for bit on one machine
(tests/training/test_batched.py), fast paths and hooks included. The instances' forwards are
not vectorised into one (``torch.func.vmap`` does not pass through the fast paths' autograd
functions nor the float64 loss's data-dependent underflow rows), so a batch costs what its N
runs cost in one process (bench/bench_throughput.py, docs/performance.md §5).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import evaluate, model_inputs
from mi_margin.models.fast_paths import summed_cross_entropy
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig
from mi_margin.training.loop import fit, penalty_power, start_run
from mi_margin.training.recorder import Metric, check_checkpoint_memory
from mi_margin.training.run import Run

#: TrainConfig fields every instance must share (they decide which examples are computed when,
#: and when the instances' snapshots are written: all together).
SHARED_FIELDS = ("optimizer", "batch_size", "microbatch", "snapshot_every")
#: Config fields that only change a model's initial weights, so they may differ between instances.
INIT_ONLY_FIELDS = ("seed", "init_scale")
#: TrainConfig fields the optimizer's steps depend on (with ``optimizer``, shared anyway).
OPTIMIZER_FIELDS = ("lr", "betas", "momentum", "weight_decay", "warmup_steps", "lr_milestones",
                    "lr_gamma")


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


def check_models(models: Sequence[Any]) -> None:
    """Raise :class:`MiMarginError` unless ``models`` share one architecture (naming what differs)."""
    if len(models) == 0:
        raise MiMarginError("train_batched needs at least one model, got an empty list")
    first = models[0]
    if getattr(first, "model_kind", None) not in ("transformer", "mlp"):
        raise MiMarginError(f"models must be HookedOneLayerTransformer or HookedMLP, got {type(first)}")
    ref = {k: v for k, v in first.cfg.to_dict().items() if k not in INIT_ONLY_FIELDS}
    ref_grads = {k: p.requires_grad for k, p in first.named_parameters()}
    for i, model in enumerate(models[1:], start=1):
        if any(model is other for other in models[:i]):
            raise MiMarginError(f"models[{i}] is the same object as an earlier model; "
                                "pass separate models (e.g. copy.deepcopy) to train them apart")
        if type(model) is not type(first):
            raise MiMarginError(f"models[{i}] is a {type(model).__name__}, models[0] a "
                                f"{type(first).__name__}; all models must have one architecture")
        cfg = {k: v for k, v in model.cfg.to_dict().items() if k not in INIT_ONLY_FIELDS}
        diff = {k: (ref.get(k), cfg.get(k)) for k in ref.keys() | cfg.keys()
                if ref.get(k) != cfg.get(k)}
        if diff:
            raise MiMarginError(f"models[{i}].cfg differs from models[0].cfg in {diff} "
                                f"(only {list(INIT_ONLY_FIELDS)} may differ)")
        if {k: p.requires_grad for k, p in model.named_parameters()} != ref_grads:
            raise MiMarginError(f"models[{i}] freezes different parameters than models[0]")


def check_tasks(task: Task | Sequence[Task], models: Sequence[Any]) -> list[Task]:
    """One task per model (the same one for all, or one each); every model must fit its task and
    the training sets must have one size (the loop draws one minibatch for all)."""
    tasks = [task] * len(models) if isinstance(task, Task) else list(task)
    if len(tasks) != len(models):
        raise MiMarginError(f"got {len(tasks)} tasks for {len(models)} models; pass one, or one each")
    sizes = [len(t.train_idx) for t in tasks]
    if len(set(sizes)) > 1:
        raise MiMarginError(f"the tasks' training sets must have one size in a batch, got {sizes}")
    for model, t in zip(models, tasks, strict=True):
        check_fits(model, t)
    return tasks


class _Bound(nn.Module):
    """``fn(model, *args)`` as a module's forward, so that ``functional_call`` can run any of the
    model's own computations (its training loss, neuron norms, evaluation) on swapped-in weights."""

    def __init__(self, model: nn.Module, fn: Callable[..., Any]):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.model, *args)


def _neuron_norms(model: Any) -> Tensor:
    return model.neuron_norms()


class StackEngine:
    """N same-architecture models as stacked [N, ...] weights, each instance computed by its
    model's own loss through ``functional_call`` and stepped by one ``torch.optim`` optimizer
    (an :class:`~mi_margin.training.loop.Engine`): over the stacked tensors when the instances
    share their optimizer settings (``shared``), else with a group per instance's slices.

    ``weights[n]`` maps each trainable parameter's name to instance n's slice of the stack: a
    leaf tensor sharing the stack's storage, whose ``.grad`` is the same slice of the stacked
    gradient, so autograd accumulates into the stack in place.
    """

    def __init__(self, models: Sequence[Any], tasks: list[Task], configs: list[TrainConfig],
                 device: torch.device):
        self.models, self.tasks, self.configs = list(models), tasks, configs
        powers = {penalty_power(m, c) for m, c in zip(models, configs) if c.norm_penalty > 0}
        if len(powers) > 1:
            raise MiMarginError(f"the norm-penalty exponent must be the same for every model in a "
                                f"batch, got {sorted(powers)}")
        self.power = powers.pop() if powers else None
        params, buffers = stack_module_state(self.models)
        names = [k for k, p in models[0].named_parameters() if p.requires_grad]
        self.stack = {k: params[k].detach().to(device) for k in names}
        self.grads = {k: torch.zeros_like(t) for k, t in self.stack.items()}
        for k, t in self.stack.items():
            t.grad = self.grads[k]
        self.weights = [self._slices(n) for n in range(len(models))]
        self.fixed = [{f"model.{k}": v[n].to(device) for k, v in buffers.items()} |
                      {f"model.{k}": params[k][n].detach().to(device)
                       for k in params if k not in self.stack} for n in range(len(models))]
        self.losses = [_Bound(m, summed_cross_entropy) for m in models]
        self.norms = [_Bound(m, _neuron_norms) for m in models]
        self.evals = [_Bound(m, evaluate) for m in models]
        self.shared = len({tuple(getattr(c, f) for f in OPTIMIZER_FIELDS) for c in configs}) == 1
        self.opt = make_stacked_optimizer(
            [list(self.stack.values())] if self.shared else [list(w.values()) for w in self.weights],
            configs[:1] if self.shared else configs)
        self.train_data = [(model_inputs(m, t)[t.train_idx].to(device), t.labels[t.train_idx]
                            .to(device)) for m, t in zip(models, tasks, strict=True)]

    def _slices(self, n: int) -> dict[str, Tensor]:
        out = {}
        for k, t in self.stack.items():
            out[k] = t[n].requires_grad_(True)
            out[k].grad = self.grads[k][n]
        return out

    def _call(self, n: int, module: _Bound, *args: Any) -> Any:
        named = {f"model.{k}": v for k, v in self.weights[n].items()} | self.fixed[n]
        return functional_call(module, named, args, strict=True)

    def gradients(self, parts: list[Tensor], batch_len: int) -> Tensor:
        for g in self.grads.values():
            g.zero_()
        total = torch.zeros(len(self.models), dtype=torch.float64)
        for n, (x_all, y_all) in enumerate(self.train_data):
            for part in parts:      # as ModelEngine: one chunk of the full batch is no copy
                x, y = (x_all, y_all) if len(parts) == 1 and len(part) == len(y_all) else \
                    (x_all[part], y_all[part])
                loss = self._call(n, self.losses[n], x, y) / batch_len
                loss.backward()
                total[n] += loss.detach().cpu()
            if self.power is not None and self.configs[n].norm_penalty > 0:
                norms = self._call(n, self.norms[n])
                (self.configs[n].norm_penalty * norms.pow(self.power).sum()).backward()
        return total

    def update(self, lrs: Sequence[float]) -> None:
        for group, lr in zip(self.opt.param_groups, lrs):   # one group: the lrs are all equal
            group["lr"] = lr
        self.opt.step()

    def evaluate(self) -> list[Sequence[float]]:
        return [self._call(n, self.evals[n], t, t.train_idx) + self._call(n, self.evals[n], t,
                                                                          t.test_idx)
                for n, t in enumerate(self.tasks)]

    @torch.no_grad()
    def model(self, n: int) -> Any:
        model = self.models[n]
        for name, p in model.named_parameters():
            if name in self.stack:
                p.copy_(self.stack[name][n])
        return model

    def optimizer_state(self, n: int) -> dict[str, Tensor]:
        params = self.stack.values() if self.shared else self.weights[n].values()
        return {f"opt.{i}.{key}": self._instance(value, n).detach().to("cpu", copy=True)
                for i, p in enumerate(params)
                for key, value in self.opt.state.get(p, {}).items() if isinstance(value, Tensor)}

    def _instance(self, value: Tensor, n: int) -> Tensor:
        """Instance n's part of an optimizer state tensor (the step count is a shared scalar)."""
        return value[n] if self.shared and value.dim() > 0 else value


def make_stacked_optimizer(groups: list[list[Tensor]], configs: Sequence[TrainConfig]
                           ) -> torch.optim.Optimizer:
    """``train()``'s optimizer (``loop.make_optimizer``) with parameter group g set up by
    ``configs[g]``."""
    if configs[0].optimizer == "adamw":
        return torch.optim.AdamW([{"params": ps, "lr": c.lr, "betas": c.betas,
                                   "weight_decay": c.weight_decay}
                                  for ps, c in zip(groups, configs, strict=True)], foreach=True)
    return torch.optim.SGD([{"params": ps, "lr": c.lr, "momentum": c.momentum,
                             "weight_decay": c.weight_decay}
                            for ps, c in zip(groups, configs, strict=True)])


def train_batched(models: Sequence[Any], task: Task | Sequence[Task],
                  configs: TrainConfig | Sequence[TrainConfig] | None = None, *,
                  device: torch.device | str | None = None, metrics: Sequence[Metric] = (),
                  out_dirs: Sequence[str | Path] | None = None,
                  overwrite: bool = False) -> list[Run]:
    """Train N models of one architecture together and return one :class:`Run` per model.

    Instance n's run is the run ``train(models[n], tasks[n], configs[n])`` would give (bit for bit
    on one machine): same history columns, checkpoints, ``train_state`` (so
    :func:`~mi_margin.resume` continues it alone) and status. The models are trained in place
    and left in eval mode. What may differ between instances: the models' ``seed``/``init_scale``
    (or any starting weights), their tasks (of one training-set size), and in the configs the
    learning rate and its schedule, weight decay, betas, momentum, norm penalty, step count, evaluation and
    checkpoint schedule and early-stopping targets; ``optimizer``, ``batch_size``, ``microbatch``
    and ``snapshot_every`` (and ``seed`` with minibatches) must agree. An instance that stops
    (finished, target reached, or diverged: status ``"diverged"`` and a ``RuntimeWarning`` where
    ``train()`` would raise) keeps its run frozen while the others go on; its weights in the stack
    keep being computed until the last instance stops.

    Args:
        models: :class:`HookedOneLayerTransformer` or :class:`HookedMLP` instances of one config
            (up to seed).
        task: the shared task, or one task per model (their ``train_idx`` are trained on).
        configs: one :class:`TrainConfig` for all, or one per model.
        device: move the models there first (default: leave them where they are); the stacked
            weights and training inputs live on the models' device.
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
    check_models(models)
    configs = check_configs(configs, len(models))
    tasks = check_tasks(task, models)
    if device is not None:
        models = [model.to(device) for model in models]
    engine = StackEngine(models, tasks, configs, next(models[0].parameters()).device)
    for model, cfg in zip(models, configs, strict=True):
        check_checkpoint_memory(model, cfg)
    roots = list(out_dirs) if out_dirs is not None else [None] * len(models)
    if len(roots) != len(models):
        raise MiMarginError(f"got {len(roots)} out_dirs for {len(models)} models")

    def warn_diverged(n: int, message: str) -> None:
        warnings.warn(f"models[{n}] diverged: {message}", RuntimeWarning, stacklevel=4)

    with ExitStack() as locks:     # the run folders' locks, released however training ends
        recorders = []
        for model, t, cfg, root in zip(models, tasks, configs, roots, strict=True):
            recorders.append(start_run(model, t, cfg, metrics, root, overwrite))
            if recorders[-1].writer is not None:
                locks.enter_context(recorders[-1].writer)
        try:
            fit(engine, recorders, torch.Generator().manual_seed(configs[0].seed), warn_diverged,
                desc="train_batched")
        finally:
            for model in models:
                model.eval()
    return [rec.run for rec in recorders]


def evaluate_batched(models: Sequence[Any], task: Task, idx: Tensor, chunk: int = 8192
                     ) -> tuple[Tensor, Tensor]:
    """(mean float64 cross-entropy [N], accuracy [N]) of N models (for example the checkpoints
    of a run) on the examples ``idx``, each by :func:`~mi_margin.training.evaluate`.

    Example:
        >>> models = [run.model_at(s) for s in sorted(run.checkpoints)]      # doctest: +SKIP
        >>> losses, accs = mm.evaluate_batched(models, task, task.test_idx)   # doctest: +SKIP
    """
    results = [evaluate(model, task, idx, chunk) for model in models]
    losses, accs = zip(*results, strict=True) if results else ((), ())
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(accs, dtype=torch.float64)

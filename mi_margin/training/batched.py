"""Train N models of one architecture at once: stacked weights [N, ...] and one batched step.

Many seeds, and per-instance learning rates, LR schedules, weight decays, betas, momenta and norm
penalties, train as one computation with an explicit instance axis (TL4_NOTES §0.4, "stacked
module"): every parameter is stacked to [N, ...], the loss is Σ_n mean_n (so instance n receives
exactly its own gradient), and one elementwise AdamW or SGD whose hyperparameters are [N, 1, ...]
tensors updates the whole stack. On a GPU this turns N launch-bound steps into one step (not
measured yet). On CPU the instances are computed in groups whose activations fit in cache
(:data:`CPU_CACHE_FLOATS`), which makes the per-model time equal to a single run's on a quiet
2-core machine and several times shorter on a contended one (bench/bench_training.py).

The stacked forward repeats the single model's operations with an extra leading axis (same matmul
shapes per instance, same micro-batches), and the optimizer update repeats the operations of
``torch.optim.AdamW`` / ``SGD`` with tensor instead of scalar hyperparameters. On CPU each batched run
therefore reproduces :func:`~mi_margin.train` bit for bit (tests/training/test_batched.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig, checkpoint_steps
from mi_margin.training.loop import (
    Metric,
    _batch_len,
    _batches,
    _target_reached,
    cross_entropy64,
    model_inputs,
    penalty_power,
    weight_norm_sq,
)
from mi_margin.training.run import Run, write_checkpoint, write_history, write_meta, write_state

#: Config fields that only change a model's initial weights, so they may differ between instances.
INIT_ONLY_FIELDS = ("seed", "init_scale")
#: TrainConfig fields every instance must share (they decide which examples are computed when).
SHARED_FIELDS = ("optimizer", "batch_size", "microbatch")
#: CPU working-set budget (float32 elements, 8 MB) for one stacked micro-batch's widest activation.
CPU_CACHE_FLOATS = 2**21
#: Adam's epsilon, as in ``torch.optim.AdamW`` (which ``train()`` uses with its default).
ADAM_EPS = 1e-8


# -- the stacked model ------------------------------------------------------------------------------
class Stack:
    """The trainable parameters of N same-architecture models stacked to [N, ...] leaf tensors.

    ``tensors`` maps every state-dict key (parameters and persistent buffers such as disabled
    zero biases) to its stacked tensor; ``names`` lists the trainable ones in ``model.parameters()``
    order (the order ``train()``'s optimizer state uses).

    Example:
        >>> stack = Stack([model_a, model_b])             # doctest: +SKIP
        >>> stack.logits(task.tokens).shape                # [2, N_examples, d_vocab_out]
    """

    def __init__(self, models: Sequence[Any], device: torch.device | str = "cpu"):
        check_models(models)
        self.model_kind: str = models[0].model_kind
        self.cfg = models[0].cfg
        self.n = len(models)
        self.keys = list(models[0].state_dict())
        self.names = [k for k, p in models[0].named_parameters() if p.requires_grad]
        states = [m.state_dict() for m in models]
        self.tensors: dict[str, Tensor] = {
            k: torch.stack([s[k].detach() for s in states]).to(device) for k in self.keys}
        for name in self.names:
            self.tensors[name].requires_grad_(True)

    @property
    def params(self) -> list[Tensor]:
        """The trainable stacked tensors, in ``model.parameters()`` order."""
        return [self.tensors[k] for k in self.names]

    def logits(self, x: Tensor, tensors: dict[str, Tensor] | None = None
               ) -> Float[Tensor, "N B d_vocab_out"]:
        """Last-position logits of every instance on the shared inputs ``x`` (tokens or operands);
        ``tensors`` replaces ``self.tensors`` (e.g. a slice of the instances)."""
        tensors = self.tensors if tensors is None else tensors
        if self.model_kind == "transformer":
            return transformer_logits(tensors, self.cfg, x)
        return mlp_logits(tensors, self.cfg, x)

    def activation_width(self) -> int:
        """Floats per example of the widest activation the training forward stores."""
        cfg = self.cfg
        if self.model_kind == "transformer":
            return max(cfg.d_mlp, cfg.n_ctx * cfg.d_model, cfg.d_vocab_out)
        return max(cfg.d_mlp, cfg.d_vocab_out)

    def state_dict(self, n: int) -> dict[str, Tensor]:
        """Instance ``n``'s state dict (detached CPU copies, keys as ``model.state_dict()``)."""
        return {k: self.tensors[k][n].detach().cpu().clone() for k in self.keys}

    @torch.no_grad()
    def write_to(self, model: Any, n: int) -> None:
        """Copy instance ``n``'s trainable weights into ``model``."""
        for name, p in model.named_parameters():
            if name in self.tensors:
                p.copy_(self.tensors[name][n])


def check_models(models: Sequence[Any]) -> None:
    """Raise :class:`MiMarginError` unless ``models`` share one architecture (naming what differs)."""
    if len(models) == 0:
        raise MiMarginError("train_batched needs at least one model, got an empty list")
    first = models[0]
    kind = getattr(first, "model_kind", None)
    if kind not in ("transformer", "mlp"):
        raise MiMarginError(f"models must be HookedOneLayerTransformer or HookedMLP, got {type(first)}")
    ref = {k: v for k, v in first.cfg.to_dict().items() if k not in INIT_ONLY_FIELDS}
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
        grads = {k: p.requires_grad for k, p in model.named_parameters()}
        ref_grads = {k: p.requires_grad for k, p in first.named_parameters()}
        if grads != ref_grads:
            raise MiMarginError(f"models[{i}] freezes different parameters than models[0]")


def _col(t: Tensor, like: Tensor) -> Tensor:
    """[N] → [N, 1, ..., 1] broadcasting along ``like``'s non-instance axes."""
    return t.view(-1, *([1] * (like.dim() - 1)))


def transformer_logits(T: dict[str, Tensor], cfg: Any, tokens: Tensor
                       ) -> Float[Tensor, "N B d_vocab_out"]:
    """Stacked last-position forward of :class:`HookedOneLayerTransformer` (same ops, per instance,
    as ``model.last_logits``: only the last query, MLP and unembedding are computed)."""
    W_E = T["embed.W_E"]
    N, V, d = W_E.shape
    B, n = tokens.shape
    offsets = torch.arange(N, device=tokens.device)[:, None, None] * V
    x = F.embedding(tokens[None] + offsets, W_E.reshape(N * V, d))            # N B n d
    x = x + T["pos_embed.W_pos"][:, None, :n]
    H, e = cfg.n_heads, cfg.d_head

    def project(xs: Tensor, key: str) -> Tensor:                              # N B q d → N B q H e
        W = T[f"blocks.0.attn.W_{key}"].permute(0, 2, 1, 3).reshape(N, d, H * e)
        q = xs.shape[2]
        out = (xs.reshape(N, B * q, d) @ W).view(N, B, q, H, e)
        return out + T[f"blocks.0.attn.b_{key}"][:, None, None]

    q, k, v = project(x[:, :, -1:], "Q"), project(x, "K"), project(x, "V")
    scores = torch.einsum("nbqhe,nbkhe->nbhqk", q, k) / math.sqrt(e)
    z = torch.einsum("nbhqk,nbkhe->nbqhe", scores.softmax(dim=-1), v)
    attn = z.reshape(N, B, H * e) @ T["blocks.0.attn.W_O"].reshape(N, H * e, d)
    resid = x[:, :, -1] + (attn + T["blocks.0.attn.b_O"][:, None])
    if not cfg.attn_only:
        act = activation(cfg.act_fn, cfg.act_degree)
        pre = resid @ T["blocks.0.mlp.W_in"] + T["blocks.0.mlp.b_in"][:, None]
        resid = resid + (act(pre) @ T["blocks.0.mlp.W_out"] + T["blocks.0.mlp.b_out"][:, None])
    return resid @ T["unembed.W_U"] + T["unembed.b_U"][:, None]


def mlp_logits(T: dict[str, Tensor], cfg: Any, inputs: Tensor) -> Float[Tensor, "N B d_vocab_out"]:
    """Stacked forward of :class:`HookedMLP` (theory or embed style, one-hot or vector input)."""
    W_in = T["blocks.0.mlp.W_in"]
    N, k, d_in, m = W_in.shape
    if cfg.input_kind == "vector":
        pre = inputs.to(W_in.dtype) @ W_in[:, 0]                                  # N B m
    else:
        idx = inputs.long() + torch.arange(k, device=inputs.device) * cfg.d_vocab
        offsets = torch.arange(N, device=inputs.device)[:, None, None] * (k * cfg.d_vocab)
        if cfg.input_style == "embed":
            W_E = T["embed.W_E"]
            emb = F.embedding(idx[None] + offsets, W_E.reshape(N * k * cfg.d_vocab, -1))
            pre = torch.einsum("nbke,nkem->nbm", emb, W_in)
        else:
            pre = F.embedding(idx[None] + offsets, W_in.reshape(N * k * d_in, m)).sum(2)
    act = activation(cfg.act_fn, cfg.degree)
    hidden = act(pre + T["blocks.0.mlp.b_in"][:, None])
    return hidden @ T["blocks.0.mlp.W_out"] + T["blocks.0.mlp.b_out"][:, None]


def neuron_norms(T: dict[str, Tensor]) -> Float[Tensor, "N d_mlp"]:
    """||ω_j|| of every neuron of every instance (as ``HookedMLP.neuron_norms``, stacked)."""
    W_in, W_out = T["blocks.0.mlp.W_in"], T["blocks.0.mlp.W_out"]
    N, k, d_in, m = W_in.shape
    return torch.cat([W_in.permute(0, 3, 1, 2).reshape(N, m, k * d_in), W_out], dim=2).norm(dim=2)


# -- evaluation -------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_stack(stack: Stack, x: Tensor, labels: Tensor, idx: Tensor, chunk: int = 8192
                   ) -> tuple[Tensor, Tensor]:
    """Per-instance (mean float64 cross-entropy [N], accuracy [N]) on the examples ``idx``.

    Sums the loss over the same chunks of ``chunk`` examples as :func:`~mi_margin.training.evaluate`,
    computing each chunk's logits in pieces small enough for N instances.
    """
    N = stack.n
    if len(idx) == 0:
        return torch.full((N,), math.nan, dtype=torch.float64), torch.full((N,), math.nan)
    loss = torch.zeros(N, dtype=torch.float64, device=x.device)
    correct = torch.zeros(N, dtype=torch.long, device=x.device)
    piece = max(1, chunk // N)
    for part in idx.split(chunk):
        logits = torch.cat([stack.logits(x[p]) for p in part.split(piece)], dim=1)
        y = labels[part]
        for n in range(N):
            loss[n] += cross_entropy64(logits[n], y, reduction="sum")
        correct += (logits.argmax(-1) == y).sum(1)
    return loss.cpu() / len(idx), correct.cpu().double() / len(idx)


def evaluate_batched(models: Sequence[Any], task: Task, idx: Tensor, chunk: int = 8192,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """(mean float64 cross-entropy [N], accuracy [N]) of N same-architecture models (for example
    the checkpoints of a run) on the examples ``idx``, in one stacked forward.

    Example:
        >>> models = [run.model_at(s) for s in sorted(run.checkpoints)]      # doctest: +SKIP
        >>> losses, accs = mm.evaluate_batched(models, task, task.test_idx)   # doctest: +SKIP
    """
    device = torch.device(device) if device is not None else models[0].W_out.device
    stack = Stack(models, device)
    x, y = model_inputs(models[0], task).to(device), task.labels.to(device)
    return evaluate_stack(stack, x, y, idx.to(device), chunk)


# -- the optimizers ---------------------------------------------------------------------------------
class StackedAdamW:
    """``torch.optim.AdamW`` over stacked parameters with per-instance lr, weight decay and betas.

    Each line repeats the single-tensor update of ``torch.optim.AdamW`` (same kernels, with the
    Python-float hyperparameters replaced by [N, 1, ...] tensors computed in float64 the same way),
    so instance n follows exactly the trajectory AdamW gives its model alone.
    """

    def __init__(self, params: list[Tensor], configs: Sequence[TrainConfig]):
        self.params, self.configs = params, list(configs)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = [0] * len(params)

    def _coefficients(self, lrs: Sequence[float], step: int, like: Tensor) -> Tensor:
        """Rows decay, 1-β1, β2, 1-β2, sqrt(bias correction 2), -step size; [6, N]. Python floats
        as in torch's update (``step`` is a float there: the ``.item()`` of its step tensor)."""
        rows, step_f = [], float(step)
        for lr, cfg in zip(lrs, self.configs, strict=True):
            b1, b2 = cfg.betas
            decay = 1 - lr * cfg.weight_decay if cfg.weight_decay != 0 else 1.0
            rows.append([decay, 1 - b1, b2, 1 - b2, (1 - b2**step_f) ** 0.5,
                         -(lr / (1 - b1**step_f))])
        return torch.tensor(rows, dtype=torch.float64).to(like.dtype).T.contiguous().to(like.device)

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        coefficients: dict[int, Tensor] = {}      # by step count (the same for all parameters)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.steps[i] += 1
            if self.steps[i] not in coefficients:
                coefficients[self.steps[i]] = self._coefficients(lrs, self.steps[i], p)
            decay, w1, b2, c2, bc2_sqrt, neg_step = (_col(r, p) for r in coefficients[self.steps[i]])
            g, m, v = p.grad, self.exp_avg[i], self.exp_avg_sq[i]
            p.mul_(decay)
            m.lerp_(g, w1)
            v.mul_(b2).addcmul_(c2 * g, g)
            denom = (v.sqrt() / bc2_sqrt).add_(ADAM_EPS)
            p.addcdiv_(neg_step * m, denom)

    def state(self, n: int) -> dict[str, Tensor]:
        """Instance ``n``'s optimizer state in ``train()``'s ``train_state`` layout."""
        out = {}
        for i in range(len(self.params)):
            if self.steps[i]:
                out[f"opt.{i}.step"] = torch.tensor(float(self.steps[i]))
                out[f"opt.{i}.exp_avg"] = self.exp_avg[i][n].cpu().clone()
                out[f"opt.{i}.exp_avg_sq"] = self.exp_avg_sq[i][n].cpu().clone()
        return out


class StackedSGD:
    """``torch.optim.SGD`` (L2 weight decay, heavy-ball momentum) over stacked parameters with
    per-instance lr, weight decay and momentum; op for op as torch's single-tensor update."""

    def __init__(self, params: list[Tensor], configs: Sequence[TrainConfig]):
        self.params, self.configs = params, list(configs)
        self.buffers: list[Tensor | None] = [None] * len(params)
        self.use_momentum = any(c.momentum != 0 for c in configs)
        self.use_decay = any(c.weight_decay != 0 for c in configs)

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        like = self.params[0]
        rows = [[-lr, c.weight_decay, c.momentum] for lr, c in zip(lrs, self.configs, strict=True)]
        table = torch.tensor(rows, dtype=torch.float64).to(like.dtype).T.contiguous()
        neg_lr, wd, mom = table.to(like.device)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.use_decay:
                g = g.addcmul(p, _col(wd, p))
            if self.use_momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.detach().clone()
                else:
                    buf.mul_(_col(mom, p)).add_(g)
                g = buf
            p.addcmul_(g, _col(neg_lr, p))

    def state(self, n: int) -> dict[str, Tensor]:
        """Instance ``n``'s optimizer state in ``train()``'s ``train_state`` layout."""
        if self.configs[n].momentum == 0:
            return {}
        return {f"opt.{i}.momentum_buffer": buf[n].cpu().clone()
                for i, buf in enumerate(self.buffers) if buf is not None}


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
    """One model's run and its bookkeeping inside a batched training loop."""

    index: int
    model: Any
    run: Run
    config: TrainConfig
    root: Path | None
    keep: set[int]
    power: float | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    active: bool = True

    def wants_record(self, done: int) -> bool:
        return done % self.config.eval_every == 0 or done == self.config.steps

    def wants_snapshot(self, done: int) -> bool:
        return self.wants_record(done) or done in self.keep


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
                 out_dirs: Sequence[str | Path] | None):
        self.task, self.configs, self.metrics, self.device = task, configs, metrics, device
        self.stack = Stack(models, device)
        powers = _penalty_powers(models, configs)
        roots = [Path(p) for p in out_dirs] if out_dirs is not None else [None] * len(models)
        if len(roots) != len(models):
            raise MiMarginError(f"got {len(roots)} out_dirs for {len(models)} models")
        self.items: list[_Instance] = []
        for n, (model, cfg, root) in enumerate(zip(models, configs, roots, strict=True)):
            run = Run(model=model, task=task, config=cfg, status="running", path=root)
            run.checkpoints[0] = self.stack.state_dict(n)
            self.items.append(_Instance(n, model, run, cfg, root, set(checkpoint_steps(cfg)),
                                        powers[n]))
        opt_cls = StackedAdamW if configs[0].optimizer == "adamw" else StackedSGD
        self.opt = opt_cls(self.stack.params, configs)
        self.gen = torch.Generator().manual_seed(configs[0].seed)
        self.x = model_inputs(models[0], task).to(device)
        self.y = task.labels.to(device)
        self.train_idx = task.train_idx.to(device)
        self.pending: list[Tensor] = []
        self.penalty = torch.tensor([c.norm_penalty for c in configs], device=device)
        self.group = self.group_size()

    def group_size(self) -> int:
        """Instances computed together: all of them on a GPU; on CPU as many as keep one
        micro-batch's widest activation within :data:`CPU_CACHE_FLOATS` (TL4_NOTES §3: stacked
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
                losses = F.cross_entropy(logits.flatten(0, 1).double(), self.y[rows].repeat(n),
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
        self.pending.append(total)
        self.opt.step([c.lr_at(step) for c in self.configs])

    def evaluate(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tr = evaluate_stack(self.stack, self.x, self.y, self.train_idx)
        te = evaluate_stack(self.stack, self.x, self.y, self.task.test_idx.to(self.device))
        return tr[0], tr[1], te[0], te[1]

    def check_finite(self, done: int) -> None:
        """Mark instances whose loss became NaN/inf since the last check as diverged."""
        if not self.pending:
            return
        losses = torch.stack(self.pending).cpu()                      # steps × N
        self.pending.clear()
        first = done - len(losses) + 1
        for it in self.items:
            bad = (~torch.isfinite(losses[:, it.index])).nonzero()
            if it.active and len(bad):
                it.active, it.run.status = False, "diverged"
                warnings.warn(f"models[{it.index}] diverged: loss became "
                              f"{float(losses[int(bad[0]), it.index])} at step {first + int(bad[0])};"
                              f" its run keeps the checkpoints up to step {max(it.run.checkpoints)}",
                              RuntimeWarning, stacklevel=4)
                if it.root is not None:
                    write_meta(it.run, it.root)

    def record(self, it: _Instance, step: int, evals: tuple[Tensor, ...]) -> dict[str, Any]:
        n = it.index
        self.stack.write_to(it.model, n)
        row: dict[str, Any] = {"step": step, "lr": it.config.lr_at(max(step - 1, 0))}
        row["train_loss"], row["train_acc"] = float(evals[0][n]), float(evals[1][n])
        row["test_loss"], row["test_acc"] = float(evals[2][n]), float(evals[3][n])
        row["weight_norm_sq"] = weight_norm_sq(it.model)
        for metric in self.metrics:
            row.update(metric(it.model, self.task))
        it.rows.append(row)
        it.run.history = pd.DataFrame(it.rows)
        return row

    def snapshot(self, it: _Instance, step: int) -> None:
        run, n = it.run, it.index
        self.stack.write_to(it.model, n)
        run.step = step
        run.train_state = {"rng": self.rng_state(it), **self.opt.state(n)}
        if step in it.keep or step == it.config.steps:
            run.checkpoints[step] = self.stack.state_dict(n)
        if it.root is not None:
            if step in run.checkpoints:
                write_checkpoint(run, it.root, step)
            write_state(run, it.root)
            write_history(run, it.root)
            write_meta(run, it.root)

    def rng_state(self, it: _Instance) -> Tensor:
        """The minibatch generator's state as ``train()`` would hold it for this instance."""
        if it.config.batch_size is not None:
            return self.gen.get_state()
        return torch.Generator().manual_seed(it.config.seed).get_state()

    def after_step(self, done: int) -> None:
        """Evaluate, checkpoint, stop early or finish the instances that ask for it at ``done``."""
        due = [it for it in self.items if it.active and it.wants_snapshot(done)]
        if not due:
            return
        self.check_finite(done)
        due = [it for it in due if it.active]
        evals: tuple[Tensor, ...] = ()
        if any(it.wants_record(done) for it in due):
            evals = self.evaluate()
        for it in due:
            row = self.record(it, done, evals) if it.wants_record(done) else None
            self.snapshot(it, done)
            if row is not None and _target_reached(row, it.config):
                it.active, it.run.status = False, "stopped_early"
            elif done == it.config.steps:
                it.active, it.run.status = False, "finished"
            if not it.active and it.root is not None:
                write_meta(it.run, it.root)

    def start(self) -> None:
        evals = self.evaluate()
        for it in self.items:
            self.record(it, 0, evals)
            self.snapshot(it, 0)


def train_batched(models: Sequence[Any], task: Task,
                  configs: TrainConfig | Sequence[TrainConfig] | None = None, *,
                  device: torch.device | str | None = None, metrics: Sequence[Metric] = (),
                  out_dirs: Sequence[str | Path] | None = None) -> list[Run]:
    """Train N models of one architecture together and return one :class:`Run` per model.

    Instance n's run is the run ``train(models[n], task, configs[n])`` would give (bit for bit on
    CPU): same history columns, checkpoints, ``train_state`` (so :func:`~mi_margin.resume` continues
    it alone) and status. The models are trained in place. What may differ between instances: the
    models' ``seed``/``init_scale`` (or any starting weights), and in the configs the learning rate
    and its schedule, weight decay, betas, momentum, norm penalty, step count, evaluation and
    checkpoint schedule and early-stopping targets; ``optimizer``, ``batch_size`` and ``microbatch``
    (and ``seed`` with minibatches) must agree. An instance that stops (finished, target reached,
    or diverged: status ``"diverged"`` where ``train()`` would raise) keeps its run frozen while the
    others go on; its weights in the stack keep being computed until the last instance stops.
    Forward hooks attached to the models are not run during batched training.

    Args:
        models: :class:`HookedOneLayerTransformer` or :class:`HookedMLP` instances of one config
            (up to seed).
        task: the shared task (its ``train_idx`` is trained on).
        configs: one :class:`TrainConfig` for all, or one per model.
        device: where the stack lives (default: CUDA when available, else CPU). Checkpoints and
            training state are kept on CPU; trained weights are written back into ``models``.
        metrics: callables ``f(model, task) -> dict`` evaluated at every evaluation step.
        out_dirs: one run folder per model, written as training goes (as ``train(out_dir=...)``).

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
    trainer = _BatchedTrainer(models, task, configs, torch.device(device), metrics, out_dirs)
    trainer.start()
    total = max(c.steps for c in configs)
    bar = tqdm(range(total), disable=not any(c.progress for c in configs), desc="train_batched",
               leave=False)
    for step in bar:
        if not any(it.active for it in trainer.items):
            break
        trainer.step(step)
        trainer.after_step(step + 1)
    bar.close()
    return [it.run for it in trainer.items]

"""Stacked models: N models of one architecture as weights with a leading instance axis [N, ...].

The stacked forward repeats the single model's operations with an extra leading axis (same matmul
shapes per instance, same micro-batches), so each instance computes exactly what its own model
computes (docs/performance.md, "stacked module"). Used by :mod:`mi_margin.training.batched`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation
from mi_margin.models.evaluation import cross_entropy64, model_inputs
from mi_margin.tasks import Task

#: Config fields that only change a model's initial weights, so they may differ between instances.
INIT_ONLY_FIELDS = ("seed", "init_scale")
#: CPU working-set budget (float32 elements, 8 MB) for one stacked micro-batch's widest activation.
CPU_CACHE_FLOATS = 2**21


# -- the stacked model ------------------------------------------------------------------------------
class Stack:
    """The trainable parameters of N same-architecture models stacked to [N, ...] leaf tensors.

    ``tensors`` maps every state-dict key (parameters and persistent buffers such as disabled
    zero biases) to its stacked tensor; ``names`` lists the trainable ones in ``model.parameters()``
    order (the order ``train()``'s optimizer state uses).

    Example:
        >>> stack = Stack([model_a, model_b])             # doctest: +SKIP
        >>> stack.logits(task.tokens).shape   # [2, N_examples, d_vocab_out]   # doctest: +SKIP
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


def instance_column(t: Tensor, like: Tensor) -> Tensor:
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
    pattern = scores.softmax(dim=-1)
    if cfg.attn_rate != 1:            # Zhong et al.'s mixture; the last query may see every key
        pattern = cfg.attn_rate * pattern + (1 - cfg.attn_rate)
    z = torch.einsum("nbhqk,nbkhe->nbqhe", pattern, v)
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

"""Plain-PyTorch baselines for bench/bench_training.py (no hooks, no mi_margin).

``NandaTransformer`` follows the one-layer model of Nanda et al. 2023 ("Progress measures for
grokking via mechanistic interpretability", their public training code): token and positional
embeddings, 4-head causal attention written with einsums over every position, a ReLU MLP and an
unembedding, logits at **all** positions of which the loss reads the last one in float64, trained
full batch with AdamW (lr 1e-3, weight decay 1, betas (0.9, 0.98)). It is configured like
mi_margin's default ``TransformerConfig`` (no LayerNorm, no biases, N(0, 1)/sqrt(fan) init) so the
two do the same arithmetic per example, up to computing only the last position.

``OneHotMLP`` is the plain theory-style one-hidden-layer MLP (Morwani et al. 2024 §1.1) as it is
usually written: the concatenated one-hot operands times a dense input matrix, an activation, an
output matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _init(gen: torch.Generator, *shape: int, fan: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=gen) / math.sqrt(fan))


class NandaTransformer(nn.Module):
    """One-layer transformer over tokens [a, b, '='], every position computed.

    Trained with AdamW(lr=1e-3, weight_decay=1, betas=(0.9, 0.98)) on :func:`last_position_loss`.

    Example:
        >>> model = NandaTransformer(p=7)
        >>> model(torch.tensor([[1, 2, 7]])).shape
        torch.Size([1, 3, 7])
    """

    def __init__(self, p: int = 113, d_model: int = 128, n_heads: int = 4, d_head: int = 32,
                 d_mlp: int = 512, n_ctx: int = 3, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.mask: Tensor
        self.d_head = d_head
        self.W_E = _init(gen, d_model, p + 1, fan=d_model)              # Nanda's [d, vocab] layout
        self.W_pos = _init(gen, n_ctx, d_model, fan=d_model)
        self.W_Q = _init(gen, n_heads, d_head, d_model, fan=d_model)
        self.W_K = _init(gen, n_heads, d_head, d_model, fan=d_model)
        self.W_V = _init(gen, n_heads, d_head, d_model, fan=d_model)
        self.W_O = _init(gen, d_model, n_heads * d_head, fan=d_model)
        self.W_in = _init(gen, d_mlp, d_model, fan=d_model)
        self.W_out = _init(gen, d_model, d_mlp, fan=d_mlp)
        self.W_U = _init(gen, d_model, p, fan=p)
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx)))

    def forward(self, tokens: Tensor) -> Tensor:
        x = torch.einsum("dbp->bpd", self.W_E[:, tokens]) + self.W_pos       # embed + pos
        k = torch.einsum("ihd,bpd->biph", self.W_K, x)
        q = torch.einsum("ihd,bpd->biph", self.W_Q, x)
        v = torch.einsum("ihd,bpd->biph", self.W_V, x)
        scores = torch.einsum("biph,biqh->biqp", k, q)
        n = tokens.shape[1]
        scores = torch.tril(scores) - 1e10 * (1 - self.mask[:n, :n])
        attn = F.softmax(scores / math.sqrt(self.d_head), dim=-1)
        z = torch.einsum("biph,biqp->biqh", v, attn)
        z_flat = z.permute(0, 2, 1, 3).reshape(z.shape[0], n, -1)           # b q (i h)
        x = x + torch.einsum("df,bqf->bqd", self.W_O, z_flat)
        post = F.relu(torch.einsum("md,bpd->bpm", self.W_in, x))
        x = x + torch.einsum("dm,bpm->bpd", self.W_out, post)
        return x @ self.W_U


class OneHotMLP(nn.Module):
    """``logits = act(onehot(a) ⊕ onehot(b) @ W_in) @ W_out`` with a dense one-hot input.

    Example:
        >>> OneHotMLP(p=5, d_mlp=8)(torch.tensor([[1, 2]])).shape
        torch.Size([1, 5])
    """

    def __init__(self, p: int = 113, d_mlp: int = 512, act_fn: str = "quadratic", k: int = 2,
                 seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.p, self.k = p, k
        self.act = torch.square if act_fn == "quadratic" else F.relu
        self.W_in = _init(gen, k * p, d_mlp, fan=k * p)
        self.W_out = _init(gen, d_mlp, p, fan=d_mlp)

    def forward(self, inputs: Tensor) -> Tensor:
        x = F.one_hot(inputs, self.p).float().flatten(1)                     # B, k*p
        return self.act(x @ self.W_in) @ self.W_out


def last_position_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Nanda et al.'s loss: float64 cross-entropy of the last position's logits."""
    if logits.dim() == 3:
        logits = logits[:, -1]
    return F.cross_entropy(logits.double(), labels)

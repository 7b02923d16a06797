"""A one-layer transformer's certificate through a low-rank readout: cheaper than brute force
(docs/mathematics.md §6.4, "The low-rank readout").

The last position's logits are affine in X = [r, h] (resid_mid and the hidden activations):
ℓ = X M + const with M = [W_U; W_out W_U] and const = b_out W_U + b_U. On a grokked model M is
nearly low-rank (the key frequencies' or irreps' directions; Nanda's model: seven singular values
of 13–28, the eighth 1.5, the 33rd 0.09). With M's SVD M = A B + Res_k (A = U_k S_k, B = V_kᵀ),
every gap is

    ℓ_y − ℓ_c = (X A)(B_y − B_c) + const_y − const_c + X·(Res_k[:, y] − Res_k[:, c])
              ≥ (X A)(B_y − B_c) + const_y − const_c − ‖X‖ ‖Res_k[:, y] − Res_k[:, c]‖,

which costs 2·(d_model + d_mlp)·k + 2·k·V per input instead of the readout's
2·(d_model·d_mlp + d_model·V). X itself comes from the attention tables, with the pre-activations
through the table VO·W_in ([H, R, d_mlp]) instead of a [d_model, d_mlp] product per input.
Inputs are proved by cases: rank 8 first, and each input the bound does not yet certify goes on to
twice the rank, up to M's full rank, where the residual is zero and the bound is the exact
certificate's (:mod:`~mi_margin.analysis.certify_transformer`) less the allowances it adds.
Rounding: the model's own allowance E[y, c] in its dtype and in float64
(:func:`~mi_margin.analysis.certify_transformer.gap_allowance`, with resid_post's
magnitude bounded from r and h), the difference of the VO·W_in association from the model's,
and this computation's own float64 roundings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.certify_transformer import (
    Reach,
    _activation_error,
    _f64,
    _float64,
    _gamma,
    allowance_flops,
    check_no_layernorm,
    gap_allowance,
    last_token,
)
from mi_margin.analysis.core import ROWS, subject
from mi_margin.checks import check_memory
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import GELU_LIPSCHITZ
from mi_margin.models.fast_paths import attend, attention_tables, last_pattern

#: the first rank tried; each input not yet certified goes on to twice the rank
FIRST_RANK = 8
U64 = torch.finfo(torch.float64).eps / 2


@dataclass(frozen=True)
class LowRank:
    """Per input the certified margin bound [N] and the rank that gave it [N]; the allowance
    E[y, c] [V, V]; the hidden activations' rounding bound [d_mlp]; the operations done."""

    margins: Tensor
    rank: Tensor
    E: Tensor
    hidden: Tensor
    flops: int


@torch.no_grad()
def _activations(twin: Any, tokens: Tensor, last: int) -> tuple[Tensor, Tensor, Reach]:
    """X = [r, h] of every input [N, d_model + d_mlp] in float64 through the attention tables
    and VO·W_in, the bound δ [d_mlp] on how far its pre-activations are from those of the
    model's own association (module docstring), and the activations' :class:`Reach`
    (resid_post's bounded by max|r| + max|h|·|W_out| + |b_out|)."""
    n = tokens.shape[1]
    attn, mlp = twin.block.attn, twin.block.mlp
    x_last, scores, value_out = attention_tables(twin, torch.tensor(last), n)
    vo_w = value_out @ mlp.W_in                                                  # H R d_mlp
    base = (x_last + attn.b_O) @ mlp.W_in + mlp.b_in
    X = torch.empty((len(tokens), twin.cfg.d_model + twin.cfg.d_mlp), dtype=torch.float64)
    pre_top = torch.zeros(twin.cfg.d_mlp, dtype=torch.float64)
    for start in range(0, len(tokens), ROWS):
        rows = slice(start, start + ROWS)
        pattern, heads = last_pattern(twin, tokens[rows], scores)
        r = x_last + attend(pattern, heads, value_out) + attn.b_O
        pre = attend(pattern, heads, vo_w) + base
        pre_top = torch.maximum(pre_top, pre.abs().amax(0))
        X[rows] = torch.cat([r, mlp.act(pre)], 1)
    d, H = twin.cfg.d_model, value_out.shape[0]
    r_top, h_top = X[:, :d].abs().amax(0), X[:, d:].abs().amax(0)
    W_in = mlp.W_in.detach().abs()
    # both associations of the pre-activations (r·W_in, and Σ p·(VO·W_in) + base) are within
    # γ_G·magnitude of the exact value, so within twice that of each other
    # (Σ_j p_j = 1 per head: the values' part is at most Σ_h max_row |VO[h, row]|·|W_in|)
    magnitude = ((value_out.abs().amax(1) @ W_in).sum(0)
                 + (r_top + x_last.abs() + attn.b_O.abs()) @ W_in + mlp.b_in.abs())
    delta = 2 * _gamma(n * H + d + 4, U64) * magnitude
    lip = GELU_LIPSCHITZ if twin.cfg.act_fn == "gelu" else 1.0
    reach = Reach(score=scores.abs().amax(0), vo=value_out.abs().amax(1),
                  vo_in=vo_w.abs().amax(1), r=r_top, pre=pre_top + delta, h=h_top + lip * delta,
                  resid=r_top + (h_top + lip * delta) @ mlp.W_out.detach().abs()
                  + mlp.b_out.detach().abs())
    return X, delta, reach


def _residual_distance(M: Tensor, A: Tensor, B: Tensor) -> Tensor:
    """An upper bound on ‖Res[:, y] − Res[:, c]‖ [V, V] for the exact Res = M − A B, from the
    float64 residual and its rounding (γ_{k+2}(|M| + |A||B|) per entry)."""
    k = A.shape[1]
    Res = M - A @ B
    slack = _gamma(k + 2, U64) * (M.abs() + A.abs() @ B.abs())
    dist = torch.cdist(Res.T[None], Res.T[None],
                       compute_mode="donot_use_mm_for_euclid_dist")[0]
    per = slack.norm(dim=0)
    return dist * (1 + 2 * _gamma(M.shape[0] + 3, U64)) + per[:, None] + per[None]


def by_cases(X: Tensor, M: Tensor, const: Tensor, E: Tensor, labels: Tensor,
             first_rank: int = FIRST_RANK) -> tuple[Tensor, Tensor, int]:
    """Per input the best margin bound over the ranks tried and the rank that gave it, and the
    operations: rank ``first_rank`` for every input, then twice the rank for the inputs not yet
    certified, up to M's full rank (module docstring)."""
    D, V = M.shape
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    A_all, full = U * S, len(S)
    norm = X.norm(dim=1) * (1 + 2 * _gamma(D + 2, U64))                          # ≥ ‖X‖
    margins = torch.full((len(X),), -math.inf, dtype=torch.float64)
    rank = torch.zeros(len(X), dtype=torch.long)
    active, z = torch.arange(len(X)), X[:, :0]
    flops, k_prev, k = 4 * D * V * V + 8 * V ** 3 + 2 * D, 0, min(first_rank, full)
    while len(active):
        A, B = A_all[:, :k], Vh[:k]
        dist = _residual_distance(M, A, B)
        w = A.norm(dim=0) @ B.abs()                             # |X A| |B| ≤ ‖X‖ w per class
        z = torch.cat([z, X[active] @ A_all[:, k_prev:k]], 1)
        approx = z @ B + const
        y, rows = labels[active], torch.arange(len(active))
        residual = norm[active, None] * dist[y]
        picked = approx[rows, y][:, None]
        # this computation's own float64 roundings, every term it sums counted
        own = _gamma(D + k + 8, U64) * (norm[active, None] * (w[y][:, None] + w[None])
                                        + picked.abs() + approx.abs() + residual + E[y])
        gap = picked - approx - residual - E[y] - own
        gap[rows, y] = math.inf
        bound = gap.amin(1)
        better = bound > margins[active]
        margins[active[better]], rank[active[better]] = bound[better], k
        flops += len(active) * (2 * D * (k - k_prev) + 2 * k * V + 14 * V) \
            + 2 * D * V * k + 5 * D * V * V
        done = (bound > 0) | (k == full)
        z, active = z[~done], active[~done]
        k_prev, k = k, min(2 * k, full)
    return margins, rank, flops


def _transformer_readout(model: Any, task: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]:
    """(X, M, const, E, hidden rounding bound, operations to form X and E) of a transformer."""
    if model.cfg.attn_only:
        raise MiMarginError("the low-rank readout reads [resid_mid, hidden activations]; an "
                            "attention-only transformer is certified with bound='per_input'")
    check_no_layernorm(model)
    twin = _float64(model)
    tokens = subject(model, task).inputs
    last, n = last_token(task), tokens.shape[1]
    D, V = model.cfg.d_model + model.cfg.d_mlp, model.W_U.shape[1]
    # X, and the bound's float64 [N, V] tables (approximation, gaps, their roundings)
    check_memory(f"the low-rank certificate's activations [{len(tokens):,}, {D}] and gaps of "
                 f"{task!r}", 8 * len(tokens) * (D + 6 * V))
    X, delta, reach = _activations(twin, tokens, last)
    W_U, W_out = _f64(twin.W_U), _f64(twin.block.mlp.W_out)
    through = W_out @ W_U
    const = _f64(twin.block.mlp.b_out) @ W_U + _f64(twin.b_U)
    E, hidden = gap_allowance(model, last, n, reach)
    dh = _activation_error(model.cfg, reach, delta, U64)
    E = E + torch.stack([dh @ (through[:, y, None] - through).abs() for y in range(len(const))])
    const_err = _gamma(twin.cfg.d_model + 2, U64) * (
        _f64(twin.block.mlp.b_out).abs() @ W_U.abs() + _f64(twin.b_U).abs())
    E = E + const_err[:, None] + const_err[None]
    H, d, m = reach.vo.shape[0], model.cfg.d_model, model.cfg.d_mlp
    R, head = n * model.W_E.shape[0], model.block.attn.W_Q.shape[2]
    tables = (2 * d * H * head + 2 * R * d * H * (1 + head) + 2 * H * R * head * d
              + 2 * H * R * d * m + 2 * d * m)
    per_input = 5 * H * n + 2 * H * n * (d + m) + 4 * m
    flops = (tables + len(X) * per_input + 2 * d * m * V + 3 * m * V * V
             + allowance_flops(model, n))
    return X, torch.cat([W_U, through]), const, E, hidden, flops


def low_rank_margins(model: Any, task: Any, first_rank: int = FIRST_RANK) -> LowRank:
    """Every input's certified margin bound through the low-rank readout of a one-layer
    transformer (native; module docstring). An MLP's readout is formed in
    :mod:`~mi_margin.analysis.certify` and proved by the same cases (:func:`by_cases`)."""
    X, M, const, E, hidden, flops = _transformer_readout(model, task)
    margins, rank, cases = by_cases(X, M, const, E, task.labels, first_rank)
    return LowRank(margins=margins, rank=rank, E=E, hidden=hidden, flops=flops + cases)

"""A sound lower bound on a one-layer transformer's accuracy and margin over every input, that
holds for the model as computed in floating point on any CPU (docs/mathematics.md §6.4, "The
transformer's certificate").

Every input of the package's tasks ends with the same token ('='), so the last position's query is
one constant vector per head, and a score, a value and its image under W_O depend only on the
(position, token) pair that is attended to (the tables of :mod:`mi_margin.models.fast_paths`).
The certificate evaluates the logits of every input through those tables in float64, then
subtracts an allowance E[y, c] per answer and class that bounds, from the weights and the exact
activations' largest magnitudes, how far the model's own logit gap ℓ_y − ℓ_c in its dtype can be
from the exact one, whatever the order of its sums: Higham's γ_n = n·u/(1 − n·u) times the same
computation on absolute values for every sum and product (Higham 2002, §3.5), and for softmax the
factor e^{2Δ} that a score error Δ allows, with ``EXP_ULPS`` for exp. An input is certified when
its float64 gap exceeds E[y, c] for every c ≠ y.

Why not the explanation: on ``nanda_p113_transformer`` the readout that the explanation leaves out
(the non-key frequencies of W_out W_U) cancels over the 512 neurons, and a bound that does not
compute it certifies at most 24% of the inputs (bench/transformer_readout_bound.py), while bounding
it per input costs as much as computing it. So this certificate costs what the model's own fast
path costs; what it adds to an accuracy check is soundness against rounding on every CPU, and a
margin bound. The cheaper proof reads the readout through its leading singular directions
instead (:mod:`~mi_margin.analysis.certify_low_rank`), with this module's allowance.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.core import POST, PRE, RESID_MID, RESID_POST, ROWS, subject
from mi_margin.checks import check_memory
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import GELU_LIPSCHITZ
from mi_margin.models.fast_paths import attention_tables, transformer_logits

#: ulps allowed for exp (softmax) and erf (GELU) in the model's kernels (PyTorch's float32 exp
#: measured within 0.57 ulp on the normal and restricted CPU kernels, its GELU within 4.6 u·|x|
#: and float64's within 1.7 u·|x|); a γ_n with n = 2·EXP_ULPS covers each call
EXP_ULPS = 4
#: roundings of one GELU, x/2·(1 + erf(x/√2)) with erf within EXP_ULPS ulps
GELU_ROUNDINGS = 2 * EXP_ULPS + 4


def underflow(u: float) -> float:
    """η: a bound on what one operation in arithmetic of unit roundoff ``u`` loses to underflow
    (with gradual underflow, half the spacing of the subnormal numbers; η is the smallest normal
    number, far above it): float32's for float32's u, float64's for float64's (the certified
    models' two dtypes; the tests' emulated coarse formats keep float32's range). Relative bounds
    do not hold there: a softmax weight whose exp underflows (a score ~87 below the max in
    float32) is off by 100%. Each chain of N roundings then adds (2N + 1)·η to γ_N times its
    magnitude."""
    f32 = torch.finfo(torch.float32)
    return f32.tiny if u >= f32.eps / 2 else torch.finfo(torch.float64).tiny


def _chain(u: float) -> Any:
    """``chain(N, magnitude)``: the rounding bound of a chain of N roundings of that absolute
    magnitude, γ_N·magnitude + (2N + 1)·η (Higham 2002, §3.5, with underflow)."""
    eta = underflow(u)
    return lambda N, magnitude: _gamma(N, u) * magnitude + (2 * N + 1) * eta


def _gamma(n: float, u: float) -> float:
    """Higham's γ_n = n·u/(1 − n·u), defined for n·u < 1."""
    if n * u >= 1:
        raise MiMarginError(f"a chain of {n} roundings at unit roundoff {u:g} has no rounding "
                            f"bound (Higham's γ_n needs n·u < 1)")
    return n * u / (1 - n * u)


def _f64(t: Tensor) -> Tensor:
    return t.detach().double()


def _abs(t: Tensor) -> Tensor:
    return _f64(t).abs()


@dataclass(frozen=True)
class Reach:
    """Largest magnitudes over every input of the exact (float64) last-position activations,
    per coordinate: resid_mid r [d_model], pre-activations and hidden activations [d_mlp]
    (empty for an attention-only model) and resid_post [d_model]; and per head the largest
    |score| of the last query [H], the largest |VO| over (position, token), a value's image
    under W_O [H, d_model], and the largest |VO·W_in| [H, d_mlp] (empty for an attention-only
    model)."""

    score: Tensor
    vo: Tensor
    vo_in: Tensor
    r: Tensor
    pre: Tensor
    h: Tensor
    resid: Tensor


@dataclass(frozen=True)
class Allowance:
    """Bounds on how far the model's values in arithmetic of unit roundoff u are from the exact
    ones, for every input, stage by stage: each attention score of head h (``score`` [H], in
    either order of :func:`score_errors`),
    resid_mid at the last position (``resid_mid`` [d_model]), the MLP's pre-activations and hidden
    activations (``pre``, ``hidden`` [d_mlp]; empty for an attention-only model) and the logit
    gap ℓ_y − ℓ_c (``gap`` [V, V], answer y by class c)."""

    score: Tensor
    resid_mid: Tensor
    pre: Tensor
    hidden: Tensor
    gap: Tensor


@dataclass(frozen=True)
class _Attention:
    """The attention stage's error bounds: per head the scores' (``score``), the pattern's
    shift Σ_j |p̃_j − p_j| per unit of |VO| (``shift``), Σ_j p̃_j (``weights``) and a value's own
    error (``value`` [H, d_head]); resid_mid's bound from the pattern, the values and the sums
    (``resid``), and from the sums alone (``rounded``, [d_model])."""

    score: Tensor
    shift: Tensor
    weights: Tensor
    value: Tensor
    resid: Tensor
    rounded: Tensor


def softmax_error(score_error: Tensor, max_score: Tensor, n: int, u: float) -> Tensor:
    """ρ with |α̃_j − α_j| ≤ ρ·α_j for softmax over n scores of magnitude ≤ ``max_score`` that
    carry errors ≤ ``score_error``, computed in unit roundoff ``u``: the kernel subtracts the max
    score (one rounding of a difference of at most 2·max|s̃|), so every score moves by at most
    Δ, which moves every weight by a factor in [e^{−2Δ}, e^{2Δ}]; then exp in the numerator, n
    of them summed in the denominator, one division (or a reciprocal and a product), exp within
    ``EXP_ULPS`` ulps. A weight whose exp underflows has no relative bound: the pattern's shift
    adds η per key for it (:func:`underflow`)."""
    delta = score_error + 2 * u * (max_score + score_error)
    kappa = _gamma(2 * EXP_ULPS + (2 * EXP_ULPS + n - 1) + 2, u)
    return (1 + kappa) * torch.exp(2 * delta) - 1


def _attention(model: Any, last_token: int, n: int, reach: Reach, u: float) -> _Attention:
    """The attention stage of :func:`rounding_allowance`, up to resid_mid."""
    attn, g, chain, eta = model.block.attn, lambda N: _gamma(N, u), _chain(u), underflow(u)
    H, d, e = attn.W_Q.shape
    score = torch.maximum(*score_errors(model, last_token, n, u).values())           # [H]
    rho = softmax_error(score, reach.score, n, u)
    rate = float(model.cfg.attn_rate)
    # Σ_j |p̃_j − p_j| |VO_j| for p = rate·α + (1 − rate) (two roundings); Σ_j p_j |VO_j| ≤
    # (Σ_j p_j) max_j |VO_j|, and Σ_j p_j is 1 for softmax and n for constant attention; each
    # of the n weights may underflow, in the softmax and in the mixture's two roundings
    shift = rate * (rho + n * eta) * (1 + g(2)) + n * g(2) + 5 * n * eta             # [H]
    weights = rate + (1 - rate) * n + shift
    # a value's own error (the embeddings' sum, d products and sums, the bias), through W_O
    X = _embedded_abs(model, n)
    value = chain(d + 2, torch.einsum("rd,hde->rhe", X, _abs(attn.W_V)) + _abs(attn.b_V)).amax(0)
    exact = (torch.einsum("rd,hde->rhe", embedded(model, n), _f64(attn.W_V))
             + _f64(attn.b_V)).abs().amax(0)                                           # [H, e]
    W_O = _abs(attn.W_O)
    # mixing over n keys and the contraction with W_O over H·d_head (the forward pass), or each
    # value's image under W_O and the sum over n·H keys and heads (the tables); b_O; then the
    # residual's sums (x_last's own, and r = x_last + attention output)
    mix = chain(n + H * e + n * H + 2, torch.einsum("h,he,hed->d", weights, exact + value, W_O)
                + _abs(attn.b_O))
    x_last = _abs(model.W_E[last_token]) + _abs(model.W_pos[n - 1])
    rounded = mix + chain(1, x_last + reach.r)
    resid = (shift[:, None] * reach.vo).sum(0) + torch.einsum("h,he,hed->d", weights, value, W_O) \
        + rounded
    return _Attention(score=score, shift=shift, weights=weights, value=value, resid=resid,
                      rounded=rounded)


def rounding_allowance(model: Any, last_token: int, n: int, reach: Reach, u: float) -> Allowance:
    """How far, stage by stage, the model's values in arithmetic of unit roundoff ``u`` can be
    from the exact ones (:class:`Allowance`); contexts have length ``n`` and end in
    ``last_token``. For every input with answer y the computed gap ℓ_y − ℓ_c is within
    ``gap[y, c]`` of the exact one.

    Roundings of a sum or product chain of N steps add γ_N times the same chain on absolute
    values (Higham 2002, §3.5) plus (2N + 1)·η for underflow (:func:`underflow`), with the exact
    activations' magnitudes ``reach`` where the chain
    reads them; an error vector on resid_mid r or on the hidden activations h then reaches the
    gap only through the exact maps W_U[:, y] − W_U[:, c] and (W_out W_U)[:, y] − (W_out W_U)[:, c]
    (docs/mathematics.md §6.4).
    """
    chain = _chain(u)
    at, cfg, d = _attention(model, last_token, n, reach, u), model.cfg, model.cfg.d_model
    W_U = _f64(model.W_U)
    direct, through_mlp, out_err = at.resid, None, torch.zeros(d, dtype=torch.float64)
    err_pre = err_h = torch.zeros(0, dtype=torch.float64)
    if not cfg.attn_only:
        attn, mlp = model.block.attn, model.block.mlp
        W_in, W_out = _abs(mlp.W_in), _f64(mlp.W_out)
        # the pattern's error reaches the pre-activations through VO·W_in and the values' through
        # W_O·W_in (no box over d_model); the sums' roundings through |W_in|
        values = torch.einsum("h,he,hei->i", at.weights, at.value,
                              (_f64(attn.W_O) @ _f64(mlp.W_in)).abs())
        err_pre = (at.shift[:, None] * reach.vo_in).sum(0) + values + at.rounded @ W_in \
            + chain(d + 1, (reach.r + at.resid) @ W_in + _abs(mlp.b_in))
        err_h = _activation_error(cfg, reach, err_pre, u)
        mlp_out = (reach.h + err_h) @ W_out.abs() + _abs(mlp.b_out)
        direct = at.resid + chain(cfg.d_mlp + 1, mlp_out) + chain(1, reach.resid + at.resid + mlp_out)
        through_mlp, out_err = W_out @ W_U, err_h @ W_out.abs()
    own = chain(d + 1, (reach.resid + direct + out_err) @ W_U.abs() + _abs(model.b_U))
    E = own[:, None] + own[None]                                          # the unembedding's sums
    for y in range(W_U.shape[1]):
        E[y] += direct @ (W_U[:, y, None] - W_U).abs()
        if through_mlp is not None:
            E[y] += err_h @ (through_mlp[:, y, None] - through_mlp).abs()
    return Allowance(score=at.score, resid_mid=at.resid, pre=err_pre, hidden=err_h, gap=E)


def _embedded_abs(model: Any, n: int) -> Tensor:
    """|W_E[t]| + |W_pos[j]| of every (position j < n, token t), [n·V_in, d_model]: the absolute
    chain of the embeddings' sum."""
    return (_abs(model.W_E)[None] + _abs(model.W_pos)[:n, None]).flatten(0, 1)


def embedded(model: Any, n: int) -> Tensor:
    """W_E[t] + W_pos[j] of every (position j < n, token t) in float64, [n·V_in, d_model]."""
    W_E, W_pos = model.W_E.detach().double(), model.W_pos.detach().double()
    return (W_E[None] + W_pos[:n, None]).flatten(0, 1)


def score_errors(model: Any, last_token: int, n: int, u: float) -> dict[str, Tensor]:
    """Per head [H], a bound on |computed − exact| of the last query's attention scores over
    every (position, token), for each order the package computes them in: ``"ordinary"``, q·k
    with q and k formed (the model's forward pass), and ``"tables"``, X·(W_K q)/√d_head (the
    attention tables of :mod:`mi_margin.models.fast_paths`). Each reads the exact |q|, |k| and
    |W_K q| (float64) where an error multiplies them, not their absolute chains."""
    attn, chain = model.block.attn, _chain(u)
    _, d, e = attn.W_Q.shape
    c = 1 / math.sqrt(e)
    W_Q, W_K, b_Q, b_K = _f64(attn.W_Q), _f64(attn.W_K), _f64(attn.b_Q), _f64(attn.b_K)
    X = embedded(model, n)                                                             # [R, d]
    x_last = _f64(model.W_E[last_token]) + _f64(model.W_pos[n - 1])
    q = torch.einsum("d,hde->he", x_last, W_Q) + b_Q                                   # [H, e]
    k = torch.einsum("rd,hde->rhe", X, W_K) + b_K                                     # [R, H, e]
    s = (k * q).sum(-1) * c                                                           # [R, H]
    # q and k: the embeddings' sum, d products and sums, the bias (d + 2 roundings)
    dq = chain(d + 2, torch.einsum("d,hde->he", x_last.abs(), W_Q.abs()) + b_Q.abs())
    dk = chain(d + 2, torch.einsum("rd,hde->rhe", X.abs(), W_K.abs()) + b_K.abs())
    Q, K = q.abs() + dq, k.abs() + dk
    ordinary = c * ((dq * k.abs() + q.abs() * dk + dq * dk).sum(-1) + chain(e, (Q * K).sum(-1)))
    # tables: v = (W_K q̃)·c̃ (e products and sums, the product by c̃ and c̃'s own rounding),
    # then X·v (d + 1 with X's rounding) plus (b_K·q̃)·c̃; q̃'s error reaches the score as
    # (X W_K + b_K)·δq = k·δq, the rest through the absolute weights
    dv = chain(e + 2, c * torch.einsum("hde,he->hd", W_K.abs(), Q))                 # [H, d]
    v = c * torch.einsum("hde,he->hd", W_K, q).abs() + c * torch.einsum("hde,he->hd",
                                                                        W_K.abs(), dq)
    tables = c * (k.abs() * dq).sum(-1) + X.abs() @ dv.T + chain(d + 1, X.abs() @ (v + dv).T) \
        + chain(e + 2, c * (b_K.abs() * Q).sum(-1))
    # the division by √d_head (and √'s rounding), or the tables' last addition
    return {path: (raw + chain(3, s.abs() + raw)).amax(0)
            for path, raw in (("ordinary", ordinary), ("tables", tables))}


def _activation_error(cfg: Any, reach: Reach, err: Tensor, u: float) -> Tensor:
    """Error bound of the hidden activations from that of the pre-activations: ReLU is exact and
    1-Lipschitz; GELU Lipschitz with :data:`~mi_margin.models.activations.GELU_LIPSCHITZ`, plus
    the rounding of x/2·(1 + erf(x/√2)) with erf within a few ulps, an absolute error of a few
    u·|x| (not u·|GELU(x)|: where erf(x/√2) is near −1 the sum 1 + erf cancels, and float32 GELU
    is off by over 10% below x ≈ −5.1 and by 100% below −5.5); x^d by the mean value theorem on
    [−|pre| − err, |pre| + err], d − 1 roundings."""
    if cfg.act_fn == "relu":
        return err
    chain = _chain(u)
    if cfg.act_fn == "gelu":
        return GELU_LIPSCHITZ * err + chain(GELU_ROUNDINGS, reach.pre + err)
    deg = cfg.degree
    top = reach.pre + err
    return deg * top ** (deg - 1) * err + chain(deg - 1, top ** deg)


def _float64(model: Any) -> Any:
    """A float64 copy of the model (its tables are then exact up to float64 rounding)."""
    return copy.deepcopy(model).double()


def last_token(task: Any) -> int:
    """The token every input of ``task`` ends with (the certificate's tables need one)."""
    tokens = task.tokens
    if not bool((tokens[:, -1] == tokens[0, -1]).all()):
        raise MiMarginError(f"the transformer certificate needs every input to end with the same "
                            f"token ('='); {task!r}'s inputs do not")
    return int(tokens[0, -1])


def _evaluate(twin: Any, tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Last-position logits and activations (resid_mid, MLP pre/post, resid_post) of the float64
    ``twin`` through its attention tables."""
    store: dict[str, Tensor] = {}
    names = [RESID_POST] + ([] if twin.cfg.attn_only else [RESID_MID, PRE, POST])
    hooks = [(name, lambda act, hook, name=name: store.__setitem__(name, act[:, -1]))
             for name in names]
    with torch.no_grad(), twin.hooks(fwd_hooks=hooks):
        logits = transformer_logits(twin, tokens)
    return logits, store


def check_no_layernorm(model: Any) -> None:
    """Refuse a transformer with LayerNorm: its logits are not the tables' affine readout."""
    if getattr(model.cfg, "normalization_type", None):
        raise MiMarginError("the transformer certificate needs a model without LayerNorm")


def exact_logits(model: Any, task: Any) -> tuple[Tensor, Reach]:
    """Every input's last-position logits in float64 [N, V] through the attention tables of a
    float64 copy of ``model``, with the activations' largest magnitudes (:class:`Reach`)."""
    check_no_layernorm(model)
    tokens = subject(model, task).inputs
    last, n = last_token(task), tokens.shape[1]
    V = model.W_U.shape[1]
    # the logits and, while the margins are taken, their gaps: two float64 [N, V]
    check_memory(f"the certificate's float64 logits and gaps [{len(tokens):,}, {V}] of {task!r}",
                 2 * 8 * len(tokens) * V)
    twin = _float64(model)
    with torch.no_grad():
        _, scores, value_out = attention_tables(twin, torch.tensor(last), n)        # [H, R, d]
        vo_in = (torch.zeros(0, dtype=torch.float64) if model.cfg.attn_only else
                 (value_out @ twin.block.mlp.W_in).abs().amax(1))
    vo = value_out.abs().amax(1)
    chunks: list[Tensor] = []
    top: dict[str, Tensor] = {}
    for start in range(0, len(tokens), ROWS):
        logits, acts = _evaluate(twin, tokens[start:start + ROWS])
        chunks.append(logits)
        for name, act in acts.items():
            top[name] = torch.maximum(top.get(name, act.abs().amax(0)), act.abs().amax(0))
    empty = torch.zeros(0, dtype=torch.float64)
    # an attention-only block's resid_mid is its output
    return torch.cat(chunks), Reach(score=scores.abs().amax(0), vo=vo, vo_in=vo_in,
                                    r=top.get(RESID_MID, top[RESID_POST]),
                                    pre=top.get(PRE, empty),
                                    h=top.get(POST, empty), resid=top[RESID_POST])


def gap_allowance(model: Any, last_token: int, n: int, reach: Reach) -> tuple[Tensor, Tensor]:
    """(E [V, V], hidden activations' error bound [d_mlp]): :func:`rounding_allowance`'s gap
    bound for the model's dtype plus that for a float64 evaluation (the certificate's own), and
    the model dtype's bound on the hidden activations."""
    u = torch.finfo(model.W_E.dtype).eps / 2
    own = rounding_allowance(model, last_token, n, reach, u)
    _check_range(model, n, reach, own, u)
    f64 = rounding_allowance(model, last_token, n, reach, torch.finfo(torch.float64).eps / 2)
    return own.gap + f64.gap, own.hidden


def check_range(largest: float, dtype: torch.dtype) -> None:
    """Refuse values or partial sums that may reach ``largest``, past half of ``dtype``'s
    largest number: the pass may overflow there, and no rounding bound holds."""
    if not largest < torch.finfo(dtype).max / 2:
        raise MiMarginError(
            f"the model's values or partial sums may reach {largest:.3g}, beyond half of "
            f"{dtype}'s largest number: its pass may overflow, and no rounding bound holds "
            f"(rescale the weights)")


def _check_range(model: Any, n: int, reach: Reach, allowance: Allowance, u: float) -> None:
    """Refuse a transformer whose pass may overflow its dtype. Every value it computes is at most
    the absolute chain that forms it: the embeddings' sums, q, k and v over every (position,
    token), the scores, the mixed values (Σ_j p_j ≤ n), the attention output and its tables
    through W_O and W_in; and from resid_mid on, the exact magnitudes (``reach``) plus their
    error bounds, each chain's absolute magnitude being at most its error bound over u."""
    attn = model.block.attn
    X = _embedded_abs(model, n)
    qkv = [torch.einsum("rd,hde->rhe", X, _abs(W)) + _abs(b)
           for W, b in ((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V))]
    q, k, v = (t.amax(0) for t in qkv)                                               # [H, e]
    mixed = n * v
    out = torch.einsum("he,hed->hd", mixed, _abs(attn.W_O))                          # [H, d]
    chains = [X, q, k, v, (q * k).sum(-1), mixed, out, out.sum(0) + _abs(attn.b_O)]
    if not model.cfg.attn_only:
        chains.append(out @ _abs(model.block.mlp.W_in))
    chains += [reach.score, reach.vo, reach.vo_in, reach.r, reach.pre, reach.h, reach.resid,
               allowance.score / u, allowance.resid_mid / u, allowance.pre / u,
               allowance.hidden / u, allowance.gap / u]
    check_range(max(float(t.max()) for t in chains if t.numel()), model.W_E.dtype)


def transformer_margins(model: Any, task: Any) -> tuple[Tensor, Tensor, Tensor]:
    """(certified margin bound per input [N], E [V, V], hidden activations' error bound [d_mlp]):
    the exact logits (:func:`exact_logits`) less the allowance for the model's dtype plus that
    for the float64 evaluation itself."""
    logits, reach = exact_logits(model, task)
    last, n, labels = last_token(task), task.tokens.shape[1], task.labels
    E, hidden = gap_allowance(model, last, n, reach)
    rows = torch.arange(len(labels))
    gap = logits[rows, labels][:, None] - logits - E[labels]
    gap[rows, labels] = math.inf
    return gap.amin(1), E, hidden


def transformer_flops(model: Any, n_inputs: int, n: int) -> int:
    """Operations of the attention tables (scores, values, their images under W_O) and, per
    input, softmax over n keys per head, the attention output, the MLP, the unembedding and the
    margin check: what the model's own fast path costs (:mod:`mi_margin.models.fast_paths`)."""
    cfg = model.cfg
    H, d, e = model.block.attn.W_Q.shape
    R, V = n * model.W_E.shape[0], model.W_U.shape[1]
    tables = 2 * d * H * e + 2 * d * H + 2 * R * d * H + 2 * R * d * H * e + 2 * H * R * e * d
    mlp = 0 if cfg.attn_only else 4 * d * cfg.d_mlp + 2 * cfg.d_mlp
    per_input = 5 * H * n + 2 * H * n * d + 2 * d + mlp + 2 * d * V + 3 * V
    return tables + n_inputs * per_input


def allowance_flops(model: Any, n: int) -> int:
    """Operations of :func:`rounding_allowance`, run twice (the model's dtype and float64): keys
    and values, exact and on absolute values, and their images under W_O and W_in for every
    (position, token); W_O W_in, the MLP's and the unembedding's absolute weights; W_out W_U and
    the pairwise differences of its columns and of W_U's (3 per entry, for every answer and
    class)."""
    cfg = model.cfg
    H, d, e = model.block.attn.W_Q.shape
    R, V = n * model.W_E.shape[0], model.W_U.shape[1]
    m = 0 if cfg.attn_only else cfg.d_mlp
    attention = 10 * R * d * H * e + 2 * H * R * d * m + 2 * H * e * d * m
    readout = 8 * d * m + 2 * m * d * V + 4 * d * V + 3 * V * V * (d + m)
    return 2 * (attention + readout)

"""The explanation's logit gaps in closed form, for power activations (docs/mathematics.md §6.4).

With x^d neurons the idealized circuit of :func:`~mi_margin.analysis.explain.explain` is a
polynomial one can expand once on the weights instead of running it on every input:

* cyclic groups Z_n (modular addition, any k): neuron i of frequency f has pre-activation
  β_i + Σ_j Re(u_ij z_j), z_j = e^{iωf x_j} (ω = 2π/n), so ĥ_i = pre^d is a Laurent polynomial
  Σ_m Q_i[m] z^m with |m_j| ≤ d, and its output map w_i + Re(v_i e^{iωfc}) turns it into
  characters e^{iω(g·x + g_c c)} with coefficients κ = Q_i[m] v_i, g = f m, g_c = f (mod n);
* sparse parity: a neuron reading the bits of S has pre = b_i + Σ_{j∈S} w_ij x_j, and with
  x_j² = 1, pre^d is a multilinear polynomial Σ_{A⊆S} Q_i[A] χ_A(x).

Summed over neurons per character, the logit gaps are a short list of characters whose
coefficients bound every input's margin at once (:func:`cyclic_margin`, :func:`parity_margin`).
Each returned bound covers the idealized circuit in exact arithmetic; the caller adds what the
explanation leaves out and rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mi_margin.errors import MiMarginError


@dataclass(frozen=True)
class Expansion:
    """One neuron per row: the idealized circuit's input tables T̂ [k, n, d_mlp] and output map
    Ŵ [d_mlp, V] as the closed form reconstructs them, sup |ĥ_i| ≤ ``h_bound`` [d_mlp], the margin
    bound of the idealized circuit per answer gap (cyclic: [n], index Δ = c − y; parity: [1]), the
    sum of magnitudes that entered it (for the rounding allowance), and the operations it took."""

    tables: Tensor
    W_out: Tensor
    h_bound: Tensor
    margin: Tensor
    magnitude: float
    chain: int
    flops: int


def _power(model: Any) -> int:
    name = model.cfg.act_fn
    if name not in ("quadratic", "power"):
        raise MiMarginError(
            f"the harmonic certificate expands x^d neurons in closed form; act_fn={name!r} has no "
            f"finite expansion (use bound='uniform' or 'per_input')")
    return int(model.cfg.degree)


def _live(label: tuple[Any, ...]) -> Tensor:
    return torch.tensor([i for i, lab in enumerate(label) if lab is not None], dtype=torch.long)


def _power_coefficients(beta: Tensor, u: Tensor, d: int) -> Tensor:
    """Coefficients Q[m], m ∈ {−d..d}^k (row-major, m_j + d per axis), of (β + Σ_j Re(u_j z_j))^d
    per neuron, [L, (2d+1)^k]: the polynomial sampled on the (2d+1)^k roots of unity and
    transformed back (exact: its exponents lie in {−d..d}, so nothing aliases)."""
    k, side = u.shape[0], 2 * d + 1
    if len(beta) == 0:                                  # no live neuron (FFT refuses empty)
        return torch.zeros((0, side ** k), dtype=torch.complex128)
    root = torch.exp(2j * math.pi * torch.arange(side, dtype=torch.float64) / side)   # [side]
    pre = beta.view(-1, *(1,) * k).clone()
    for j in range(k):
        shape = [-1] + [side if a == j else 1 for a in range(k)]
        pre = pre + (u[j][:, None] * root[None]).real.view(shape)
    dims = tuple(range(1, k + 1))
    Q = torch.fft.fftshift(torch.fft.fftn(pre ** d, dim=dims), dim=dims) / side ** k
    return Q.reshape(len(beta), side ** k)


def cyclic_margin(T: Tensor, W: Tensor, b_in: Tensor, label: tuple[Any, ...], model: Any
                  ) -> Expansion:
    """The idealized circuit of a modular-addition MLP (frequency labels) in closed form.

    Returns the margin bound per Δ = c − y ∈ Z_n (entry 0 unused): the signal characters
    (g_j ≡ −g_c for every operand, which depend on x only through y) give the exact gap
    Re κ − Re(κ e^{iω g_c Δ}); every other character changes the gap by at most
    |κ| |1 − e^{iω g_c Δ}|. Characters with g_c = 0 do not depend on c and cancel.
    """
    d = _power(model)
    k, n, m = T.shape
    live = _live(label)
    f = torch.tensor([int(label[i]) for i in live.tolist()], dtype=torch.long)
    omega = 2 * math.pi / n
    x = torch.arange(n, dtype=torch.float64)
    wave = torch.exp(-1j * omega * torch.outer(f.double(), x))                # [L, n]
    scale = torch.where((2 * f) % n == 0, 1.0, 2.0).double() / n                # Re(u e^{iθ})
    Tl = T[:, :, live]                                                          # [k, n, L]
    c = Tl.mean(1)                                                              # [k, L]
    u = scale * torch.einsum("jal,la->jl", Tl.to(torch.complex128), wave)      # [k, L]
    w0, v = W[live].mean(1), scale * (W[live].to(torch.complex128) * wave).sum(1)
    T_hat, W_hat = torch.zeros_like(T), torch.zeros_like(W)
    T_hat[:, :, live] = c[:, None] + (u[:, None] * wave.conj().T[None]).real
    W_hat[live] = w0[:, None] + (v[:, None] * wave.conj()).real
    beta = b_in[live] + c.sum(0)
    side = 2 * d + 1
    Q = _power_coefficients(beta, u, d)                                        # [L, side^k]
    h_bound = torch.zeros(m, dtype=torch.float64)
    h_bound[live] = Q.abs().sum(1)
    h_bound[_zeroed(label)] = b_in[_zeroed(label)].abs() ** d
    exps = torch.cartesian_prod(*[torch.arange(-d, d + 1)] * k).reshape(-1, k)  # [side^k, k]
    freqs, by_f = torch.unique(f, return_inverse=True)          # neurons of one frequency share
    kappa = torch.zeros((len(freqs), side ** k), dtype=torch.complex128).index_add_(
        0, by_f, Q * v[:, None])                                                # [F, side^k]
    g = (freqs[:, None, None] * exps[None]) % n                                # [F, side^k, k]
    g_c = (freqs % n)[:, None].expand(-1, exps.shape[0])
    key = (g * (n ** torch.arange(k))).sum(-1) + g_c * n ** k
    keys, where = torch.unique(key.reshape(-1), return_inverse=True)
    coef = torch.zeros(len(keys), dtype=torch.complex128).index_add_(0, where, kappa.reshape(-1))
    gk = torch.stack([(keys // n ** j) % n for j in range(k + 1)], dim=1)      # [K, k+1]
    signal = ((gk[:, :k] + gk[:, k:]) % n == 0).all(1) & (gk[:, k] != 0)
    gcs, by_gc = torch.unique(gk[:, k], return_inverse=True)                   # per g_c
    sig = torch.zeros(len(gcs), dtype=torch.complex128).index_add_(
        0, by_gc[signal], coef[signal])
    noisy = torch.zeros(len(gcs), dtype=torch.float64).index_add_(
        0, by_gc[~signal], coef[~signal].abs())
    rot = torch.exp(1j * omega * torch.outer(gcs.double(), torch.arange(n, dtype=torch.float64)))
    gap_sig = (sig[:, None] * (1 - rot)).real.sum(0)                            # [n] per Δ
    noise = (noisy[:, None] * (1 - rot).abs()).sum(0)
    magnitude = float((Q.abs().sum(1) * v.abs()).sum()) * 2
    L, K = len(live), len(keys)
    grid = side ** k
    flops = (L * (12 * k * n + 12 * n)                       # DFTs, reconstruction
             + L * grid * ((k + d) + 5 * math.ceil(math.log2(grid)))    # pre^d on a grid, FFT
             + L * grid * 8                                   # κ summed per frequency
             + len(freqs) * grid * (4 * k + 2 * math.ceil(math.log2(max(2, len(freqs) * grid))))
             + K * (4 * k + 8) + len(gcs) * n * 14)          # classify, gaps per Δ
    chain = k + d + 5 * math.ceil(math.log2(grid)) + L + K + 8
    return Expansion(T_hat, W_hat, h_bound, gap_sig - noise, magnitude, chain, flops)


def _zeroed(label: tuple[Any, ...]) -> Tensor:
    """Indices of the neurons the explanation zeroed."""
    return torch.tensor([i for i, lab in enumerate(label) if lab is None], dtype=torch.long)


def parity_margin(T: Tensor, W: Tensor, b_in: Tensor, b_out: Tensor, label: tuple[Any, ...],
                  support: tuple[int, ...], model: Any) -> Expansion:
    """The idealized circuit of a sparse-parity MLP (subset labels) in closed form.

    With D_i = Ŵ[i, 0] − Ŵ[i, 1] (class 0 is χ_S* = +1) and C_A = Σ_i Q_i[A] D_i (plus
    b_out[0] − b_out[1] at A = ∅), the margin at x is χ_S*(x) Σ_A C_A χ_A(x) ≥ C_S* − Σ_{A≠S*} |C_A|,
    for every x ∈ {±1}^n at once.
    """
    d = _power(model)
    _, _, m = T.shape
    live = _live(label)
    s = len(support)
    bits = torch.tensor([list(label[i]) for i in live.tolist()], dtype=torch.long).reshape(-1, s)
    w = T[:, 1][bits, live[:, None]]                                            # [L, s]
    T_hat, W_hat = torch.zeros_like(T), torch.zeros_like(W)
    for r, i in enumerate(live.tolist()):
        T_hat[:, 1, i][bits[r]] = w[r]
        T_hat[:, 0, i][bits[r]] = -w[r]
    W_hat[live] = W[live]
    masks = torch.arange(2 ** s)
    Q = torch.zeros((len(live), 2 ** s), dtype=torch.float64)
    Q[:, 0] = 1.0
    for _ in range(d):
        nxt = b_in[live, None] * Q
        for j in range(s):
            nxt = nxt + w[:, j:j + 1] * Q[:, masks ^ (1 << j)]
        Q = nxt
    h_bound = torch.zeros(m, dtype=torch.float64)
    h_bound[live] = Q.abs().sum(1)
    h_bound[_zeroed(label)] = b_in[_zeroed(label)].abs() ** d
    D = W_hat[live, 0] - W_hat[live, 1]
    member = ((masks[:, None] >> torch.arange(s)) & 1).bool()                  # [2^s, s]
    key = ((member[None] * (2 ** bits)[:, None, :]).sum(-1))                    # [L, 2^s]
    coef = torch.cat([(Q * D[:, None]).reshape(-1), (b_out[0] - b_out[1]).reshape(1)])
    keys, where = torch.unique(torch.cat([key.reshape(-1), torch.zeros(1, dtype=torch.long)]),
                               return_inverse=True)
    C = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, where, coef)
    target = sum(2 ** j for j in support)
    signal = keys == target
    margin = (C[signal].sum() - C[~signal].abs().sum()).reshape(1)
    L = len(live)
    flops = (d * L * (s + 1) * 2 ** s * 2 + L * 2 ** s * (2 + 2 * math.ceil(math.log2(
        max(2, L * 2 ** s)))) + 2 * len(keys))
    return Expansion(T_hat, W_hat, h_bound, margin, float((Q.abs().sum(1) * D.abs()).sum()),
                     d * (s + 2) + L + len(keys) + 4, flops)

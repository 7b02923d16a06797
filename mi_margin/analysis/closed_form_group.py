"""The explanation's logit gaps in closed form for quadratic networks on any finite group
(docs/mathematics.md §6.4, "non-abelian groups").

A neuron labelled with the real irrep ρ (dimension d, orthogonal matrices ρ(g)) reads each operand
and writes the answer through matrix coefficients of ρ: with the explanation's maps
T̂[0, a, i] = c₀ + A_i(a), T̂[1, b, i] = c₁ + B_i(b), Ŵ[i, c] = w₀ + W'_i(c) and
A_i(a) = Σ_jk α_i[j, k] ρ(a)[j, k] (likewise B_i with β_i', W'_i with ω_i), its square is

    ĥ_i(a, b) = (s_i + A_i(a) + B_i(b))² = φ_i(a) + ψ_i(b) + 2 A_i(a) B_i(b),

s_i = b_in,i + c₀ + c₁, φ_i = (s_i + A_i)², ψ_i = 2 s_i B_i + B_i². Read out through W'_i (w₀ is the
same for every class and cancels from every gap), the first two terms are functions of (a, c) and
(b, c) only, computed exactly on the |G| × |G| grid: |G| times fewer operations than running the
network on every input. The third is the trilinear form ⟨T_ρ, ρ(a) ⊗ ρ(b) ⊗ ρ(c)⟩ with
T_ρ = 2 Σ_{i labelled ρ} α_i ⊗ β'_i ⊗ ω_i; its part of the form tr(M ρ(a) ρ(b) ρ(c)ᵀ) = tr(M ρ(a b c⁻¹))
(Morwani et al. 2024, Thm 9: the max-margin circuit) gives every input's gap exactly as a function
of g = y c⁻¹, and the rest is at most ‖N_ρ‖ in sup norm (orthogonal matrices have entries and
Frobenius norms bounded by 1 and √d). Nothing is run per input; the bound holds for every input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.closed_form import Expansion, _live, _power, _zeroed
from mi_margin.errors import MiMarginError
from mi_margin.groups.irrep import find_irrep

#: rows of (answer y, class c) pairs per block of the |G|³ minimum over operands
_BLOCK = 64


def _coefficients(matrices: Tensor) -> tuple[Tensor, Tensor]:
    """R [n, d²] (row g: ρ(g) flattened) and its pseudo-inverse [d², n]: ``R @ (pinv @ v)`` is
    the projection of a function v on the group onto ρ's isotypic component (the span of ρ's
    matrix coefficients; for complex and quaternionic types of lower dimension than d²)."""
    R = matrices.reshape(matrices.shape[0], -1)
    return R, torch.linalg.pinv(R)


def _pair_minimum(F: Tensor) -> Tensor:
    """D[y, c] = min_x (F[x, y] − F[x, c]) for F [n, n], in blocks of answers (O(n³))."""
    n = F.shape[1]
    D = torch.empty((n, n), dtype=F.dtype)
    for start in range(0, n, _BLOCK):
        ys = slice(start, min(start + _BLOCK, n))
        D[ys] = (F[:, ys, None] - F[:, None, :]).amin(0)
    return D


def _sup_norm(N: Tensor, d: int) -> Tensor:
    """An upper bound on sup over (a, b, c) of |⟨N, ρ(a) ⊗ ρ(b) ⊗ ρ(c)⟩| for orthogonal ρ of
    dimension d: the ℓ1 norm of N (every entry of ρ(g) is at most 1) or its Frobenius norm times
    d^{3/2} (‖ρ(a) ⊗ ρ(b) ⊗ ρ(c)‖_F = d^{3/2}), whichever is smaller."""
    return torch.minimum(N.abs().sum(), N.norm() * d ** 1.5)


def _commutant(matrices: Tensor) -> Tensor:
    """An orthonormal basis [e, d, d] (Frobenius inner product) of the matrices X with
    X ρ(g) = ρ(g) X for every g: the commutant End_G(ρ), of dimension e = 1, 2, 4 for real,
    complex and quaternionic type (Schur's lemma over R; :class:`~mi_margin.groups.Irrep`)."""
    d = matrices.shape[1]
    eye = torch.eye(d, dtype=matrices.dtype)
    # vec(X ρ − ρ X) = (ρᵀ ⊗ I − I ⊗ ρ) vec(X), row-major vec
    system = torch.cat([torch.kron(eye, r.T.contiguous()) - torch.kron(r, eye) for r in matrices])
    _, sv, vh = torch.linalg.svd(system)                  # d² singular values (n d² ≥ d² rows)
    return vh[sv < 1e-9 * max(float(sv[0]), 1.0)].reshape(-1, d, d)


def _trilinear(alpha: Tensor, beta: Tensor, omega: Tensor, commutant: Tensor) -> tuple[Tensor, float]:
    """The signal's M [d, d] of T_ρ = 2 Σ_i α_i ⊗ β_i ⊗ ω_i and the sup-norm bound of the rest.

    The signal is T_ρ's projection onto the tensors M_st[l, i] X_s[j, J] X_t[k, K] for X_s, X_t
    in the orthonormal commutant basis: ⟨T, ρ(a) ⊗ ρ(b) ⊗ ρ(c)⟩ of such a tensor is
    tr(M_st ρ(a) X_s ρ(b) X_t ρ(c)ᵀ) = tr(X_s X_t M_st ρ(a b c⁻¹)), since each X commutes with
    every ρ(g); these are all the trilinear forms that depend on a b c⁻¹ only. A real-type irrep
    has X = I/√d alone; a complex or quaternionic one (every irrep of a cyclic group but the sign)
    needs the others, without which its signal would be charged as noise. Returned: the single
    M = Σ_st X_s X_t M_st with signal tr(M ρ(g))."""
    d = commutant.shape[1]
    Tr = 2 * torch.einsum("pl,ql,rl->pqr", alpha, beta, omega).reshape([d] * 6)
    M_st = torch.einsum("ijJklK,sjJ,tkK->stli", Tr, commutant, commutant)
    signal = torch.einsum("stli,sjJ,tkK->ijJklK", M_st, commutant, commutant)
    M = torch.einsum("sab,tbc,stcd->ad", commutant, commutant, M_st)
    return M, float(_sup_norm(Tr - signal, d))


def group_margin(T: Tensor, W: Tensor, b_in: Tensor, label: tuple[Any, ...], model: Any,
                 G: Any) -> Expansion:
    """The idealized circuit of a quadratic MLP on group composition (irrep labels, k = 2) in
    closed form.

    Returns the margin bound per (answer y, class c) [n, n] (the diagonal unused): for every
    input with answer y, the explanation's gap logit̂_y − logit̂_c before the output bias is at
    least min_a [F1(a, y) − F1(a, c)] + min_b [F2(b, y) − F2(b, c)] + S(y c⁻¹) − 2 Σ_ρ ‖N_ρ‖
    (module docstring; S(g) = Σ_ρ tr(M_ρ (I − ρ(g))) is the signal's exact gap).
    """
    if _power(model) != 2:
        raise MiMarginError(
            f"the harmonic certificate on a non-abelian group expands quadratic neurons (x²); "
            f"degree {model.cfg.degree} is not expanded (use bound='uniform' or 'per_input')")
    k, n, m = T.shape
    if k != 2:
        raise MiMarginError(
            f"the harmonic certificate on a non-abelian group covers two operands, got k={k} "
            f"(use bound='uniform' or 'per_input')")
    live = _live(label)
    T_hat, W_hat = torch.zeros_like(T), torch.zeros_like(W)
    h_bound = torch.zeros(m, dtype=torch.float64)
    h_bound[_zeroed(label)] = b_in[_zeroed(label)].abs() ** 2
    table = torch.tensor(G.table)
    ratio = table[:, torch.tensor(G.inverse)]                     # [y, c] → y c⁻¹
    F1 = torch.zeros((n, n), dtype=torch.float64)
    F2 = torch.zeros((n, n), dtype=torch.float64)
    signal = torch.zeros(n, dtype=torch.float64)                      # tr(M ρ(g)) summed over ρ
    noise, magnitude, flops, longest = 0.0, 0.0, 0, 0
    names = sorted({label[i] for i in live.tolist()})
    for name in names:
        rho = find_irrep(G, name)
        d = rho.dim
        matrices = torch.tensor(rho.matrices, dtype=torch.float64)
        R, P = _coefficients(matrices)
        idx = torch.tensor([i for i in live.tolist() if label[i] == name], dtype=torch.long)
        c = T[:, :, idx].mean(1)                                      # [2, L]
        w0 = W[idx].mean(1)                                           # [L]
        alpha = P @ (T[0, :, idx] - c[0])                             # [d², L]
        beta = P @ (T[1, :, idx] - c[1])
        omega = P @ (W[idx].T - w0)
        A, B, Wp = R @ alpha, R @ beta, R @ omega                     # [n, L]
        T_hat[0, :, idx], T_hat[1, :, idx] = c[0] + A, c[1] + B
        W_hat[idx] = (w0 + Wp).T
        s = b_in[idx] + c.sum(0)
        h_bound[idx] = torch.maximum((s + A.amax(0) + B.amax(0)) ** 2,
                                     (s + A.amin(0) + B.amin(0)) ** 2)
        phi, psi = (s + A) ** 2, 2 * s * B + B ** 2
        F1 += phi @ Wp.T
        F2 += psi @ Wp.T
        M, rest = _trilinear(alpha, beta, omega, _commutant(matrices))
        noise += rest
        signal += R @ M.T.reshape(-1)                                 # Σ M[l, i] ρ(g)[i, l]
        L = len(idx)
        magnitude += float((phi.abs().amax(0) + psi.abs().amax(0)) @ Wp.abs().amax(0)) \
            + float(2 * (alpha.abs().sum(0) * beta.abs().sum(0) * omega.abs().sum(0)).sum())
        flops += (2 * n * d ** 4 * 4 + 3 * 4 * n * d * d * L + 12 * n * L + 4 * n * n * L
                  + 4 * L * d ** 6 + 6 * d ** 6 + 2 * n * d * d)
        longest = max(longest, n + 2 * L + d ** 4 + 2 * d * d)
    S = signal[G.identity] - signal[ratio]                            # [y, c]
    margin = _pair_minimum(F1) + _pair_minimum(F2) + S - 2 * noise
    flops += 2 * 3 * n ** 3 + 4 * n * n
    return Expansion(T_hat, W_hat, h_bound, margin, 4 * magnitude, longest + 4, flops)

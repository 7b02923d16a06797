"""Certificate networks: real theory-style :class:`HookedMLP` s (float64, no biases) attaining γ*.

Each certificate has ||θ||_{2,ν} = 1 (Σ_i ||ω_i||_2^ν = 1), so its dataset margin h(θ) *is* its
normalized margin and equals the predicted γ* (Morwani et al. 2024, Lemma 6 recipe; docs/mathematics.md):

- k-input modular addition (§1.3, §2.2): for every frequency ζ, phases θ ∈ {0, π/2}^k and signs
  s ∈ {±1}^k with s_1 = +1, the neuron u_i(a) = s_i β cos(αa + θ_i), w(c) = (Π s) β cos(αc + Σθ_i),
  α = 2πζ/p — 2^{2k−1} neurons per frequency, width 2^{2k−2}(p−1) (= 4(p−1) for k = 2). The
  polarization identity (Li et al. Lemma G.1) and the phase sum leave logits
  ∝ Σ_ζ cos(α(Σa_i − c)): all wrong-class logits equal.
- (n, k)-sparse parity (§1.4): one neuron per s ∈ {±1}^k, s_1 = +1: u = s/√(k+1) on the support,
  w = (Π s)(1, −1)/√(2(k+1)); width 2^{k−1}.
- finite groups (§1.5): for each used irrep ρ and (i, j, l) ∈ [d]^3 the neuron pair
  (β ρ_ij, ±β ρ_jl, ±β ρ_il); the pair sums to 4β³ ρ(a)_ij ρ(b)_jl ρ(c)_il and the triple sum to
  4β³ χ_ρ(abc⁻¹). β_ρ³ ∝ the prediction's logit coefficient (∝ d_ρ under Theorem 9, the LP solution
  otherwise). Width 2 Σ_ρ d_ρ³.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import cosine_neurons, exact_cosine_rows
from mi_margin.models import HookedMLP, MLPConfig
from mi_margin.tasks import Cube, Cyclic, Group, SparseParity, Task
from mi_margin.theory.predictions import Prediction, max_margin, require_task


def _signs(k: int) -> list[tuple[int, ...]]:
    """Sign patterns s ∈ {±1}^k with s_1 = +1 (the 2^{k−1} terms of Li et al. Lemma G.1)."""
    return [(1, *rest) for rest in itertools.product((1, -1), repeat=k - 1)]


def modular_weights(p: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(W_in [k, p, m], W_out [m, p]) of the k-input modular-addition certificate (before
    normalization): the exact cosine neurons of every frequency ζ = 1..(p−1)/2."""
    W_in, W_out = cosine_neurons(p, *exact_cosine_rows(k, range(1, (p - 1) // 2 + 1)))
    return W_in.numpy(), W_out.numpy()


def parity_weights(n: int, support: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(W_in [1, n, m], W_out [m, 2]) of the sparse-parity certificate (before normalization)."""
    k = len(support)
    ins, outs = [], []
    for s in _signs(k):
        u = np.zeros(n)
        u[list(support)] = np.array(s) / math.sqrt(k + 1)
        ins.append(u)
        outs.append(math.prod(s) * np.array([1.0, -1.0]) / math.sqrt(2 * (k + 1)))
    return np.array(ins).T[None], np.array(outs)


def group_weights(G: Any, pred: Prediction) -> tuple[np.ndarray, np.ndarray]:
    """(W_in [2, |G|, m], W_out [m, |G|]) of the group certificate for the prediction's irreps.

    Neurons of irrep ρ get β_ρ = c_ρ^{1/3} with c_ρ the logit coefficient, so the network's logits
    are 4 Σ_ρ c_ρ χ_ρ(abc⁻¹) (before the final normalization).
    """
    coeffs = pred.logit_coefficients or {}
    ins, outs = [], []
    for rho in G.irreps():
        c = coeffs.get(rho.name, 0.0)
        if c <= 0.0:
            continue
        R = rho.matrices
        if not np.allclose(np.einsum("gij,gik->gjk", R, R), np.eye(rho.dim), atol=1e-10):
            raise MiMarginError(f"irrep {rho.name!r} of {G.name} is not orthogonal; the "
                                "certificate needs orthogonal matrices")
        beta = c ** (1.0 / 3.0)
        for i, j, l in itertools.product(range(rho.dim), repeat=3):
            for sign in (1.0, -1.0):
                ins.append([beta * R[:, i, j], sign * beta * R[:, j, l]])
                outs.append(sign * beta * R[:, i, l])
    return np.transpose(np.array(ins), (1, 2, 0)), np.array(outs)


def _unit_norm(W_in: np.ndarray, W_out: np.ndarray, nu: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale all neurons by one factor so that Σ_i ||ω_i||_2^ν = 1 (ν-homogeneity)."""
    norms = np.sqrt((W_in**2).sum(axis=(0, 1)) + (W_out**2).sum(axis=1))
    scale = float((norms**nu).sum()) ** (-1.0 / nu)
    return W_in * scale, W_out * scale


def _build(task: Task, W_in: np.ndarray, W_out: np.ndarray, degree: int) -> HookedMLP:
    act = {"act_fn": "quadratic"} if degree == 2 else {"act_fn": "power", "act_degree": degree}
    cfg = MLPConfig.for_task(task, d_mlp=W_in.shape[2], dtype="float64", use_biases=False,
                             input_style="theory", **act)
    model = HookedMLP(cfg)
    W_in, W_out = _unit_norm(W_in, W_out, degree + 1)
    with torch.no_grad():
        model.W_in.copy_(torch.from_numpy(W_in))
        model.W_out.copy_(torch.from_numpy(W_out))
    return model


def _relabel(W_in: np.ndarray, W_out: np.ndarray, iso: tuple[int, ...]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Weights indexed by Z_p moved to group elements g (g ↦ iso[g] is the isomorphism)."""
    idx = np.array(iso)
    return W_in[:, idx, :], W_out[:, idx]


def certificate(task: Task) -> HookedMLP:
    """A network that attains the predicted max margin of ``task`` (normalized margin = γ*).

    Theory style, float64, no biases, activation x^k (quadratic for groups), width = the
    prediction's width bound (for the LP extension: 2 Σ d_ρ³ over the irreps the LP uses), and
    ||θ||_{2,ν} = 1, so ``margin(model, task).value`` equals ``max_margin(task).gamma``.

    Raises:
        MiMarginError: no certificate is known for the task (non-prime modulus, groups with
            non-real irreps that are not cyclic of prime order).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.certificates import certificate
        >>> model = certificate(mm.ModularAddition(p=5))
        >>> model.cfg.d_mlp, model.cfg.act_fn
        (16, 'quadratic')
    """
    pred = max_margin(require_task(task, "certificate"))
    if pred.gamma is None:
        raise MiMarginError(f"no max-margin certificate for {task!r}: " + "; ".join(pred.reasons))
    W_in, W_out = WEIGHTS[type(task.algebra.domain)](task, pred)
    W_in, W_out = _encode(task, W_in, W_out)
    return _build(task, W_in, W_out, pred.degree)


def _cyclic(task: Task, pred: Prediction) -> tuple[np.ndarray, np.ndarray]:
    return modular_weights(task.algebra.order, task.algebra.k)


def _group(task: Task, pred: Prediction) -> tuple[np.ndarray, np.ndarray]:
    G = task.algebra.domain.group()
    if pred.isomorphism is not None:      # cyclic group of prime order: Theorem 7 / 4.1
        return _relabel(*modular_weights(G.order, task.algebra.k), pred.isomorphism)
    return group_weights(G, pred)


def _cube(task: SparseParity, pred: Prediction) -> tuple[np.ndarray, np.ndarray]:
    return parity_weights(task.n, task.support)


#: the certificate's weights over group elements, per kind of domain (tasks/algebra.py)
WEIGHTS: dict[type, Callable[[Any, Prediction], tuple[np.ndarray, np.ndarray]]] = {
    Cyclic: _cyclic, Group: _group, Cube: _cube}


def _encode(task: Task, W_in: np.ndarray, W_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights over group elements moved to the task's tokens and classes (its encoding): operand
    i of token t reads the row of its element, class c the column of its element."""
    alg = task.algebra
    if alg.encoding is None:
        return W_in, W_out
    rows = [alg.operand_elements(i).numpy() for i in range(alg.k)]
    return (np.stack([W_in[i][rows[i]] for i in range(alg.k)]),
            W_out[:, alg.encoding.elements.numpy()])

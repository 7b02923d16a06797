"""Max-margin predictions for finite-group composition (Morwani et al. 2024, Thm 9; docs/mathematics.md §1.5).

Theorem 9 (quadratic network, L_{2,3} norm, k = 2) needs every irrep of G to be real and the sign
condition Σ_{ρ≠1} d_ρ^{1.5} χ_ρ(C) < 0 on every non-trivial conjugacy class C. Then
γ* = 2 / (3 sqrt(3|G|) Σ_{ρ≠1} d_ρ^{2.5}), width 2 Σ d_ρ³, every non-trivial irrep is used, the
certificate spends a share ∝ d_ρ^{2.5} of the norm budget on ρ with 2 d_ρ³ neurons.

Where the sign condition fails (A5, S6) we use **our LP extension** (docs/mathematics.md §1.5, a
reformulation of Morwani et al. App. I.2 restricted to single-irrep neurons whose logits are a
class function): maximize t s.t. Σ_ρ x_ρ (d_ρ − χ_ρ(C)) ≥ t on every non-trivial class,
Σ_ρ x_ρ d_ρ^{1.5} = 1, x ≥ 0; γ_LP = 2t/(3|G|)^{3/2}, logits ∝ Σ_ρ x_ρ χ_ρ(abc⁻¹). Its dual
variables are class weights τ ≥ 0 (per element q_C/|C|); the irreps with x_ρ > 0 are predicted.
It reproduces Theorem 9 exactly when the sign condition holds. Cyclic groups of prime order are
routed to Theorem 7 (Theorem 9's formula does not reproduce it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mi_margin.errors import MiMarginError
from mi_margin.tasks import Task, is_prime
from mi_margin.theory.formulas import (
    NetworkSpec,
    Prediction,
    cyclic_prediction,
    full_table_reason,
    network_reasons,
)

THEOREM_9 = "Morwani et al. 2024, Theorem 9"
LP_EXTENSION = "LP extension of Theorem 9 (ours, docs/mathematics.md §1.5; not a theorem of the paper)"
#: relative tolerance of the sign condition and of "x_ρ > 0" in the LP solution
SIGN_TOL = 1e-9


@dataclass(frozen=True)
class GroupData:
    """Non-trivial real irreps of G with dimensions and characters on the non-trivial classes."""

    names: tuple[str, ...]
    dims: np.ndarray            # [R]
    chars: np.ndarray           # [R, K-1]  χ_ρ on the non-trivial classes
    class_labels: tuple[str, ...]
    class_sizes: np.ndarray     # [K-1]
    order: int


def class_label(G: Any, c: int) -> str:
    """Name of conjugacy class ``c``: its representative's label and its size."""
    rep = int(G.class_representatives[c])
    return f"{G.labels[rep]} (|C|={int(G.class_sizes[c])})"


def group_data(G: Any) -> GroupData:
    """Characters of the non-trivial irreps on the non-trivial classes of G."""
    irreps = [r for r in G.irreps() if r.name != "trivial"]
    classes = [c for c in range(G.num_classes) if int(G.class_representatives[c]) != G.identity]
    reps = G.class_representatives[classes]
    return GroupData(names=tuple(r.name for r in irreps),
                     dims=np.array([r.dim for r in irreps], dtype=np.float64),
                     chars=np.array([r.character[reps] for r in irreps], dtype=np.float64),
                     class_labels=tuple(class_label(G, c) for c in classes),
                     class_sizes=G.class_sizes[classes].astype(np.float64), order=G.order)


def sign_sums(data: GroupData) -> np.ndarray:
    """Σ_{ρ≠1} d_ρ^{1.5} χ_ρ(C) for every non-trivial class C (Thm 9 needs all < 0)."""
    return (data.dims[:, None] ** 1.5 * data.chars).sum(axis=0)


def theorem9_gamma(dims: np.ndarray, order: int) -> float:
    """γ* = 2 / (3 sqrt(3|G|) Σ_{ρ≠1} d_ρ^{2.5}) (Morwani et al. Thm 9)."""
    return 2.0 / (3.0 * math.sqrt(3.0 * order) * float((dims**2.5).sum()))


def lemma19_class_weights(data: GroupData) -> np.ndarray:
    """τ per element of each non-trivial class: −Σ_ρ z_ρ χ_ρ(C), z_ρ = d^{1.5}/Σ d^{2.5} (Lemma 19)."""
    z = data.dims**1.5 / float((data.dims**2.5).sum())
    return -(z[:, None] * data.chars).sum(axis=0)


@dataclass(frozen=True)
class LPSolution:
    """Solution of the group max-margin LP (our extension; module docstring).

    Attributes:
        gamma: γ_LP = 2t/(3|G|)^{3/2}; t: the LP value.
        x: logit coefficient per non-trivial irrep (Σ x_ρ d_ρ^{1.5} = 1).
        class_weights: dual weight q_C of every non-trivial class (Σ q_C = 1).
        forced, possible: per irrep, whether x_ρ > 0 in every optimum / in some optimum.
    """

    gamma: float
    t: float
    x: np.ndarray
    class_weights: np.ndarray
    forced: np.ndarray
    possible: np.ndarray


def _solve(c: np.ndarray, A_ub: np.ndarray, A_eq: np.ndarray, b_eq: np.ndarray) -> Any:
    n = len(c)
    from scipy.optimize import linprog  # scipy loads when first used, not at ``import mi_margin``

    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(len(A_ub)), A_eq=A_eq, b_eq=b_eq,
                  bounds=[(0, None)] * (n - 1) + [(None, None)], method="highs")
    if res.status != 0:
        raise MiMarginError(f"the group max-margin LP failed: {res.message}")
    return res


def solve_lp(data: GroupData) -> LPSolution:
    """Solve max t s.t. Σ x_ρ(d_ρ − χ_ρ(C)) ≥ t ∀C≠1, Σ x_ρ d_ρ^{1.5} = 1, x ≥ 0 (HiGHS).

    Also finds which irreps are used in every / some optimal solution (min / max of x_ρ over the
    optimal face), so a non-unique optimum is reported honestly.
    """
    R = len(data.names)
    # variables (x_1..x_R, t); constraints t − Σ x_ρ (d_ρ − χ_ρ(C)) ≤ 0
    A_ub = np.hstack([-(data.dims[:, None] - data.chars).T, np.ones((data.chars.shape[1], 1))])
    A_eq = np.append(data.dims**1.5, 0.0)[None]
    obj = np.zeros(R + 1)
    obj[-1] = -1.0
    res = _solve(obj, A_ub, A_eq, np.array([1.0]))
    t = -float(res.fun)
    face_eq = np.vstack([A_eq, obj[None]])
    face_b = np.array([1.0, -t])
    forced, possible = np.zeros(R, bool), np.zeros(R, bool)
    for r in range(R):
        e = np.zeros(R + 1)
        e[r] = 1.0
        lo = _solve(e, A_ub, face_eq, face_b).fun
        hi = -_solve(-e, A_ub, face_eq, face_b).fun
        forced[r], possible[r] = lo > SIGN_TOL, hi > SIGN_TOL
    x = np.where(res.x[:R] > SIGN_TOL, res.x[:R], 0.0)
    q = -np.asarray(res.ineqlin.marginals, dtype=np.float64)
    return LPSolution(gamma=2.0 * t / (3.0 * data.order) ** 1.5, t=t, x=x,
                      class_weights=np.clip(q, 0.0, None), forced=forced, possible=possible)


def lp_max_margin(G: Any) -> LPSolution:
    """The LP extension's solution for group G (all irreps must be real).

    Example:
        >>> from mi_margin import groups
        >>> sol = lp_max_margin(groups.get("S3"))
        >>> bool(sol.forced.all())
        True
    """
    bad = [r.name for r in G.irreps() if r.kind != "real"]
    if bad:
        raise MiMarginError(f"the group LP needs real irreps; {G.name} has non-real {bad}")
    return solve_lp(group_data(G))


def cyclic_isomorphism(G: Any) -> tuple[int, ...]:
    """For a cyclic group: element -> exponent of a generator (the smallest non-identity one)."""
    n = G.order
    gen = next(g for g in range(n) if g != G.identity and int(G.element_orders[g]) == n)
    iso = [0] * n
    x = G.identity
    for i in range(n):
        iso[x] = i
        x = int(G.table[x, gen])
    return tuple(iso)


def group_prediction(task: Task, net: NetworkSpec) -> Prediction:
    """Prediction for composition in the task's group: Thm 7/4.1 (C_p), Thm 9, or the LP extension."""
    G, k = task.algebra.domain.group(), task.algebra.k
    extra = full_table_reason(task)
    if is_prime(G.order) and G.order > 2:
        note = (f"{G.name} is cyclic of prime order {G.order}: routed to the Z_p theorem "
                f"(frequencies relative to the generator {G.labels[cyclic_isomorphism(G).index(1)]}"
                "); Theorem 9 does not cover it (complex irreps)")
        return cyclic_prediction(G.order, k, net, extra, task.kind, notes=(note,),
                                 isomorphism=cyclic_isomorphism(G))
    irreps = G.irreps()
    nonreal = [f"{r.name} ({r.kind})" for r in irreps if r.kind != "real"]
    hyp = {"all_irreps_real": not nonreal}
    base: dict[str, Any] = {"task_kind": task.kind, "nu": 3,
            "labels": tuple(r.name for r in irreps if r.name != "trivial")}
    if k != 2:
        return Prediction(theorem=THEOREM_9, gamma=None, applies=False, hypotheses=hyp,
                          reasons=(f"Theorem 9 is for k=2 operands, got k={k}", *extra), **base)
    if nonreal:
        return Prediction(theorem=THEOREM_9, gamma=None, applies=False, hypotheses=hyp,
                          reasons=("not all irreps are real: " + ", ".join(nonreal), *extra),
                          **base)
    data = group_data(G)
    sums = sign_sums(data)
    scale = float((data.dims**2.5).sum())
    fails = sums >= -SIGN_TOL * scale
    hyp["sign_condition"] = not fails.any()
    failed = tuple(lab for lab, f in zip(data.class_labels, fails) if f)
    common = {"hypotheses": hyp, "failed_classes": failed,
              "sign_sums": dict(zip(data.class_labels, sums.tolist())),
              "neuron_form": ("u, v, w of every neuron spanned by the matrix coefficients "
                              "g ↦ ρ(g)_ij of one non-trivial irrep ρ"), **base}
    if not fails.any():
        return _theorem9(data, net, extra, common)
    return _lp_prediction(G, data, net, extra, common)


def _theorem9(data: GroupData, net: NetworkSpec, extra: list[str], common: dict[str, Any]
              ) -> Prediction:
    bound = int(2 * (data.dims**3).sum())
    reasons = extra + network_reasons(net, 2, bound)
    share = data.dims**2.5 / float((data.dims**2.5).sum())
    return Prediction(
        theorem=THEOREM_9, gamma=theorem9_gamma(data.dims, data.order), applies=not reasons,
        reasons=tuple(reasons), width_bound=bound, irreps=data.names,
        budget_share=dict(zip(data.names, share.tolist())),
        neurons_per_irrep={n: int(2 * d**3) for n, d in zip(data.names, data.dims)},
        class_weights=dict(zip(data.class_labels, lemma19_class_weights(data).tolist())),
        logit_coefficients=dict(zip(data.names, (data.dims / (data.dims**2.5).sum()).tolist())),
        notes=("budget share ∝ d^2.5 and 2d³ neurons per irrep are those of the certificate "
               "construction (Lemma 20); the theorem requires every non-trivial irrep used",),
        **common)


def _lp_prediction(G: Any, data: GroupData, net: NetworkSpec, extra: list[str],
                   common: dict[str, Any]) -> Prediction:
    sol = solve_lp(data)
    used = sol.x > 0
    bound = int(2 * (data.dims[used] ** 3).sum())
    failed = ", ".join(common["failed_classes"])
    reasons = [f"Theorem 9's sign condition fails on {failed}; the numbers are from our LP "
               "extension", *extra, *network_reasons(net, 2, bound)]
    notes = [f"irreps forced in every LP optimum: "
             f"{[n for n, f in zip(data.names, sol.forced) if f]}"]
    if not np.array_equal(sol.forced, sol.possible):
        notes.append("the LP optimum is not unique; other optima may also use "
                     f"{[n for n, f, p in zip(data.names, sol.forced, sol.possible) if p and not f]}")
    notes.append("max margin if Lemma 18 holds for the LP's dual class weights (not proven)")
    share = sol.x * data.dims**1.5
    return Prediction(
        theorem=LP_EXTENSION, gamma=sol.gamma, applies=False, reasons=tuple(reasons),
        notes=tuple(notes), width_bound=bound, extension=True,
        irreps=tuple(n for n, u in zip(data.names, used) if u),
        budget_share=dict(zip(data.names, (share / share.sum()).tolist())),
        neurons_per_irrep={n: int(2 * d**3) if u else 0
                           for n, d, u in zip(data.names, data.dims, used)},
        class_weights=dict(zip(data.class_labels, (sol.class_weights / data.class_sizes).tolist())),
        logit_coefficients=dict(zip(data.names, sol.x.tolist())), **common)

"""The closed-form side of the max-margin predictions: the :class:`Prediction` record, the network
family it is for, and γ* for k-input modular addition and sparse parity (the group case, which needs
a linear program, is :mod:`mi_margin.theory.group_theory`; the dispatch over tasks is
:mod:`mi_margin.theory.predictions`).

- k-input modular addition, activation x^k: Morwani et al. (2024) Thm 7 (k = 2) and Li et al.
  (2024) Thm 4.1 (general k) — docs/mathematics.md §1.3, §2.2.
- (n, k)-sparse parity, activation x^k: Morwani et al. Thm 8 — §1.4.
- finite-group composition, quadratic activation: Morwani et al. Thm 9 and, where its sign
  condition fails, our LP extension — §1.5 (see :mod:`mi_margin.theory.group_theory`).

Every γ* is computed from its formula; a :class:`Prediction` also says whether the theorem covers
the given task and model (prime p, activation, width, biases, full dataset) and why not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mi_margin.errors import MiMarginError
from mi_margin.tasks import SparseParity, Task, is_prime

ACTIVATIONS = ("quadratic", "power", "relu", "gelu")


@dataclass(frozen=True)
class Prediction:
    """The max-margin prediction for one task and network family.

    Attributes:
        theorem: which result the numbers come from.
        task_kind: the task's ``kind``.
        gamma: γ*, the max L_{2,ν}-normalized margin (None where no formula is known).
        applies: True when the theorem's hypotheses hold for this task *and* network.
        reasons: why it does not apply (empty when ``applies``).
        notes: other remarks (routing, what is a construction rather than a theorem).
        nu: homogeneity degree ν of the theorem's network (the norm is L_{2,ν}).
        width_bound: the width the theorem needs (and the certificate has).
        frequencies: frequencies ζ every max-margin network uses (modular addition).
        irreps: names of the irreps it uses (groups).
        labels: the names of the structural units (``freq_ζ`` or irrep names) used as keys below.
        neuron_form: the predicted form of every neuron.
        phase_relation: the predicted phase relation (cyclic tasks), else None.
        budget_share: label -> share of Σ_i ||ω_i||^ν in the certificate construction.
        neurons_per_irrep: label -> number of neurons in the certificate construction.
        extension: True when the numbers come from our LP extension, not from a theorem.
        hypotheses: name -> whether it holds (e.g. ``all_irreps_real``, ``sign_condition``).
        failed_classes: conjugacy classes (by representative label) violating the sign condition.
        sign_sums: class -> Σ_{ρ≠1} d_ρ^{1.5} χ_ρ(C) (groups).
        class_weights: class -> τ per element of the class (the certificate's class weighting).
        logit_coefficients: label -> coefficient of χ_ρ(abc⁻¹) in the certificate's logits.
        isomorphism: for a cyclic group of prime order, element -> exponent of the generator.
    """

    theorem: str
    task_kind: str
    gamma: float | None
    applies: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    nu: int | None = None
    width_bound: int | None = None
    frequencies: tuple[int, ...] | None = None
    irreps: tuple[str, ...] | None = None
    labels: tuple[str, ...] = ()
    neuron_form: str = ""
    phase_relation: str | None = None
    budget_share: dict[str, float] | None = None
    neurons_per_irrep: dict[str, int] | None = None
    extension: bool = False
    hypotheses: dict[str, bool] = field(default_factory=dict)
    failed_classes: tuple[str, ...] = ()
    sign_sums: dict[str, float] | None = None
    class_weights: dict[str, float] | None = None
    logit_coefficients: dict[str, float] | None = None
    isomorphism: tuple[int, ...] | None = None

    @property
    def degree(self) -> int:
        """The degree ν − 1 of the theorem's activation x^(ν−1) (x^k for Z_p^k and (n, k)-parity,
        quadratic for Theorem 9's groups)."""
        if self.nu is None:
            raise MiMarginError(f"{self.theorem} states no homogeneity ν, so no activation degree")
        return self.nu - 1

    @property
    def used_labels(self) -> set[str]:
        """Labels (frequencies ``freq_ζ``, irreps, parity ``support``) the prediction uses."""
        return {lab for lab, count in (self.neurons_per_irrep or {}).items() if count > 0}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per structural unit (frequency or irrep): used?, certificate neurons, share."""
        used = self.used_labels
        rows = [{"label": lab, "used": lab in used,
                 "neurons": (self.neurons_per_irrep or {}).get(lab, 0),
                 "budget_share": (self.budget_share or {}).get(lab, 0.0)} for lab in self.labels]
        return pd.DataFrame(rows, columns=["label", "used", "neurons", "budget_share"])

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a flat dict."""
        return {"theorem": self.theorem, "gamma": self.gamma, "applies": self.applies,
                "reasons": "; ".join(self.reasons), "notes": "; ".join(self.notes),
                "nu": self.nu, "width_bound": self.width_bound, "extension": self.extension}


@dataclass(frozen=True)
class NetworkSpec:
    """The network a prediction is asked about (what the theorem's hypotheses are checked on)."""

    act_fn: str | None = None
    act_degree: int | None = None
    width: int | None = None
    biases: bool = False
    input_style: str = "theory"
    model_kind: str = "mlp"

    def degree(self, default: int) -> int | None:
        """Polynomial degree of the activation (the theorem's degree when act_fn is None)."""
        if self.act_fn is None:
            return default
        if self.act_fn == "quadratic":
            return 2
        if self.act_fn == "power":
            return default if self.act_degree is None else self.act_degree
        return None


def network_reasons(net: NetworkSpec, degree: int, width_bound: int) -> list[str]:
    """Why the theorem (activation x^degree, no biases, width ≥ bound) does not cover ``net``."""
    reasons = []
    if net.model_kind != "mlp":
        reasons.append(f"the theorem is about a one-hidden-layer MLP, not a {net.model_kind}")
    elif net.input_style != "theory":
        reasons.append(f"input_style={net.input_style!r}: the theorem's neurons read each operand "
                       "through their own untied map (input_style='theory')")
    got = net.degree(degree)
    if got != degree:
        what = net.act_fn if got is None else f"x^{got}"
        reasons.append(f"the theorem needs activation x^{degree}, got {what}")
    if net.biases:
        reasons.append("the theorem's network has no biases (biases break homogeneity)")
    if net.width is not None and net.width < width_bound:
        reasons.append(f"width {net.width} < the theorem's bound {width_bound} "
                       "(γ* is then only an upper bound)")
    return reasons


def full_table_reason(task: Task) -> list[str]:
    """The theorems are about the full dataset; a training split changes the max margin."""
    if task.train_fraction < 1.0:
        return [f"train_fraction={task.train_fraction}: the theorem's dataset is the full table "
                "(γ* still bounds the margin on all examples)"]
    return []


# -- modular addition (Morwani Thm 7, Li Thm 4.1) ----------------------------------------------
def modular_gamma(p: int, k: int) -> float:
    """γ* = 2·k! / ((2k+2)^{(k+1)/2} (p−1) p^{(k−1)/2}) (Li et al. Thm 4.1; k = 2 is Morwani's
    sqrt(2/27)/(sqrt(p)(p−1)), Thm 7)."""
    return 2 * math.factorial(k) / ((2 * k + 2) ** ((k + 1) / 2) * (p - 1) * p ** ((k - 1) / 2))


def modular_width_bound(p: int, k: int) -> int:
    """m ≥ 2^{2k−2}(p−1): 2^{2k−1} neurons for each of the (p−1)/2 frequencies."""
    return 2 ** (2 * k - 2) * (p - 1)


def cyclic_prediction(p: int, k: int, net: NetworkSpec, extra_reasons: list[str],
                      task_kind: str, notes: tuple[str, ...] = (),
                      isomorphism: tuple[int, ...] | None = None) -> Prediction:
    """Prediction for k-input addition in Z_p (also used for cyclic groups of prime order)."""
    theorem = ("Morwani et al. 2024, Theorem 7" if k == 2
               else "Li et al. 2024, Theorem 4.1")
    if not (is_prime(p) and p > 2) or k < 2:
        why = (f"p={p} is not an odd prime" if not (is_prime(p) and p > 2)
               else f"k={k}: the theorem is for k >= 2 operands")
        return Prediction(theorem=theorem, task_kind=task_kind, gamma=None, applies=False,
                          reasons=(why, *extra_reasons), notes=notes, nu=k + 1,
                          hypotheses={"odd_prime_p": is_prime(p) and p > 2})
    bound = modular_width_bound(p, k)
    reasons = extra_reasons + network_reasons(net, k, bound)
    freqs = tuple(range(1, (p - 1) // 2 + 1))
    labels = tuple(f"freq_{z}" for z in freqs)
    per = 2 ** (2 * k - 1)
    ops = ", ".join(f"u_{i}(a_{i}) = β cos(θ_{i} + 2πζa_{i}/p)" for i in range(1, k + 1))
    phase = " + ".join(f"θ_{i}" for i in range(1, k + 1)) + " = θ_w (mod 2π)"
    return Prediction(
        theorem=theorem, task_kind=task_kind, gamma=modular_gamma(p, k), applies=not reasons,
        reasons=tuple(reasons), notes=notes, nu=k + 1, width_bound=bound, frequencies=freqs,
        labels=labels,
        neuron_form=f"one frequency ζ per neuron: {ops}, w(c) = β cos(θ_w + 2πζc/p)",
        phase_relation=phase + " with θ the DFT phases of u_i, w at ζ",
        budget_share={lab: 1.0 / len(labels) for lab in labels},
        neurons_per_irrep={lab: per for lab in labels},
        hypotheses={"odd_prime_p": True}, isomorphism=isomorphism)


# -- sparse parity (Morwani Thm 8) -------------------------------------------------------------
def parity_gamma(k: int) -> float:
    """γ* = k!·sqrt(2 (k+1)^{−(k+1)}) (Morwani et al. Thm 8)."""
    return math.factorial(k) * math.sqrt(2 * (k + 1) ** (-(k + 1)))


def parity_prediction(task: SparseParity, net: NetworkSpec) -> Prediction:
    """Prediction for (n, k)-sparse parity with activation x^k (Morwani et al. Thm 8)."""
    k, bound = task.k, 2 ** (task.k - 1)
    reasons = full_table_reason(task) + network_reasons(net, k, bound)
    if not task.whole_grid:
        reasons.insert(0, f"the dataset is a sample of {len(task.labels)} points drawn at "
                          f"random, not the whole cube {{±1}}^{task.n} the theorem assumes")
    support = ", ".join(str(j) for j in task.support)
    return Prediction(
        theorem="Morwani et al. 2024, Theorem 8", task_kind=task.kind, gamma=parity_gamma(k),
        applies=not reasons, reasons=tuple(reasons), nu=k + 1, width_bound=bound,
        labels=("support",),
        neuron_form=(f"spt(u) = S = {{{support}}}, |u_j| = ||w|| on S, w ∈ span((1, −1)), "
                     "(Π_{j∈S} u_j)·(w_+ − w_−) ≥ 0"),
        budget_share={"support": 1.0}, neurons_per_irrep={"support": bound})

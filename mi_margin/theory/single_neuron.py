"""The single-neuron problem behind every max-margin certificate (Morwani et al. 2024, Lemma 6).

With the certificate's distribution q* (uniform over the dataset) and class weighting τ, the
expected class-weighted margin of a network is a sum over neurons of
``ψ'(ω) = E_{x~q*}[act(pre_ω(x)) · (w[y] − Σ_{c≠y} τ(x)[c] w[c])]``. With the L_{2,ν} norm the best
value over the unit ball is the best single unit-norm neuron ψ*, and γ* = ψ* whenever a certificate
network exists (docs/mathematics.md §1.2). This module evaluates ψ' and finds ψ* numerically (random-restart
L-BFGS on the sphere), an independent check of every γ* formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float64
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.tasks import Group, Task
from mi_margin.theory.group_theory import class_label
from mi_margin.theory.predictions import Prediction, max_margin


def class_weights(task: Task, pred: Prediction | None = None) -> Float64[Tensor, "N C"]:
    """τ(x)[c] for every example: uniform over wrong classes (Z_p, Thm 7/4.1), the other class
    (parity), or the prediction's class-function weights (groups: Lemma 19 or the LP dual)."""
    pred = pred or max_margin(task)
    N, C = len(task.labels), task.d_vocab_out
    y = task.labels
    if isinstance(task.algebra.domain, Group) and pred.isomorphism is None:
        if pred.class_weights is None:
            raise MiMarginError(f"no class weighting is known for {task!r}")
        G = task.algebra.domain.group()
        per_class = torch.zeros(G.num_classes, dtype=torch.float64)
        for c in range(G.num_classes):
            per_class[c] = pred.class_weights.get(class_label(G, c), 0.0)
        table = torch.as_tensor(G.table.copy())
        inv = torch.as_tensor(G.inverse.copy())
        classes = task.algebra.encoding.elements if task.algebra.encoding else torch.arange(C)
        g = table[task.algebra.product(task)[:, None], inv[classes][None, :]]   # (ab)·c⁻¹
        tau = per_class[torch.as_tensor(G.class_of.copy())[g]]
    else:
        tau = torch.full((N, C), 1.0 / (C - 1), dtype=torch.float64)
    return tau.scatter(1, y[:, None], 0.0)


def _pre(task: Task, omegas: Tensor) -> Tensor:
    """Pre-activations [R, N] of R neurons ω = (u_1..u_k, w) flattened as [R, k·d_in + C]."""
    C = task.d_vocab_out
    if task.algebra.inputs == "vectors":
        return omegas[:, :-C] @ task.inputs.double().T
    k, d = task.k, task.d_vocab
    u = omegas[:, : k * d].reshape(-1, k, d)
    return torch.stack([u[:, i, task.inputs[:, i]] for i in range(k)]).sum(0)


def psi(task: Task, omegas: Float64[Tensor, "R P"], tau: Tensor, degree: int
        ) -> Float64[Tensor, " R"]:
    """ψ'(ω) for R neurons at once (activation x^degree, uniform q* over all examples)."""
    C = task.d_vocab_out
    w = omegas[:, -C:]
    weight = w[:, task.labels] - w @ tau.T                     # R N
    return (_pre(task, omegas) ** degree * weight).mean(dim=1)


@dataclass(frozen=True)
class SingleNeuronOptimum:
    """ψ* found numerically: ``value`` (best over restarts), ``values`` per restart, best ``omega``."""

    value: float
    values: tuple[float, ...]
    omega: Float64[Tensor, " P"]


def single_neuron_optimum(task: Task, restarts: int = 8, steps: int = 200, seed: int = 0,
                          pred: Prediction | None = None) -> SingleNeuronOptimum:
    """Maximize ψ'(ω/||ω||) from ``restarts`` random starts with L-BFGS (float64).

    Args:
        task: the task (the full dataset is q*'s support).
        restarts, steps, seed: random starts, L-BFGS iterations each, and their seed.
        pred: the prediction whose class weighting τ is used (default ``max_margin(task)``).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.single_neuron import single_neuron_optimum
        >>> task = mm.ModularAddition(p=5)
        >>> opt = single_neuron_optimum(task, restarts=4)
        >>> abs(opt.value / max_margin(task).gamma - 1) < 1e-6
        True
    """
    pred = pred or max_margin(task)
    tau = class_weights(task, pred)
    degree = pred.degree
    fields = task.mlp_fields()
    n_in = fields["k"] * fields["d_vocab"]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(restarts, n_in + task.d_vocab_out, generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=steps, tolerance_grad=1e-14, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        opt.zero_grad()
        value = -psi(task, x / x.norm(dim=1, keepdim=True), tau, degree).sum()
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        omegas = x / x.norm(dim=1, keepdim=True)
        values = psi(task, omegas, tau, degree)
    best = int(values.argmax())
    return SingleNeuronOptimum(value=float(values[best]), values=tuple(values.tolist()),
                               omega=omegas[best].clone())

"""What margin-maximization theory predicts for a task and a network: γ*, width, neuron structure.

- k-input modular addition, activation x^k: Morwani et al. (2024) Thm 7 (k = 2) and Li et al.
  (2024) Thm 4.1 (general k) — docs/mathematics.md §1.3, §2.2.
- (n, k)-sparse parity, activation x^k: Morwani et al. Thm 8 — §1.4.
- finite-group composition, quadratic activation: Morwani et al. Thm 9 and, where its sign
  condition fails, our LP extension — §1.5 (see :mod:`mi_margin.theory.group_theory`).

Every γ* is computed from its formula (:mod:`mi_margin.theory.formulas`); a :class:`Prediction`
also says whether the theorem covers the given task and model (prime p, activation, width, biases,
full dataset) and why not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.models.bridge import native_config
from mi_margin.models.compat import check_fits, is_bridge, model_kind
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import TASKS, Cube, Cyclic, Group, Task
from mi_margin.theory.formulas import (
    ACTIVATIONS,
    NetworkSpec,
    Prediction,
    cyclic_prediction,
    full_table_reason,
    modular_gamma,
    parity_gamma,
    parity_prediction,
)
from mi_margin.theory.group_theory import group_prediction

__all__ = ["Prediction", "max_margin", "modular_gamma", "parity_gamma", "prediction_for"]


def _cyclic(task: Task, net: NetworkSpec) -> Prediction:
    """k-fold composition in Z_n (under any encoding: margins do not see a relabelling)."""
    alg = task.algebra
    pred = cyclic_prediction(alg.order, alg.k, net, full_table_reason(task), task.kind)
    if alg.encoding is None or pred.hypotheses.get("odd_prime_p", True):
        return pred
    return replace(pred, reasons=(_encoded_order(task, pred.theorem), *pred.reasons[1:]))


def _encoded_order(task: Task, theorem: str) -> str:
    """Why an encoded cyclic group is outside the theorem, naming the group the task composes
    in (Power et al.'s a·b and a/b mod p compose in Z_p* ≅ Z_(p−1)), not its order alone."""
    n, op, p = task.algebra.order, getattr(task, "op", None), getattr(task, "p", None)
    group = (f"{op} mod {p} composes in the group Z_{p}* ≅ Z_{n} (by discrete logs)"
             if op in ("multiply", "divide") else f"{task.kind} composes in Z_{n}")
    return (f"{group}, whose order {n} is not an odd prime; {theorem} is for a cyclic group of "
            "odd prime order")


def require_task(value: Any, what: str) -> Task:
    """``value`` if it is a task; else a :class:`MiMarginError` saying that ``what`` takes one,
    naming the type it got (a model's repr is pages long) and, for a group's name,
    the task to make of it."""
    if isinstance(value, Task):
        return value
    if isinstance(value, str):
        hint = ("mm.ModularAddition(p=113)" if value in TASKS
                else f"mm.GroupComposition({value!r}) for a group, or mm.ModularAddition(p=113)")
        raise MiMarginError(f"{what} takes a task, got the string {value!r}: pass {hint}")
    got = "None" if value is None else f"a {type(value).__name__}"
    raise MiMarginError(f"{what} takes a task (e.g. mm.ModularAddition(p=113)), got {got}")


#: the theorem family of each kind of domain (tasks/algebra.py)
PREDICTIONS: dict[type, Callable[[Any, NetworkSpec], Prediction]] = {
    Cyclic: _cyclic, Group: group_prediction, Cube: parity_prediction}


# -- dispatch ----------------------------------------------------------------------------------
def max_margin(task: Task, act_fn: str | None = None, width: int | None = None,
               biases: bool = False, *, act_degree: int | None = None,
               input_style: str = "theory", model_kind: str = "mlp") -> Prediction:
    """The max-margin prediction for ``task`` and a network described by the keywords.

    Args:
        task: any task; its algebra's domain chooses the theorem (Z_n: Thm 7/4.1, a group: Thm 9
            or the LP extension, the cube: Thm 8).
        act_fn: "quadratic", "power" (degree ``act_degree``, default the task's k), "relu",
            "gelu", or None for the theorem's own activation (x^k).
        width: number of hidden neurons m (None: assume wide enough).
        biases: whether the network has biases.
        input_style, model_kind: the network family ("theory"/"embed", "mlp"/"transformer").

    Returns:
        :class:`Prediction`. γ* is given whenever the theorem's formula exists for the task, also
        when the network is outside the theorem (``applies`` False, ``reasons`` says why).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.predictions import max_margin
        >>> pred = max_margin(mm.ModularAddition(p=7), act_fn="quadratic", width=30)
        >>> pred.applies, pred.width_bound, pred.frequencies
        (True, 24, (1, 2, 3))
    """
    require_task(task, "max_margin")
    if act_fn is not None and act_fn not in ACTIVATIONS:
        raise MiMarginError(f"act_fn must be None or one of {list(ACTIVATIONS)}, "
                            f"got act_fn={act_fn!r}")
    if width is not None and (not isinstance(width, int) or width < 1):
        raise MiMarginError(f"width must be None or a positive integer, got width={width!r}")
    net = NetworkSpec(act_fn, act_degree, width, bool(biases), input_style, model_kind)
    return PREDICTIONS[type(task.algebra.domain)](task, net)


def prediction_for(model: HookedModel, task: Task) -> Prediction:
    """:func:`max_margin` for the network family of ``model`` (read from its config; a
    ``TransformerBridge``'s from its native twin's, :func:`~mi_margin.models.bridge.native_config`)."""
    check_fits(model, task)
    cfg = native_config(model) if is_bridge(model) else model.cfg
    kind = model_kind(model)
    return max_margin(task, act_fn=cfg.act_fn, width=cfg.d_mlp, biases=cfg.use_biases,
                      act_degree=cfg.act_degree, input_style=getattr(cfg, "input_style", "theory"),
                      model_kind=kind)

"""Does a model fit a task? The one check that training, every analyzer and the theory call.

A model fits a task when it reads the task's inputs and writes the task's classes: a transformer
needs the task's operand vocabulary plus '=' and a context of k operands and '='; an MLP needs
the task's vocabulary and k (sparse parity: the vector input of length n). Analyses also refuse a
model whose weights are not finite, since every number they return would be meaningless.
"""

from __future__ import annotations

from typing import Any

import torch

from mi_margin.errors import MiMarginError

MODEL_KINDS = ("transformer", "mlp")


def model_kind(model: Any) -> str:
    """``"transformer"`` or ``"mlp"`` (the models' ``model_kind`` attribute); anything else is an error."""
    kind = getattr(model, "model_kind", None)
    if kind not in MODEL_KINDS:
        raise MiMarginError(f"expected a HookedOneLayerTransformer or HookedMLP, got "
                            f"{type(model).__name__} (model_kind={kind!r})")
    return str(kind)


def expected_shape(model: Any, task: Any) -> dict[str, Any]:
    """The config fields a model of ``model``'s kind needs to fit ``task``."""
    if model_kind(model) == "transformer":
        return {"d_vocab": task.d_vocab + 1, "d_vocab_out": task.d_vocab_out, "n_ctx": task.n_ctx}
    if getattr(task, "kind", "") == "sparse_parity":
        return {"d_vocab": task.n, "d_vocab_out": 2, "k": 1, "input_kind": "vector"}
    return {"d_vocab": task.d_vocab, "d_vocab_out": task.d_vocab_out, "k": task.k,
            "input_kind": "one_hot"}


def check_fits(model: Any, task: Any, *, finite: bool = False) -> None:
    """Raise :class:`MiMarginError` naming every mismatch between ``model`` and ``task``.

    With ``finite=True`` also refuse NaN or infinite weights (what the analyzers ask for).

    Example:
        >>> import mi_margin as mm
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(mm.ModularAddition(p=11), d_mlp=4))
        >>> check_fits(mlp, mm.ModularAddition(p=7))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: the HookedMLP does not fit ModularAddition(p=7, k=2, ...
    """
    want = expected_shape(model, task)
    wrong = {name: (getattr(model.cfg, name, None), value) for name, value in want.items()
             if getattr(model.cfg, name, None) != value}
    if wrong:
        what = ", ".join(f"{n}={have!r} (the task needs {need!r})" for n, (have, need) in wrong.items())
        raise MiMarginError(f"the {type(model).__name__} does not fit {task!r}: {what}; build it with "
                            f"{type(model.cfg).__name__}.for_task(task, ...)")
    if finite:
        check_finite_weights(model)


def check_finite_weights(model: Any) -> None:
    """Raise :class:`MiMarginError` naming the first weight that holds NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise MiMarginError(f"weight {name!r} holds NaN or inf values; the model cannot be "
                                "analysed (load an earlier checkpoint)")

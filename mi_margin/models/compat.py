"""Does a model fit a task? The one check that training, every analyzer and the theory call.

A model fits a task when it reads the task's inputs and writes the task's classes: a transformer
needs the task's operand vocabulary plus '=' and a context of k operands and '='; an MLP needs
the task's vocabulary and k (sparse parity: the vector input of length n). Analyses also refuse a
model whose weights are not finite, since every number they return would be meaningless.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task

MODEL_KINDS = ("transformer", "mlp")


def model_kind(model: HookedModel) -> str:
    """``"transformer"`` or ``"mlp"``; anything else is an error.

    Our models say so in their ``model_kind`` attribute; a TransformerLens ``TransformerBridge``
    (``model.to_bridge()``) is recognised by its class, without importing TransformerLens here.
    """
    kind = getattr(model, "model_kind", None)
    if kind is None and is_bridge(model):
        kind = "transformer"
    if kind not in MODEL_KINDS:
        raise MiMarginError(f"expected a HookedOneLayerTransformer or HookedMLP, got "
                            f"{type(model).__name__} (model_kind={kind!r})")
    return str(kind)


def is_bridge(model: Any) -> bool:
    """Whether ``model`` is a TransformerLens ``TransformerBridge`` (recognised by its class,
    without importing TransformerLens).

    Example:
        >>> import mi_margin as mm
        >>> is_bridge(mm.HookedMLP(mm.MLPConfig(d_vocab=5, d_vocab_out=5, k=2, d_mlp=8)))
        False
    """
    return any(c.__name__ == "TransformerBridge" for c in type(model).__mro__)


def refuse_bridge(model: Any, what: str, instead: str) -> None:
    """Raise :class:`MiMarginError` if ``model`` is a ``TransformerBridge``: ``what`` (e.g.
    ``"mm.train"``) works on the native weights, so the message says how to convert it and what
    to do ``instead``.

    Example:
        >>> import mi_margin as mm
        >>> refuse_bridge(mm.HookedMLP(mm.MLPConfig(d_vocab=5, d_vocab_out=5, k=2, d_mlp=8)),
        ...               "mm.save", "save the native model")    # an MLP passes
    """
    if is_bridge(model):
        raise MiMarginError(f"{what} takes a HookedOneLayerTransformer or HookedMLP, not a "
                            f"TransformerBridge: convert it with model = "
                            f"mm.HookedOneLayerTransformer.from_bridge(bridge) and {instead}")


def expected_shape(model: HookedModel, task: Task) -> dict[str, Any]:
    """The config fields a model of ``model``'s kind needs to fit ``task``."""
    if model_kind(model) == "transformer":
        return {"d_vocab": task.d_vocab + 1, "d_vocab_out": task.d_vocab_out, "n_ctx": task.n_ctx}
    return dict(task.mlp_fields())


def check_fits(model: HookedModel, task: Task, *, finite: bool = False) -> None:
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
    from mi_margin.tasks.base import check_task

    check_task(task, "a task is needed beside the model")
    if not hasattr(model, "cfg"):
        raise MiMarginError(f"a mi_margin model (HookedMLP, HookedOneLayerTransformer) is needed, "
                            f"got {type(model).__name__}")
    want = expected_shape(model, task)
    wrong = {name: (getattr(model.cfg, name, None), value) for name, value in want.items()
             if getattr(model.cfg, name, None) != value}
    if wrong:
        what = ", ".join(f"{n}={have!r} (the task needs {need!r})" for n, (have, need) in wrong.items())
        raise MiMarginError(f"the {type(model).__name__} does not fit {task!r}: {what}; build it with "
                            f"{type(model.cfg).__name__}.for_task(task, ...)")
    if finite:
        check_finite_weights(model)


def check_finite_weights(model: HookedModel) -> None:
    """Raise :class:`MiMarginError` naming the first weight that holds NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise MiMarginError(f"weight {name!r} holds NaN or inf values; the model cannot be "
                                "analysed (load an earlier checkpoint)")


# -- inputs a model can read (called by the models' forward) ----------------------------------------
def is_integer(x: Tensor) -> bool:
    """Whether ``x`` holds integers (not floats, complex numbers or bools)."""
    return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


def check_transformer_tokens(cfg: Any, tokens: Any) -> None:
    """Refuse anything but integer tokens [B, n_ctx] = [a1, ..., ak, '='] with operands below '='.

    A transformer fed ``task.inputs`` (no '=') would otherwise silently return logits for the
    wrong positions.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> cfg = mm.TransformerConfig.for_task(task, d_model=8)
        >>> check_transformer_tokens(cfg, task.inputs)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: the transformer reads integer tokens [batch, n_ctx=3] ...
    """
    n, eq = cfg.n_ctx, cfg.d_vocab - 1
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or not is_integer(tokens) \
            or tokens.shape[1] != n:
        got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
        hint = (" (task.inputs are for HookedMLP; a transformer reads task.tokens, which end in '=')"
                if isinstance(tokens, Tensor) and tokens.ndim == 2 and tokens.shape[1] == n - 1 else "")
        raise MiMarginError(f"the transformer reads integer tokens [batch, n_ctx={n}] = "
                            f"[a1, ..., a{n - 1}, '='], got {got}{hint}")
    if len(tokens) == 0:
        return
    if bool((tokens[:, -1] != eq).any()):
        raise MiMarginError(f"the last token must be '=' (token {eq}), got "
                            f"{sorted(set(tokens[:, -1].tolist()))[:5]}")
    ops = tokens[:, :-1]
    if ops.numel() and (int(ops.min()) < 0 or int(ops.max()) >= eq):
        raise MiMarginError(f"operand tokens must lie in [0, {eq}), got [{int(ops.min())}, "
                            f"{int(ops.max())}] (is the model built for this task? use "
                            "TransformerConfig.for_task(task))")


def check_answer_tokens(cfg: Any, tokens: Any) -> None:
    """Refuse tokens with no unembedding column: ``W_U`` has one per answer (``d_vocab_out``,
    usually the task's p classes), so '=' and the other input-only tokens have no residual
    direction (TransformerLens's ``tokens_to_residual_directions`` returns ``W_U[:, token]``).

    Example:
        >>> import mi_margin as mm
        >>> cfg = mm.TransformerConfig.for_task(mm.ModularAddition(p=7), d_model=8)
        >>> check_answer_tokens(cfg, 7)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: token 7 ('=') has no unembedding column: ...
    """
    values = torch.as_tensor(tokens)
    if not is_integer(values):
        raise MiMarginError(f"tokens must be integers (answer token ids), got {values.dtype}")
    outside = values[(values < 0) | (values >= cfg.d_vocab_out)].unique().tolist()
    if outside:
        names = ", ".join(f"{t} ('=')" if t == cfg.d_vocab - 1 else str(t) for t in outside[:5])
        which = f"tokens {names} have" if len(outside) > 1 else f"token {names} has"
        raise MiMarginError(f"{which} no unembedding column: W_U has one per answer, "
                            f"tokens 0..{cfg.d_vocab_out - 1} (d_vocab_out={cfg.d_vocab_out}); "
                            "'=' and other input-only tokens have no residual direction")


def check_mlp_inputs(cfg: Any, x: Any) -> None:
    """Refuse inputs a HookedMLP cannot read: anything but integer operands [B, k] in
    [0, d_vocab), or for sparse parity (``input_kind="vector"``) vectors [B, n].

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> check_mlp_inputs(mm.MLPConfig.for_task(task, d_mlp=4), task.tokens)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: this HookedMLP reads integer operands [batch, k=2] ...
    """
    if not isinstance(x, Tensor):
        raise MiMarginError(f"HookedMLP reads a tensor, got {type(x).__name__}")
    if cfg.input_kind == "vector":
        if x.ndim != 2 or x.shape[1] != cfg.d_vocab or x.is_complex() or x.dtype == torch.bool:
            raise MiMarginError(f"this HookedMLP (sparse parity, n={cfg.d_vocab}) reads ±1 vectors "
                                f"[batch, {cfg.d_vocab}] (task.inputs), got {x.dtype} {tuple(x.shape)}")
        off = x[(x != 1) & (x != -1)]
        if off.numel():
            raise MiMarginError(f"sparse-parity inputs must be ±1, got values "
                                f"{sorted(set(off.tolist()))[:5]}")
        return
    if x.ndim != 2 or not is_integer(x) or x.shape[1] != cfg.k:
        hint = ""
        if x.ndim == 2 and x.shape[1] == cfg.k + 1:
            hint = (f" (that looks like transformer tokens [{', '.join(f'a{j}' for j in range(cfg.k))}"
                    ", '='], task.tokens; pass task.inputs)")
        elif x.is_floating_point():
            hint = " (±1 vectors are sparse-parity inputs: build the MLP with MLPConfig.for_task(task))"
        raise MiMarginError(f"this HookedMLP reads integer operands [batch, k={cfg.k}] (task.inputs), "
                            f"got {x.dtype} {tuple(x.shape)}{hint}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.d_vocab):
        raise MiMarginError(f"operands must lie in [0, d_vocab={cfg.d_vocab}), got [{int(x.min())}, "
                            f"{int(x.max())}] (is the model built for this task? use "
                            "MLPConfig.for_task(task))")

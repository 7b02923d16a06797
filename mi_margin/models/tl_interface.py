"""What a TransformerLens user expects of a hooked model, shared by both model families.

TransformerLens's own utilities (``transformer_lens.patching``, ``ActivationCache`` helpers, the
head detector, logit lens) read a few runtime attributes from ``model.cfg`` (``device``,
``n_key_value_heads``, ``use_attn_result``) and call a few methods on the model (``to_tokens``,
``to_str_tokens``, ``to_single_token``, ``model(x, return_type=...)``). :class:`TLInterface`
provides them. Our configs are frozen dataclasses (they are saved with every run), so the runtime
flags are class-level defaults, not saved fields: each model holds its own copy of its config and
sets them on that copy, never on a config object another model may share.

Tokens are labelled with the operand they hold, ``"a=12"``, ``"b=5"``, ``"="`` (``a1, a2, ...`` for
k > 2 operands), because the models read numbers, not text.
"""

from __future__ import annotations

import copy
import numbers
import re
from typing import Any

import torch
from torch import Tensor

from mi_margin.checks import check_bool
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_transformer_tokens, is_integer
from mi_margin.models.evaluation import cross_entropy64

RETURN_TYPES = ("logits", "loss", "both", None)

def own_config(cfg: Any, kind: type, model: str) -> Any:
    """A private copy of ``cfg``, on which the model sets TransformerLens's runtime flags; a
    config of another ``kind`` (e.g. a TransformerConfig for an MLP) is refused by name."""
    if not isinstance(cfg, kind):
        raise MiMarginError(f"{model} needs a config of type {kind.__name__}, got "
                            f"{type(cfg).__name__} (e.g. {model}({kind.__name__}.for_task(task)))")
    return copy.copy(cfg)


def operand_names(k: int) -> list[str]:
    """``["a", "b"]`` for two operands, ``["a1", ..., "ak"]`` otherwise."""
    return ["a", "b"] if k == 2 else [f"a{i + 1}" for i in range(k)]


#: the string form of an input: operand token ids joined by "+" (whatever the operation), "="
EXPRESSION = re.compile(r"\s*\d+(\s*\+\s*\d+)*\s*=?\s*")


def check_return_type(return_type: Any, labels: Any = None, loss_per_token: Any = False) -> None:
    """Refuse a ``return_type`` TransformerLens does not know, a ``loss_per_token`` that is not a
    bool, and ``labels``/``loss_per_token=True`` where no loss is returned (they would be
    ignored)."""
    if not isinstance(return_type, (str, type(None))) or return_type not in RETURN_TYPES:
        raise MiMarginError(f"return_type must be one of {list(RETURN_TYPES)}, got {return_type!r}")
    check_bool("loss_per_token", loss_per_token)
    if return_type in ("logits", None) and (labels is not None or loss_per_token):
        given = "labels" if labels is not None else "loss_per_token=True"
        raise MiMarginError(f"{given} is only read with return_type='loss' or 'both', got "
                            f"return_type={return_type!r} (no loss is returned)")


def finish(logits: Tensor, last: Tensor, return_type: str | None, labels: Tensor | None,
           loss_per_token: bool) -> Any:
    """TransformerLens's ``return_type`` contract: logits, loss, (logits, loss) or None.

    The loss is the float64 cross-entropy of the answer read at the last position (``last``,
    [B, d_vocab_out]) against ``labels`` [B] (the task's answers, e.g. ``task.labels``): our
    models predict the answer after '=', not the next token of a text, so the labels must be given.
    """
    if return_type is None:
        return None
    if return_type == "logits":
        return logits
    if labels is None:
        raise MiMarginError(f"return_type={return_type!r} needs labels=... (the answers, e.g. "
                            "task.labels[idx]); the model predicts the answer at the last position, "
                            "not the next token")
    labels = torch.as_tensor(labels)
    if labels.shape != last.shape[:1] or not is_integer(labels):
        raise MiMarginError(f"labels must be integer [batch={last.shape[0]}], got "
                            f"{labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < last.shape[-1]:
        raise MiMarginError(f"labels must lie in [0, {last.shape[-1]}), got "
                            f"[{int(labels.min())}, {int(labels.max())}]")
    loss = cross_entropy64(last, labels.to(last.device), reduction="none" if loss_per_token else "mean")
    return loss if return_type == "loss" else (logits, loss)


class OperandInput:
    """Mixin: ``to_tokens`` of a string ``"12 + 5 ="``, a list of operands or a tensor.

    Subclasses define ``_n_operands()``, ``_operands_to_input(operands)`` (one row [1, n]),
    ``_check_input(x)`` (raise :class:`MiMarginError` on input the model cannot read) and, if they
    have single tokens to name, ``_single_token(string)``.
    """

    cfg: Any

    # -- tokens ----------------------------------------------------------------------------------
    def to_tokens(self, input: Any) -> Tensor:
        """Inputs as the model reads them, [B, n]: a tensor passes through (checked); a string
        such as ``"12 + 5 ="`` or a list of operands ``[12, 5]`` becomes one row. The operands are
        token ids, joined by "+" whatever the task's operation: for
        :class:`~mi_margin.ModularOperation`'s a·b and a/b, token t is the residue t + 1 (read
        them from ``task.tokens``).

        Example:
            >>> import mi_margin as mm
            >>> task = mm.ModularAddition(p=13)
            >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=8))
            >>> model.to_tokens("12 + 5 =").tolist()
            [[12, 5, 13]]
        """
        if isinstance(input, Tensor):
            x = input if input.ndim == 2 else input[None]
        else:
            x = self._operands_to_input(self._operands(input))
        self._check_input(x)
        return x

    def _operands(self, input: Any) -> list[int]:
        """The operands of a string ``"a + b ="`` or a list; anything else is refused."""
        if isinstance(input, str):
            if not EXPRESSION.fullmatch(input):
                raise MiMarginError(f"to_tokens reads operand token ids joined by '+', whatever "
                                    f"the task's operation (the model does not know it), e.g. "
                                    f"'12 + 5 =', got {input!r}")
            return self._count_operands([int(s) for s in re.findall(r"\d+", input)], input)
        if not isinstance(input, (list, tuple)):
            raise MiMarginError(f"to_tokens reads a tensor, a string such as '12 + 5 =' or a list "
                                f"of operands, got {type(input).__name__} {input!r}")
        bad = [v for v in input if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
        if bad:
            raise MiMarginError(f"operands must be integers, got {bad} in {list(input)!r}")
        return self._count_operands([int(v) for v in input], list(input))

    def _count_operands(self, operands: list[int], given: Any) -> list[int]:
        if len(operands) != self._n_operands():
            raise MiMarginError(f"this model reads {self._n_operands()} operands, got "
                                f"{len(operands)} in {given!r}")
        return operands

    def to_single_token(self, string: str) -> int:
        """The token of one operand value (``"12"``) or of ``"="``."""
        return self._single_token(string.strip())

    def _single_token(self, string: str) -> int:
        raise MiMarginError(f"{type(self).__name__} has no token {string!r}")

    def _operands_to_input(self, operands: list[int]) -> Tensor:
        raise NotImplementedError

    def _n_operands(self) -> int:
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        raise NotImplementedError


class TransformerInput(OperandInput):
    """The transformer's tokens [a1, ..., ak, '='], read from its config (``n_ctx``, ``d_vocab``):
    shared by :class:`~mi_margin.HookedOneLayerTransformer` and its ``TransformerBridge``, so that
    both tokenize and refuse the same inputs."""

    @property
    def eq_token(self) -> int:
        """The '=' token (the last of the input vocabulary)."""
        return int(self.cfg.d_vocab) - 1

    def _check_input(self, tokens: Tensor) -> None:
        check_transformer_tokens(self.cfg, tokens)

    def _n_operands(self) -> int:
        return int(self.cfg.n_ctx) - 1

    def _operands_to_input(self, operands: list[int]) -> Tensor:
        return torch.tensor([[*operands, self.eq_token]], device=self.cfg.device)

    def _single_token(self, string: str) -> int:
        if string == "=":
            return self.eq_token
        if not string.isdigit() or int(string) >= self.eq_token:
            raise MiMarginError(f"no token {string!r}: tokens are operands 0..{self.eq_token - 1} "
                                "and '='")
        return int(string)


class TLInterface(OperandInput):
    """Mixin for :class:`~mi_margin.HookedOneLayerTransformer` and :class:`~mi_margin.HookedMLP`.

    Subclasses define what :class:`OperandInput` asks for and ``_token_label(position, value)``.
    """

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``.to(...)``, ``.cuda()``, ``.double()``, ``.float()``, ``.half()``... also update
        ``cfg.device`` (TransformerLens reads it) and ``cfg.dtype`` (saving writes it, and loading
        builds the model from it, so it must be the weights' dtype)."""
        out = super()._apply(fn, *args, **kwargs)  # type: ignore[misc]
        for tensor in self.parameters():  # type: ignore[attr-defined]
            object.__setattr__(self.cfg, "device", str(tensor.device))
            object.__setattr__(self.cfg, "dtype", tensor.dtype)
            break
        return out

    def to_str_tokens(self, input: Any) -> list[str] | list[list[str]]:
        """Labels of the tokens, e.g. ``["a=12", "b=5", "="]`` (a list of lists for a batch).

        Example:
            >>> import mi_margin as mm
            >>> task = mm.ModularAddition(p=13)
            >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=8))
            >>> model.to_str_tokens(task.tokens[5])
            ['a=0', 'b=5', '=']
        """
        x = input if isinstance(input, Tensor) else self.to_tokens(input)
        rows = self.to_tokens(x)
        labels = [[self._token_label(i, v) for i, v in enumerate(row.tolist())] for row in rows]
        return labels[0] if (not isinstance(input, Tensor) or input.ndim == 1) else labels

    def _token_label(self, position: int, value: float) -> str:
        raise NotImplementedError

"""A minimal tokenizer for the numbers the models read, for TransformerLens code that decodes ids.

TransformerLens utilities call ``model.tokenizer`` to turn token ids into strings (the bridge's
``to_str_tokens``, the logit lens's ``top_tokens``/``decode``) or text into ids (the bridge's
``to_tokens``). Our models' tokens are operand values, so the vocabulary is the numbers
``"0"``, ..., ``"n-1"`` and, for the transformer, ``"="`` (the last id).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from mi_margin.errors import MiMarginError


class OperandTokenizer:
    """Ids ↔ strings for operands ``0..n_operands-1`` and, with ``eq_token``, ``"="``.

    Example:
        >>> tok = OperandTokenizer(n_operands=113, eq_token=113)
        >>> tok.decode([12]), tok.batch_decode([[12], [5], [113]]), tok.encode("12 + 5 =")
        ('12', ['12', '5', '='], [12, 5, 113])
    """

    padding_side = "right"
    pad_token_id = bos_token_id = eos_token_id = None
    pad_token = bos_token = eos_token = None

    def __init__(self, n_operands: int, eq_token: int | None = None):
        self.n_operands, self.eq_token = n_operands, eq_token
        self.vocab_size = n_operands + (eq_token is not None)

    def _token_string(self, token: int) -> str:
        if token == self.eq_token:
            return "="
        if not 0 <= token < self.n_operands:
            raise MiMarginError(f"no token {token}: ids are operands 0..{self.n_operands - 1}"
                                + (f" and '=' ({self.eq_token})" if self.eq_token is not None else ""))
        return str(token)

    def decode(self, ids: Any, **_: Any) -> str:
        """The tokens of ``ids`` (an id, a list or a tensor) as one space-separated string."""
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        return " ".join(self._token_string(int(t)) for t in ids)

    def batch_decode(self, sequences: Sequence[Any], **_: Any) -> list[str]:
        """:meth:`decode` of every sequence."""
        return [self.decode(ids) for ids in sequences]

    def encode(self, text: str, **_: Any) -> list[int]:
        """The ids of the numbers and ``=`` signs in ``text`` (``"12 + 5 ="`` → [12, 5, '=']);
        other characters (``+``, ``*``, spaces) separate them."""
        ids = [self.eq_token if s == "=" else int(s) for s in re.findall(r"\d+|=", text)]
        for token in ids:
            if token is None:
                raise MiMarginError(f"{text!r}: this model has no '=' token")
            self._token_string(token)
        return ids  # type: ignore[return-value]

    def __call__(self, text: str | list[str], return_tensors: str | None = None,
                 **_: Any) -> dict[str, Any]:
        """``{"input_ids": ...}`` as a Hugging Face tokenizer returns it (a [B, n] tensor with
        ``return_tensors="pt"``; every text must have the same number of tokens)."""
        texts = [text] if isinstance(text, str) else list(text)
        ids = [self.encode(t) for t in texts]
        if return_tensors is None:
            return {"input_ids": ids[0] if isinstance(text, str) else ids}
        if len({len(row) for row in ids}) > 1:
            raise MiMarginError(f"texts of different lengths {[len(r) for r in ids]}; every "
                                "input has the same operands-then-'=' shape")
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), len(ids[0]),
                                                                             dtype=torch.long)}

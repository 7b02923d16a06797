"""What an entry's analyses say about one checkpoint, to hold reduced precision to full precision.

:func:`signature` is the set of reported answers that must not change when an intermediate
checkpoint is stored in reduced precision: the number of correctly classified train and test
examples, the key frequencies (modular addition) or key irreps (groups), and, for networks of a
theorem's family, the normalized margin's ratio to γ* (to a relative tolerance: float16 keeps 11
bits). The build computes it on the full-precision weights and stores a checkpoint in float16 (or
else float32) only if the rounded copy gives the same signature; the entry records the
full-precision signature so that a test recomputes it on the shipped files.

Example:
    >>> import mi_margin as mm
    >>> task = mm.ModularAddition(p=7, train_fraction=0.5)
    >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
    >>> sorted(signature(model, task))
    ['key', 'margin_ratio', 'test_correct', 'train_correct']
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from mi_margin.analysis.spectrum import key_frequencies, key_irreps
from mi_margin.errors import NotGeneralizedWarning
from mi_margin.models.evaluation import evaluate
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task
from mi_margin.theory.explained import margin_ratio

#: relative tolerance on margin / γ* between full and reduced precision
MARGIN_RTOL = 1e-2


def key_labels(model: HookedModel, task: Task) -> Any:
    """Key frequencies (a cyclic domain) or key irreps (a group) by the API's defaults, the one
    rule per basis of :data:`~mi_margin.analysis.key_rules.KEY_RULES` (a ``KeySet`` that records
    it), or [] (the parity cube)."""
    kind = task.algebra.domain.label_kind
    if kind == "frequency":
        return key_frequencies(model, task)
    if kind == "irrep":
        return key_irreps(model, task)
    return []


@torch.no_grad()
def signature(model: HookedModel, task: Task) -> dict[str, Any]:
    """The answers the card reports for ``model`` (see the module docstring)."""
    _, train_acc = evaluate(model, task, task.train_idx)
    _, test_acc = evaluate(model, task, task.test_idx)
    with warnings.catch_warnings():         # early checkpoints have not generalized: by design
        warnings.simplefilter("ignore", NotGeneralizedWarning)
        keys = list(key_labels(model, task))
    return {"train_correct": round(train_acc * len(task.train_idx)),
            "test_correct": 0 if len(task.test_idx) == 0 else round(test_acc * len(task.test_idx)),
            "key": keys, "margin_ratio": margin_ratio(model, task)}


def same_answers(full: dict[str, Any], reduced: dict[str, Any]) -> bool:
    """True when two signatures agree (exactly, margin ratio to ``MARGIN_RTOL``)."""
    if {k: v for k, v in full.items() if k != "margin_ratio"} != \
            {k: v for k, v in reduced.items() if k != "margin_ratio"}:
        return False
    a, b = full["margin_ratio"], reduced["margin_ratio"]
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=MARGIN_RTOL, abs_tol=MARGIN_RTOL * 1e-3)

"""What every layer above the models needs to run a model on a task: its inputs, its float64 loss,
its accuracy and its weight norm (training, analysis and theory all call these)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mi_margin.tasks import Task


def model_inputs(model: Any, task: Task) -> torch.Tensor:
    """All N inputs in the form ``model`` reads (tokens for transformers, operands for MLPs)."""
    x = task.model_inputs(getattr(model, "model_kind", "mlp"))
    return x.to(model.W_out.dtype) if x.is_floating_point() else x


def cross_entropy64(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
                    ) -> torch.Tensor:
    """Cross-entropy computed in float64 (grokking losses reach 1e-7; float32 rounds them)."""
    return F.cross_entropy(logits.double(), labels, reduction=reduction)


@torch.no_grad()
def evaluate(model: Any, task: Task, idx: torch.Tensor, chunk: int = 8192
             ) -> tuple[float, float]:
    """(mean float64 cross-entropy, accuracy) of ``model`` on the examples ``idx``."""
    if len(idx) == 0:
        return float("nan"), float("nan")
    x, y = model_inputs(model, task), task.labels
    loss, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.long)
    for part in idx.split(chunk):
        logits = model.last_logits(x[part])
        loss += cross_entropy64(logits, y[part], reduction="sum")
        correct += (logits.argmax(-1) == y[part]).sum()
    return float(loss) / len(idx), float(correct) / len(idx)


def weight_norm_sq(model: Any) -> float:
    """Sum of squared trainable weights (Nanda et al.; Chughtai et al.)."""
    with torch.no_grad():
        return float(sum((p.double() ** 2).sum() for p in model.parameters() if p.requires_grad))

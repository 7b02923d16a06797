"""What every layer above the models needs to run a model on a task: its inputs, its float64 loss,
its accuracy and its weight norm (training, analysis and theory all call these)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mi_margin.errors import MiMarginError
from mi_margin.tasks import Task


def model_inputs(model: Any, task: Task) -> torch.Tensor:
    """All N inputs in the form ``model`` reads (tokens for transformers, operands for MLPs)."""
    x = task.model_inputs(getattr(model, "model_kind", "mlp"))
    return x.to(model.W_out.dtype) if x.is_floating_point() else x


def cross_entropy64(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
                    ) -> torch.Tensor:
    """Cross-entropy computed in float64 (grokking losses reach 1e-7; float32 rounds them).

    The same numbers as ``F.cross_entropy(logits.double(), labels)``, in one pass: log-softmax in
    float64 with one exponential per logit, and (when the logits need a gradient) the gradient
    ``softmax − onehot`` formed from the same exponentials and cast once to the logits' dtype,
    which backward only scales (docs/performance.md §3 has the measurements). Float64 logits go
    to ``F.cross_entropy`` itself, so float64 runs (the margin-theory recipes) retrain to the same
    bits as before the fused version existed.

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2])
        >>> bool(torch.isclose(cross_entropy64(logits, labels),
        ...                    F.cross_entropy(logits.double(), labels)))
        True
    """
    if reduction not in ("mean", "sum", "none"):
        raise MiMarginError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.dtype == torch.float64:     # nothing to cast: F.cross_entropy itself, so float64
        return F.cross_entropy(logits, labels, reduction=reduction)   # runs keep their exact bits
    if torch.is_grad_enabled() and logits.requires_grad:
        rows = _CrossEntropy64.apply(logits, labels)
    else:
        rows, _ = _cross_entropy_rows(logits, labels, with_grad=False)
    return rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.mean()


def _cross_entropy_rows(logits: torch.Tensor, labels: torch.Tensor, with_grad: bool
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(per-example float64 cross-entropy [B], its gradient softmax − onehot [B, C] in the logits'
    dtype, or None): one float64 exponential per logit serves both."""
    z = logits.to(torch.float64, copy=True)
    z -= logits.detach().amax(dim=1, keepdim=True)          # the max is exact in any dtype
    label_logit = z.gather(1, labels[:, None]).squeeze(1)
    exps = z.exp_()
    sums = exps.sum(dim=1, keepdim=True)
    loss = sums.log().squeeze(1) - label_logit
    if not with_grad:
        return loss, None
    grad = exps.div_(sums)
    grad.scatter_add_(1, labels[:, None], grad.new_full((len(labels), 1), -1.0))
    return loss, grad.to(logits.dtype)


class _CrossEntropy64(torch.autograd.Function):
    """Per-example float64 cross-entropy whose backward is ``(softmax − onehot) · grad`` with the
    softmax kept from the forward pass (F.cross_entropy's backward recomputes the exponentials
    and scatters into a float64 zero tensor: twice the cost)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, grad = _cross_entropy_rows(logits, labels, with_grad=True)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_loss[:, None].to(grad.dtype), None


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

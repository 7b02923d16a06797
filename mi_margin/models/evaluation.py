"""What every layer above the models needs to run a model on a task: its inputs, its loss (float64
values that keep tiny losses), its accuracy and its weight norm (training, analysis and theory all
call these)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mi_margin.errors import MiMarginError
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task


def model_inputs(model: HookedModel, task: Task) -> torch.Tensor:
    """All N inputs in the form ``model`` reads (tokens for transformers, operands for MLPs)."""
    x = task.model_inputs(getattr(model, "model_kind", "mlp"))
    return x.to(model.W_out.dtype) if x.is_floating_point() else x


def cross_entropy64(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
                    ) -> torch.Tensor:
    """Cross-entropy as float64 numbers that keep grokking's tiny losses (down to 1e-30 and below),
    which a float32 log-softmax rounds to 0.

    Float64 logits go to ``F.cross_entropy`` itself (float64 runs, such as the margin-theory
    recipes, keep their exact bits). For float32 logits no float64 arithmetic runs over the
    [B, C] logits: from the softmax p (one fused pass), ``q = Σ_{j≠y} p_j`` is summed without
    the label's term (not obtained as 1 − p_y, which cancels), and each row's loss
    ``−log p_y = −log1p(−q)`` is evaluated in float64 per row from q when q < 1/2 and from p_y
    otherwise (:func:`_cross_entropy_parts`); the gradient is p_j for j ≠ y and −q for the label,
    so neither rounds to 0. Each row's loss and each gradient entry then has the relative
    precision of the logits' dtype (float32), against the exact loss of the same logits, down to
    float32's smallest normal numbers; F.cross_entropy in float32 loses every loss below about
    6e-8 and the label's gradient with it, and in float64 every loss below about 1e-16.
    The backward is one pass over the logits, the upstream gradient's scaling included
    (docs/performance.md §3; the maths is tested in tests/models/test_cross_entropy64.py).

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0, -1.0], [40.0, 0.0, 0.0]]), torch.tensor([0, 0])
        >>> abs(F.cross_entropy(logits, labels, reduction="none")[1].item())  # float32 log-softmax
        0.0
        >>> import math
        >>> loss = cross_entropy64(logits, labels, reduction="none")
        >>> loss.dtype, abs(loss[1].item() / (2 * math.exp(-40)) - 1) < 1e-6   # log1p(2e^-40)
        (torch.float64, True)
    """
    if reduction not in ("mean", "sum", "none"):
        raise MiMarginError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.dtype == torch.float64:     # nothing to gain: F.cross_entropy itself, so float64
        return F.cross_entropy(logits, labels, reduction=reduction)   # runs keep their exact bits
    if torch.is_grad_enabled() and logits.requires_grad:
        rows = _CrossEntropy64.apply(logits, labels)
    else:
        rows = _cross_entropy_parts(logits, labels)[0]
    return rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.mean()


def _cross_entropy_parts(logits: torch.Tensor, labels: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float64 row losses [B]; ``p`` [B, C], the softmax with 0 at each label; ``q`` [B], the
    softmax mass off the label; the flat indices of the labels in ``p``), all but the losses in
    the logits' dtype (:func:`softmax_off_label`, :func:`row_losses`, :func:`underflowed_losses`)."""
    z = logits.detach()
    at_label = torch.arange(len(labels), device=z.device) * z.shape[1] + labels
    p, p_label, q = softmax_off_label(z, at_label)
    loss = row_losses(p_label, q)
    underflowed = underflowed_losses(p_label, lambda lost: z[lost], labels)
    if underflowed is not None:
        loss[underflowed[0]] = underflowed[1]
    return loss, p, q, at_label


def softmax_off_label(z: torch.Tensor, at_label: torch.Tensor, p_label: torch.Tensor | None = None,
                      q: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(``p`` [B, C], the softmax of ``z`` with 0 at each label; ``p_y`` [B]; ``q`` [B] = Σ_{j≠y} p_j,
    summed without the label's term, not obtained as 1 − p_y, which cancels), in z's dtype.
    ``at_label``: the labels' indices in ``p.view(-1)``. ``p_y`` and ``q`` are written into the
    tensors given (the fused ReLU head of models/fast_paths.py fills a chunk's rows of them)."""
    p = z.softmax(dim=1)
    flat = p.view(-1)
    p_label = torch.index_select(flat, 0, at_label, out=p_label)
    flat.index_fill_(0, at_label, 0.0)
    return p, p_label, torch.sum(p, dim=1, out=q)


def row_losses(p_label: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Each row's loss −log p_y in float64: −log1p(−q) while q < 1/2 (a small loss, which
    ``log(S) − z_y`` would round away), −log p_y otherwise (a loss above log 2, well
    conditioned). Rows whose p_y underflowed need :func:`underflowed_losses`."""
    q64 = q.double()
    return torch.where(q64 < 0.5, -torch.log1p(-q64), -p_label.double().log())


def underflowed_losses(p_label: torch.Tensor, logits_of: Callable[[torch.Tensor], torch.Tensor],
                       labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, float64 losses) of the rows whose p_y underflowed (a loss above ~87 in float32),
    recomputed as ``logsumexp(z) − z_y`` in float64 from their logits ``logits_of(rows)``, or
    ``None`` if there are none (NaN rows stay NaN)."""
    lost = (p_label < torch.finfo(p_label.dtype).tiny).nonzero().squeeze(1)
    if not len(lost):
        return None
    far = logits_of(lost).double()
    return lost, far.logsumexp(dim=1) - far.gather(1, labels[lost, None]).squeeze(1)


class _CrossEntropy64(torch.autograd.Function):
    """Per-example cross-entropy rows (float64) of :func:`cross_entropy64`. The backward forms the
    gradient ``softmax − onehot`` (p_j off the label, −q at it), already scaled by the upstream
    gradient, in one pass over the softmax kept from the forward (F.cross_entropy's backward
    recomputes the exponentials)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, p, q, at_label = _cross_entropy_parts(logits, labels)
        ctx.save_for_backward(p, q, at_label)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, q, at_label = ctx.saved_tensors
        factor = grad_loss.to(p.dtype)
        grad = p * factor[:, None]                              # p_j · upstream, 0 at the label
        grad.view(-1).index_copy_(0, at_label, -q * factor)
        return grad, None


@torch.no_grad()
def evaluate(model: HookedModel, task: Task, idx: torch.Tensor, chunk: int = 8192
             ) -> tuple[float, float]:
    """(mean float64 cross-entropy, accuracy) of ``model`` on the examples ``idx``."""
    if len(idx) == 0:
        return float("nan"), float("nan")
    device = next(model.parameters()).device
    x, y = model_inputs(model, task).to(device), task.labels.to(device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for part in idx.to(device).split(chunk):
        logits = model.last_logits(x[part])
        loss += cross_entropy64(logits, y[part], reduction="sum")
        correct += (logits.argmax(-1) == y[part]).sum()
    return float(loss) / len(idx), float(correct) / len(idx)


def weight_norm_sq(model: HookedModel) -> float:
    """Sum of squared trainable weights (Nanda et al.; Chughtai et al.)."""
    with torch.no_grad():
        return float(sum((p.double() ** 2).sum() for p in model.parameters() if p.requires_grad))

"""cross_entropy64 (models/evaluation.py): the fused float64 loss against F.cross_entropy on float64
logits (values, gradients, every reduction), autograd's numerical gradcheck of the fused function, and
the regimes the fusion must not break: huge logits (overflow without the max shift) and losses
near 1e-12 (grokking's late losses, which float32 rounds away). Float64 logits are passed to
F.cross_entropy itself (float64 runs keep their bits), so the fused function is also called
directly in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mi_margin as mm
from mi_margin.models.evaluation import _CrossEntropy64, cross_entropy64

REDUCTIONS = ["mean", "sum", "none"]


def logits_and_labels(dtype: torch.dtype, scale: float = 3.0, n: int = 37, c: int = 11
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = (scale * torch.randn(n, c, generator=gen, dtype=torch.float64)).to(dtype)
    return logits.requires_grad_(), torch.randint(0, c, (n,), generator=gen)


def reference_and_fused(logits: torch.Tensor, labels: torch.Tensor, reduction: str
                        ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(loss, gradient) of F.cross_entropy on float64 and of cross_entropy64, for one weighting
    of the per-example losses that makes every gradient entry count."""
    weights = torch.linspace(0.5, 1.5, len(labels), dtype=torch.float64)
    out = []
    for fn in (lambda x: F.cross_entropy(x.double(), labels, reduction=reduction),
               lambda x: cross_entropy64(x, labels, reduction)):
        x = logits.detach().clone().requires_grad_()
        loss = fn(x)
        (loss * weights if reduction == "none" else loss).sum().backward()
        assert x.grad is not None and loss.dtype == torch.float64
        out.append((loss.detach(), x.grad))
    return out[0], out[1]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_and_gradient_equal_cross_entropy_on_float64(reduction, dtype):
    logits, labels = logits_and_labels(dtype)
    (want, want_grad), (got, got_grad) = reference_and_fused(logits, labels, reduction)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    assert got_grad.dtype == dtype
    tol = {torch.float32: (2e-7, 1e-9), torch.float64: (1e-12, 1e-15)}[dtype]
    torch.testing.assert_close(got_grad, want_grad, rtol=tol[0], atol=tol[1])


REDUCE = {"mean": torch.mean, "sum": torch.sum, "none": lambda rows: rows}


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_the_fused_function_passes_gradcheck_and_equals_cross_entropy_in_float64(reduction):
    logits, labels = logits_and_labels(torch.float64, n=6, c=5)
    fused = lambda x: REDUCE[reduction](_CrossEntropy64.apply(x, labels))  # noqa: E731
    assert torch.autograd.gradcheck(fused, (logits,))
    got = fused(logits)
    want = F.cross_entropy(logits, labels, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    weights = torch.linspace(0.5, 1.5, got.numel(), dtype=torch.float64).view(got.shape)
    got_grad, = torch.autograd.grad((got * weights).sum(), logits)
    want_grad, = torch.autograd.grad((want * weights).sum(), logits)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-15)


def test_huge_logits_do_not_overflow():
    logits, labels = logits_and_labels(torch.float32, scale=1e4)
    (want, want_grad), (got, got_grad) = reference_and_fused(logits, labels, "none")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=2e-7, atol=1e-9)


def test_tiny_losses_keep_float64_precision():
    """A margin of 30 gives losses near (C−1)·e^-30 ≈ 1e-12, which float32 rounds to 0. Float64's
    log-softmax gets them to a few ulps of 1 (absolute); the fused loss must too. The oracle is
    log1p(Σ_{j≠y} exp(z_j − z_y)), exact to float64's relative precision."""
    logits, labels = logits_and_labels(torch.float32, scale=0.1)
    with torch.no_grad():
        logits[torch.arange(len(labels)), labels] += 30
    z = logits.detach().double()
    others = (z - z.gather(1, labels[:, None])).exp()
    exact = torch.log1p(others.sum(1) - 1)                       # minus the label's own exp(0)
    assert (exact > 0).all() and (exact < 1e-10).all()
    assert (F.cross_entropy(logits.detach(), labels, reduction="none") == 0).any()
    ulps = 4 * torch.finfo(torch.float64).eps
    for loss in (cross_entropy64(logits, labels, "none"),
                 F.cross_entropy(z, labels, reduction="none")):
        torch.testing.assert_close(loss, exact, rtol=0, atol=ulps)


def test_the_logits_are_not_modified_and_no_grad_gives_the_same_loss():
    logits, labels = logits_and_labels(torch.float64)
    before = logits.detach().clone()
    _CrossEntropy64.apply(logits, labels).sum().backward()
    assert torch.equal(logits.detach(), before)
    logits, labels = logits_and_labels(torch.float32)
    before = logits.detach().clone()
    with_grad = cross_entropy64(logits, labels, "sum")
    with torch.no_grad():
        without = cross_entropy64(logits, labels, "sum")
    assert torch.equal(logits.detach(), before)
    assert float(with_grad.detach()) == float(without)


def test_a_bad_reduction_is_refused():
    logits, labels = logits_and_labels(torch.float32)
    with pytest.raises(mm.MiMarginError, match="reduction"):
        cross_entropy64(logits, labels, "max")

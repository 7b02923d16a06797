"""cross_entropy64 (models/evaluation.py) as mathematics.

Float32 logits: no float64 arithmetic runs over the [B, C] logits, yet every row's loss and every
gradient entry must carry float32's relative precision against the exact cross-entropy of the
same logits, in every regime grokking and its analyses reach: losses from 1e-1 down to 1e-30
(which a float32 log-softmax rounds to 0, and float64's below ~1e-16), ties, a label far below
the maximum (its exponential underflowing), denormal exponentials, B = 1 and C = 2. The oracle
is the exact loss and gradient computed in float64 from the same (float32-valued) logits; it is
itself checked against ``F.cross_entropy(z.double())`` where that is accurate. Float64 logits are
passed to F.cross_entropy itself (float64 runs keep their bits). A few hundred training steps
with the loss agree with the same training on the float64 log-softmax.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mi_margin as mm
from mi_margin.models.evaluation import _CrossEntropy64, cross_entropy64

REDUCTIONS = ["mean", "sum", "none"]
EPS32, TINY32 = torch.finfo(torch.float32).eps, torch.finfo(torch.float32).tiny
SUBNORMAL32 = TINY32 * EPS32          # spacing of float32's denormal numbers


def exact(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss rows, gradient softmax − onehot) of the logits ``z`` (any dtype), in float64 with no
    cancellation: the label's own term is left out of the sum r = Σ_{j≠y} exp(z_j − max z), the
    loss is log1p(r) when the label holds the maximum and (max z − z_y) + log Σ_j exp(z_j − max z)
    otherwise (two non-negative terms), and the label's gradient is −r / S."""
    z = z.detach().double()
    rows = torch.arange(len(labels))
    shifted = z - z.amax(dim=1, keepdim=True)
    e = shifted.exp()
    e_label, gap = e[rows, labels], -shifted[rows, labels]
    e[rows, labels] = 0.0
    r = e.sum(dim=1)
    total = r + e_label
    loss = torch.where(gap == 0, torch.log1p(r), gap + total.log())
    grad = e / total[:, None]
    grad[rows, labels] = -r / total
    return loss, grad


def float32_tolerance(n_classes: int) -> float:
    """Relative rounding of a float32 computation with one sum over ``n_classes`` terms (pairwise
    summation: log2 C roundings) and a few elementwise operations (exp, division, log1p)."""
    return (math.log2(n_classes) + 4) * EPS32


def assert_rows_close(got: torch.Tensor, want: torch.Tensor, tol: float, what: str,
                      slack: torch.Tensor | float = 0.0) -> None:
    """Each row (a loss, or a gradient row measured against its largest entry) within ``tol``
    relatively, plus ``slack`` and a few float32 denormal spacings (nothing in float32 is finer)."""
    scale = want.abs() if want.dim() == 1 else want.abs().amax(dim=1, keepdim=True)
    err = (got.double() - want).abs()
    bound = tol * scale + slack + 4 * want.shape[-1] * SUBNORMAL32
    worst = int((err / bound).argmax()) if err.numel() else 0
    assert (err <= bound).all(), (what, float(err.flatten()[worst]), float(bound.flatten()[worst]))


def loss_and_grad(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = z.detach().clone().requires_grad_()
    rows = cross_entropy64(x, labels, "none")
    rows.sum().backward()
    assert x.grad is not None and rows.dtype == torch.float64 and x.grad.dtype == z.dtype
    return rows.detach(), x.grad


def random_logits(scale: float = 3.0, n: int = 37, c: int = 11, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, c, generator=gen)), torch.randint(0, c, (n,), generator=gen)


def with_label_margin(margins: list[float], c: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per margin δ: the label's logit δ above random others (δ < 0: below the maximum)."""
    z, labels = random_logits(scale=0.5, n=len(margins), c=c, seed=1)
    rows = torch.arange(len(margins))
    z[rows, labels] = z.amax(dim=1) + torch.tensor(margins)
    return z, labels


REGIMES = {
    "moderate": random_logits(),
    "large logits": random_logits(scale=1e4),
    # losses from 1e-1 down to ~1e-30 (e^-70), then rows whose other exponentials are denormal
    "tiny losses": with_label_margin([2.0, 5, 10, 17, 20, 30, 40, 50, 60, 70]),
    "denormal exponentials": with_label_margin([88.0, 90, 95, 100, 103, 110]),
    # the label 0.5 to 1e4 below the maximum: its exponential normal, denormal, then underflowed
    "label far below": with_label_margin([-0.5, -5, -30, -80, -88, -95, -103, -150, -1e4]),
    "ties": (torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 2.0], [0.0, 3.0, 3.0], [5.0, 5.0, -40.0]]),
             torch.tensor([0, 1, 0, 1])),
    "B=1, C=2": (torch.tensor([[0.3, -20.0]]), torch.tensor([0])),
    "C=2": (torch.tensor([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0], [90.0, -90.0]]),
            torch.tensor([0, 0, 0, 1])),
}


def rounding_of_differences(z: torch.Tensor, labels: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order bounds (loss rows [B], gradient entries [B, C]) of what rounding each
    difference d_j = z_j − max z to float32 (|δd_j| ≤ eps/2 · |d_j|) does to the exact loss and
    gradient: δL = Σ_j p_j δd_j − δd_y and δp_j = p_j (δd_j − Σ_k p_k δd_k)."""
    d = z.double() - z.double().amax(dim=1, keepdim=True)
    p = d.softmax(dim=1)
    spread = (p * d.abs()).sum(dim=1)                              # Σ_k p_k |d_k|
    d_label = d.gather(1, labels[:, None]).squeeze(1).abs()
    return EPS32 / 2 * (spread + d_label), EPS32 / 2 * p * (d.abs() + spread[:, None])


@pytest.mark.parametrize("regime", list(REGIMES))
def test_float32_rows_and_gradients_have_float32_relative_precision(regime):
    """Against the exact loss and gradient of the float32 differences z − max z the function
    works from: float32 relative precision, row by row. Against the exact loss and gradient of
    ``z`` itself: that, plus what the rounding of those differences can do (first order)."""
    z, labels = REGIMES[regime]
    got_loss, got_grad = loss_and_grad(z, labels)
    tol = float32_tolerance(z.shape[1])
    want_loss, want_grad = exact(z - z.amax(dim=1, keepdim=True), labels)
    assert_rows_close(got_loss, want_loss, tol, "loss rows")
    assert_rows_close(got_grad, want_grad, tol, "gradient rows")
    want_loss, want_grad = exact(z, labels)
    loss_slack, grad_slack = rounding_of_differences(z, labels)
    assert_rows_close(got_loss, want_loss, tol, "loss rows, exact logits", loss_slack)
    assert_rows_close(got_grad, want_grad, tol, "gradient rows, exact logits", grad_slack)
    with torch.no_grad():                                       # evaluation's path: the same rows
        assert torch.equal(cross_entropy64(z, labels, "none"), got_loss)


def test_the_oracle_is_float64_cross_entropy_where_that_is_accurate():
    """``exact`` equals F.cross_entropy on float64 logits to float64 rounding, in the regimes
    where float64's log-softmax has no cancellation (losses well above 1e-16)."""
    for regime in ["moderate", "large logits", "label far below", "ties", "B=1, C=2"]:
        z, labels = REGIMES[regime]
        x = z.double().requires_grad_()
        loss = F.cross_entropy(x, labels, reduction="none")
        loss.sum().backward()
        want_loss, want_grad = exact(z, labels)
        # float64's log-softmax is accurate in absolute terms (a few of its ulps of 1)
        torch.testing.assert_close(want_loss, loss.detach(), rtol=1e-13,
                                   atol=4 * torch.finfo(torch.float64).eps)
        torch.testing.assert_close(want_grad, x.grad, rtol=1e-12, atol=1e-15)


def test_tiny_losses_are_kept_where_float32_and_float64_log_softmax_lose_them():
    z, labels = REGIMES["tiny losses"]
    want, _ = exact(z, labels)
    assert want.min() < 1e-29 and want.max() > 1e-2               # the regime spans 1e-30..1e-1
    got, grad = loss_and_grad(z, labels)
    assert (F.cross_entropy(z, labels, reduction="none") == 0).any()
    assert (F.cross_entropy(z.double(), labels, reduction="none") <= 0).any()
    assert (got > 0).all() and (grad[torch.arange(len(labels)), labels] < 0).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reductions_and_upstream_gradients(reduction):
    """Every reduction, weighted per row so that the backward's scaling by the upstream gradient
    counts: the loss and gradient are the exact ones to float32 precision."""
    z, labels = random_logits()
    weights = torch.linspace(0.5, 1.5, len(labels), dtype=torch.float64)
    x = z.clone().requires_grad_()
    got = cross_entropy64(x, labels, reduction)
    (got * weights if reduction == "none" else got).sum().backward()
    rows, grad = exact(z, labels)
    want = {"none": rows, "sum": rows.sum(), "mean": rows.mean()}[reduction]
    tol = float32_tolerance(z.shape[1])
    torch.testing.assert_close(got.detach(), want, rtol=tol, atol=0)
    upstream = weights if reduction == "none" else torch.full_like(weights, 1.0 / (
        len(labels) if reduction == "mean" else 1))
    assert x.grad is not None
    assert_rows_close(x.grad, grad * upstream[:, None], tol, "gradient rows")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float64_logits_are_float64_cross_entropy_bit_for_bit(reduction):
    z, labels = random_logits()
    x, y = z.double().requires_grad_(), z.double().requires_grad_()
    got, want = cross_entropy64(x, labels, reduction), F.cross_entropy(y, labels, reduction=reduction)
    got.sum().backward()
    want.sum().backward()
    assert torch.equal(got, want) and torch.equal(x.grad, y.grad)


def test_the_fused_function_passes_gradcheck():
    """The same formulas in float64 arithmetic (the function is dtype-generic), checked against
    numerical differentiation, including rows with a tiny loss and a label below the maximum."""
    z, labels = random_logits(n=6, c=5)
    z[0, labels[0]] += 25.0
    z[1, labels[1]] -= 25.0
    x = z.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _CrossEntropy64.apply(t, labels), (x,))


def test_nan_and_inf_logits_give_a_non_finite_loss():
    """The training loop stops a run on a non-finite loss; this loss must not hide one."""
    for bad in [float("nan"), float("inf")]:
        z, labels = random_logits(n=3)
        z[1, 2] = bad
        rows = cross_entropy64(z, labels, "none")
        assert torch.isfinite(rows[[0, 2]]).all() and not torch.isfinite(rows[1])


def test_the_logits_are_not_modified_and_no_grad_gives_the_same_loss():
    z, labels = random_logits()
    logits = z.clone().requires_grad_()
    with_grad = cross_entropy64(logits, labels, "sum")
    with_grad.backward()
    with torch.no_grad():
        without = cross_entropy64(logits, labels, "sum")
    assert torch.equal(logits.detach(), z)
    assert float(with_grad.detach()) == float(without)


def test_a_bad_reduction_is_refused():
    z, labels = random_logits()
    with pytest.raises(mm.MiMarginError, match="reduction"):
        cross_entropy64(z, labels, "max")


def test_training_matches_training_on_the_float64_log_softmax(monkeypatch):
    """300 steps of ``train()`` with this loss against the same training whose loss is
    F.cross_entropy on float64 logits (what cross_entropy64 computed before), on a small MLP
    trained until its losses are ~1e-8, where float32's log-softmax has none left: weights,
    history and losses agree to float tolerance (the tolerance of tests/models/test_fast_paths.py;
    the smooth quadratic activation, as ReLU's kinks would amplify any rounding into chaos)."""
    task = mm.ModularAddition(p=7, train_fraction=0.6, seed=1)
    config = mm.TrainConfig(steps=300, lr=5e-2, weight_decay=0.0, eval_every=50, progress=False)

    def run() -> tuple[mm.HookedMLP, mm.Run]:
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32))
        return model, mm.train(model, task, config)

    fast_model, fast = run()
    with monkeypatch.context() as patched:
        patched.setattr("mi_margin.models.fast_paths.cross_entropy64",
                        lambda z, y, reduction: F.cross_entropy(z.double(), y, reduction=reduction))
        slow_model, slow = run()
    assert fast.history["train_loss"].iloc[-1] < 1e-7           # the small-loss regime
    with torch.no_grad():
        for (name, a), b in zip(fast_model.named_parameters(), slow_model.parameters(),
                                strict=True):
            assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max()), name
    for column in ["train_loss", "test_loss"]:
        torch.testing.assert_close(torch.tensor(fast.history[column].to_numpy()),
                                   torch.tensor(slow.history[column].to_numpy()), rtol=1e-3, atol=0)

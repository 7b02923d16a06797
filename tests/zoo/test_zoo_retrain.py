"""Retrain the cheapest zoo entry from its recipe: on one machine, bit for bit (twice, and once
interrupted and resumed); against the shipped weights (trained on another CPU), to the rounding
that the CPU's kernels may change, propagated through this very training run."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import mi_margin as mm
from mi_margin.errors import MiMarginError
from mi_margin.zoo import store
from mi_margin.zoo.build import train_recipe
from mi_margin.zoo.phases import LEVEL
from mi_margin.zoo.recipes import RECIPES

CHEAPEST = "morwani_parity_n10_k4_quartic"


@pytest.fixture(scope="module")
def retrained() -> mm.Run:
    return train_recipe(CHEAPEST)


def assert_same_run(a: mm.Run, b: mm.Run) -> None:
    """Bit for bit: final weights, every checkpoint, the loss and margin columns."""
    assert a.step == b.step and sorted(a.checkpoints) == sorted(b.checkpoints)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    for step, state in a.checkpoints.items():
        for key, value in state.items():
            assert torch.equal(value, b.checkpoints[step][key]), (step, key)
    for column in ["train_loss", "ratio_to_gamma"]:
        assert torch.equal(torch.tensor(a.history[column].to_numpy()),
                           torch.tensor(b.history[column].to_numpy())), column


def perturbed_run(eta: float, seed: int) -> mm.Run:
    """The recipe trained with every weight multiplied by (1 + η·s), s uniform in [−1, 1], after
    every optimizer step: a rounding of relative size η injected at each step."""
    gen = torch.Generator().manual_seed(seed)

    def perturb(optimizer, args, kwargs):
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.mul_(1 + eta * (2 * torch.rand(p.shape, generator=gen, dtype=p.dtype) - 1))

    handle = register_optimizer_step_post_hook(perturb)
    try:
        return train_recipe(CHEAPEST)
    finally:
        handle.remove()


def cross_cpu_tolerance(run: mm.Run) -> tuple[float, float]:
    """(weights, margin ratio): how far two runs of the recipe on CPUs whose kernels round
    differently can end apart.

    A step's float64 arithmetic is sums of at most n terms (n = the task's inputs, the full batch:
    the largest reduction); another kernel order changes each by at most γ_n = n·u/(1 − n·u)
    of the summands' magnitudes (Higham 2002, Thm 3.5), which we inject as a relative change of up
    to γ_n in every weight after every step. The largest distance D of two such runs (two random
    directions) from the unperturbed one bounds how far a run on any CPU ends from the rounding-free
    trajectory; two runs on two CPUs are then within 2·D of each other (triangle inequality)."""
    u = torch.finfo(torch.float64).eps / 2
    n = len(run.task.labels)
    gamma_n = n * u / (1 - n * u)
    weights, ratio = 0.0, 0.0
    final = run.model.state_dict()
    for seed in (1, 2):
        other = perturbed_run(gamma_n, seed)
        moved = other.model.state_dict()
        weights = max(weights, *(float((moved[k] - v).abs().max()) for k, v in final.items()))
        ratio = max(ratio, float((other.history["ratio_to_gamma"]
                                  - run.history["ratio_to_gamma"]).abs().max()))
    return 2 * weights, 2 * ratio


def test_retraining_repeats_itself_bit_for_bit(retrained):
    """Same recipe, same seeds, one thread, one machine: the same bits."""
    assert_same_run(train_recipe(CHEAPEST), retrained)


def test_retraining_gives_the_shipped_weights_to_rounding_and_the_same_outcomes(retrained):
    """Against the shipped entry (built on another CPU): every weight and the margin ratio at every
    evaluation within the derived cross-CPU tolerance (weights: about 1e-5 of their scale, measured
    differences 3e-9 on AVX-512, 9e-8 with SSE4.2 kernels), every reduced-precision checkpoint
    within that plus its rounding, the initialisation exactly, the accuracies exactly, and the step
    that reaches 0.99 γ* exactly when no evaluation's ratio lies within the tolerance of 0.99."""
    shipped = mm.zoo.load(CHEAPEST)
    w_tol, r_tol = cross_cpu_tolerance(retrained)
    assert 0 < w_tol < 1e-3 and 0 < r_tol < 1e-3
    assert retrained.step == shipped.step
    for key, value in retrained.model.state_dict().items():
        assert float((value - shipped.model.state_dict()[key]).abs().max()) <= w_tol, key
    dtypes = store.read_meta(mm.zoo.DATA / CHEAPEST)["checkpoints"]
    for step, dtype in dtypes.items():
        for key, value in shipped.checkpoints[int(step)].items():
            trained = retrained.checkpoints[int(step)][key]
            if dtype == store.INIT:
                assert torch.equal(value, trained), (step, key)       # the seeded draw, exactly
                continue
            # the shipped value is the builder's weight x rounded: |value − x| ≤ half a float16
            # ulp ≤ 2^-11·|x| (+ 2^-25 for subnormals), and |x − trained| ≤ w_tol
            bound = 2.0 ** -11 * (trained.abs() + w_tol) + 2.0 ** -25 + w_tol
            assert bool(((trained - value).abs() <= bound).all()), (step, key, dtype)
    ours, theirs = retrained.history, shipped.history
    for column in ["train_acc", "test_acc"]:                    # test_acc: NaN, no held-out inputs
        assert ours[column].fillna(-1).tolist() == theirs[column].fillna(-1).tolist(), column
    assert float((ours["ratio_to_gamma"] - theirs["ratio_to_gamma"]).abs().max()) <= r_tol
    if bool(((theirs["ratio_to_gamma"] - LEVEL).abs() > r_tol).all()):
        reached = [s for s, r in zip(ours["step"], ours["ratio_to_gamma"]) if r >= LEVEL]
        assert reached[:1] == [s for s, r in zip(theirs["step"], theirs["ratio_to_gamma"]) if r >= LEVEL][:1]


def test_an_interrupted_recipe_resumes_bit_for_bit(retrained, tmp_path, monkeypatch):
    """A long recipe may span sessions: stop the cheapest one mid-run, resume it with
    ``train_recipe(..., resume=True)`` and get the uninterrupted run's weights bit for bit, with
    one history row per evaluation step and the wall/CPU columns still counting up."""
    import mi_margin.zoo.build as build

    real_clock, calls = build.wall_clock, []

    def interrupting_clock(*offsets):
        clock = real_clock(*offsets)

        def metric(model, task):
            calls.append(1)
            if len(calls) == 6:
                raise KeyboardInterrupt
            return clock(model, task)
        return metric

    monkeypatch.setattr(build, "wall_clock", interrupting_clock)
    # write snapshots whenever the last write's duration has passed (not 2% of the time), so
    # that this short run has one past step 0 when it is stopped
    monkeypatch.setattr("mi_margin.training.recorder.WRITE_BUDGET", 1.0)
    try:
        train_recipe(CHEAPEST, tmp_path)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(build, "wall_clock", real_clock)
    stopped = mm.load(tmp_path / "run")
    assert 0 < stopped.step < stopped.config.steps
    run = train_recipe(CHEAPEST, tmp_path, resume=True)
    assert_same_run(mm.load(tmp_path / "run"), retrained)
    assert run.step == retrained.step
    history = mm.load(tmp_path / "run").history
    assert history["step"].is_unique and history["step"].is_monotonic_increasing
    assert history["wall_s"].is_monotonic_increasing and history["cpu_s"].is_monotonic_increasing


def test_resume_refuses_a_missing_run_folder(tmp_path):
    with pytest.raises(MiMarginError, match="nothing to resume"):
        train_recipe(CHEAPEST, tmp_path, resume=True)


def test_the_cheapest_recipe_is_float64():
    """The bit-for-bit claims of the README are made for float64 recipes, tested on this one."""
    model, _, _ = RECIPES[CHEAPEST].make()
    assert model.cfg.dtype == "float64"

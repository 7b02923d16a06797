"""Retrain the cheapest zoo entry from its recipe and get the shipped weights back, bit-exact."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm
from mi_margin.errors import MiMarginError
from mi_margin.zoo import store
from mi_margin.zoo.build import train_recipe

CHEAPEST = "morwani_parity_n10_k4_quartic"


def test_retraining_the_recipe_gives_the_shipped_weights_bit_exact():
    """Same recipe, same seeds, one thread, same machine type: the final float64 weights are
    identical bit for bit, and every float16 checkpoint is the retrained one rounded."""
    shipped = mm.zoo.load(CHEAPEST)
    dtypes = store.read_meta(store_root := mm.zoo.DATA / CHEAPEST)["checkpoints"]
    assert store_root.is_dir()
    run = train_recipe(CHEAPEST)
    assert run.step == shipped.step
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, shipped.model.state_dict()[key]), key
    for step, dtype in dtypes.items():
        for key, value in shipped.checkpoints[int(step)].items():
            trained = run.checkpoints[int(step)][key]
            rounded = trained if dtype == store.INIT else trained.to(store.DTYPES[dtype])
            assert torch.equal(value, rounded.to(value.dtype)), (step, key)
    for column in ["train_loss", "ratio_to_gamma"]:
        assert torch.equal(torch.tensor(run.history[column].to_numpy()),
                           torch.tensor(shipped.history[column].to_numpy())), column


def test_an_interrupted_recipe_resumes_to_the_shipped_weights(tmp_path, monkeypatch):
    """A long recipe may span sessions: stop the cheapest one mid-run, resume it with
    ``train_recipe(..., resume=True)`` and get the shipped final weights back bit for bit,
    with one history row per evaluation step and the wall/CPU columns still counting up."""
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
    shipped = mm.zoo.load(CHEAPEST)
    assert run.step == shipped.step
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, shipped.model.state_dict()[key]), key
    history = mm.load(tmp_path / "run").history
    assert history["step"].is_unique and history["step"].is_monotonic_increasing
    assert history["wall_s"].is_monotonic_increasing and history["cpu_s"].is_monotonic_increasing


def test_resume_refuses_a_missing_run_folder(tmp_path):
    with pytest.raises(MiMarginError, match="nothing to resume"):
        train_recipe(CHEAPEST, tmp_path, resume=True)

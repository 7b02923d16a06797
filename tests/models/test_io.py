"""Save/load: bit-exact round trips, clear errors on damaged files, atomic overwrite."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm


def models():
    task = mm.ModularAddition(p=7)
    yield mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=32, use_biases=True))
    yield mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, input_style="embed", d_embed=4))
    yield mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, dtype="float64"))


@pytest.mark.parametrize("model", list(models()))
def test_model_round_trip_is_bit_exact(tmp_path, model):
    path = tmp_path / "m.safetensors"
    mm.save(model, path)
    again = mm.load(path)
    assert again.cfg == model.cfg
    for name, value in model.state_dict().items():
        loaded = again.state_dict()[name]
        assert loaded.dtype == value.dtype and torch.equal(loaded, value)


def test_run_round_trip(tmp_path):
    task = mm.ModularAddition(p=5, train_fraction=0.6)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
    run = mm.train(model, task, mm.TrainConfig(steps=30, eval_every=10, progress=False))
    mm.save(run, tmp_path / "run")
    again = mm.load(tmp_path / "run")
    assert again.step == 30 and sorted(again.checkpoints) == sorted(run.checkpoints)
    assert torch.equal(again.model.W_in, run.model.W_in)
    assert again.history["train_loss"].tolist() == pytest.approx(run.history["train_loss"].tolist())
    assert torch.equal(again.task.train_idx, task.train_idx)


def test_truncated_file_gives_clear_error(tmp_path):
    model = next(models())
    path = tmp_path / "m.safetensors"
    mm.save(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(mm.CheckpointError, match="truncated or corrupted"):
        mm.load(path)


def test_flipped_bit_gives_clear_error(tmp_path):
    model = next(models())
    path = tmp_path / "m.safetensors"
    mm.save(model, path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(mm.CheckpointError, match="corrupted"):
        mm.load(path)


def test_failed_save_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    model = next(models())
    path = tmp_path / "m.safetensors"
    mm.save(model, path)
    before = path.read_bytes()

    import mi_margin.models.io as io

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", broken)
    with torch.no_grad():
        model.W_E.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        mm.save(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_paths(tmp_path):
    with pytest.raises(mm.CheckpointError, match="nothing to load"):
        mm.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(mm.CheckpointError, match="not a run folder"):
        mm.load(tmp_path / "empty")

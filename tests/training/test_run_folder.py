"""Run folders: every kind of damage is a CheckpointError naming the file; what a killed writer
left behind is ignored by the loader and removed by the next writer; 0.1 folders still load."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mi_margin as mm
from mi_margin.models.io import tensors_digest
from mi_margin.training.run_folder import HISTORY, META, meta_digest


def task() -> mm.ModularAddition:
    return mm.ModularAddition(p=5, train_fraction=0.6)


def config(**kw) -> mm.TrainConfig:
    return mm.TrainConfig(**{"steps": 12, "lr": 0.05, "eval_every": 4, "n_checkpoints": 3,
                             "progress": False, **kw})


def model() -> mm.HookedMLP:
    return mm.HookedMLP(mm.MLPConfig.for_task(task(), d_mlp=8, act_fn="relu"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs") / "run"
    mm.train(model(), task(), config(), out_dir=root)
    return root


def pointer(root: Path) -> dict:
    return json.loads((root / META).read_text())


def snapshot_file(root: Path, name: str) -> Path:
    return root / pointer(root)["snapshot"]["path"] / name


def edit_meta(root: Path, change: Callable[[dict], None], redigest: bool = True) -> None:
    meta = pointer(root)
    change(meta)
    if redigest:
        meta["digest"] = meta_digest(meta)
    (root / META).write_text(json.dumps(meta))


def flip(path: Path, at: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_header(path: Path, old: str, new: str) -> None:
    """Replace text inside a safetensors file's JSON header (same length keeps it parseable)."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + n].decode().replace(old, new)
    assert len(header) == n
    path.write_bytes(data[:8] + header.encode() + data[8 + n:])


def other_run_weights(root: Path) -> None:
    other = root.parent / "other"
    mm.train(mm.HookedMLP(mm.MLPConfig.for_task(task(), d_mlp=8, act_fn="relu", seed=9)), task(),
             config(), out_dir=other)
    shutil.copyfile(snapshot_file(other, "model.safetensors"),
                    snapshot_file(root, "model.safetensors"))


DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("run.json not UTF-8", lambda r: (r / META).write_bytes(b"\xff\xfe{"), META),
    ("run.json truncated", lambda r: (r / META).write_text((r / META).read_text()[:40]), META),
    ("run.json a list", lambda r: (r / META).write_text("[1]"), META),
    ("run.json edited (status banana)",
     lambda r: edit_meta(r, lambda m: m.update(status="banana"), redigest=False), "SHA-256"),
    ("status banana with a valid digest",
     lambda r: edit_meta(r, lambda m: m.update(status="banana")), "banana"),
    ("step contradicts the snapshot", lambda r: edit_meta(r, lambda m: m.update(step=7)),
     "step"),
    ("task p changed under the model",
     lambda r: edit_meta(r, lambda m: m["task"].update(p=7)), "d_vocab"),
    ("model config changed", lambda r: edit_meta(r, lambda m: m["model"].update(act_fn="gelu")),
     "model config"),
    ("train config invalid", lambda r: edit_meta(r, lambda m: m["train"].update(lr=-1)), "lr"),
    ("unknown format", lambda r: edit_meta(r, lambda m: m.update(format="x/9")), "x/9"),
    ("snapshot path escapes", lambda r: edit_meta(
        r, lambda m: m["snapshot"].update(path="../elsewhere")), "elsewhere"),
    ("history longer than the file", lambda r: edit_meta(
        r, lambda m: m["history"].update(bytes=10**6)), HISTORY),
    ("checkpoint list without 0", lambda r: edit_meta(
        r, lambda m: m["checkpoints"].pop("0")), "checkpoint"),
    ("history.csv missing", lambda r: (r / HISTORY).unlink(), HISTORY),
    ("history.csv truncated",
     lambda r: (r / HISTORY).write_bytes((r / HISTORY).read_bytes()[:30]), HISTORY),
    ("history.csv bit flip", lambda r: flip(r / HISTORY, 40), HISTORY),
    ("weights bit flip", lambda r: flip(snapshot_file(r, "model.safetensors")),
     "model.safetensors"),
    ("weights truncated", lambda r: snapshot_file(r, "model.safetensors").write_bytes(
        snapshot_file(r, "model.safetensors").read_bytes()[:100]), "model.safetensors"),
    ("weights missing", lambda r: snapshot_file(r, "model.safetensors").unlink(),
     "model.safetensors"),
    ("weights header relu -> gelu",
     lambda r: edit_header(snapshot_file(r, "model.safetensors"), "relu", "gelu"),
     "model.safetensors"),
    ("weights of another run", other_run_weights, "model.safetensors"),
    ("train_state bit flip", lambda r: flip(snapshot_file(r, "train_state.safetensors")),
     "train_state.safetensors"),
    ("train_state missing", lambda r: snapshot_file(r, "train_state.safetensors").unlink(),
     "train_state.safetensors"),
    ("checkpoint missing", lambda r: (r / "checkpoints" / "step_00000000.safetensors").unlink(),
     "step_00000000"),
    ("checkpoint bit flip", lambda r: flip(r / "checkpoints" / "step_00000000.safetensors"),
     "step_00000000"),
    ("run.json missing", lambda r: (r / META).unlink(), "not a run folder"),
]


@pytest.mark.parametrize(("what", "damage", "text"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damage_is_a_checkpoint_error_naming_the_file(saved, tmp_path, what, damage, text):
    root = tmp_path / "run"
    shutil.copytree(saved, root)
    damage(root)
    with pytest.raises(mm.CheckpointError) as info:
        mm.load(root)
    assert text in str(info.value), (what, str(info.value))


def test_leftovers_of_a_killed_writer_are_ignored_then_removed(saved, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(saved, root)
    clean = mm.load(root)
    with (root / HISTORY).open("a") as fh:          # rows a killed snapshot appended
        fh.write("13,0.1,0.5,0.5,0.5,0.5,1.0\n")
    (root / "snapshots" / ".step_00000013_abcd.x.tmp").mkdir()
    (root / "snapshots" / "step_00000013_0123abcd").mkdir()   # renamed but never published
    (root / "checkpoints" / "step_00000013.safetensors").write_bytes(b"partial")
    (root / ".run.json.x.tmp").write_text("{")
    loaded = mm.load(root)
    assert loaded.history.equals(clean.history) and loaded.step == clean.step == 12
    resumed = mm.resume(root, steps=16)
    assert resumed.step == 16
    names = {p.name for p in root.rglob("*")}
    assert not {n for n in names if n.endswith(".tmp")}
    assert "step_00000013.safetensors" not in names and "step_00000013_0123abcd" not in names
    assert mm.load(root).history["step"].tolist() == [0, 4, 8, 12, 16]


def write_old_format(run: mm.Run, root: Path) -> None:
    """A run folder exactly as mi_margin 0.1 wrote it (digests over the tensors only)."""
    def old_save(path: Path, tensors: dict, meta: dict) -> None:
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"meta": json.dumps(meta),
                                                "sha256": tensors_digest(tensors)})

    root.mkdir(parents=True)
    for step, state in run.checkpoints.items():
        old_save(root / "checkpoints" / f"step_{step:08d}.safetensors", state,
                 {"format": "mi_margin.checkpoint/1", "step": step})
    old_save(root / "model.safetensors", run.model.state_dict(),
             {"format": "mi_margin.model/1", "config": run.model.cfg.to_dict()})
    old_save(root / "train_state.safetensors", run.train_state,
             {"format": "mi_margin.train_state/1", "step": run.step})
    run.history.to_csv(root / "history.csv", index=False)
    (root / "run.json").write_text(json.dumps(
        {"format": "mi_margin.run/1", "task": run.task.to_dict(), "model": run.model.cfg.to_dict(),
         "train": run.config.to_dict(), "step": run.step, "status": run.status,
         "checkpoints": sorted(run.checkpoints)}))


def test_old_format_loads_and_resumes_exactly(tmp_path):
    straight = mm.train(model(), task(), config(steps=16))
    half = mm.train(model(), task(), config(steps=12))
    write_old_format(half, tmp_path / "old")
    loaded = mm.load(tmp_path / "old")
    assert loaded.step == 12 and torch.equal(loaded.model.W_in, half.model.W_in)
    assert sorted(loaded.checkpoints) == sorted(half.checkpoints)
    resumed = mm.resume(tmp_path / "old", steps=16)
    assert torch.equal(resumed.model.W_in, straight.model.W_in)
    again = mm.load(tmp_path / "old")                      # now in the current layout
    assert pointer(tmp_path / "old")["format"] == "mi_margin.run/2"
    assert not (tmp_path / "old" / "train_state.safetensors").exists()
    assert torch.equal(again.model.W_out, straight.model.W_out)


@pytest.mark.parametrize(("what", "damage", "text"), [
    ("history missing", lambda r: (r / HISTORY).unlink(), HISTORY),
    ("status banana", lambda r: edit_meta(r, lambda m: m.update(status="banana"), False),
     "banana"),
    ("step contradicts train_state", lambda r: edit_meta(r, lambda m: m.update(step=5), False),
     "train_state"),
    ("history not CSV", lambda r: (r / HISTORY).write_bytes(b"\xff\x00\x01"), HISTORY),
])
def test_old_format_damage(tmp_path, what, damage, text):
    write_old_format(mm.train(model(), task(), config()), tmp_path / "old")
    damage(tmp_path / "old")
    with pytest.raises(mm.CheckpointError) as info:
        mm.load(tmp_path / "old")
    assert text in str(info.value), (what, str(info.value))


def test_history_round_trips_exactly(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "run")
    again = mm.resume(tmp_path / "run", steps=12)     # nothing to do: finishes at once
    run = mm.train(model(), task(), config())
    assert again.history.equals(run.history)


def test_snapshot_clock():
    import time

    from mi_margin.training.recorder import WRITE_BUDGET, SnapshotClock

    assert not SnapshotClock(None, enabled=False).due(10**6)
    every = SnapshotClock(5, enabled=True, step=10)
    assert not every.due(14) and every.due(15)
    adaptive = SnapshotClock(None, enabled=True)
    adaptive.cost, adaptive.last_end = 1.0, time.perf_counter() - 0.5 / WRITE_BUDGET
    assert not adaptive.due(1)                      # only half the budgeted time has passed
    adaptive.last_end = time.perf_counter() - 1.0 / WRITE_BUDGET
    assert adaptive.due(1)


def test_snapshot_every_sets_the_cadence(tmp_path, monkeypatch):
    from mi_margin.training import run_folder

    steps = []
    original = run_folder.RunWriter.publish
    monkeypatch.setattr(run_folder.RunWriter, "publish",
                        lambda self, run, rows: (steps.append(run.step), original(self, run, rows)))
    mm.train(model(), task(), config(steps=20, snapshot_every=7, n_checkpoints=2),
             out_dir=tmp_path / "run")
    assert steps == [0, 7, 14, 20]

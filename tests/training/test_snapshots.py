"""Snapshots are all or nothing: kill real training processes anywhere, resume, get the same run.

Each trial forks a training process (a real process: it is killed with SIGKILL, by the fault hook
of mi_margin.models.files inside its writes or by the test at a random moment), then resumes the
run folder in a fresh process until it finishes, and compares the final weights, kept checkpoints
and history bit for bit with a run that was never interrupted. Forking keeps a trial cheap (the
child starts with mi_margin already imported); tests/training/test_snapshots.py::
test_kill_a_fresh_interpreter runs the same in a new interpreter (slow).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

import mi_margin as mm
from mi_margin.models import files
from mi_margin.models.io import read_tensors
from mi_margin.training import run_folder
from mi_margin.training.run_folder import holds_run

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

STEPS = 9


def task() -> mm.ModularAddition:
    return mm.ModularAddition(p=5, train_fraction=0.6)


def config(**changes) -> mm.TrainConfig:
    base = dict(steps=STEPS, lr=0.05, eval_every=3, n_checkpoints=4, snapshot_every=1,
                batch_size=8, progress=False)
    return mm.TrainConfig(**{**base, **changes})


def fresh_model() -> mm.HookedMLP:
    return mm.HookedMLP(mm.MLPConfig.for_task(task(), d_mlp=8, seed=3))


def train_or_resume(root: Path, cfg: mm.TrainConfig) -> None:
    """What every trial process does: continue the run in ``root``, or start it."""
    if holds_run(root):
        mm.resume(root)
    else:
        mm.train(fresh_model(), task(), cfg, out_dir=root)


@pytest.fixture
def in_process(in_child) -> Callable[..., int]:
    """``in_process(root, cfg, kill_at=..., kill_after=..., count_to=...)``: :func:`train_or_resume`
    in a forked process (tests/conftest.py's ``in_child``); its exit code, or −signal if killed."""
    return lambda root, cfg, **kill: in_child(lambda: train_or_resume(root, cfg), **kill)


@pytest.fixture(scope="module")
def reference() -> mm.Run:
    """The uninterrupted run (no run folder)."""
    return mm.train(fresh_model(), task(), config())


def assert_same_run(root: Path, ref: mm.Run) -> None:
    run = mm.load(root)
    assert run.status == "finished" and run.step == ref.step
    for name, value in ref.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], value), name
    assert sorted(run.checkpoints) == sorted(ref.checkpoints)
    for step, state in ref.checkpoints.items():
        assert all(torch.equal(run.checkpoints[step][k], v) for k, v in state.items()), step
    pd.testing.assert_frame_equal(run.history, ref.history, check_exact=True)
    leftovers = [p for p in root.rglob("*") if files.is_temporary(p)]
    assert leftovers == []
    assert len(list((root / "snapshots").iterdir())) == 1


def count_points(in_process, tmp_path: Path) -> int:
    counter = tmp_path / "count"
    assert in_process(tmp_path / "count_run", config(), count_to=counter) == 0
    return int(counter.read_text())


def test_uninterrupted_folder_run_equals_in_memory_run(in_process, tmp_path, reference):
    assert in_process(tmp_path / "run", config()) == 0
    assert_same_run(tmp_path / "run", reference)


def assert_link_not_stale(root: Path) -> None:
    """What a kill leaves: ``model.safetensors`` is never older than ``run.json``, and
    ``mm.load`` of it gives the published weights or refuses (never other weights)."""
    link = root / "model.safetensors"
    if not (root / "run.json").exists() or not link.exists():
        return
    published = mm.load(root)
    assert read_tensors(link)[1]["step"] >= published.step
    try:
        model = mm.load(link)
    except mm.CheckpointError as err:
        assert "published" in str(err)
        return
    for name, value in published.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def kill_and_resume(in_process, tmp_path: Path, points: list[int], ref: mm.Run) -> None:
    for k in points:
        root = tmp_path / f"k{k}"
        assert in_process(root, config(), kill_at=k) == -signal.SIGKILL, k
        assert_link_not_stale(root)
        assert in_process(root, config()) == 0, k
        assert_same_run(root, ref)


def test_kill_inside_the_writes_then_resume_is_exact(in_process, tmp_path, reference):
    """SIGKILL at every fault point of the first snapshot and of the last one (checkpoint,
    snapshot folder, history, run.json, cleanup, finish) and at a stride of those in between."""
    n = count_points(in_process, tmp_path)
    assert n > 100
    kill_and_resume(in_process, tmp_path, sorted(set(range(1, 22)) | set(range(22, n - 25, 9))
                                     | set(range(n - 25, n + 1))), reference)


@pytest.mark.slow
def test_kill_at_every_fault_point(in_process, tmp_path, reference):
    kill_and_resume(in_process, tmp_path, list(range(1, count_points(in_process, tmp_path) + 1)),
                    reference)


def test_killed_again_while_resuming(in_process, tmp_path, reference):
    rng = random.Random(0)
    n = count_points(in_process, tmp_path)
    for trial in range(4):
        root = tmp_path / f"t{trial}"
        assert in_process(root, config(), kill_at=rng.randrange(20, n)) == -signal.SIGKILL
        code = in_process(root, config(), kill_at=rng.randrange(1, n // 2))
        assert code in (0, -signal.SIGKILL)
        assert in_process(root, config()) == 0
        assert_same_run(root, reference)


def test_kill_at_random_moments(in_process, tmp_path):
    """The test kills the process at random times (adaptive snapshot cadence, more steps)."""
    cfg = config(steps=400, snapshot_every=None, eval_every=25, n_checkpoints=6)
    ref = mm.train(fresh_model(), task(), cfg)
    start = time.perf_counter()
    assert in_process(tmp_path / "timing", cfg) == 0
    seconds = time.perf_counter() - start
    rng = random.Random(1)
    for trial in range(5):
        root = tmp_path / f"r{trial}"
        code = in_process(root, cfg, kill_after=rng.uniform(0, seconds))
        assert code in (0, -signal.SIGKILL)
        assert in_process(root, cfg) == 0
        assert_same_run(root, ref)


@pytest.mark.slow
def test_kill_a_fresh_interpreter(tmp_path, reference):
    """The same as the forked trials, in new interpreters started with subprocess."""
    root = tmp_path / "run"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_snapshots import train_or_resume, config; from pathlib import Path; "
            f"train_or_resume(Path({str(root)!r}), config())")
    env = {**os.environ, files.KILL_AT_ENV: "45"}
    killed = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert killed.returncode == -signal.SIGKILL
    env.pop(files.KILL_AT_ENV)
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
    assert_same_run(root, reference)


def paused_writer(root: Path, cfg: mm.TrainConfig) -> tuple[int, Callable[[], int]]:
    """Fork a process that trains (or resumes) ``root`` and stops, holding the folder, right
    after its first snapshot; its pid and a function that lets it finish (its exit code)."""
    up_read, up_write = os.pipe()
    down_read, down_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            torch.set_num_threads(1)
            publish = run_folder.RunWriter.publish

            def publish_then_wait(self, run, rows):
                publish(self, run, rows)
                run_folder.RunWriter.publish = publish     # only the first snapshot waits
                os.write(up_write, b"1")
                os.read(down_read, 1)                      # until the test lets it go on

            run_folder.RunWriter.publish = publish_then_wait
            train_or_resume(root, cfg)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    assert os.read(up_read, 1) == b"1"                  # it published a snapshot and holds root

    def let_go() -> int:
        os.write(down_write, b"1")
        _, status = os.waitpid(pid, 0)
        return os.WEXITSTATUS(status)

    return pid, let_go


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, reference):
    """`train` then `train --overwrite` (or a fresh train) while the first still writes: the
    second is refused naming the folder and the first's pid; the first finishes intact."""
    root = tmp_path / "run"
    pid, let_go = paused_writer(root, config())
    for overwrite in (True, False):
        with pytest.raises(mm.MiMarginError, match=f"pid {pid}") as info:
            mm.train(fresh_model(), task(), config(), out_dir=root, overwrite=overwrite)
        assert str(root) in str(info.value)
    assert let_go() == 0
    assert_same_run(root, reference)


def test_two_resumes_cannot_both_write(in_process, tmp_path, reference):
    """A resume while another resume writes is refused; a run loaded before the other resume
    went on is refused too (the folder changed under it); the folder stays loadable."""
    root = tmp_path / "run"
    assert in_process(root, config(), kill_at=60) == -signal.SIGKILL
    stale = mm.load(root)
    pid, let_go = paused_writer(root, config())
    with pytest.raises(mm.MiMarginError, match=f"pid {pid}"):
        mm.resume(root)
    assert let_go() == 0
    with pytest.raises(mm.MiMarginError, match="changed since this run was loaded"):
        mm.resume(stale)
    assert_same_run(root, reference)
    mm.resume(root)                                     # the lock went with the process
    assert_same_run(root, reference)

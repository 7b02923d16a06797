"""Durable file operations: atomic replace with fsync, appends, and a fault-injection hook.

A file written with :func:`atomic_write` is either the old file or the complete new one after a
crash or power loss at any moment: the bytes go to a temporary file in the same folder, which is
flushed and ``fsync``-ed, renamed over the target, and the folder is ``fsync``-ed so that the
rename itself is on disk. Temporary names start with ``.`` and end in ``.tmp`` (:func:`is_temporary`)
so that a reader can ignore, and a writer remove, what a killed process left behind.

Fault injection: every step of these operations calls :func:`fault_point`. When the environment
variable ``MI_MARGIN_KILL_AT`` holds an integer n, the process kills itself with SIGKILL at the
n-th fault point (counted from 1 in this process), which lets the test suite kill real training
processes inside their writes (tests/training/test_snapshots.py).
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

#: environment variable naming the fault point (1-based count) at which to SIGKILL this process
KILL_AT_ENV = "MI_MARGIN_KILL_AT"
_points = [0]


def fault_point() -> None:
    """Count one write step; die with SIGKILL if ``MI_MARGIN_KILL_AT`` names this one."""
    target = os.environ.get(KILL_AT_ENV)
    if target is None:
        return
    _points[0] += 1
    if _points[0] == int(target):
        os.kill(os.getpid(), signal.SIGKILL)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file or folder of these writers (``.name.xxx.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def temporary_path(target: Path) -> Path:
    """A fresh temporary name next to ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def fsync_file(path: Path) -> None:
    fault_point()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fault_point()


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (renames, new files) durable (no-op where unsupported)."""
    fault_point()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[str], object], durable: bool = True) -> None:
    """Call ``write(tmp_path)``, then atomically replace ``path`` by it (fsync-ed if ``durable``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        fault_point()
        write(str(tmp))
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing) and fsync it."""
    fault_point()
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        fault_point()
        os.fsync(fh.fileno())
    fault_point()

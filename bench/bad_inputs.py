"""Count how the bad-input tables of tests/foundation/test_bad_inputs.py are handled.

Every row (old table, sweep specs, the newer features' table and the heavy rows the suite skips)
runs in its own forked process, with the address space limited (``--memory-gib``, so that a size
nobody estimated fails there instead of taking the machine) and a time limit (``--timeout``, so
that a hang is counted, not waited for). Each row is one of

- clean: a ``MiMarginError`` whose message names the value (the row's text),
- unnamed: a ``MiMarginError`` whose message does not contain it,
- other: any other exception, a crash, or a hang (the time limit),
- silent: accepted without an error.

Usage (from the repository root)::

    python bench/bad_inputs.py                          # this checkout
    python bench/bad_inputs.py --src ../main --table T  # another checkout's code, this table
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("clean", "unnamed", "other", "silent")


def load_table(path: Path, src: Path):
    """The test module at ``path``, importing ``mi_margin`` from ``src``."""
    sys.path.insert(0, str(src))
    spec = importlib.util.spec_from_file_location("bad_input_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(table, tmp: Path) -> list[tuple[str, object, str, bool]]:
    """(what, call, text, takes_tmp) for every row of the tables."""
    old = [(w, c, t, False) for w, c, t in table.ROWS + table.sweep_rows(tmp)]
    new = [(w, c, t, True) for w, c, t in table.NEW_ROWS + table.HEAVY_ROWS]
    return old + new


def outcome(error: BaseException | None, text: str, base: type) -> str:
    if error is None:
        return "silent"
    if isinstance(error, base):
        return "clean" if text in str(error) else "unnamed"
    return "other"


def run_row(call, text: str, takes_tmp: bool, memory_gib: float, timeout: float,
            base: type) -> tuple[str, str]:
    """(outcome, detail) of one row, run in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        limit = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        error = None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                call(Path(tmp)) if takes_tmp else call()
        except BaseException as err:  # counting every kind is the point
            error = err
        kind = outcome(error, text, base)
        detail = "" if error is None else f"{type(error).__name__}: {str(error)[:160]}"
        os.write(write, f"{kind}\t{detail}".encode())
        os._exit(0)
    os.close(write)
    start = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return "other", f"hung (killed after {timeout:.0f} s)"
        time.sleep(0.05)
    data = os.read(read, 4096).decode()
    os.close(read)
    if not data:
        return "other", f"crashed (status {status})"
    kind, detail = data.split("\t", 1)
    return kind, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout whose mi_margin to test")
    parser.add_argument("--table", type=Path,
                        default=ROOT / "tests" / "foundation" / "test_bad_inputs.py")
    parser.add_argument("--memory-gib", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only-new", action="store_true", help="skip the old table")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    table = load_table(args.table, args.src)
    # imported here: from the checkout --src names, which load_table put first on sys.path
    import torch

    import mi_margin

    torch.set_num_threads(1)
    print(f"mi_margin from {Path(mi_margin.__file__).parent}")
    counts: dict[str, Counter] = {"old": Counter(), "new": Counter()}
    with tempfile.TemporaryDirectory() as tmp:
        for what, call, text, new in rows(table, Path(tmp)):
            if args.only_new and not new:
                continue
            kind, detail = run_row(call, text, new, args.memory_gib, args.timeout,
                                   mi_margin.MiMarginError)
            counts["new" if new else "old"][kind] += 1
            if kind != "clean":
                print(f"  {kind:8s} {what}: {detail}")
    for name, count in counts.items():
        total = sum(count.values())
        if total:
            print(f"{name} table: {total} bad inputs tried: " +
                  ", ".join(f"{count[k]} {k}" for k in OUTCOMES))


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)

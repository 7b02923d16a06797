"""Benchmark: progress measures and the report of the Nanda zoo entry, against the code at a base
commit, in the same run.

The entry ``nanda_p113_transformer`` (p = 113, 21 checkpoints) is analysed by this checkout and by
a baseline checkout (``--baseline PATH``, or a temporary ``git worktree`` of ``--base``, default
the merge base with ``main``). Every measurement runs in a fresh subprocess with one torch thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``) and ``TQDM_DISABLE=1``, which imports
``mi_margin`` from the checkout measured and prints its wall time and its peak resident memory
(``ru_maxrss``, the whole process: Python, torch and the analysis). Baseline and new runs
alternate, ``--repeat`` times, so that a change of the machine's load hits both. Measured:

- ``forward`` (the model code is the same in both checkouts: measured once, with this one):
  one plain forward pass over the grid per checkpoint, the mean over 7 of the checkpoints:
  ``model(task.tokens)`` (every position, no hooks) and, the stricter unit,
  ``model(task.tokens, final_pos_only=True)`` (only what the last position needs, as the
  analyses run the grid);
- ``progress``: ``mm.progress_measures(run)`` (every checkpoint, default key frequencies);
- ``report``: ``mm.viz.write_report(run, path)``, with its file size.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_analysis.py [--repeat 1]`` → prints the
times, the ratios (baseline / new) and the progress measures' cost in plain forward passes per
checkpoint; writes ``bench/results/analysis.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "nanda_p113_transformer"
#: the child: measures one thing with the mi_margin found first on sys.path
CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
import mi_margin as mm
what, entry, out = sys.argv[1], sys.argv[2], sys.argv[3]
FORWARD_SAMPLE = 7
run = mm.zoo.load(entry)
result = {"module": mm.__file__}
start = time.perf_counter()
if what == "forward":
    steps = sorted(run.checkpoints)
    models = [run.model_at(step) for step in steps[::max(1, len(steps) // FORWARD_SAMPLE)]]
    start = time.perf_counter()
    with torch.no_grad():
        for model in models:
            model(run.task.tokens)
        middle = time.perf_counter()
        for model in models:
            model(run.task.tokens, final_pos_only=True)
    result["per_checkpoint_s"] = (middle - start) / len(models)
    result["last_position_s"] = (time.perf_counter() - middle) / len(models)
    result["checkpoints"] = len(steps)
elif what == "progress":
    table = mm.progress_measures(run).to_dataframe()
    result["rows"] = len(table)
    result["wall_s"] = time.perf_counter() - start
    models = [run.model_at(step) for step in sorted(run.checkpoints)]
    start = time.perf_counter()            # the unit, right after, in the same process
    with torch.no_grad():
        for model in models:
            model(run.task.tokens, final_pos_only=True)
    result["forward_after_s"] = (time.perf_counter() - start) / len(models)
    start = time.perf_counter() - result["wall_s"]
elif what == "report":
    path = mm.viz.write_report(run, out)
    result["bytes"] = path.stat().st_size
result["wall_s"] = time.perf_counter() - start
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def measure(checkout: Path, what: str, out_dir: Path) -> dict[str, Any]:
    """One measurement in a fresh process importing ``mi_margin`` from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    out = out_dir / f"report_{checkout.name}.html"
    proc = subprocess.run([sys.executable, "-c", CHILD, what, ENTRY, str(out)], env=env,
                          cwd=out_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} with {checkout} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(str(checkout)):
        raise RuntimeError(f"imported {result['module']}, not the checkout {checkout}")
    return result


def baseline_checkout(base: str, tmp: Path) -> Path:
    """A detached ``git worktree`` of ``base`` in ``tmp`` (removed by the caller)."""
    path = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), base],
                   check=True, capture_output=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout of the old code")
    parser.add_argument("--base", default=None, help="git commit of the baseline (default: the "
                                                     "merge base of HEAD and main)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["progress", "report"])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mm-bench-analysis-"))
    base = args.base or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
                                       check=True, capture_output=True, text=True).stdout.strip()
    old = args.baseline or baseline_checkout(base, tmp)
    checkouts = {"baseline": old.resolve(), "new": ROOT}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in checkouts}
    try:
        for _ in range(args.repeat):
            for what in ["forward"] + [w for w in ("progress", "report") if w not in args.skip]:
                for name, checkout in checkouts.items():
                    if what == "forward" and name == "baseline":
                        continue
                    results[name].setdefault(what, []).append(measure(checkout, what, tmp))
                    print(name, what, json.dumps(results[name][what][-1]), flush=True)
    finally:
        if args.baseline is None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=False, capture_output=True)
    best = {name: {what: min(r["wall_s"] for r in runs) for what, runs in per.items()}
            for name, per in results.items()}
    full = min(r["per_checkpoint_s"] for r in results["new"]["forward"])
    forward = min(r["last_position_s"] for r in results["new"]["forward"])
    n = results["new"]["forward"][0]["checkpoints"]
    print(f"one torch thread; {ENTRY}, {n} checkpoints; baseline {base[:10]}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"plain forward over the grid: {full:.3f} s per checkpoint (every position), "
          f"{forward:.3f} s (last position only: the unit below)")
    summary: dict[str, Any] = {"forward_s": forward, "forward_all_positions_s": full,
                               "checkpoints": n, "base": base}
    for what in ("progress", "report"):
        if what in args.skip:
            continue
        old_s, new_s = best["baseline"][what], best["new"][what]
        rss = {name: max(r["peak_rss_mb"] for r in results[name][what]) for name in checkouts}
        print(f"{what}: baseline {old_s:.1f} s, new {new_s:.1f} s → {old_s / new_s:.2f}× faster; "
              f"{new_s / n / forward:.2f} (baseline {old_s / n / forward:.2f}) last-position "
              f"forward passes per checkpoint ({new_s / n / full:.2f} of every position); "
              f"peak RSS baseline {rss['baseline']:.0f} MB, new "
              f"{rss['new']:.0f} MB")
        if what == "progress":
            ratio = min(r["wall_s"] / n / r["forward_after_s"] for r in results["new"][what])
            print(f"progress, new: {ratio:.2f} last-position forward passes per checkpoint, "
                  f"against the forward timed right after it in the same process")
        summary[what] = {"baseline_s": old_s, "new_s": new_s, "speedup": old_s / new_s,
                         "forwards_per_checkpoint": new_s / n / forward, "peak_rss_mb": rss}
        if what == "report":
            size = {name: results[name][what][0]["bytes"] for name in checkouts}
            print(f"report file: baseline {size['baseline'] / 1e6:.2f} MB, new "
                  f"{size['new'] / 1e6:.2f} MB")
            summary[what]["bytes"] = size
    (ROOT / "bench/results").mkdir(exist_ok=True)
    (ROOT / "bench/results/analysis.json").write_text(json.dumps(
        {"summary": summary, "runs": results, "machine": platform.platform(),
         "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()

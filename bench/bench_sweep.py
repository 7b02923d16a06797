"""Benchmark: a seed sweep on a local Ray instance vs the same runs one after another.

Runs examples/sweeps/s4_universality.toml (S4 composition, MLP; 12 seeds × the activations given)
twice in one session: on Ray (one run per core, one torch thread each) and sequentially in this
process (``--threads`` torch threads, default 1 like a Ray worker), prints both wall times, the
speed-up, the universality table per activation (Chughtai et al. 2023, Fig. 7) and checks that both
modes give the same metrics. Results go to bench/results/sweep.json. The machine may be shared:
the numbers are what was measured, with the load average alongside.

    python bench/bench_sweep.py [--seeds 12] [--acts quadratic relu] [--steps 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mi_margin.sweep import SweepSpec, key_sets, run_sweep, universality

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["train_loss", "train_acc", "test_loss", "test_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--acts", nargs="+", default=["quadratic", "relu"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, sequential mode")
    parser.add_argument("--out", default="/tmp/bench_sweep")
    args = parser.parse_args()
    base = SweepSpec.load(ROOT / "examples" / "sweeps" / "s4_universality.toml").to_dict()
    base["axes"] = {"model.act_fn": args.acts, "seed": list(range(args.seeds))}
    if args.steps:
        base["train"]["steps"] = args.steps
    spec = SweepSpec.from_dict(base)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    ray_res = run_sweep(spec, out / "ray", num_cpus=cores, cpus_per_run=1)
    load_mid = os.getloadavg()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    seq_res = run_sweep(spec, out / "sequential", sequential=True)
    seq_seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    a, b = ray_res.table, seq_res.table
    diff = float(np.nanmax(np.abs(a[METRICS].to_numpy() - b[METRICS].to_numpy())))
    same_keys = a["key_irreps"].map(list).tolist() == b["key_irreps"].map(list).tolist()
    uni = universality(a, by="model.act_fn")
    sets = pd.concat([key_sets(part).assign(act_fn=act) for act, part in a.groupby("model.act_fn")])
    print(uni.to_string(index=False))
    print(sets.to_string(index=False))
    print(a[["model.act_fn", "seed", "test_acc", "grokking_step", "n_key_irreps",
             "normalized_margin", "margin_ratio", "seconds"]].to_string(index=False))
    result = {
        "spec": spec.to_dict(), "cores": cores, "torch_threads_sequential": torch.get_num_threads(),
        "ray_seconds": ray_res.seconds, "sequential_seconds": seq_seconds,
        "speedup": seq_seconds / ray_res.seconds,
        "mean_run_seconds_ray_worker": float(a["seconds"].mean()),
        "mean_run_seconds_sequential": float(b["seconds"].mean()),
        "loadavg_before_ray": load_before, "loadavg_between": load_mid,
        "loadavg_after_sequential": load_after,
        "max_abs_metric_diff_ray_vs_sequential": diff, "same_key_irreps": same_keys,
        "statuses": a["status"].value_counts().to_dict(),
        "test_acc": a["test_acc"].describe().to_dict(),
        "universality": uni.to_dict("records"), "key_sets": sets.to_dict("records"),
    }
    print(f"Ray: {ray_res.seconds:.1f} s, sequential: {seq_seconds:.1f} s, "
          f"speed-up {result['speedup']:.2f}x on {cores} cores; max |Δ metric| {diff:.2e}; "
          f"load average before/between/after {load_before[0]:.1f}/{load_mid[0]:.1f}/"
          f"{load_after[0]:.1f}")
    path = ROOT / "bench" / "results" / "sweep.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

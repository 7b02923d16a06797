"""Benchmark: seeds per CPU-hour to grokking for Chughtai et al.'s S5 MLP, a loop of single runs
against ``train_batched``.

Each seed is the zoo's recipe ``chughtai_mlp("S5", 0.4, seed, steps)`` (mi_margin/zoo/recipes.py:
its own split and initialisation, full-batch AdamW, evaluation on all pairs every 100 steps). For
N seeds, in interleaved, shuffled rounds, this times
  (a) ``loop``: ``mm.train()`` on each of the N seeds, one after another (the baseline), and
  (b) ``batched``: one ``mm.train_batched()`` call on the N seeds,
both at ``--threads`` torch threads (default 1: one process per core is how seeds are run, and
process CPU time then leaves out the time spent waiting for a core on a shared machine). It
prints ms of CPU time (and wall time) per seed-step, the ratio of each variant to the loop of the
same round set, and the extrapolation to whole seeds: a seed needs about 84,000–100,000 steps to
grok with this recipe (docs/performance.md §3), so seeds per CPU-hour = 3600 s / (CPU s per step ×
steps per seed). Runs are short (``--steps``, default 200: three evaluations instead of the two a
real run has per 200 steps), so the per-step time is measured and the rest extrapolated.
The issue's target is the 50-seed study within 8 hours on this 2-core machine: 16 CPU-hours if
both cores train (two processes of one thread each, as ``mi-margin sweep`` runs them).
Writes bench/results/throughput.json.

Run: ``.venv/bin/python bench/bench_throughput.py [--rounds 3] [--steps 200] [--n 4 8]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

import mi_margin as mm
from mi_margin.zoo.recipes import chughtai_mlp

#: steps Chughtai's S5 MLP takes to grok here (docs/performance.md §3: 72,500–92,600 by seed and
#: rounding; the issue's figure ~84k), the range the extrapolation uses
STEPS_TO_GROK = (84_000, 100_000)
SEEDS, STUDY_HOURS, CORES = 50, 8.0, 2


def seeds(n: int, steps: int) -> list[tuple]:
    """N fresh (model, task, config) triples of the recipe, seeds 0..N-1."""
    return [chughtai_mlp("S5", 0.4, seed, steps) for seed in range(n)]


def time_variant(variant: str, n: int, steps: int) -> tuple[float, float]:
    """(wall, CPU) ms per seed-step of training N seeds by ``variant``."""
    made = seeds(n, steps)
    wall, cpu = time.perf_counter(), time.process_time()
    if variant == "loop":
        for model, task, config in made:
            mm.train(model, task, config)
    else:
        mm.train_batched([m[0] for m in made], [m[1] for m in made], [m[2] for m in made])
    per = 1e3 / (n * steps)
    return (time.perf_counter() - wall) * per, (time.process_time() - cpu) * per


def extrapolate(cpu_ms: float) -> dict[str, float]:
    """Seeds per CPU-hour and hours for the 50-seed study on both cores, per STEPS_TO_GROK."""
    out = {}
    for steps in STEPS_TO_GROK:
        cpu_s = cpu_ms / 1e3 * steps
        out[f"seeds_per_cpu_hour@{steps}"] = 3600 / cpu_s
        out[f"study_hours@{steps}"] = SEEDS * cpu_s / CORES / 3600
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--n", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jobs = [(v, n) for n in args.n for v in ("loop", "batched")]
    times: dict[tuple[str, int], list[tuple[float, float]]] = {job: [] for job in jobs}
    for r in range(args.rounds):
        for job in random.sample(jobs, len(jobs)):
            times[job].append(time_variant(*job, args.steps))
            print(f"round {r}: {job[0]} N={job[1]}: {times[job][-1][1]:.2f} ms CPU per seed-step",
                  flush=True)
    rows = {}
    print(f"\n== S5 MLP, {args.threads} torch thread(s), {args.steps} steps per seed, "
          f"{args.rounds} rounds (medians) ==")
    print(f"{'variant':12s} {'N':>3s} {'CPU ms':>8s} {'wall ms':>8s} {'vs loop':>8s} "
          f"{'seeds/CPU-h':>12s} {'50 seeds, h':>12s}")
    for variant, n in jobs:
        cpu = statistics.median(t[1] for t in times[(variant, n)])
        wall = statistics.median(t[0] for t in times[(variant, n)])
        loop_cpu = statistics.median(t[1] for t in times[("loop", n)])
        row = {"cpu_ms_per_seed_step": cpu, "wall_ms_per_seed_step": wall,
               "steps_per_cpu_second": 1e3 / cpu, "ratio_vs_loop": loop_cpu / cpu,
               "cpu_ms_all_rounds": [t[1] for t in times[(variant, n)]], **extrapolate(cpu)}
        rows[f"{variant} N={n}"] = row
        lo, hi = STEPS_TO_GROK
        print(f"{variant:12s} {n:3d} {cpu:8.2f} {wall:8.2f} {row['ratio_vs_loop']:7.2f}× "
              f"{row[f'seeds_per_cpu_hour@{hi}']:5.2f}–{row[f'seeds_per_cpu_hour@{lo}']:5.2f} "
              f"{row[f'study_hours@{lo}']:5.1f}–{row[f'study_hours@{hi}']:5.1f}")
    print(f"(ratio: loop's CPU time / the variant's, same N; extrapolated to {STEPS_TO_GROK} steps "
          f"per seed; the study on {CORES} cores at one process per core; target "
          f"{STUDY_HOURS:.0f} h)")
    out = Path(args.out)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": args.threads,
                               "steps": args.steps, "rounds": args.rounds,
                               "steps_to_grok": STEPS_TO_GROK, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

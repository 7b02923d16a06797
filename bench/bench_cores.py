"""Benchmark: what two training processes deliver on this 2-core machine, against one.

bench_throughput.py measures the CPU time of a training step in one process and extrapolates the
50-seed S5 study to both cores as if two processes each ran at that speed. Whether they do depends
on what the cores share (the L3 cache, memory bandwidth). This runs the zoo's S5 recipe
(``chughtai_mlp("S5", 0.4, seed, steps)``, one torch thread) in P = 1 and P = 2 concurrent
processes, in interleaved rounds, and prints per process the CPU ms per step, and for the machine
the steps per wall-second of all processes together, with the ratio of P = 2 to P = 1 (2.0 would
be two cores working as two). The study's length follows from the measured rate and the steps the
shipped S5 seeds took (``mm.zoo.population("chughtai_S5_mlp")``, their mean). Run it on a machine
with nothing else running; it reports the load average before each round.

The recipe accumulates the full-batch gradient over chunks of 2048 examples (``ZOO_MICROBATCH``,
kept so that stored configs and resumed runs stay the recipe's); ``--microbatch default`` times
``TrainConfig``'s default chunk instead (the same gradient, summed in another order).

Run: ``.venv/bin/python bench/bench_cores.py [--rounds 3] [--steps 1000] [--microbatch default]``
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import statistics
import time

import torch

import mi_margin as mm
from mi_margin.zoo.recipes import chughtai_mlp

SEEDS, CORES = 50, 2


def train_one(seed: int, steps: int, microbatch: str, out: mp.Queue) -> None:
    """One seed of the recipe for ``steps`` steps; puts (CPU ms per step, wall seconds)."""
    torch.set_num_threads(1)
    model, task, config = chughtai_mlp("S5", 0.4, seed, steps)
    if microbatch == "default":
        config = dataclasses.replace(config, microbatch=mm.TrainConfig().microbatch)
    wall, cpu = time.perf_counter(), time.process_time()
    mm.train(model, task, config)
    out.put((1e3 * (time.process_time() - cpu) / steps, time.perf_counter() - wall))


def round_of(processes: int, steps: int, microbatch: str) -> tuple[list[float], float]:
    """Per process CPU ms per step, and steps per wall-second of all of them together."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=train_one, args=(seed, steps, microbatch, out))
               for seed in range(processes)]
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    return [cpu for cpu, _ in results], processes * steps / max(wall for _, wall in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--microbatch", choices=["recipe", "default"], default="recipe")
    args = parser.parse_args()
    rates: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.rounds):
        for processes in (1, 2) if r % 2 == 0 else (2, 1):
            load = os.getloadavg()[0]
            cpu, rate = round_of(processes, args.steps, args.microbatch)
            rates[processes].append(rate)
            print(f"round {r}: {processes} process(es), load {load:.1f}: CPU ms/step "
                  f"{', '.join(f'{c:.1f}' for c in cpu)}; {rate:.1f} steps per wall-second",
                  flush=True)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    steps = float(mm.zoo.population("chughtai_S5_mlp").step.mean())
    print(f"median steps per wall-second: 1 process {one:.1f}, 2 processes {two:.1f} "
          f"(ratio {two / one:.2f}; {CORES}.0 = both cores at one process's speed)")
    print(f"microbatch {args.microbatch}: {SEEDS} seeds of {steps:,.0f} steps (the shipped seeds' "
          f"mean) on {CORES} processes: "
          f"{SEEDS * steps / two / 3600:.1f} h")


if __name__ == "__main__":
    main()

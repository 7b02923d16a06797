"""Benchmark: ``mm.train()`` on Chughtai's S5 MLP with and without the fused ReLU head.

The fused head (``_ReluCrossEntropy`` in mi_margin/models/fast_paths.py) forms the loss and its
gradients chunk by chunk in the forward pass. Its gain depends on the cache staying warm from step
to step, so it is measured here as users get it: whole ``mm.train()`` calls of ``--steps`` steps
(evaluation only at the start), each on a fresh model, alternating in shuffled rounds between
the fused head and the same path with the head switched off (``relu_head_applies`` patched to
False: ``_ReluLayer`` then ``cross_entropy64``, what ``train()`` did before), at 1 and at 2 torch
threads. Prints ms per step (median over rounds of wall and process CPU time) and the ratio
without / with the head. Writes bench/results/fused_head.json.

Run: ``.venv/bin/python bench/bench_fused_head.py [--rounds 8] [--steps 200]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

import mi_margin as mm
from mi_margin.models import fast_paths

sys.path.insert(0, str(Path(__file__).parent))
from bench_step_parts import chughtai_s5

VARIANTS = ["fused head", "no fused head"]


def time_train(variant: str, steps: int) -> tuple[float, float]:
    """(wall, CPU) ms per step of one ``mm.train()`` call."""
    applies = fast_paths.relu_head_applies
    if variant == "no fused head":
        fast_paths.relu_head_applies = lambda model: False  # type: ignore[assignment]
    try:
        model, task = chughtai_s5()
        wall, cpu = time.perf_counter(), time.process_time()
        mm.train(model, task, mm.TrainConfig(steps=steps, eval_every=10 * steps, progress=False))
        return ((time.perf_counter() - wall) * 1e3 / steps, (time.process_time() - cpu) * 1e3 / steps)
    finally:
        fast_paths.relu_head_applies = applies  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fused_head.json"))
    args = parser.parse_args()
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in random.sample(VARIANTS, len(VARIANTS)):
                times[variant].append(time_train(variant, args.steps))
        medians = {v: {"wall_ms": statistics.median(t[0] for t in ts),
                       "cpu_ms": statistics.median(t[1] for t in ts)} for v, ts in times.items()}
        ratio = medians["no fused head"]["wall_ms"] / medians["fused head"]["wall_ms"]
        results[f"threads={threads}"] = {**medians, "ratio_wall": ratio}
        print(f"\n== {threads} torch thread(s), {args.steps} steps per call, {args.rounds} rounds ==")
        for variant, m in medians.items():
            print(f"{variant:15s} {m['wall_ms']:7.2f} ms/step wall {m['cpu_ms']:7.2f} ms/step CPU")
        print(f"without / with the fused head: {ratio:.2f}×")
    out = Path(args.out)
    out.write_text(json.dumps({"torch": torch.__version__, "steps": args.steps,
                               "rounds": args.rounds, "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

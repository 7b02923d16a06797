"""What writing a run folder costs, as a fraction of training time (issue: snapshots ≤ 5%).

For Nanda et al.'s transformer (p=113, 30% train) and Chughtai et al.'s S5 MLP (embed 256 per
operand, hidden 128, ReLU, 40% train), trains the same steps three times in one process:
without a run folder (the baseline), with one at the default adaptive cadence, and with one
snapshot per evaluation (every 100 steps, what 0.1 did). Prints per-step time, the time one
snapshot takes, the share of wall time spent in snapshot writes, and what that share would be
with a 4x faster training step (the cadence of 0.1 scales with steps; the adaptive one with time).

    OMP_NUM_THREADS=1 python bench/bench_snapshots.py [steps]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import mi_margin as mm
from mi_margin.training import run_folder

SPEEDUP = 4  # the faster step another change targets (issue #13)


def models() -> dict[str, tuple[Any, Any]]:
    nanda = mm.ModularAddition(p=113, train_fraction=0.3)
    s5 = mm.GroupComposition("S5", train_fraction=0.4)
    return {
        "Nanda transformer p=113": (nanda, lambda: mm.HookedOneLayerTransformer(
            mm.TransformerConfig.for_task(nanda))),
        "Chughtai S5 MLP": (s5, lambda: mm.HookedMLP(mm.MLPConfig.for_task(
            s5, input_style="embed", d_embed=256, d_mlp=128, act_fn="relu"))),
    }


class WriteTimer:
    """Wraps RunWriter.publish / mark to add up the time spent writing snapshots."""

    def __init__(self) -> None:
        self.seconds, self.count = 0.0, 0
        self.originals = {n: getattr(run_folder.RunWriter, n) for n in ("publish", "mark")}
        for name, original in self.originals.items():
            setattr(run_folder.RunWriter, name, self.timed(original))

    def timed(self, original: Any) -> Any:
        def wrapper(writer: Any, *args: Any) -> Any:
            start = time.perf_counter()
            out = original(writer, *args)
            self.seconds += time.perf_counter() - start
            self.count += 1
            return out
        return wrapper

    def close(self) -> None:
        for name, original in self.originals.items():
            setattr(run_folder.RunWriter, name, original)


def timed_train(task: Any, build: Any, cfg: mm.TrainConfig, out: Path | None
                ) -> tuple[float, float, int]:
    timer = WriteTimer()
    try:
        start = time.perf_counter()
        mm.train(build(), task, cfg, out_dir=out)
        return time.perf_counter() - start, timer.seconds, timer.count
    finally:
        timer.close()


def main(steps: int) -> None:
    torch.set_num_threads(1)
    print(f"{steps} steps, eval every 100; shares are of wall time with the run folder")
    print(f"{'model':26} {'cadence':10} {'ms/step':>8} {'writes':>6} {'ms/write':>9} "
          f"{'write share':>11} {'at 4x step':>10} {'wall vs none':>12}")
    for name, (task, build) in models().items():
        cfg = mm.TrainConfig(steps=steps, eval_every=100, progress=False)
        base, _, _ = timed_train(task, build, cfg, None)
        per_step = base / steps
        for cadence, c in [("adaptive", cfg), ("every 100", cfg.replace(snapshot_every=100))]:
            with tempfile.TemporaryDirectory() as tmp:
                wall, writes, n = timed_train(task, build, c, Path(tmp) / "run")
            share = writes / wall
            # with a 4x faster step: the adaptive cadence keeps its time budget; a step cadence
            # keeps its write count while the training time shrinks
            fast_train = (wall - writes) / SPEEDUP
            fast = share if cadence == "adaptive" else writes / (fast_train + writes)
            print(f"{name:26} {cadence:10} {1e3 * per_step:8.2f} {n:6d} {1e3 * writes / n:9.1f} "
                  f"{100 * share:10.2f}% {100 * fast:9.2f}% {wall / base:12.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 600)

"""Train the seeds of a zoo population one after another (one torch thread), exporting each.

Command line::

    python -m mi_margin.study.populate NAME --runs RUNS --dest DEST [--seeds 0-49]

Seed ``s`` trains in ``RUNS/NAME/seed_s/run`` (resumable after any kill: run it again) and, once
its stop rule is met, is exported to ``DEST/NAME/seed_s`` (:func:`~mi_margin.study.seeds.export_seed`).
Seeds already exported are skipped, so several processes may share a population if given disjoint
``--seeds``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mi_margin.errors import MiMarginError
from mi_margin.study.seeds import export_seed, is_exported, train_seed
from mi_margin.study.stop import StopRule
from mi_margin.zoo.recipes import POPULATIONS


def seed_range(text: str) -> list[int]:
    """``"0-49"`` or ``"3,5,8"`` as a list of seeds."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",")]
    except ValueError as err:
        raise MiMarginError(f"--seeds must look like 0-49 or 3,5,8, got {text!r}") from err


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mi_margin.study.populate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(POPULATIONS))
    parser.add_argument("--runs", required=True, help="where the seeds' run folders live")
    parser.add_argument("--dest", required=True, help="where finished seeds are exported")
    parser.add_argument("--seeds", help="default: all of the population's seeds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pop = POPULATIONS[args.name]
    rule = StopRule()
    for seed in seed_range(args.seeds) if args.seeds else range(pop.seeds):
        dest = Path(args.dest) / args.name / f"seed_{seed}"
        if is_exported(dest):
            continue
        start = time.perf_counter()
        run = train_seed(pop.make, seed, Path(args.runs) / args.name / f"seed_{seed}", rule)
        export_seed(run, dest, pop.make(seed)[2].steps, rule)
        print(f"{args.name} seed {seed}: step {run.step}, test acc "
              f"{run.history['test_acc'].iloc[-1]:.4f}, {time.perf_counter() - start:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()

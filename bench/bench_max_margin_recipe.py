"""Benchmark: how close the max-margin recipe gets to γ*, and how fast (docs/mathematics.md §1.6).

For each case: train the theorem's network with :func:`mi_margin.theory.recipe.train_to_max_margin`
with both methods ("gd": Morwani et al.'s full-batch GD with LR doubling; "adam": AdamW with LR
halving; both with the L_{2,ν} penalty and no weight decay). Report the final and best normalized
margin / γ*, the first step reaching 0.9 and 0.99 of γ*, wall time, and the ratio after the
optional LP neuron-reweighting finish (:func:`reweight_neurons`). A diverged run is recorded as
such. Writes bench/results/max_margin_recipe.json.

Usage:
    .venv/bin/python bench/bench_max_margin_recipe.py                 # small cases
    .venv/bin/python bench/bench_max_margin_recipe.py --morwani       # p=71, m=500, 40k steps
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

import mi_margin as mm
from mi_margin.analysis.margin import margin
from mi_margin.errors import TrainingDivergedError
from mi_margin.theory.predictions import max_margin
from mi_margin.theory.recipe import reweight_neurons, train_to_max_margin

SMALL: list[tuple[str, Any, dict[str, Any]]] = [
    ("Z5", lambda: mm.ModularAddition(p=5), {"steps": 1000}),
    ("Z7", lambda: mm.ModularAddition(p=7), {"steps": 1000}),
    ("Z11", lambda: mm.ModularAddition(p=11), {"steps": 2000}),
    ("Z5_k3", lambda: mm.ModularAddition(p=5, k=3), {"steps": 1000}),
    ("parity_10_4", lambda: mm.SparseParity(n=10, k=4), {"steps": 1000, "penalty": 1e-3,
                                                           "lr": 0.1}),
    ("S3", lambda: mm.GroupComposition("S3"), {"steps": 2000}),
    ("D5", lambda: mm.GroupComposition("D5"), {"steps": 2000}),
    ("S4", lambda: mm.GroupComposition("S4"), {"steps": 2000}),
    ("A5_LP", lambda: mm.GroupComposition("A5"), {"steps": 2000}),
]

MORWANI = [("Z71_m500_morwani", lambda: mm.ModularAddition(p=71),
            {"width": 500, "steps": 40_000, "lr": 0.05, "penalty": 1e-4,
             "lr_milestones": tuple(1000 * i for i in range(1, 11)), "eval_every": 1000})]


#: largest dense LP (constraints × neurons) the reweighting finish is run on
MAX_LP_ENTRIES = 20_000_000


def first_step(history: Any, threshold: float) -> int | None:
    hit = history[history["ratio_to_gamma"] >= threshold]["step"]
    return int(hit.iloc[0]) if len(hit) else None


def run_case(name: str, make: Any, kwargs: dict[str, Any], method: str) -> dict[str, Any]:
    task = make()
    gamma = max_margin(task).gamma
    extra = dict(kwargs)
    if method == "adam":
        extra = {k: v for k, v in extra.items() if k not in ("lr", "lr_milestones")}
    t0 = time.perf_counter()
    try:
        run = train_to_max_margin(task, method=method, **extra)
    except TrainingDivergedError as err:
        return {"case": name, "method": method, "diverged": str(err)}
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_rows = len(task.labels) * (task.d_vocab_out - 1) * run.model.cfg.d_mlp
    polished = (margin(reweight_neurons(run.model, task), task).normalized or float("nan")
                if n_rows <= MAX_LP_ENTRIES else float("nan"))      # dense LP: skip huge cases
    lp_seconds = time.perf_counter() - t1
    h = run.history
    return {"case": name, "method": method, "steps": int(h["step"].iloc[-1]),
            "width": run.model.cfg.d_mlp, "ratio": float(h["ratio_to_gamma"].iloc[-1]),
            "max_ratio": float(h["ratio_to_gamma"].max()), "step_0.9": first_step(h, 0.9),
            "step_0.99": first_step(h, 0.99), "seconds": round(seconds, 2),
            "ratio_after_reweight": polished / gamma, "reweight_seconds": round(lp_seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--morwani", action="store_true", help="run Morwani's p=71, m=500 case")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = MORWANI if args.morwani else SMALL
    rows = []
    for name, make, kwargs in cases:
        for method in ("gd",) if args.morwani else ("gd", "adam"):
            row = run_case(name, make, kwargs, method)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / ("max_margin_morwani.json" if args.morwani else "max_margin_recipe.json")
    path.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                "threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

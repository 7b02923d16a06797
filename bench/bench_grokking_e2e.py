"""End to end: train a paper's model with ``mm.train()`` until it groks, and say where the time went.

* ``--model nanda`` (default): Nanda et al.'s configuration, ``ModularAddition(p=113,
  train_fraction=0.3, seed=0)``, the default ``TransformerConfig`` (seed ``--seed``), the default
  ``TrainConfig`` (their recipe: full batch, AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98)),
  stopped at test accuracy 1.0 (every one of the 8,939 held-out pairs right).
* ``--model chughtai-s5``: Chughtai et al.'s S5 MLP (embed 256 per operand, concatenated, 128 ReLU
  units), the zoo's recipe ``chughtai_S5_mlp_seed<seed>`` (``GroupComposition("S5",
  train_fraction=0.4, seed=seed)``, AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98), full batch)
  with the default micro-batching, stopped at test accuracy ``--target`` (default 0.99). The zoo's
  seeds 1, 2 and 3 grokked at 92.6k, 122k and 105.8k steps (their cards).

The wall time is split into optimizer steps, evaluation (``ModelEngine.evaluate`` and the
recorder's ``weight_norm_sq``) and snapshots (the optimizer state copies and ``Recorder.snapshot``:
the in-memory run state and, with ``--out-dir``, the file writes), by timing those functions
(:data:`TIMED`); the wrapped names are printed and saved, so the split stays honest if the loop
changes. ``--threads`` torch threads (default 1, the advice of docs/performance.md for many runs
at once; the issue's end-to-end targets are for one run on both cores, ``--threads 2``). The
process's CPU time is saved too: on a shared machine it says what the wall time would be
without the other tenants (wall ≫ CPU means the run waited for a core).
Writes bench/results/grokking_e2e_<model>_seed<seed>_threads<n>[_out].json.

Run: ``.venv/bin/python bench/bench_grokking_e2e.py [--model nanda] [--seed 0] [--threads 2] [--out-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import mi_margin as mm
from mi_margin.training import loop, recorder
from mi_margin.zoo.recipes import chughtai_mlp

#: what the training loop calls, by bucket: (owner, attribute)
TIMED: dict[str, list[tuple[Any, str]]] = {
    "evaluation": [(loop.ModelEngine, "evaluate"), (recorder, "weight_norm_sq")],
    "snapshot": [(loop.ModelEngine, "optimizer_state"), (recorder.Recorder, "snapshot")]}


def nanda(seed: int, target: float, max_steps: int, eval_every: int) -> tuple[Any, Any, Any]:
    task = mm.ModularAddition(p=113, train_fraction=0.3, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, seed=seed))
    config = mm.TrainConfig(steps=max_steps, target_test_acc=target, eval_every=eval_every)
    return model, task, config


def chughtai_s5(seed: int, target: float, max_steps: int, eval_every: int
                ) -> tuple[Any, Any, Any]:
    """The zoo's recipe (task and model seeded by ``seed``, as ``chughtai_S5_mlp_seed<seed>``)
    with the default micro-batching and this run's stopping rule."""
    model, task, config = chughtai_mlp("S5", 0.4, seed, max_steps)
    config = config.replace(target_test_acc=target, eval_every=eval_every,
                            microbatch=mm.TrainConfig().microbatch)
    return model, task, config


MODELS = {"nanda": (nanda, 1.0, 60_000), "chughtai-s5": (chughtai_s5, 0.99, 300_000)}


def timed(fn: Callable[..., Any], bucket: str, seconds: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[bucket] += time.perf_counter() - start
    return wrapper


def instrument(seconds: dict[str, float]) -> dict[str, str]:
    """Wrap the evaluation and snapshot functions the training loop calls; {name: bucket}."""
    wrapped = {}
    for bucket, targets in TIMED.items():
        for owner, name in targets:
            setattr(owner, name, timed(getattr(owner, name), bucket, seconds))
            wrapped[f"{owner.__name__}.{name}"] = bucket
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="nanda")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation seed")
    parser.add_argument("--target", type=float, default=None, help="test accuracy to stop at")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out-dir", default=None, help="write the run folder here while training")
    parser.add_argument("--result", default=None, help="where to write the JSON summary")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build, default_target, default_steps = MODELS[args.model]
    target = default_target if args.target is None else args.target
    model, task, config = build(args.seed, target, args.max_steps or default_steps, args.eval_every)
    seconds: dict[str, float] = defaultdict(float)
    wrapped = instrument(seconds)
    print(f"{args.model}: {task!r}, seed {args.seed}, target test acc {target}; timing {wrapped}",
          flush=True)
    load_before, start, cpu_start = os.getloadavg(), time.perf_counter(), time.process_time()
    run = mm.train(model, task, config, out_dir=args.out_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    last = run.history.iloc[-1]
    steps_s = wall - seconds["evaluation"] - seconds["snapshot"]
    result = {
        "model": args.model, "seed": args.seed, "task": repr(task), "target_test_acc": target,
        "status": run.status, "steps": run.step, "wall_s": wall, "process_cpu_s": cpu,
        "final": {k: float(last[k]) for k in ["train_loss", "train_acc", "test_loss", "test_acc"]},
        "split_s": {"steps": steps_s, "evaluation": seconds["evaluation"],
                    "snapshot": seconds["snapshot"]},
        "ms_per_step": 1e3 * steps_s / max(run.step, 1),
        "evaluations": len(run.history), "out_dir": args.out_dir, "timed_functions": wrapped,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    suffix = "_out" if args.out_dir else ""
    out = Path(args.result or Path(__file__).parent / "results" /
               f"grokking_e2e_{args.model}_seed{args.seed}_threads{args.threads}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

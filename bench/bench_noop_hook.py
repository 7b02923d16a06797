"""What a no-op hook on the MLP's ``hook_post`` costs ``mm.train``, measured in one process.

For each case (the model families ``train()`` serves) one process trains the same model, from the
same weights, for ``--steps`` steps without a hook and with a TransformerLens hook that returns
None on ``blocks.0.mlp.hook_post`` (``model.add_hook``), alternating which goes first, ``--rounds``
times. Each round gives a ratio of CPU time per step, with hook / without; the figure is the median
of those ratios (interleaving cancels the drift of a shared machine; CPU time rather than wall time,
which mostly measures the other tenants). A hook on the hidden layer is seen by the fast paths
(docs/performance.md §1): the hook point is called with the tensor the fast path gives it, and a
ReLU MLP leaves its fused layer and head, so the ratio is the price of observing the hidden layer.

Run: ``.venv/bin/python bench/bench_noop_hook.py [--steps 60 --rounds 9]``; writes
bench/results/noop_hook.json and prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import mi_margin as mm

HOOK = "blocks.0.mlp.hook_post"


def theory_quadratic() -> tuple[Any, Any]:
    task = mm.ModularAddition(p=59, train_fraction=0.4)
    return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=256)), task


def embed_relu_s4() -> tuple[Any, Any]:
    task = mm.GroupComposition("S4", train_fraction=0.5)
    return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=128, d_embed=64, act_fn="relu",
                                              input_style="embed", use_biases=True)), task


def parity_relu() -> tuple[Any, Any]:
    task = mm.SparseParity(n=12, k=3, train_fraction=0.5)
    return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=128, act_fn="relu")), task


def transformer_p31() -> tuple[Any, Any]:
    task = mm.ModularAddition(p=31, train_fraction=0.4)
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task)), task


CASES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "mlp_theory_quadratic_p59": theory_quadratic, "mlp_embed_relu_S4": embed_relu_s4,
    "mlp_parity_relu_n12": parity_relu, "transformer_p31": transformer_p31}


def noop(act: torch.Tensor, hook: Any) -> None:
    """A hook that reads nothing and changes nothing."""


def ms_per_step(model: Any, task: Any, start: dict[str, torch.Tensor], cfg: mm.TrainConfig,
                hooked: bool) -> float:
    """CPU ms per step of ``cfg.steps`` steps from the weights ``start``, with or without the hook."""
    model.load_state_dict(start)
    model.reset_hooks()
    if hooked:
        model.add_hook(HOOK, noop)
    begin = time.process_time()
    mm.train(model, task, cfg)
    seconds = time.process_time() - begin
    model.reset_hooks()
    return 1e3 * seconds / cfg.steps


def measure(case: str, steps: int, rounds: int) -> dict[str, Any]:
    """Per round: ms/step without and with the hook and their ratio; medians over the rounds."""
    model, task = CASES[case]()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = mm.TrainConfig(steps=steps, eval_every=steps, progress=False,
                         checkpoint_schedule="none")
    for hooked in (False, True):                              # warm-up of both paths
        ms_per_step(model, task, start, cfg.replace(steps=3, eval_every=3), hooked)
    plain, hooked, ratios = [], [], []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        got = {h: ms_per_step(model, task, start, cfg, h) for h in order}
        plain.append(got[False])
        hooked.append(got[True])
        ratios.append(got[True] / got[False])
    return {"plain_ms": statistics.median(plain), "hooked_ms": statistics.median(hooked),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "raw": {"plain": plain, "hooked": hooked}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "noop_hook.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_DISABLE", "1")
    load_before = os.getloadavg()
    summary = {}
    print(f"{'case':26s} {'no hook ms':>10s} {'hook ms':>8s} {'ratio':>6s} {'(min-max)':>12s}")
    for case in CASES:
        res = summary[case] = measure(case, args.steps, args.rounds)
        print(f"{case:26s} {res['plain_ms']:10.2f} {res['hooked_ms']:8.2f} {res['ratio']:6.3f} "
              f"({res['ratio_min']:.3f}-{res['ratio_max']:.3f})")
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread, "
          f"{args.steps} steps x {args.rounds} rounds")
    Path(args.out).write_text(json.dumps({"steps": args.steps, "rounds": args.rounds,
                                          "load_before": load_before, "load_after": load_after,
                                          "cases": summary}, indent=1))


if __name__ == "__main__":
    main()

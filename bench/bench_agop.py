"""Benchmark: AGOP of a p = 113, k = 2, width-512 quadratic MLP over all p² inputs.

Compares, in one run, :func:`mi_margin.analysis.agop.agop` (``method="jacrev"``: chunked
``vmap(jacrev)``; ``method="factored"``) with a per-example autograd loop through the model's own
forward (one ``autograd.grad`` per example and class). The loop is run on a random subset of
examples and its time extrapolated linearly to all inputs (printed as such); on that subset its
AGOP is also compared with the jacrev one. Writes ``bench/results/agop.json``.

Run: ``.venv/bin/python bench/bench_agop.py [--loop-examples 40] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

import mi_margin as mm
from mi_margin.analysis.agop import (
    agop,
    layer_function,
    layer_inputs,
    mean_gradient_outer_product,
)

P, WIDTH = 113, 512
T = TypeVar("T")


def loop_agop(model: mm.HookedMLP, task: mm.ModularAddition, idx: torch.Tensor) -> torch.Tensor:
    """Per-example, per-class autograd through the model's forward (one-hot made continuous)."""
    k, V, _ = model.W_in.shape
    total = torch.zeros(k * V, k * V, dtype=torch.float64)
    for i in idx.tolist():
        x = torch.nn.functional.one_hot(task.inputs[i], V).double().reshape(1, k * V)
        x.requires_grad_(True)

        def embed(_: torch.Tensor, hook: object, x: torch.Tensor = x) -> torch.Tensor:
            return torch.einsum("bkv,kvm->bkm", x.view(1, k, V), model.W_in)

        logits = model.run_with_hooks(task.inputs[i:i + 1], fwd_hooks=[("hook_embed", embed)])
        for c in range(logits.shape[1]):
            (g,) = torch.autograd.grad(logits[0, c], x, retain_graph=True)
            total += g.T @ g
    return total / len(idx)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """fn's result and its wall-clock seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop-examples", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "agop.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = mm.ModularAddition(p=P, k=2)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=WIDTH, act_fn="quadratic",
                                               dtype="float64", seed=0))
    n = len(task.labels)
    G_jac, t_jac = timed(lambda: agop(model, task, subset="all", method="jacrev").matrix)
    G_fac, t_fac = timed(lambda: agop(model, task, subset="all", method="factored").matrix)

    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: args.loop_examples]
    G_loop, t_loop = timed(lambda: loop_agop(model, task, idx))
    fn = layer_function(model)
    G_sub = mean_gradient_outer_product(fn, layer_inputs(model, task, idx), P)
    t_loop_all = t_loop * n / len(idx)

    def rel(A: torch.Tensor, B: torch.Tensor) -> float:
        return float((A - B).abs().max() / B.abs().max())

    result = {
        "setting": {"p": P, "k": 2, "d_mlp": WIDTH, "act_fn": "quadratic", "n_inputs": n,
                    "input_dim": 2 * P, "classes": P, "dtype": "float64",
                    "threads": args.threads, "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(),
                    "load_average_1min_at_end": os.getloadavg()[0]},
        "seconds": {"jacrev_all": t_jac, "factored_all": t_fac,
                    "loop_subset": t_loop, "loop_subset_examples": len(idx),
                    "loop_all_extrapolated": t_loop_all},
        "speedup_vs_loop": {"jacrev": t_loop_all / t_jac, "factored": t_loop_all / t_fac},
        "max_rel_error": {"factored_vs_jacrev_all": rel(G_fac, G_jac),
                          "jacrev_vs_loop_subset": rel(G_sub, G_loop)},
    }
    print(f"AGOP, p={P}, k=2, width {WIDTH}, quadratic, all {n} inputs, "
          f"{args.threads} thread(s), float64")
    print(f"  jacrev (vmap, chunked):      {t_jac:8.2f} s")
    print(f"  factored:                    {t_fac:8.2f} s")
    print(f"  per-example autograd loop:   {t_loop:8.2f} s on {len(idx)} examples "
          f"-> {t_loop_all:8.1f} s extrapolated linearly to {n} (not run on all)")
    print(f"  speed-up vs loop: jacrev x{result['speedup_vs_loop']['jacrev']:.1f}, "
          f"factored x{result['speedup_vs_loop']['factored']:.1f}")
    print(f"  max rel. error: factored vs jacrev {result['max_rel_error']['factored_vs_jacrev_all']:.1e}; "
          f"jacrev vs loop (subset) {result['max_rel_error']['jacrev_vs_loop_subset']:.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

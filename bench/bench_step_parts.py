"""Where one training step's time goes, for the Nanda transformer and Chughtai's S5 MLP.

For each model on ``train()``'s path (table fast path, ``cross_entropy64``, one chunk: the default
micro-batch), in this thread's CPU time (one torch thread; on a shared machine wall time mostly
measures the other tenants): the forward (logits), ``cross_entropy64`` with its backward (and, to
compare, F.cross_entropy on float64 logits, the float64 arithmetic it replaced, and on float32
logits, which rounds small losses away), the rest of
the backward, the AdamW update in torch's three implementations (for-loop, the default on CPU;
``foreach``; ``fused``), one evaluation of all pairs (what ``train()`` does every ``eval_every``
steps) and the whole step at other micro-batch sizes (with train()'s loss,
``summed_cross_entropy``, which takes the fused ReLU head for the S5 MLP, and once without it).
Each number is the median of ``--repeats`` measurements taken in interleaved rounds. Writes
bench/results/step_parts.json.

Run: ``.venv/bin/python bench/bench_step_parts.py [--repeats 15]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import mi_margin as mm
from mi_margin.models.evaluation import cross_entropy64, evaluate, model_inputs
from mi_margin.models.fast_paths import summed_cross_entropy


def nanda() -> tuple[Any, Any]:
    task = mm.ModularAddition(p=113, train_fraction=0.3, seed=0)
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task)), task


def chughtai_s5() -> tuple[Any, Any]:
    task = mm.GroupComposition("S5", train_fraction=0.4, seed=0)
    return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=128, d_embed=256, act_fn="relu",
                                              input_style="embed", use_biases=True)), task


def parts(model: Any, task: Any) -> dict[str, Callable[[], None]]:
    """Closures, each doing one part of a step (or a whole step) on the training set."""
    x, y = model_inputs(model, task)[task.train_idx], task.labels[task.train_idx]
    default = mm.TrainConfig().microbatch or len(y)
    chunks = list(torch.arange(len(y)).split(default))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizers = {kind: torch.optim.AdamW(params, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98),
                                          **({} if kind == "for-loop" else {kind: True}))
                  for kind in ["for-loop", "foreach", "fused"]}
    logits = [model.last_logits(x[c]).detach().requires_grad_() for c in chunks]

    def forward() -> None:
        with torch.no_grad():
            for c in chunks:
                model.last_logits(x[c])

    def loss64() -> None:
        for z, c in zip(logits, chunks, strict=True):
            (cross_entropy64(z, y[c], "sum") / len(y)).backward()

    def loss64_unfused() -> None:
        for z, c in zip(logits, chunks, strict=True):
            (torch.nn.functional.cross_entropy(z.double(), y[c], reduction="sum") / len(y)).backward()

    def loss32() -> None:
        for z, c in zip(logits, chunks, strict=True):
            (torch.nn.functional.cross_entropy(z, y[c], reduction="sum") / len(y)).backward()

    def forward_backward(microbatch: int | None, head: bool = True) -> Callable[[], None]:
        """train()'s loss (the fused ReLU head where it applies), or with ``head=False`` the
        logits' loss (``_ReluLayer`` then ``cross_entropy64``)."""
        def run() -> None:
            model.zero_grad(set_to_none=True)
            for c in torch.arange(len(y)).split(microbatch or len(y)):
                loss = summed_cross_entropy(model, x[c], y[c]) if head else \
                    cross_entropy64(model.last_logits(x[c]), y[c], "sum")
                (loss / len(y)).backward()
        return run

    def adamw(kind: str) -> Callable[[], None]:
        return optimizers[kind].step

    forward_backward(default)()
    out = {"forward (logits, no grad)": forward, "cross_entropy64 + its backward": loss64,
           "(F.cross_entropy(z.double()): float64 arithmetic)": loss64_unfused,
           "(F.cross_entropy(z) in float32: small losses lost)": loss32,
           f"forward + loss + backward, microbatch {default} (default)": forward_backward(default),
           "(the same without the fused ReLU head)": forward_backward(default, head=False),
           "forward + loss + backward, microbatch 2048 (former default)": forward_backward(2048),
           "forward + loss + backward, microbatch 1024": forward_backward(1024),
           "evaluation of all pairs (train + test)": lambda: [
               evaluate(model, task, idx) for idx in (task.train_idx, task.test_idx)]}
    out |= {f"AdamW step, {kind}": adamw(kind) for kind in optimizers}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "step_parts.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict[str, float]] = {}
    for name, build in [("Nanda transformer p=113", nanda), ("Chughtai S5 MLP", chughtai_s5)]:
        model, task = build()
        fns = parts(model, task)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.repeats):
            for part, fn in fns.items():
                start = time.thread_time()
                fn()
                times[part].append((time.thread_time() - start) * 1e3)
        results[name] = {part: statistics.median(ts) for part, ts in times.items()}
        print(f"\n== {name} (ms of CPU time, median of {args.repeats}) ==")
        for part, ms in results[name].items():
            print(f"{part:55s} {ms:8.2f}")
    out = Path(args.out)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": 1, "clock": "thread CPU time",
                               "repeats": args.repeats, "ms": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

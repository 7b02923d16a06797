"""Benchmark: per-model training-step time of mi_margin against plain PyTorch and TransformerLens 4.

One "step" is forward + float64 loss + backward + AdamW update (lr 1e-3, weight decay 1, betas
(0.9, 0.98)), full batch, as in training. Variants, all measured in the same run on the same data:

* Nanda transformer (modular addition p = 113, 30% of the pairs for training = 3,830 examples;
  d_model 128, 4×32 heads, d_mlp 512, ReLU, no LN, no biases):
  (a) ``reference``: plain PyTorch Nanda et al. model, every position (bench/reference_nanda.py);
  (b) ``bridge``: TransformerLens 4 ``TransformerBridge.boot_native`` with the same weights
      (``model.to_bridge()``; its zero biases frozen), every position;
  (c) ``single``: mi_margin's ``train()`` step path (the table fast path of models/fast_paths.py,
      one chunk: the default micro-batch of 16384 holds every training set here); (c0) the
      same step on the ordinary path (last position only, no tables: a no-op hook on
      ``hook_embed`` switches the tables off);
  (d) ``batched N=8``: ``train_batched``'s step (per-model time = step / N);
  (e) ``mm.train()``: whole calls of ``train()`` (200 steps, evaluation of all pairs every 100 and at
      the start), wall time / 200: what a user gets per step, evaluation included.
* Chughtai S5 MLP (S5 composition, 40% train = 5,760 examples; per-operand embeddings 256,
  concatenated, 128 ReLU units, biases): (a) a plain nn.Embedding/cat/nn.Linear model
  (bench/reference_chughtai.py), (c), (c2) the same with ``microbatch=2048`` (three chunks, the
  former default, which the zoo's recipes keep), (c0), (d), (e).
* theory-style MLP (p = 113, 30% train, width 512 and 1024, quadratic and ReLU): (a) a plain one-hot
  MLP, (c) (whose table is W_in itself: the fast path is one embedding_bag), (c0), (d)
  (TransformerBridge cannot express the MLPs).

Variants are interleaved in shuffled rounds (the machine is shared and noisy); each round takes the
median of a few steps after a warm-up, and the table reports the median over rounds with the range,
and ratios against (a) and (b) from the same rounds. FLOPs per step come from
torch's ``flop_registry`` formulas (matmul-like ops; a gather counts 0); the peak is a
2048³ float32 matmul measured at the start of every round. Writes bench/results/training.json.

Run: ``.venv/bin/python bench/bench_training.py [--quick] [--rounds 5] [--threads 1]
[--families nanda,s5,theory]`` (docs/performance.md recommends one thread per process).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import mi_margin as mm
from mi_margin.training.batched import StackEngine
from mi_margin.training.loop import Engine, ModelEngine, take_step

sys.path.insert(0, str(Path(__file__).parent))
from reference_chughtai import ChughtaiMLP
from reference_nanda import NandaTransformer, OneHotMLP, last_position_loss

P, TRAIN_FRACTION = 113, 0.3
S5_TRAIN_FRACTION = 0.4
TRAIN_CALL_STEPS = 200
Step = Callable[[], None]
#: what a measurement reads: wall time, or with ``--clock cpu`` (one thread only) this thread's CPU
#: time, which on a crowded machine leaves out the time spent waiting for a core
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = CLOCKS["wall"]


@dataclass
class Variant:
    """One thing to time: ``make()`` builds it and returns a closure doing one training step."""

    family: str
    name: str
    n_models: int
    make: Callable[[], Step]
    reps: int = 3
    steps_per_call: int = 1                                    # optimizer steps one call makes
    step: Step | None = None
    rounds: list[float] = field(default_factory=list)        # ms per model, one per round
    flops: float = float("nan")                                # per model per step


def train_config(**kw: Any) -> mm.TrainConfig:
    return mm.TrainConfig(**{"lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98),
                             "progress": False, **kw})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- step closures ----------------------------------------------------------------------------------
def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    """Full-batch step of a plain module (reference models and the bridge)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        last_position_loss(model(x), y).backward()
        opt.step()
    return step


def engine_step(engine: Engine, task: Any, configs: list[mm.TrainConfig]) -> Step:
    """One optimizer step of the training loop (``take_step``, as ``fit`` calls it)."""
    gen, counter = torch.Generator().manual_seed(configs[0].seed), [0]

    def step() -> None:
        take_step(engine, configs, counter[0], len(task.train_idx), gen)
        counter[0] += 1
    return step


def single_step(model: Any, task: Any, config: mm.TrainConfig, device: torch.device) -> Step:
    """One step of ``mm.train`` (its engine: the model's own forward and torch.optim)."""
    return engine_step(ModelEngine(model.to(device), task, config), task, [config])


def batched_step(models: list[Any], task: Any, config: mm.TrainConfig,
                 device: torch.device) -> Step:
    """One step of ``train_batched`` (its engine: the models' own loss on slices of stacked
    weights, one torch.optim group per model)."""
    configs = [config] * len(models)
    models = [model.to(device) for model in models]
    return engine_step(StackEngine(models, [task] * len(models), configs, device), task, configs)


def ordinary_path(model: Any) -> Any:
    """``model`` with a no-op hook on ``hook_embed``, which keeps it off the table fast path."""
    model.hook_embed.add_hook(lambda tensor, hook: None)
    return model


def train_call(model: Any, task: Any, device: torch.device) -> Step:
    """A whole ``mm.train()`` of a fresh copy of ``model``: TRAIN_CALL_STEPS steps, evaluation every 100."""
    config = train_config(steps=TRAIN_CALL_STEPS, eval_every=100)

    def step() -> None:
        mm.train(copy.deepcopy(model).to(device), task, config)
    return step


def bridge_step(task: mm.ModularAddition, device: torch.device) -> Step:
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task))
    bridge = model.to_bridge().to(device)
    for name, p in bridge.named_parameters():
        if name.endswith("bias"):
            p.requires_grad_(False)           # mi_margin's model has no biases
    x = task.tokens[task.train_idx].to(device)
    return plain_step(bridge, x, task.labels[task.train_idx].to(device))


# -- the variant list -------------------------------------------------------------------------------
def transformer_variants(task: mm.ModularAddition, device: torch.device, quick: bool
                         ) -> list[Variant]:
    cfg = mm.TransformerConfig.for_task(task)
    tokens, labels = task.tokens[task.train_idx].to(device), task.labels[task.train_idx].to(device)
    fam = "Nanda transformer p=113"

    def models(n: int) -> list[Any]:
        return [mm.HookedOneLayerTransformer(cfg.replace(seed=s)) for s in range(n)]

    out = [
        Variant(fam, "(a) reference (plain, all positions)", 1,
                lambda: plain_step(NandaTransformer().to(device), tokens, labels)),
        Variant(fam, "(b) TransformerBridge.boot_native", 1, lambda: bridge_step(task, device)),
        Variant(fam, "(c) mi_margin single (tables)", 1,
                lambda: single_step(models(1)[0], task, train_config(), device)),
        Variant(fam, "(c0) single, ordinary path", 1,
                lambda: single_step(ordinary_path(models(1)[0]), task, train_config(), device)),
        Variant(fam, "(d) mi_margin batched N=8", 8,
                lambda: batched_step(models(8), task, train_config(), device), reps=1),
        Variant(fam, "(e) mm.train() incl. evaluation", 1,
                lambda: train_call(models(1)[0], task, device), reps=1,
                steps_per_call=TRAIN_CALL_STEPS),
    ]
    if not quick:
        out += microbatch_variants(fam, lambda: models(1)[0], task, device)
    return out


def chughtai_variants(device: torch.device, quick: bool) -> list[Variant]:
    task = mm.GroupComposition("S5", train_fraction=S5_TRAIN_FRACTION, seed=0)
    cfg = mm.MLPConfig.for_task(task, d_mlp=128, d_embed=256, act_fn="relu", input_style="embed",
                                use_biases=True)
    inputs, labels = task.inputs[task.train_idx].to(device), task.labels[task.train_idx].to(device)
    fam = "Chughtai S5 MLP"

    def models(n: int) -> list[Any]:
        return [mm.HookedMLP(cfg.replace(seed=s)) for s in range(n)]

    out = [
        Variant(fam, "(a) reference (plain embed+concat MLP)", 1,
                lambda: plain_step(ChughtaiMLP(order=task.d_vocab).to(device), inputs, labels)),
        Variant(fam, "(c) mi_margin single (tables)", 1,
                lambda: single_step(models(1)[0], task, train_config(), device)),
        Variant(fam, "(c2) single, microbatch=2048 (former default)", 1,
                lambda: single_step(models(1)[0], task, train_config(microbatch=2048), device)),
        Variant(fam, "(c0) single, ordinary path", 1,
                lambda: single_step(ordinary_path(models(1)[0]), task, train_config(), device)),
        Variant(fam, "(d) mi_margin batched N=8", 8,
                lambda: batched_step(models(8), task, train_config(), device), reps=1),
        Variant(fam, "(e) mm.train() incl. evaluation", 1,
                lambda: train_call(models(1)[0], task, device), reps=1,
                steps_per_call=TRAIN_CALL_STEPS),
    ]
    if not quick:
        out += microbatch_variants(fam, lambda: models(1)[0], task, device, sizes=(1024, 512))
    return out


def mlp_variants(task: mm.ModularAddition, device: torch.device, width: int, act: str,
                 quick: bool) -> list[Variant]:
    cfg = mm.MLPConfig.for_task(task, d_mlp=width, act_fn=act)
    inputs, labels = task.inputs[task.train_idx].to(device), task.labels[task.train_idx].to(device)
    fam = f"theory MLP p=113 width {width} {act}"

    def models(n: int) -> list[Any]:
        return [mm.HookedMLP(cfg.replace(seed=s)) for s in range(n)]

    out = [
        Variant(fam, "(a) reference (plain one-hot MLP)", 1,
                lambda: plain_step(OneHotMLP(d_mlp=width, act_fn=act).to(device), inputs, labels)),
        Variant(fam, "(c) mi_margin single (embedding_bag)", 1,
                lambda: single_step(models(1)[0], task, train_config(), device)),
        Variant(fam, "(c0) single, ordinary path", 1,
                lambda: single_step(ordinary_path(models(1)[0]), task, train_config(), device)),
        Variant(fam, "(d) mi_margin batched N=8", 8,
                lambda: batched_step(models(8), task, train_config(), device), reps=1),
    ]
    if not quick and width == 1024 and act == "quadratic":
        out += microbatch_variants(fam, lambda: models(1)[0], task, device)
    return out


def microbatch_variants(family: str, model: Callable[[], Any], task: Any, device: torch.device,
                        sizes: tuple[int | None, ...] = (None, 1024, 512)) -> list[Variant]:
    """The single path with other micro-batch sizes than the default (None: one chunk)."""
    def make(mb: int | None) -> Callable[[], Step]:
        return lambda: single_step(model(), task, train_config(microbatch=mb), device)
    return [Variant(family, f"(c) single, microbatch={mb}", 1, make(mb)) for mb in sizes]


# -- measuring --------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 n×n matmul throughput, GFLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = clock()
        a @ b
        sync(device)
        best = min(best, clock() - t)
    return 2 * n**3 / best / 1e9


def time_variant(v: Variant, device: torch.device, warmup: int) -> float:
    """Median ms per model over ``v.reps`` steps, after ``warmup`` steps."""
    assert v.step is not None
    for _ in range(warmup):
        v.step()
    times = []
    for _ in range(v.reps):
        sync(device)
        t = clock()
        v.step()
        sync(device)
        times.append((clock() - t) * 1e3 / (v.n_models * v.steps_per_call))
    return statistics.median(times)


#: in-place matmuls (the fused ReLU head accumulates its weight gradient with ``addmm_``) count
#: as their out-of-place formula
IN_PLACE = {torch.ops.aten.addmm_: torch.ops.aten.addmm, torch.ops.aten.baddbmm_: torch.ops.aten.baddbmm}


class FlopCounter(TorchDispatchMode):
    """Matmul-like FLOPs by torch's own formulas (``flop_registry``). Unlike ``FlopCounterMode``,
    it registers no global module hooks, which would (rightly) send the models off their fast
    paths (models/fast_paths.py never skips a hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        count = flop_registry.get(IN_PLACE.get(func._overloadpacket, func._overloadpacket))
        if count is not None:
            self.total += count(*args, **(kwargs or {}), out_val=out)
        return out


def count_flops(v: Variant) -> float:
    assert v.step is not None
    if v.steps_per_call > 1:                   # whole train() calls: too long to count, warm up only
        v.step()
        return float("nan")
    with FlopCounter() as counter:
        v.step()
    return counter.total / v.n_models


def summarize(variants: list[Variant], peaks: list[float]) -> dict[str, Any]:
    peak = statistics.median(peaks)
    out: dict[str, Any] = {}
    refs = {v.family: statistics.median(v.rounds) for v in variants if v.name.startswith("(a)")}
    bridges = {v.family: statistics.median(v.rounds) for v in variants if v.name.startswith("(b)")}
    for v in variants:
        ms = statistics.median(v.rounds)
        gflops = v.flops / ms / 1e6
        out[f"{v.family} | {v.name}"] = {
            "family": v.family, "variant": v.name, "n_models": v.n_models,
            "ms_per_model_step": ms, "ms_range": [min(v.rounds), max(v.rounds)],
            "round_medians_ms": v.rounds, "gflop_per_model_step": v.flops / 1e9,
            "gflop_per_s": gflops, "pct_of_matmul_peak": 100 * gflops / peak,
            "speedup_vs_reference": refs[v.family] / ms,
            "speedup_vs_bridge": bridges[v.family] / ms if v.family in bridges else None}
    return out


def print_table(results: dict[str, Any], peaks: list[float]) -> None:
    print(f"\nmatmul peak (2048³ fp32): median {statistics.median(peaks):.0f} GFLOP/s, "
          f"range {min(peaks):.0f}–{max(peaks):.0f} over {len(peaks)} measurements")
    header = (f"{'variant':42s} {'ms/step/model':>14s} {'range':>15s} {'vs (a)':>7s} {'vs (b)':>7s} "
              f"{'GFLOP':>6s} {'GFLOP/s':>8s} {'%peak':>6s}")
    family = None
    for r in results.values():
        if r["family"] != family:
            family = r["family"]
            print(f"\n== {family} ==\n{header}")
        lo, hi = r["ms_range"]
        vs_b = "" if r["speedup_vs_bridge"] is None else f"{r['speedup_vs_bridge']:6.2f}×"
        print(f"{r['variant']:42s} {r['ms_per_model_step']:14.1f} {f'{lo:.0f}–{hi:.0f}':>15s} "
              f"{r['speedup_vs_reference']:6.2f}× {vs_b:>7s} {r['gflop_per_model_step']:6.2f} "
              f"{r['gflop_per_s']:8.1f} {r['pct_of_matmul_peak']:5.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, ~1 minute")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="seeds the round order")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: this thread's CPU time (needs --threads 1; for a crowded machine)")
    parser.add_argument("--families", default="nanda,s5,theory",
                        help="comma-separated subset of nanda, s5, theory")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread, so it needs --threads 1")
    global clock
    clock = CLOCKS[args.clock]
    device = torch.device(args.device)
    rounds = args.rounds or (2 if args.quick else 5)
    task = mm.ModularAddition(p=P, train_fraction=TRAIN_FRACTION, seed=0)
    families = args.families.split(",")
    variants = transformer_variants(task, device, args.quick) if "nanda" in families else []
    if "s5" in families:
        variants += chughtai_variants(device, args.quick)
    if "theory" in families:
        for width, act in [(512, "quadratic"), (1024, "quadratic"), (1024, "relu")]:
            if args.quick and width == 512:
                continue
            variants += mlp_variants(task, device, width, act, args.quick)
    load_before, started = os.getloadavg(), time.perf_counter()
    for v in variants:
        v.step = v.make()
        v.flops = count_flops(v)            # also the first warm-up step
    order_rng, peaks = random.Random(args.seed), []
    for r in range(rounds):
        peaks.append(matmul_peak(device))
        order = variants[:]
        order_rng.shuffle(order)
        for v in order:
            v.rounds.append(time_variant(v, device, warmup=1))
        print(f"round {r + 1}/{rounds} done ({time.perf_counter() - started:.0f} s, "
              f"load {os.getloadavg()[0]:.1f})", flush=True)
    results = summarize(variants, peaks)
    print_table(results, peaks)
    meta = {"torch": torch.__version__, "threads": args.threads, "clock": args.clock,
            "device": str(device),
            "cpu": platform.processor() or platform.machine(), "rounds": rounds,
            "quick": args.quick, "families": families, "p": P,
            "train_examples": len(task.train_idx),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "wall_s": time.perf_counter() - started}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "matmul_peak_gflops": peaks, "variants": results},
                              indent=2))
    print(f"\nwrote {out} (load average before {load_before[0]:.1f}, after "
          f"{os.getloadavg()[0]:.1f}; wall {meta['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()

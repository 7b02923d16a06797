"""Benchmark: the accuracy certificates of ``mm.analysis.certify`` against brute force, in one run.

Brute force is the baseline a certificate must beat: run the model on every input and take the
argmax (``subject(model, task).run()``, what ``certify`` itself reports beside as ``accuracy``).
For each network, measured with one torch thread and ``TQDM_DISABLE=1``, the best of
``--repeat`` wall times of:

- ``brute``: brute force;
- ``explain``: ``mm.explain``; the uniform and per-input bounds start from its default labels,
  which come from the model's activations over every input (one to four brute forces), the
  harmonic bound from labels read off the weights (``source="weights"``, no forward pass;
  sparse parity has no weight labels and uses the activations);
- ``uniform``, ``per_input``, ``harmonic``: ``certify(explanation, bound, compare=False)``;

with the time ratio certificate / brute force, the end-to-end ratio (explain + certificate) /
brute force, and each certificate's operation count (``Certificate.flops``) beside brute force's
(``brute_force_flops``), its certified accuracy and certified minimum margin. Networks: the zoo
entries with x^d neurons on modular addition, sparse parity and S4, then random cubic networks of
one width on 3-operand modular addition for growing p, where brute force grows with p⁴ (p³
inputs times p classes) and the harmonic bound's cost does not grow with the inputs, the
max-margin certificate networks (``mm.theory.certificate``) of S4, A5 and S5, where brute force
grows with |G|³ and the harmonic bound with |G|², random quartic networks on 4-operand
modular addition, and the zoo's transformers (per-input and low-rank bounds, which read no labels:
their end-to-end ratio is the certificate's alone). ``low_rank`` reads no labels either.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_certify.py [--repeat 3]`` → prints one
row per network and bound with the ratios certificate / brute force (time and FLOPs); writes
``bench/results/certify.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

import mi_margin as mm
from mi_margin.analysis.certify import BOUNDS
from mi_margin.analysis.core import subject

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ("morwani_p71_quadratic", "li_p23_k3_max_margin", "li_p23_k3_cubic",
           "morwani_parity_n10_k4_quartic", "morwani_S4_quadratic")
GROUPS = ("S4", "A5", "S5")
TRANSFORMERS = ("nanda_p113_transformer", "chughtai_S5_transformer_seed1",
                "zhong_p59_clock_transformer", "zhong_p59_pizza_transformer")
TRANSFORMER_BOUNDS = ("per_input", "low_rank")
SCALING_P = (11, 23, 37, 53)
SCALING_WIDTH = 64
FOUR_OPERANDS_P = (7, 17)


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The best of ``repeat`` wall times of ``fn()``, and its last result."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def measure(name: str, model: Any, task: Any, repeat: int, min_purity: float) -> list[dict]:
    """One row per bound for one network, with brute force's time and FLOPs beside."""
    transformer = isinstance(model, mm.HookedOneLayerTransformer)
    source = "activations" if transformer or model.cfg.input_kind == "vector" else "weights"
    with torch.no_grad():
        brute_s, _ = best_time(lambda: subject(model, task).run()[0].argmax(1), repeat)
        explain_s, expl = best_time(lambda: mm.explain(model, task, min_purity=min_purity),
                                    repeat)
        labels_s, by_weights = best_time(
            lambda: mm.explain(model, task, min_purity=min_purity, source=source), repeat)
        rows = []
        for bound in TRANSFORMER_BOUNDS if transformer else BOUNDS:
            used = by_weights if bound == "harmonic" else expl
            cert_s, cert = best_time(lambda b=bound, e=used: mm.analysis.certify(
                e, b, compare=False), repeat)
            # the low-rank readout and a transformer's per-input bound read no labels
            start = 0.0 if bound == "low_rank" or transformer else \
                labels_s if bound == "harmonic" else explain_s
            rows.append({"network": name, "inputs": len(task.inputs), "bound": bound,
                         "labels_from": "none" if start == 0.0 else used.clusters.source,
                         "brute_s": brute_s,
                         "explain_s": start, "certify_s": cert_s,
                         "time_ratio": cert_s / brute_s,
                         "end_to_end_ratio": (start + cert_s) / brute_s,
                         "flops": cert.flops, "brute_force_flops": cert.brute_force_flops,
                         "flops_ratio": cert.flops / cert.brute_force_flops,
                         "certified_accuracy": cert.certified_accuracy,
                         "min_certified_margin": cert.min_certified_margin})
    return rows


def networks() -> list[tuple[str, Any, Any, float]]:
    """(name, model, task, min_purity): the zoo entries, then the scaling series."""
    out = []
    for entry in ENTRIES:
        run = mm.zoo.load(entry)
        out.append((entry, run.model, run.task, 0.5))
    for p in SCALING_P:
        task = mm.ModularAddition(p=p, k=3)
        cfg = mm.MLPConfig.for_task(task, d_mlp=SCALING_WIDTH, act_fn="power", act_degree=3)
        out.append((f"random cubic p={p} k=3 d_mlp={SCALING_WIDTH}", mm.HookedMLP(cfg), task,
                    0.2))
    for entry in TRANSFORMERS:
        run = mm.zoo.load(entry)
        out.append((entry, run.model, run.task, 0.5))
    for group in GROUPS:
        task = mm.GroupComposition(group)
        out.append((f"certificate network {group}", mm.theory.certificate(task), task, 0.5))
    for p in FOUR_OPERANDS_P:
        task = mm.ModularAddition(p=p, k=4)
        cfg = mm.MLPConfig.for_task(task, d_mlp=SCALING_WIDTH, act_fn="power", act_degree=4)
        out.append((f"random quartic p={p} k=4 d_mlp={SCALING_WIDTH}", mm.HookedMLP(cfg), task,
                    0.2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", mm.NotGeneralizedWarning)      # the random networks
    rows = []
    header = (f"{'network':<38} {'inputs':>7} {'bound':<9} {'labels':<11} {'brute s':>8} "
              f"{'explain s':>9} {'cert s':>8} {'t ratio':>8} {'e2e ratio':>9} "
              f"{'flop ratio':>10} {'cert acc':>8} {'margin':>9}")
    print(header)
    for name, model, task, purity in networks():
        for row in measure(name, model, task, args.repeat, purity):
            rows.append(row)
            print(f"{row['network']:<38} {row['inputs']:>7} {row['bound']:<9} "
                  f"{row['labels_from']:<11} {row['brute_s']:>8.4f} {row['explain_s']:>9.4f} "
                  f"{row['certify_s']:>8.4f} {row['time_ratio']:>8.3f} "
                  f"{row['end_to_end_ratio']:>9.3f} {row['flops_ratio']:>10.4f} "
                  f"{row['certified_accuracy']:>8.3f} {row['min_certified_margin']:>9.3g}",
                  flush=True)
    out = ROOT / "bench" / "results" / "certify.json"
    out.write_text(json.dumps({"machine": platform.machine(), "processor": platform.processor(),
                               "torch": torch.__version__, "repeat": args.repeat, "rows": rows},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

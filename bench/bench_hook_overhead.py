"""Training speed of this checkout against another one (e.g. before a change to the hook points).

Each case trains a model with ``mm.train`` for ``--steps`` steps (no evaluation in between, no
checkpoints) in a fresh subprocess with one torch thread, importing ``mi_margin`` from the
checkout under test; the two checkouts alternate, ``--rounds`` times, and each case's figure is
the median CPU time per step of that process (on a shared machine, wall time mostly measures the
other tenants). Prints ms/step for both and the ratio this/baseline (1.00 = no change).

Run: ``.venv/bin/python bench/bench_hook_overhead.py --baseline /path/to/other/checkout``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

#: model, task and a short training run per case: the MLP families train() serves (theory
#: quadratic, Chughtai's embed-style ReLU MLP on S4 with the fused head, sparse parity's vector
#: MLP) and the Nanda transformer
CASES = {
    "mlp_theory_quadratic_p59": "task = mm.ModularAddition(p=59, train_fraction=0.4)\n"
                                "model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=256))",
    "mlp_embed_relu_S4": "task = mm.GroupComposition('S4', train_fraction=0.5)\n"
                         "model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=128, d_embed=64, "
                         "act_fn='relu', input_style='embed', use_biases=True))",
    "mlp_parity_n12": "task = mm.SparseParity(n=12, k=3, train_fraction=0.5)\n"
                      "model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=128, act_fn='relu'))",
    "transformer_p31": "task = mm.ModularAddition(p=31, train_fraction=0.4)\n"
                       "model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task))",
}

CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
import mi_margin as mm
{setup}
cfg = mm.TrainConfig(steps={steps}, eval_every={steps}, progress=False, checkpoint_schedule="none")
mm.train(model, task, cfg.replace(steps=3, eval_every=3))          # warm-up
start = time.process_time()
mm.train(model, task, cfg)
print(json.dumps({{"ms": 1e3 * (time.process_time() - start) / {steps}, "module": mm.__file__}}))
"""


def measure(checkout: Path, case: str, steps: int) -> float:
    """CPU ms per step of one case in a fresh process importing mi_margin from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    code = CHILD.format(setup=CASES[case], steps=steps)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=checkout, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    result = json.loads(out)
    if not result["module"].startswith(str(checkout)):
        raise SystemExit(f"{checkout}: imported mi_margin from {result['module']}")
    return float(result["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the other checkout's root directory")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hook_overhead.json"))
    args = parser.parse_args()
    here, base = Path(__file__).resolve().parents[1], Path(args.baseline).resolve()
    times: dict[str, dict[str, list[float]]] = {c: {"this": [], "baseline": []} for c in CASES}
    for _ in range(args.rounds):
        for case in CASES:
            times[case]["baseline"].append(measure(base, case, args.steps))
            times[case]["this"].append(measure(here, case, args.steps))
    summary = {}
    print(f"{'case':28s} {'baseline ms':>12s} {'this ms':>9s} {'ratio':>6s}")
    for case, t in times.items():
        b, h = statistics.median(t["baseline"]), statistics.median(t["this"])
        summary[case] = {"baseline_ms": b, "this_ms": h, "ratio": h / b, "raw": t}
        print(f"{case:28s} {b:12.2f} {h:9.2f} {h / b:6.3f}")
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

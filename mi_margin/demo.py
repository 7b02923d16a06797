"""``mi-margin demo``: train a small model on the default task, analyze it, write the results.

The default task is modular addition mod 31 with half the table for training, learned by a quadratic
one-hidden-layer MLP with AdamW and weight decay (it generalizes in about a thousand steps on a
laptop CPU). The analysis asks the package's central questions: which frequencies did it learn,
what is its margin, and how does it compare with margin-maximization theory? Everything lands in one
folder: the run (``run/``), ``summary.json`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mi_margin.models import HookedMLP, MLPConfig
from mi_margin.tasks import ModularAddition
from mi_margin.training import TrainConfig, train


def demo_setup(quick: bool = False) -> tuple[Any, Any, TrainConfig]:
    """The demo's task, model and training config (``quick``: a few steps, for tests)."""
    task = ModularAddition(p=31, k=2, train_fraction=0.5, seed=0)
    model = HookedMLP(MLPConfig.for_task(task, d_mlp=256, act_fn="quadratic", seed=0))
    config = TrainConfig(steps=60 if quick else 3000, lr=3e-3, weight_decay=1.0,
                         eval_every=20 if quick else 100, target_test_acc=1.0)
    return task, model, config


def analyze(model: Any, task: Any) -> dict[str, Any]:
    """The analyses the demo reports, as JSON-able values."""
    from mi_margin.analysis import key_frequencies, margin, neuron_frequencies, restricted_loss
    from mi_margin.models.evaluation import evaluate
    from mi_margin.theory import compare_to_theory

    out: dict[str, Any] = {}
    out["test_loss"], out["test_accuracy"] = evaluate(model, task, task.test_idx)
    keys = key_frequencies(model, task)
    out["key_frequencies"] = keys
    counts = neuron_frequencies(model, task).bincount(minlength=task.p // 2 + 1)
    out["neurons_per_frequency"] = {int(f): int(c) for f, c in enumerate(counts) if f and c}
    if keys:
        restricted = restricted_loss(model, task, keys)
        out["restricted_loss"] = float(restricted.restricted)
        out["excluded_loss"] = float(restricted.excluded)
    m = margin(model, task)
    out["margin"] = float(m.value)
    out["normalized_margin"] = None if m.normalized is None else float(m.normalized)
    comparison = compare_to_theory(model, task)
    out["predicted_gamma"] = comparison.prediction.gamma
    out["ratio_to_gamma"] = comparison.ratio
    out["fraction_pure_neurons"] = float(comparison.fraction_pure)
    return out


def run_demo(out: Path, quick: bool = False) -> Path:
    """Train, analyze and write ``out/run``, ``out/summary.json`` and ``out/report.html`` (running
    it again replaces the earlier demo's files)."""
    from mi_margin.viz.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    task, model, config = demo_setup(quick)
    start = time.perf_counter()
    run = train(model, task, config, out_dir=out / "run", overwrite=True)
    seconds = time.perf_counter() - start
    summary = {"task": repr(task), "model": model.cfg.to_dict(), "steps": run.step,
               "status": run.status, "train_seconds": round(seconds, 2),
               "analysis": analyze(run.model, task)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"trained {run.step} steps in {seconds:.1f} s ({run.status})")
    for key, value in summary["analysis"].items():
        print(f"  {key}: {value}")
    report = write_report(run, out / "report.html")
    print(f"report: {report.resolve()}")
    return out

"""``mi-margin demo``: the point of the package in under a minute — a model and the theory meeting,
and a grokking model's story.

1. **The theory met.** Morwani et al.'s network (quadratic, no biases, one hidden layer) trained on
   the whole table of addition mod 11 with the package's max-margin recipe
   (:func:`mi_margin.theory.recipe.train_to_max_margin`; docs/mathematics.md §1.3, §1.6). Its
   normalized margin approaches the γ* of Theorem 7 and every neuron becomes a single-frequency
   cosine neuron, as the theorem says.
2. **A grokking story.** The same family trained like Nanda et al.'s models (AdamW, weight decay 1)
   on half of the table mod 31: it memorizes, then generalizes hundreds of steps later
   (docs/mathematics.md §4.3); the analyses say which frequencies it uses and how far its margin is
   from γ*, and the verdict names the theorem's hypotheses that this run breaks.

Everything lands in one folder: ``run/`` (the grokking run) with ``report.html``,
``max_margin/`` with its ``report.html``, and ``summary.json``; each report opens with a computed
verdict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mi_margin.analysis import key_frequencies, margin, neuron_clusters, restricted_loss
from mi_margin.models import HookedMLP, MLPConfig
from mi_margin.models.evaluation import evaluate
from mi_margin.tasks import ModularAddition
from mi_margin.theory import compare_to_theory
from mi_margin.theory.recipe import train_to_max_margin
from mi_margin.theory.verdict import verdict
from mi_margin.training import TrainConfig, train
from mi_margin.viz.report import write_report

#: modulus and steps of the max-margin run (measured: ratio to γ* ≈ 1.0 within 800 steps)
MAX_MARGIN_P, MAX_MARGIN_STEPS = 11, 800


def demo_setup(quick: bool = False) -> tuple[Any, Any, TrainConfig]:
    """The grokking run's task, model and training config (``quick``: a few steps, for tests).

    Half of the table mod 31, a width-256 quadratic MLP, AdamW with weight decay 1; evaluated every
    25 steps with 25 evenly spaced checkpoints so the progress measures see the grokking window.
    """
    task = ModularAddition(p=31, k=2, train_fraction=0.5, seed=0)
    model = HookedMLP(MLPConfig.for_task(task, d_mlp=256, act_fn="quadratic", seed=0))
    config = TrainConfig(steps=60 if quick else 1200, lr=3e-3, weight_decay=1.0,
                         eval_every=20 if quick else 25, checkpoint_schedule="linear",
                         n_checkpoints=25)
    return task, model, config


def analyze(model: Any, task: Any) -> dict[str, Any]:
    """The analyses the demo reports, as JSON-able values."""
    out: dict[str, Any] = {}
    out["test_loss"], out["test_accuracy"] = evaluate(model, task, task.test_idx)
    keys = key_frequencies(model, task)
    out["key_frequencies"] = keys
    counts = neuron_clusters(model, task).counts
    out["neurons_per_frequency"] = {int(f): c for f, c in counts.items() if f is not None}
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


def max_margin_run(out: Path, quick: bool = False) -> Any:
    """Part 1: the recipe's quadratic MLP on the full table mod 11, saved to ``out`` (replacing
    an earlier demo's run)."""
    task = ModularAddition(p=MAX_MARGIN_P, k=2, train_fraction=1.0)
    return train_to_max_margin(task, steps=40 if quick else MAX_MARGIN_STEPS, out_dir=out,
                               overwrite=True)


def run_demo(out: Path, quick: bool = False) -> Path:
    """Run both parts and write ``out/run``, ``out/max_margin``, the reports and ``summary.json``
    (running it again replaces the earlier demo's files)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    theory = max_margin_run(out / "max_margin", quick)
    theory_seconds = time.perf_counter() - start
    ratio = float(theory.history["ratio_to_gamma"].iloc[-1])
    print(f"1. max-margin recipe, {theory.task!r}: {theory.step} steps in {theory_seconds:.1f} s, "
          f"normalized margin = {ratio:.4f} × γ*")
    task, model, config = demo_setup(quick)
    start = time.perf_counter()
    run = train(model, task, config, out_dir=out / "run", overwrite=True)
    seconds = time.perf_counter() - start
    print(f"2. grokking run, {task!r}: {run.step} steps in {seconds:.1f} s ({run.status})")
    summary = {"task": repr(task), "model": model.cfg.to_dict(), "steps": run.step,
               "status": run.status, "train_seconds": round(seconds, 2),
               "analysis": analyze(run.model, task), "verdict": verdict(run),
               "max_margin": {"task": repr(theory.task), "steps": theory.step,
                              "train_seconds": round(theory_seconds, 2), "ratio_to_gamma": ratio,
                              "verdict": verdict(theory)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for part, record in [("max-margin run", summary["max_margin"]), ("grokking run", summary)]:
        print(f"\n{part}: {record['verdict']}")
    reports = [write_report(theory, out / "max_margin" / "report.html"),
               write_report(run, out / "report.html")]
    print("\nreports: " + ", ".join(str(r.resolve()) for r in reports))
    return out

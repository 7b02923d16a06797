"""Model cards, generated from computation on the shipped weights.

A card states the recipe (configs with every seed, and the command that rebuilds the entry), the
steps and wall time to grok (or to reach 0.9/0.99 of γ*) on the machine that trained it, final
loss and accuracy on the train split, the test split and all inputs, the key frequencies or irreps,
the comparison with max-margin theory (:func:`~mi_margin.theory.compare_to_theory`), the
paper's numbers next to ours (labelled as the paper's), and which checkpoints ship in which precision.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import torch

from mi_margin.analysis.clock_pizza import clock_pizza
from mi_margin.analysis.progress import progress_measures
from mi_margin.groups.irrep import find_irrep
from mi_margin.models.evaluation import evaluate
from mi_margin.theory.compare import compare_to_theory
from mi_margin.training import Run
from mi_margin.zoo.checks import irrep_threshold, key_labels, margin_ratio
from mi_margin.zoo.phases import LEVEL, first_step, phase_bounds

RESULT = "**Result:** "
#: measured rows that also go on the Result line (and so into the README table) when a recipe names them
HEADLINE = ("clock_or_pizza",)


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (numbers to 4 significant digits)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        return "" if v is None else str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _seconds(history: pd.DataFrame, step: int | None, column: str = "wall_s") -> str:
    """The history's ``column`` (seconds) at ``step``, as text."""
    if step is None or column not in history:
        return "—"
    row = history[history["step"] == step]
    return f"{float(row[column].iloc[0]):.0f} s" if len(row) else "—"


def timing(run: Run, kind: str) -> tuple[pd.DataFrame, str]:
    """Milestones (step, wall time) and a one-line summary."""
    h = run.history
    if kind == "max_margin":
        marks = {f"margin ≥ {t} γ*": first_step(h, "ratio_to_gamma", t) for t in (0.9, 0.99)}
    else:
        b = phase_bounds(h)
        marks = {f"memorized (train acc ≥ {LEVEL})": b["memorized"],
                 f"cleanup starts (test acc ≥ {LEVEL / 4:.4g})": b["cleanup_start"],
                 f"grokked (test acc ≥ {LEVEL})": b["grokked"]}
    marks["end of training"] = run.step
    df = pd.DataFrame({"milestone": list(marks), "step": [s if s is not None else "never"
                                                          for s in marks.values()],
                       "wall time": [_seconds(h, s) for s in marks.values()],
                       "CPU time": [_seconds(h, s, "cpu_s") for s in marks.values()]})
    key = list(marks)[1 if kind == "max_margin" else 2]
    what = key.split(" (")[0]
    if marks[key] is None:
        return df, f"{what}: not reached in {run.step} steps"
    step = marks[key]
    return df, f"{what} at step {step} ({_seconds(h, step)} wall, {_seconds(h, step, 'cpu_s')} CPU)"


PROGRESS_COLUMNS = ["step", "train_acc", "test_acc", "test_loss", "restricted_loss", "excluded_loss",
                    "gini_embed", "gini_W_L", "key_logit_fve", "hidden_product_fve", "weight_norm_sq"]


def progress_lines(run: Run, keys: list[Any]) -> list[str]:
    """Progress measures at every shipped checkpoint (Nanda et al. Fig. 7; Chughtai et al. App. E),
    for the key frequencies/irreps of the final model: the phases as the zoo alone shows them."""
    table = progress_measures(run, keys).table
    return ["## Progress measures on the shipped checkpoints", "",
            markdown_table(table[[c for c in PROGRESS_COLUMNS if c in table]]), ""]


def contention(history: pd.DataFrame) -> str:
    """Wall time over CPU time of the whole run (about 1 when the process had a core to itself)."""
    if not {"wall_s", "cpu_s"} <= set(history) or not history["cpu_s"].iloc[-1] > 0:
        return ""
    ratio = float(history["wall_s"].iloc[-1] / history["cpu_s"].iloc[-1])
    return f"; wall time / CPU time = {ratio:.1f} (the machine was shared when above 1)"


def final_metrics(run: Run) -> pd.DataFrame:
    """Loss and accuracy of the final model on train, test and all inputs."""
    task, rows = run.task, []
    for split, idx in [("train", task.train_idx), ("test", task.test_idx),
                       ("all", torch.arange(len(task.labels)))]:
        loss, acc = evaluate(run.model, task, idx)
        rows.append({"split": split, "examples": len(idx), "loss": loss, "accuracy": acc})
    return pd.DataFrame(rows)


def common_names(keys: list[Any], task: Any) -> str:
    """Key irreps with the names Chughtai et al. use where one exists (``(4,1) = standard``);
    other key labels as they are.

    Example:
        >>> import mi_margin as mm
        >>> common_names(["(1,1,1,1)", "(3,1)", "(2,2)"], mm.GroupComposition("S4"))
        '(1,1,1,1) = sign, (3,1) = standard, (2,2)'
    """
    if task.kind != "group_composition":
        return ", ".join(map(str, keys))
    named = []
    for key in keys:
        words = [a for a in find_irrep(task.group, key).aliases if a.isidentifier()]
        named.append(f"{key} = {words[0]}" if words else str(key))
    return ", ".join(named)


def clock_or_pizza(run: Run) -> dict[str, str]:
    """Zhong et al.'s distance irrelevance q and gradient symmetricity s_g (docs/mathematics.md
    §6.2), and which of clock or pizza their Fig. 7 rule calls the model; {} unless the task is
    two-operand modular addition."""
    if run.task.kind != "modular_addition" or run.task.k != 2:
        return {}
    res = clock_pizza(run.model, run.task)
    q, s_g = res.distance_irrelevance, res.gradient_symmetricity
    return {"distance_irrelevance": f"{q:.3f} (mm.clock_pizza)",
            "gradient_symmetricity": f"{s_g:.2%} (mm.clock_pizza, 100 random triples)",
            "clock_or_pizza": f"{res.algorithm} (q = {q:.2f}, s_g = {s_g:.1%})"}


def ours(run: Run, cmp: Any, keys: list[Any]) -> dict[str, str]:
    """Our measurements, by the keys the recipes' paper numbers name."""
    b = phase_bounds(run.history)
    purity = cmp.summary()["mean_purity"]
    out = {"key": f"{common_names(keys, run.task)} ({len(keys)} of {len(cmp.structure.labels)})",
           "test_loss": f"{evaluate(run.model, run.task, run.task.test_idx)[0]:.3g}",
           "purity": "—" if purity is None else
           f"{purity:.3f} (mean purity of live neurons, compare_to_theory)",
           "phases": f"memorized at {b['memorized']}, cleanup from {b['cleanup_start']}, grokked at "
                     f"{b['grokked']} steps (full batch: steps = epochs)"}
    out["margin"] = (f"{cmp.ratio:.4f} of γ* = {cmp.prediction.gamma:.6g}" if cmp.ratio is not None
                     else f"not comparable: {cmp.ratio_reason}")
    return out | clock_or_pizza(run)


def paper_table(rec: Any, mine: dict[str, str]) -> pd.DataFrame:
    """Quantity | the paper's number (as reported) | ours."""
    return pd.DataFrame([{"quantity": q, "paper (as reported)": p, "ours": mine[k]}
                         for q, p, k in rec.paper_numbers])


def card(rec: Any, run: Run, build: dict[str, Any], dtypes: dict[int, str]) -> str:
    """The card of entry ``rec.name`` built from ``run`` (the shipped entry, reloaded)."""
    cmp = compare_to_theory(run.model, run.task)
    keys = key_labels(run.model, run.task)
    times, when = timing(run, rec.kind)
    metrics = final_metrics(run)
    mine = ours(run, cmp, keys)
    all_acc = float(metrics["accuracy"].iloc[-1])
    key_text = ("key frequencies" if run.task.kind == "modular_addition" else "key irreps")
    result = f"accuracy {all_acc:.4f} on all inputs; {when}"
    if keys:
        result += f"; {key_text} {common_names(keys, run.task)}"
    result += "".join(f"; {mine[k]}" for *_, k in rec.paper_numbers if k in HEADLINE)
    if cmp.ratio is not None:
        result += f"; margin {cmp.ratio:.4f} of γ*"
        if build.get("finish"):
            result += f" after `{build['finish']['function']}` (trained weights: " \
                      f"{margin_ratio(run.model_at(run.step), run.task):.4f})"
    mach = build.get("machine") or {}
    load = mach.get("loadavg_at_start")
    machine_line = (f"{mach.get('cpu')} ({mach.get('cores')} cores), {mach.get('torch_threads')} torch "
                    f"thread(s), torch {mach.get('torch')}"
                    + (f"; load average {load} when training started" if load is not None else "")
                    + contention(run.history) if mach
                    else "not recorded (built from a run folder without machine.json)")
    parts = [
        f"# {rec.name}", "", f"{rec.title}. Reproduces: {rec.paper}.", "", RESULT + result, "",
        "## Recipe", "",
        f"`mi_margin/zoo/recipes.py`, rebuilt with "
        f"`python -m mi_margin.zoo.build train {rec.name} --out runs/{rec.name}` (the run in "
        f"`runs/{rec.name}/run`, the entry in `runs/{rec.name}/{rec.name}`; the installed entry is "
        "left alone). Configs:", "",
        "```", *(f"{part}: {json.dumps(d)}" for part, d in [
            ("task", run.task.to_dict()), ("model", run.model.cfg.to_dict()),
            ("train", run.config.to_dict())]), "```", "", REPRODUCIBLE, "",
        "## Training", "", f"Machine: {machine_line}.", "", markdown_table(times), "",
        *finish_lines(run, build),
        "## Final metrics", "", markdown_table(metrics), "",
        "## Structure and theory", "",
        (f"{key_text.capitalize()}: {common_names(keys, run.task)}"
         + (f" (threshold {irrep_threshold(run.task):.3g})"
            if run.task.kind == "group_composition" else "")
         if run.task.kind != "sparse_parity" else "Sparse parity: see the theory table."), "",
        "`compare_to_theory` (observed vs the max-margin prediction; the theorems are about "
        "networks of their family only, see the note column):", "",
        markdown_table(cmp.scalars()), "",
        "## The paper's numbers and ours", "",
        markdown_table(paper_table(rec, mine)), "",
        *(progress_lines(run, keys) if rec.kind == "grokking" and keys else []),
        "## Checkpoints shipped", "",
        ", ".join(f"{s} ({d})" for s, d in sorted(dtypes.items())), "",
        "Each intermediate checkpoint is stored in the smallest precision (float16, else float32) "
        "on which accuracy, the key frequencies/irreps and the margin ratio equal those of the "
        "full-precision weights (entry.json `checks`). The initialisation (`init`) is stored as a "
        "small correction to its rebuild from the model config's seed, which every CPU computes "
        "identically (`mi_margin/zoo/init.py`): every checkpoint loads bit for bit on every CPU "
        "(SHA-256 checked).", ""]
    return "\n".join(parts)


#: what retraining reproduces where (tests/zoo/test_zoo_retrain.py checks it on a float64 recipe)
REPRODUCIBLE = (
    "Retraining the recipe repeats itself bit for bit on one machine. It gives these weights bit "
    "for bit only with the code that built them on a CPU whose kernels round like the builder's "
    "(below); on another CPU the BLAS and torch's kernels round differently from the first step "
    "on: a float64 recipe ends within float rounding carried through training (outcomes the same), "
    "a float32 grokking run may take another trajectory (another grokking step).")


def finish_lines(run: Run, build: dict[str, Any]) -> list[str]:
    """The finishing step applied after training, with the margin before and after."""
    finish = build.get("finish")
    if not finish:
        return []
    trained = margin_ratio(run.model_at(run.step), run.task)
    after = margin_ratio(run.model, run.task)
    return [f"Finish: the final weights are `{finish['function']}` applied to the trained weights of "
            f"step {run.step} ({finish['seconds']} s); margin / γ* {trained:.4f} before, "
            f"{after:.4f} after. The checkpoints are the trained ones.", ""]


def table_row(rec: Any, card_text: str) -> str:
    """One row of the README's Reproductions table from a card."""
    result = next((ln[len(RESULT):] for ln in card_text.splitlines() if ln.startswith(RESULT)), "")
    return (f"| {rec.paper} | `{rec.name}`: {result} | "
            f"`python -m mi_margin.zoo.build train {rec.name} --out runs/{rec.name}` |")

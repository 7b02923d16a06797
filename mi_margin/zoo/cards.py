"""Model cards, generated from computation on the shipped weights.

A card states whether the entry reproduces the paper's figure (the recipe's verdict and what
differs, checked against the model by tests/zoo), the recipe (configs with every seed, the command
that rebuilds the entry, where it differs from the paper's), when the model memorized and
generalized and whether that was grokking (a delay after memorization,
:func:`~mi_margin.zoo.phases.generalization`), with wall and CPU time and the machine, threads and
load they were measured under, final loss and accuracy on the train split, the test split and all
inputs, the key frequencies or irreps by the API's own rule (recorded with its threshold; output
harmonics labelled), structural metrics beside their value at initialization, the comparison with
max-margin theory (:func:`~mi_margin.theory.compare_to_theory`) for the trained weights and for
each named variant, the paper's numbers next to ours (labelled as the paper's), the runnable
explanation with its fidelity and certified accuracy (:func:`explanation_lines`), and which
checkpoints ship in which precision.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import torch

from mi_margin.analysis.clock_pizza import clock_pizza
from mi_margin.analysis.progress import progress_measures
from mi_margin.groups.irrep import find_irrep
from mi_margin.models.evaluation import cross_entropy64, evaluate, model_inputs
from mi_margin.models.io import build_model
from mi_margin.tasks import Task
from mi_margin.theory.compare import compare_to_theory
from mi_margin.theory.explained import explanation_check
from mi_margin.theory.verdict import UNITS
from mi_margin.training import Run
from mi_margin.zoo.checks import key_labels, margin_ratio
from mi_margin.zoo.phases import LEVEL, first_step, generalization, phase_bounds

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


def conditions(build: dict[str, Any], history: pd.DataFrame) -> str:
    """The conditions a timing was measured under, short: CPU, torch threads, load average when
    training started, and wall / CPU time over the run (above 1: the machine was shared)."""
    mach = build.get("machine") or {}
    if not mach:
        return "machine not recorded"
    parts = [str(mach.get("cpu")), f"{mach.get('torch_threads')} torch thread(s)"]
    if mach.get("loadavg_at_start") is not None:
        parts.append(f"load {mach['loadavg_at_start']} at start")
    if {"wall_s", "cpu_s"} <= set(history) and history["cpu_s"].iloc[-1] > 0:
        parts.append(f"wall/CPU {float(history['wall_s'].iloc[-1] / history['cpu_s'].iloc[-1]):.1f}")
    return ", ".join(parts)


def when_generalized(run: Run, where: str) -> str:
    """Memorization, stable generalization and the delay between them, in words: "grokked" only
    for a delay after memorization (:func:`~mi_margin.zoo.phases.generalization`)."""
    g, h = generalization(run.history), run.history
    if g["memorized"] is None:
        return f"not memorized in {run.step} steps"
    mem = f"memorized at step {g['memorized']}"
    if g["generalized"] is None:
        return f"{mem}; not generalized in {run.step} steps (test acc {h['test_acc'].iloc[-1]:.4f})"
    at = (f"test acc ≥ {LEVEL} from step {g['generalized']} ({_seconds(h, g['generalized'])} wall, "
          f"{_seconds(h, g['generalized'], 'cpu_s')} CPU; {where})")
    if g["grokked"]:
        return f"grokked: {mem}, {at}, a delay of {g['delay']} steps"
    return (f"generalized with train accuracy, no delay: test acc {g['test_acc_at_memorization']:.2f} "
            f"when {mem}; {at}")


def timing(run: Run, kind: str, where: str) -> tuple[pd.DataFrame, str]:
    """Milestones (step, wall time, CPU time) and a one-line summary (``where``: the conditions)."""
    h = run.history
    if kind == "max_margin":
        marks = {f"margin ≥ {t} γ*": first_step(h, "ratio_to_gamma", t) for t in (0.9, 0.99)}
    else:
        b, g = phase_bounds(h), generalization(h)
        marks = {f"memorized (train acc ≥ {LEVEL})": b["memorized"],
                 f"cleanup starts (test acc ≥ {LEVEL / 4:.4g})": b["cleanup_start"],
                 f"generalized (test acc ≥ {LEVEL} from here on)": g["generalized"]}
    marks["end of training"] = run.step
    df = pd.DataFrame({"milestone": list(marks), "step": [s if s is not None else "never"
                                                          for s in marks.values()],
                       "wall time": [_seconds(h, s) for s in marks.values()],
                       "CPU time": [_seconds(h, s, "cpu_s") for s in marks.values()]})
    if kind != "max_margin":
        return df, when_generalized(run, where)
    key = list(marks)[1]
    if marks[key] is None:
        return df, f"margin ≥ 0.99 γ*: not reached in {run.step} steps"
    step = marks[key]
    return df, (f"margin ≥ 0.99 γ* at step {step} ({_seconds(h, step)} wall, "
                f"{_seconds(h, step, 'cpu_s')} CPU; {where})")


PROGRESS_COLUMNS = ["step", "train_acc", "test_acc", "test_loss", "restricted_loss", "excluded_loss",
                    "gini_embed", "gini_W_L", "key_logit_fve", "hidden_product_fve", "weight_norm_sq"]


def progress_lines(run: Run, keys: list[Any]) -> list[str]:
    """Progress measures at every shipped checkpoint (Nanda et al. Fig. 7; Chughtai et al. App. E),
    for the key frequencies/irreps of the final model: the phases as the zoo alone shows them."""
    table = progress_measures(run, keys or None).table
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


def common_names(keys: list[Any], task: Task) -> str:
    """Key irreps with the names Chughtai et al. use where one exists (``(4,1) = standard``);
    other key labels as they are.

    Example:
        >>> import mi_margin as mm
        >>> common_names(["(1,1,1,1)", "(3,1)", "(2,2)"], mm.GroupComposition("S4"))
        '(1,1,1,1) = sign, (3,1) = standard, (2,2)'
    """
    if task.algebra.domain.label_kind != "irrep":
        return ", ".join(map(str, keys))
    named = []
    for key in keys:
        words = [a for a in find_irrep(task.algebra.domain.group(), key).aliases if a.isidentifier()]
        named.append(f"{key} = {words[0]}" if words else str(key))
    return ", ".join(named)


def initial_model(run: Run) -> Any:
    """The model at initialization: checkpoint 0 when it ships, else the config's seeded build."""
    return run.model_at(0) if 0 in run.checkpoints else build_model(run.model.cfg.to_dict())


def clock_or_pizza(run: Run) -> dict[str, str]:
    """Zhong et al.'s distance irrelevance q and gradient symmetricity s_g (docs/mathematics.md
    §6.2), each beside its value at initialization (s_g is structural for α = 0 with our '='
    input: 1 before any training), and which of clock or pizza their Fig. 7 rule calls the model;
    {} unless the task composes two operands in a cyclic group."""
    if run.task.algebra.domain.label_kind != "frequency" or run.task.algebra.k != 2:
        return {}
    res, init = clock_pizza(run.model, run.task), clock_pizza(initial_model(run), run.task)
    q, s_g = res.distance_irrelevance, res.gradient_symmetricity
    return {"distance_irrelevance": f"{q:.3f} (at initialization: {init.distance_irrelevance:.3f}; "
                                    "mm.clock_pizza)",
            "gradient_symmetricity": f"{s_g:.2%} (at initialization: {init.gradient_symmetricity:.2%}; "
                                     "mm.clock_pizza, 100 random triples)",
            "clock_or_pizza": f"{res.algorithm} (q = {q:.2f}, s_g = {s_g:.1%}; at initialization "
                              f"q = {init.distance_irrelevance:.2f}, s_g = {init.gradient_symmetricity:.1%})"}


def key_text(keys: Any, task: Any) -> str:
    """Key labels with their common names; output harmonics labelled as such."""
    harmonics = list(getattr(keys, "harmonics", ()))
    text = common_names([k for k in keys if k not in harmonics], task)
    if harmonics:
        text += f" (+ output harmonic{'s' if len(harmonics) > 1 else ''} " \
                f"{', '.join(map(str, harmonics))}, not embedded)"
    return text


def key_rule_line(keys: Any, task: Any) -> str:
    """The key labels, the rule that chose them with its threshold, the nearest label left out,
    and whether the model generalized (``KeySet``, :mod:`mi_margin.analysis.key_rules`)."""
    kind = task.algebra.domain.label_kind
    if kind not in UNITS:
        return "Sparse parity: see the theory table."
    what = f"Key {UNITS[kind]}"
    out = [lab for lab in keys.values if lab not in keys]
    near = max(out, key=lambda lab: keys.values[lab], default=None)
    line = f"{what}: {key_text(keys, task)}. Rule: {keys.rule}"
    if near is not None:
        line += f"; largest left out: {near} at {keys.values[near]:.3g}"
    line += f". The model {'has' if keys.generalized else 'has NOT'} generalized (accuracy " \
            f"{keys.accuracy:.4f} on the {'test split' if len(task.test_idx) else 'whole table'})."
    if keys.harmonics:
        line += " An output harmonic is a key frequency of the logits with no key share of the " \
                "embedding that is a sum or difference of embedded key frequencies."
    return line


def percent(share: float) -> str:
    """A share as a percentage, with two significant digits below 1% (not "0%").

    Example:
        >>> percent(0.514), percent(0.0027), percent(0.0)
        ('51%', '0.27%', '0%')
    """
    return f"{share:.0%}" if share >= 0.01 or share == 0 else f"{100 * share:.2g}%"


def test_loss_lines(run: Run) -> list[str]:
    """Where the final test loss comes from: the lowest recorded test loss, the share of the final
    one carried by the 5 worst test examples, and the smallest logit margin on test and train."""
    task = run.task
    if task.algebra.domain.label_kind not in UNITS or not len(task.test_idx) \
            or "test_loss" not in run.history:
        return []
    h = run.history
    best = h.loc[h["test_loss"].idxmin()]
    with torch.no_grad():
        logits = run.model(model_inputs(run.model, task))
    logits = (logits[:, -1] if logits.ndim == 3 else logits).double()
    rows = {}
    for split, idx in (("test", task.test_idx), ("train", task.train_idx)):
        lg, lab = logits[idx], task.labels[idx]
        right = lg.gather(1, lab[:, None])[:, 0]
        wrong = lg.scatter(1, lab[:, None], float("-inf")).max(1).values
        rows[split] = (cross_entropy64(lg, lab, reduction="none"), float((right - wrong).min()))
    loss = rows["test"][0]
    top = float(loss.sort(descending=True).values[:5].sum() / loss.sum()) if loss.sum() > 0 else 0.0
    return ["## Test loss", "",
            f"Final test loss {float(loss.mean()):.3g} (float64 cross-entropy of the logits); lowest "
            f"recorded {float(best['test_loss']):.3g} at step {int(best['step'])}. The 5 worst of "
            f"{len(loss)} test examples carry {percent(top)} of the final test loss; the smallest logit "
            f"margin (right minus best wrong logit) is {rows['test'][1]:.3g} on test and "
            f"{rows['train'][1]:.3g} on train."
            + (" A few test examples carry most of the test loss: training raises the train "
               "margins only, and these lost margin while the train loss still fell."
               if top >= 0.5 and float(loss.mean()) > float(best["test_loss"]) else ""), ""]


def ours(run: Run, cmp: Any, keys: list[Any]) -> dict[str, str]:
    """Our measurements, by the keys the recipes' paper numbers name."""
    b, g = phase_bounds(run.history), generalization(run.history)
    purity = cmp.summary()["mean_purity"]
    delay = ("grokked" if g["grokked"] else "no delay: test accuracy rose with train accuracy"
             if g["generalized"] is not None else "not generalized")
    out = {"key": f"{key_text(keys, run.task)} ({len(keys)} of {len(cmp.structure.labels)})",
           "test_loss": f"{evaluate(run.model, run.task, run.task.test_idx)[0]:.3g}",
           "purity": "—" if purity is None else
           f"{purity:.3f} (mean purity of live neurons, compare_to_theory)",
           "phases": f"memorized at {b['memorized']}, cleanup from {b['cleanup_start']}, test acc ≥ "
                     f"{LEVEL} from {g['generalized']} steps ({delay}; full batch: steps = epochs)"}
    used = cmp.summary().get("labels_used")
    out["labels_used"] = ("—" if used is None else f"{int(used)} of {len(cmp.structure.labels)} "
                          "dominate at least one live neuron (compare_to_theory)")
    out["margin"] = (f"{cmp.ratio:.4f} of γ* = {cmp.prediction.gamma:.6g}" if cmp.ratio is not None
                     else f"not comparable: {cmp.ratio_reason}")
    return out | clock_or_pizza(run)


def paper_table(rec: Any, mine: dict[str, str]) -> pd.DataFrame:
    """Quantity | the paper's number (as reported) | ours."""
    return pd.DataFrame([{"quantity": q, "paper (as reported)": p, "ours": mine[k]}
                         for q, p, k in rec.paper_numbers])


def margins(run: Run, variants: dict[str, Any]) -> str:
    """Normalized margin / γ* of the trained weights and of each named variant ("" when the
    model is not of a theorem's family)."""
    trained = margin_ratio(run.model, run.task)
    if trained is None:
        return ""
    text = f"margin {trained:.4f} of γ* (trained weights)"
    for name, model in variants.items():
        text += f", {margin_ratio(model, run.task):.4f} for variant `{name}` " \
                f"(`mm.zoo.load(..., variant=\"{name}\")`)"
    return text


def reproduction(rec: Any) -> str:
    """The verdict against the paper's figure, and what differs."""
    return f"**{rec.verdict}**" + (f": {rec.differs}" if rec.differs else "")


def card(rec: Any, run: Run, build: dict[str, Any], dtypes: dict[int, str],
         variants: dict[str, Any] | None = None) -> str:
    """The card of entry ``rec.name`` built from ``run`` (the shipped entry, reloaded: the trained
    model) and ``variants`` (name → model of each post-processed variant)."""
    variants = variants or {}
    cmp = compare_to_theory(run.model, run.task)
    keys = key_labels(run.model, run.task)
    where = conditions(build, run.history)
    times, when = timing(run, rec.kind, where)
    metrics = final_metrics(run)
    mine = ours(run, cmp, keys)
    all_acc = float(metrics["accuracy"].iloc[-1])
    label = f"key {UNITS.get(run.task.algebra.domain.label_kind, 'labels')}"
    result = f"accuracy {all_acc:.4f} on all inputs; {when}"
    if keys:
        result += f"; {label} {key_text(keys, run.task)}"
        if not keys.generalized:
            result += " (of a model that has not generalized)"
    result += "".join(f"; {mine[k]}" for *_, k in rec.paper_numbers if k in HEADLINE)
    if margins(run, variants):
        result += f"; {margins(run, variants)}"
    mach = build.get("machine") or {}
    machine_line = (f"{mach.get('cpu')} ({mach.get('cores')} cores), {mach.get('torch_threads')} torch "
                    f"thread(s), torch {mach.get('torch')}"
                    + (f"; load average {mach['loadavg_at_start']} when training started"
                       if mach.get("loadavg_at_start") is not None else "")
                    + contention(run.history) if mach
                    else "not recorded (built from a run folder without machine.json)")
    parts = [
        f"# {rec.name}", "", f"{rec.title}. Paper: {rec.paper}.", "",
        f"**Reproduction:** {reproduction(rec)}.", "", RESULT + result, "",
        "## Recipe", "",
        f"`mi_margin/zoo/recipes.py`, rebuilt with "
        f"`python -m mi_margin.zoo.build train {rec.name} --out runs/{rec.name}` (the run in "
        f"`runs/{rec.name}/run`, the entry in `runs/{rec.name}/{rec.name}`; the installed entry is "
        "left alone). Configs:", "",
        "```", *(f"{part}: {json.dumps(d)}" for part, d in [
            ("task", run.task.to_dict()), ("model", run.model.cfg.to_dict()),
            ("train", run.config.to_dict())]), "```", "", REPRODUCIBLE, "",
        *([f"Where the recipe differs from the paper's: {rec.parity}", ""] if rec.parity else []),
        "## Training", "", f"Machine: {machine_line}.", "",
        "Times are wall-clock and CPU seconds of the training process under these conditions; "
        "on another machine or load they differ.", "", markdown_table(times), "",
        *finish_lines(rec, run, build, variants),
        "## Final metrics", "", markdown_table(metrics), "",
        *test_loss_lines(run),
        "## Structure and theory", "",
        key_rule_line(keys, run.task), "",
        "`compare_to_theory` of the trained weights (observed vs the max-margin prediction; the "
        "theorems are about networks of their family only, see the note column):", "",
        markdown_table(cmp.scalars()), "",
        "## The paper's numbers and ours", "",
        markdown_table(paper_table(rec, mine)), "",
        *(progress_lines(run, keys) if rec.kind == "grokking" and keys else []),
        *explanation_lines(run),
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


def explanation_lines(run: Run, draws: int = 2) -> list[str]:
    """The card's section on the runnable explanation (docs/mathematics.md §6.4): its summary,
    its fidelity, and the certified accuracy and margin of every bound that applies,
    with its cost beside brute force's (and the certified margin / γ* where a theorem applies),
    as :func:`~mi_margin.theory.explained.explanation_check` computes them."""
    check = explanation_check(run.model, run.task, draws=draws)
    lines = ["## Explanation, fidelity and certificate", "",
             f"`mm.explain`: {check.explanation.summary()}", "",
             f"`mm.analysis.fidelity` ({draws} resampling draws; recovered = (L_base − L) / "
             "(L_base − L_model), the scrub is the causal-scrubbing test of what the explanation "
             "leaves out):", "", markdown_table(check.fidelity_table()), ""]
    lines += ["`mm.analysis.certify`: lower bounds on the accuracy and margin over every input "
              f"that are always sound (brute-force accuracy {check.accuracy:.4f}):", "",
              markdown_table(check.certificate_table()), ""]
    if check.two_labels is not None:
        lines += ["The last row keeps each neuron's two largest labels "
                  "(`mm.explain(model, task, labels_per_neuron=2)`), because the one-label "
                  "per-input bound certified less than the accuracy.", ""]
    if check.certified_ratio is not None:
        lines += [f"Certified margin / γ*: {check.certified_ratio:.4f} (trained weights: "
                  f"{check.trained_ratio:.4f}).", ""]
    return lines


def finish_lines(rec: Any, run: Run, build: dict[str, Any], variants: dict[str, Any]) -> list[str]:
    """The finishing step applied after training: the variant it made, with the margin before
    and after."""
    finish = build.get("finish")
    if not finish or not variants:
        return []
    trained = margin_ratio(run.model, run.task)
    return [f"Variant `{name}`: `{finish['function']}` applied to the trained weights of step "
            f"{run.step} ({finish['seconds']} s); margin / γ* {trained:.4f} before, "
            f"{margin_ratio(model, run.task):.4f} after. `mm.zoo.load(\"{rec.name}\")` gives "
            f"the trained weights, `mm.zoo.load(\"{rec.name}\", variant=\"{name}\")` these; "
            "the checkpoints are the trained ones." for name, model in variants.items()] + [""]


def table_row(rec: Any, card_text: str) -> str:
    """One row of the README's Reproductions table from a card: the paper's figure, the verdict
    against it (what differs), our result with the conditions of its times."""
    result = next((ln[len(RESULT):] for ln in card_text.splitlines() if ln.startswith(RESULT)), "")
    return (f"| {rec.paper} | {reproduction(rec)} | `{rec.name}`: {result} | "
            f"`python -m mi_margin.zoo.build train {rec.name} --out runs/{rec.name}` |")

"""A one-paragraph verdict on a run: what the model learned and how far it is from the theory.

Every sentence is computed from the run: its training history (when it fit the training set and
when it generalized: grokking, Nanda et al. 2023, docs/mathematics.md §4.3), the structure it uses
(key frequencies and restricted/excluded loss for modular addition, §4.2–4.3; key irreps for
groups, §3.4), and its normalized margin next to the max-margin prediction γ* (Morwani et al. 2024,
Li et al. 2024; §1–§2) with the theorem's hypotheses the run does not meet (§7).
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from mi_margin.analysis.basis import PLURAL
from mi_margin.analysis.restricted import restricted_loss
from mi_margin.analysis.spectrum import key_frequencies, key_irreps
from mi_margin.errors import NotGeneralizedWarning
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task
from mi_margin.theory.compare import compare_to_theory

#: test accuracy at which a run counts as generalized
GENERALIZED = 0.99
#: the word for each kind of basis label that has a verdict
UNITS = {kind: PLURAL[kind] for kind in ("frequency", "irrep")}


def first_step(history: pd.DataFrame, column: str, level: float) -> int | None:
    """The first recorded step at which ``column`` reaches ``level`` (None if never)."""
    if column not in history or not len(history):
        return None
    hit = history[history[column] >= level]
    return int(hit["step"].iloc[0]) if len(hit) else None


def training_story(history: pd.DataFrame) -> str:
    """When the model fit its training set and when (if) it generalized."""
    fit = first_step(history, "train_acc", 1.0)
    general = first_step(history, "test_acc", GENERALIZED)
    last = history.iloc[-1] if len(history) else None
    if last is None or fit is None:
        acc = "" if last is None else f" (train accuracy {last['train_acc']:.1%})"
        return f"The model has not fit its training set{acc}."
    if "test_acc" not in history or pd.isna(last["test_acc"]):
        return f"It fit all its training data by step {fit}."
    if general is None:
        return (f"It fit its training set by step {fit} but has not generalized: test accuracy "
                f"{last['test_acc']:.1%} at step {int(last['step'])} (memorization).")
    if general > fit:
        return (f"It memorized its training set by step {fit} and generalized only at step "
                f"{general} (test accuracy ≥ {GENERALIZED:.0%}): it grokked, "
                f"{general - fit} steps after fitting.")
    return f"It fit its training set and generalized together, by step {general}."


def structure_story(model: HookedModel, task: Task) -> str:
    """The frequencies or irreps the model uses, and whether they explain it; for a model that
    has not generalized, only that its key labels describe no algorithm (docs/mathematics.md
    §4.2: they are what stands out in the logits of a memorizing network)."""
    kind = task.algebra.domain.label_kind
    if kind not in UNITS:
        return ""
    with warnings.catch_warnings():                  # the sentence below says it, once
        warnings.simplefilter("ignore", NotGeneralizedWarning)
        keys = key_frequencies(model, task) if kind == "frequency" else key_irreps(model, task)
    if not keys:
        return f"No {kind} stands out in its logits."
    named = ", ".join(map(str, keys))
    if not keys.generalized:
        return (f"It has not generalized (accuracy {keys.accuracy:.1%} where the task is "
                f"tested), so the {len(keys)} {UNITS[kind] if len(keys) > 1 else kind} that "
                f"stand out in its logits ({named}) describe no algorithm for the task.")
    if kind == "irrep":
        return f"It uses the irreps {named} of {task.algebra.domain.group().name}."
    res = restricted_loss(model, task, keys)
    return (f"It computes the task with {len(keys)} of the {task.algebra.order // 2} frequencies "
            f"({named}): keeping only them gives loss {res.restricted:.2g} (accuracy "
            f"{res.restricted_acc:.0%}), removing them gives training loss {res.excluded:.2g}.")


def training_reasons(config: Any) -> list[str]:
    """Ways the training itself departs from the theory (docs/mathematics.md §1.1, §7)."""
    reasons = []
    if getattr(config, "weight_decay", 0.0) > 0:
        reasons.append(f"it was trained with weight decay {config.weight_decay:g}, a Euclidean "
                       "penalty, whose small-penalty limit maximizes the margin in the L2 norm, not "
                       "in the L_{2,ν} norm that defines γ*")
    elif getattr(config, "norm_penalty", 0.0) == 0:
        reasons.append("it was trained without a norm penalty, so nothing drives it to the max "
                       "margin (the theory describes the limit of a vanishing penalty)")
    return reasons


def theory_story(model: HookedModel, task: Task, config: Any = None) -> str:
    """Normalized margin against γ*, neuron purity, and which hypotheses of the theorem fail
    (those of the task and network, and with ``config`` those of the training)."""
    cmp = compare_to_theory(model, task)
    pred = cmp.prediction
    if cmp.ratio is None:
        return f"Its margin cannot be compared with the max-margin theory: {cmp.ratio_reason}."
    used = int(cmp.to_dataframe()["used_observed"].sum())
    units = UNITS.get(task.algebra.domain.label_kind, "structural units")
    purity = cmp.scalars().set_index("metric")["observed"]["mean_purity"]
    text = (f"Its normalized margin is {cmp.ratio:.1%} of the max margin γ* = {pred.gamma:.3g} "
            f"({pred.theorem}); {cmp.fraction_pure:.0%} of its live neurons are pure (mean purity "
            f"{purity:.2f}; a max-margin network's are all 1), and they use {used} of the "
            f"{len(pred.used_labels)} {units} a max-margin network uses.")
    reasons = [*pred.reasons, *training_reasons(config)]
    if not reasons:
        close = "The model and the theory meet." if cmp.ratio >= 0.9 else (
            "The theorem's conditions hold, so training longer with a smaller penalty should "
            "close the gap.")
        return f"{text} {close}"
    return (f"{text} A gap is expected, since this run does not meet the theorem's conditions: "
            + "; ".join(reasons) + ".")


def verdict(run: Any) -> str:
    """The verdict paragraph on ``run`` (see the module docstring).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.certificates import certificate
        >>> task = mm.ModularAddition(p=5, train_fraction=1.0)
        >>> net = certificate(task)
        >>> "100.0% of the max margin" in theory_story(net, task)
        True
    """
    model, task = run.model, run.task
    parts = [training_story(run.history), structure_story(model, task),
             theory_story(model, task, run.config)]
    return " ".join(part for part in parts if part)

"""One summary row per seed of a study, computed from the seed's final weights and history.

A row holds what the papers count over seeds (docs/mathematics.md §3.5, §4.4):

- the grokking steps of :func:`~mi_margin.studies.stop.grokking_steps` (memorization, first crossing,
  stable crossing, delay) and whether the seed grokked at all (seeds that never grok are rows too);
- final train/test loss and accuracy, the step the seed stopped at, CPU and wall seconds;
- every label's logit similarity with its character (Chughtai et al.) and its share of the
  centred logit spectrum (Nanda et al.), stored as JSON so that the table can be re-keyed without
  retraining; the key labels under the package's rule; ``n_delta``, the number of labels that hold
  a 1 − δ share of the spectrum (:func:`n_delta`);
- neuron purity (:func:`~mi_margin.analysis.neurons.neuron_clusters`) and, where the theory defines it,
  the normalized margin's ratio to γ* (:mod:`mi_margin.sweep.analyses`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from mi_margin.analysis.core import cached
from mi_margin.analysis.neurons import neuron_clusters
from mi_margin.analysis.spectrum import component_shares, logit_similarity
from mi_margin.studies.stop import StopRule, grokking_steps
from mi_margin.sweep.analyses import margin as margin_columns

#: δ of :func:`n_delta` in summary rows: labels holding 95% of the logit spectrum
DELTA = 0.05
#: neurons count as pure at this purity (as ``compare_to_theory``'s ``fraction_pure``)
PURE = 0.95


def n_delta(shares: Sequence[float], delta: float = DELTA) -> int:
    """The smallest number of labels whose shares hold a ``1 − delta`` share of their sum.

    Nanda et al.'s p = 113 models concentrate their logits on about five frequencies; a
    max-margin network spreads them evenly over all (Morwani et al. Thm 7), so this count is the
    population-level contrast between the two (docs/mathematics.md §4.2).

    Example:
        >>> n_delta([0.5, 0.3, 0.15, 0.05], delta=0.05)
        3
    """
    ordered = sorted((float(s) for s in shares), reverse=True)
    total = sum(ordered)
    if total <= 0:
        return 0
    held = 0.0
    for n, share in enumerate(ordered, 1):
        held += share
        if held >= (1 - delta) * total - 1e-12 * total:
            return n
    return len(ordered)


def structure_columns(model: Any, task: Any) -> dict[str, Any]:
    """Logit similarities and spectrum shares of every label, N_δ, and neuron purity."""
    c = cached(model, task)                  # one grid cache read by all three
    sim = logit_similarity(c, task)
    shares = component_shares(c, task, "logits")
    labels = [str(lab) for lab in sim.labels]
    clusters = neuron_clusters(c, task)
    live = ~clusters.dead & (clusters.total > 0)
    purity = clusters.purity[live]
    return {"label_kind": sim.label_kind, "block_dims": json.dumps(dict(zip(labels, sim.dims))),
            "similarity": json.dumps(dict(zip(labels, sim.similarity.tolist()))),
            "logit_share": json.dumps(dict(zip(labels, shares.tolist()))),
            "logit_fve": sim.fve(), "n_delta": n_delta(shares.tolist()),
            "live_neurons": int(live.sum()),
            "mean_purity": float(purity.mean()) if len(purity) else None,
            "fraction_pure": float((purity >= PURE).float().mean()) if len(purity) else None}


def summary_row(seed: int, model: Any, task: Any, history: pd.DataFrame, meta: dict[str, Any],
                rule: StopRule) -> dict[str, Any]:
    """The summary row of one finished seed (see the module docstring)."""
    last = history.iloc[-1]
    steps = grokking_steps(history, rule.level, rule.patience)
    row: dict[str, Any] = {"seed": seed, "task": json.dumps(task.to_dict()),
                           "step": int(meta["step"]), "budget": int(meta["budget"]),
                           "grokked": steps["stable"] is not None, **steps}
    for col in ("train_loss", "train_acc", "test_loss", "test_acc", "cpu_s", "wall_s"):
        row[col] = float(last[col]) if col in last else None
    with torch.no_grad():
        row.update(structure_columns(model, task))
        margin = margin_columns(model, task)
    row["margin_ratio"] = margin["margin_ratio"]
    row["margin_ratio_reason"] = margin["margin_ratio_reason"]
    return row

"""Slow reference implementations (test oracles) of what the grid cache computes in one pass.

They are the package's former code paths: restricted/excluded loss with the edited activations
patched into the model and the grid run again (one more pass per ablation), and a progress row
made of separate analyzer calls and ``evaluate`` (the training loss path), each running the grid
itself. tests/analysis/test_grid_cache.py checks the one-pass results against them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.ablation import ablation_edit
from mi_margin.analysis.basis import columns
from mi_margin.analysis.core import POST, RESID_MID, RESID_POST, subject
from mi_margin.analysis.spectrum import fourier_gini, logit_similarity, spectrum
from mi_margin.models.evaluation import cross_entropy64, evaluate, weight_norm_sq


def _per_row(task: Any):
    def fn(rows: slice, logits: Tensor) -> Tensor:
        y = task.labels[rows]
        return torch.stack([cross_entropy64(logits, y, reduction="none"),
                            (logits.argmax(-1) == y).double()], 1)
    return fn


def _mean(per_row: Tensor, idx: Tensor) -> tuple[float, float]:
    part = per_row[idx]
    return float(part[:, 0].mean()), float(part[:, 1].mean())


def patched_losses(model: Any, task: Any, labels: tuple, mode: str) -> Tensor:
    """[N, 2] per-example loss and correctness with the labels' product subspace kept or removed
    at hook_post, the edited activations patched into a second pass over the grid (and, for
    transformers, the residual stream that bypasses the MLP replaced by its grid mean)."""
    s = subject(model, task)
    mean_path = s.kind == "transformer"
    _, acts = s.run([POST, RESID_MID] if mean_path else [POST])
    post, mid = acts[POST], acts.get(RESID_MID)
    edit = ablation_edit(task, labels, mode)
    edited = torch.cat([edit(c).to(post.dtype) for c in columns(post)], 1)
    mid_mean = mid.double().mean(0) if mid is not None else None

    def hooks(rows: slice):
        def patch(act: Tensor, hook: Any) -> Tensor:
            if act.ndim == 2:
                return edited[rows].to(act.dtype)
            out = act.clone()
            out[:, -1] = edited[rows].to(act.dtype)
            return out

        def centre(act: Tensor, hook: Any) -> Tensor:
            out = act.clone()
            out[:, -1] = act[:, -1] - (mid[rows].double() - mid_mean).to(act.dtype)
            return out

        return [(POST, patch)] + ([(RESID_POST, centre)] if mid is not None else [])

    return s.run(hooks=hooks, logits_fn=_per_row(task))[0]


def restricted_losses(model: Any, task: Any, labels: tuple) -> dict[str, float]:
    """Restricted (all data) and excluded (train) loss and accuracy, by patching."""
    all_idx = torch.arange(len(task.labels))
    restricted, restricted_acc = _mean(patched_losses(model, task, labels, "keep"), all_idx)
    excluded, excluded_acc = _mean(patched_losses(model, task, labels, "remove"), task.train_idx)
    return {"restricted": restricted, "restricted_acc": restricted_acc, "excluded": excluded,
            "excluded_acc": excluded_acc}


def progress_row(model: Any, task: Any, labels: tuple) -> dict[str, float]:
    """One progress-measures row from separate analyzer calls, each running the grid."""
    train_loss, train_acc = evaluate(model, task, task.train_idx)
    test_loss, test_acc = evaluate(model, task, task.test_idx)
    losses = restricted_losses(model, task, labels)
    sim = logit_similarity(model, task)
    spec = spectrum(model, task, where="neurons")
    product = spec.hidden_fractions()[:, -1]
    gini = fourier_gini(model, task) if task.kind != "sparse_parity" else {}
    row = {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
           "test_acc": test_acc, "restricted_loss": losses["restricted"],
           "excluded_loss": losses["excluded"], "gini_embed": gini.get("embed", float("nan")),
           "gini_W_L": gini.get("W_L", float("nan")), "weight_norm_sq": weight_norm_sq(model),
           "key_logit_fve": sim.fve(labels),
           "hidden_product_fve": float(sum(float(product[spec.labels.index(lab)])
                                           for lab in labels))}
    row.update({f"sim[{lab}]": float(x) for lab, x in zip(sim.labels, sim.similarity)})
    return row

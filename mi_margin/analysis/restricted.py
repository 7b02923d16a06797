"""Restricted and excluded loss (Nanda et al. 2023 §4.3; Chughtai et al. 2023 App. E.1).

Last-position MLP activations over the whole grid (``blocks.0.mlp.hook_post``) are projected onto
("restricted") or off ("excluded") the subspace of the key labels — cos/sin(ω_f(a_1+…+a_k)) for
frequencies, ρ(g_1⋯g_k) for irreps, χ_S for parity subsets (:func:`~mi_margin.analysis.ablation.
ablation_edit`) — keeping each neuron's mean over the grid, and mapped to logits as usual. For
transformers the residual stream that bypasses the MLP (embeddings + attention output at the last
position) is replaced by its mean over the grid, so that the logits come from the projected neurons
through W_L = W_out·W_U plus an input-independent term, as in Nanda et al.'s implementation
(``direct_path="mean"``; ``"keep"`` leaves that path untouched).

The grid is run twice in chunks of rows (activations first, then the model with the edited
activations patched in), so large grids fit in memory. Restricted loss is evaluated on all data
(or the test set), excluded loss on the training set only (docs/mathematics.md §4.3, §7.6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mi_margin.analysis.ablation import ablation_edit
from mi_margin.analysis.basis import basis_for, columns, require_labels
from mi_margin.analysis.core import POST, RESID_MID, RESID_POST, Hook, Subject, subject
from mi_margin.analysis.results import AnalysisResult, KeyLabels
from mi_margin.analysis.spectrum import key_components, key_frequencies, key_irreps
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import cross_entropy64
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task


@dataclass(frozen=True)
class RestrictedLoss(KeyLabels, AnalysisResult):
    """Restricted and excluded loss of a set of labels (see :func:`restricted_loss`).

    Attributes:
        label_kind, labels: what was kept (restricted) or removed (excluded).
        n_directions: dimension of that subspace over the grid (2 per frequency, Σ d_ρ²/e_ρ).
        restricted_on: "all" or "test", the data the restricted loss is averaged over.
        full_loss, full_acc, restricted, restricted_acc: loss and accuracy of the unmodified model
            and of the restricted model on ``restricted_on``.
        full_train_loss, full_train_acc, excluded, excluded_acc: the same on the training set, for
            the excluded model.
        source: the hook whose activations were projected (``blocks.0.mlp.hook_post``, last
            position); also the ``source`` column of :meth:`to_dataframe`.
    """

    _score = "loss"

    label_kind: str
    labels: tuple[Any, ...]
    n_directions: int
    restricted_on: str
    full_loss: float
    restricted: float
    restricted_acc: float
    full_train_loss: float
    excluded: float
    excluded_acc: float
    full_acc: float
    full_train_acc: float
    source: str = POST

    def subject(self) -> str:
        """What was kept or removed, for titles."""
        return f"key {self.label_kind}s {list(self.labels)}"

    def _table(self) -> pd.DataFrame:
        table = pd.DataFrame([
            {"measure": "full", "data": self.restricted_on, "loss": self.full_loss,
             "accuracy": self.full_acc},
            {"measure": "restricted", "data": self.restricted_on, "loss": self.restricted,
             "accuracy": self.restricted_acc},
            {"measure": "full", "data": "train", "loss": self.full_train_loss,
             "accuracy": self.full_train_acc},
            {"measure": "excluded", "data": "train", "loss": self.excluded,
             "accuracy": self.excluded_acc}])
        table["source"] = self.source
        return table


def _per_row(task: Task) -> Callable[[slice, Tensor], Tensor]:
    """Each chunk's logits → [rows, 2]: float64 cross-entropy and correctness per example."""
    def fn(rows: slice, logits: Tensor) -> Tensor:
        y = task.labels[rows]
        return torch.stack([cross_entropy64(logits, y, reduction="none"),
                            (logits.argmax(-1) == y).double()], 1)
    return fn


def _loss(per_row: Tensor, idx: Tensor) -> tuple[float, float]:
    if len(idx) == 0:
        return float("nan"), float("nan")
    part = per_row[idx]
    return float(part[:, 0].mean()), float(part[:, 1].mean())


def _patched_logits(s: Subject, post: Tensor, mid: Tensor | None,
                    logits_fn: Callable[[slice, Tensor], Tensor] | None = None) -> Tensor:
    """Logits with the last-position MLP output replaced by ``post`` [N, m] and, if ``mid`` is
    given, the bypassing residual [N, d] replaced by its mean over the grid."""
    mid_mean = mid.double().mean(0) if mid is not None else None

    def hooks(rows: slice) -> list[tuple[str, Hook]]:
        def patch(act: Tensor, hook: Any) -> Tensor:
            out = act.clone()
            if out.ndim == 2:
                return post[rows].to(act.dtype)
            out[:, -1] = post[rows].to(act.dtype)
            return out

        def centre(act: Tensor, hook: Any) -> Tensor:
            assert mid is not None
            out = act.clone()
            assert mid_mean is not None
            out[:, -1] = act[:, -1] - (mid[rows].double() - mid_mean).to(act.dtype)
            return out

        return [(POST, patch)] + ([(RESID_POST, centre)] if mid is not None else [])

    return s.run(hooks=hooks, logits_fn=logits_fn)[0]


def ablated_logits(model: HookedModel, task: Task, labels: Sequence[Any], mode: str,
                   direct_path: str = "mean", subspace: str = "product") -> Tensor:
    """Logits over the whole grid with the labels' subspace kept or removed at the MLP output.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(ablated_logits(mlp, task, ["sign"], "keep").shape)
        (36, 6)
    """
    return _ablated(subject(model, task), labels, (mode,), direct_path, subspace)[0]


def _ablated(s: Subject, labels: Sequence[Any], modes: Sequence[str], direct_path: str,
             subspace: str = "product", logits_fn: Callable[[slice, Tensor], Tensor] | None = None
             ) -> list[Tensor]:
    """For each mode, the logits (or ``logits_fn`` of them) with the edited MLP output; the edit
    runs unit by unit (a chunk of columns at a time), in float64, stored in the model's dtype."""
    if direct_path not in ("mean", "keep"):
        raise MiMarginError(f"direct_path must be 'mean' or 'keep', got {direct_path!r}")
    mean_path = s.kind == "transformer" and direct_path == "mean"
    _, acts = s.run([POST, RESID_MID] if mean_path else [POST])
    post, mid = acts[POST], acts[RESID_MID] if mean_path else None
    out = []
    for mode in modes:
        edit = ablation_edit(s.task, labels, mode, subspace)
        edited = torch.cat([edit(c).to(post.dtype) for c in columns(post)], 1)
        out.append(_patched_logits(s, edited, mid, logits_fn))
    return out


def restricted_loss(model: HookedModel, task: Task, labels: Sequence[Any] | None = None,
                    restricted_on: str = "all", direct_path: str = "mean") -> RestrictedLoss:
    """Restricted loss (only the key labels' product subspace) and excluded loss (it removed).

    Args:
        model: HookedOneLayerTransformer (or its bridge) or HookedMLP on any task.
        task: the task (its train split defines the excluded-loss data).
        labels: frequencies, irreps or parity subsets; default :func:`key_frequencies` (modular
            addition), :func:`key_irreps` (groups) or :func:`key_components` (parity).
        restricted_on: "all" (Nanda, Chughtai) or "test" data for the restricted loss.
        direct_path: transformers only — "mean" (default, Nanda's W_L-only logits) or "keep".

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, train_fraction=0.5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> res = restricted_loss(mlp, task, [1, 2])
        >>> res.n_directions, list(res.to_dataframe()["measure"])
        (4, ['full', 'restricted', 'full', 'excluded'])
    """
    if restricted_on not in ("all", "test"):
        raise MiMarginError(f"restricted_on must be 'all' or 'test', got {restricted_on!r}")
    s = subject(model, task)
    chosen = s.basis.resolve(default_components(model, task) if labels is None else labels)
    eval_idx = torch.arange(len(task.labels)) if restricted_on == "all" else task.test_idx
    full, _ = s.run(logits_fn=_per_row(task))
    kept, removed = _ablated(s, chosen, ("keep", "remove"), direct_path,
                             logits_fn=_per_row(task))
    full_loss, full_acc = _loss(full, eval_idx)
    full_train, full_train_acc = _loss(full, task.train_idx)
    restricted, restricted_acc = _loss(kept, eval_idx)
    excluded, excluded_acc = _loss(removed, task.train_idx)
    return RestrictedLoss(label_kind=s.basis.label_kind, labels=chosen,
                          n_directions=s.basis.term_directions(task, chosen).shape[1],
                          restricted_on=restricted_on, full_loss=full_loss,
                          restricted=restricted, restricted_acc=restricted_acc,
                          full_train_loss=full_train, excluded=excluded,
                          excluded_acc=excluded_acc, full_acc=full_acc,
                          full_train_acc=full_train_acc)


def default_components(model: HookedModel, task: Task) -> list[Any]:
    """The key labels each field uses by default: Nanda's key frequencies, Chughtai's key irreps,
    and :func:`key_components` otherwise."""
    field: dict[str, Callable[[Any, Any], list[Any]]] = {"frequency": key_frequencies,
                                                          "irrep": key_irreps}
    return field.get(basis_for(task).label_kind, key_components)(model, task)


def irrep_restricted_loss(model: HookedModel, task: Task, irreps: Sequence[str] | None = None,
                          restricted_on: str = "all", direct_path: str = "mean"
                          ) -> RestrictedLoss:
    """:func:`restricted_loss` of a group-composition model for irreps (Chughtai et al. App. E.1).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3", train_fraction=0.5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> irrep_restricted_loss(mlp, task, irreps=["standard"]).n_directions
        4
    """
    require_labels(task, "irrep", "irrep_restricted_loss")
    return restricted_loss(model, task, irreps, restricted_on, direct_path)

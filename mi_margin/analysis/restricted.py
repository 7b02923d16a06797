"""Restricted and excluded loss (Nanda et al. 2023 §4.3; Chughtai et al. 2023 App. E.1).

Last-position MLP activations over the whole grid (``blocks.0.mlp.hook_post``) are projected onto
("restricted") or off ("excluded") the subspace of the key labels — cos/sin(ω_f(a_1+…+a_k)) for
frequencies, ρ(g_1⋯g_k) for irreps, χ_S for parity subsets (:func:`~mi_margin.analysis.ablation.
ablation_edit`) — keeping each neuron's mean over the grid, and mapped to logits as usual. For
transformers the residual stream that bypasses the MLP (embeddings + attention output at the last
position) is replaced by its mean over the grid, so that the logits come from the projected neurons
through W_L = W_out·W_U plus an input-independent term, as in Nanda et al.'s implementation
(``direct_path="mean"``; ``"keep"`` leaves that path untouched).

No second forward pass is needed: the logits are affine in the activations, ℓ = r·W_U + h·W_L + b
(r = resid_mid, h = hook_post; for an MLP ℓ = h·W_out + b), and the projection acts on the grid
axis while W_L acts on the neuron axis, so the two commute: P(h_c)·W_L = P(h_c·W_L). With
Y = h_c·W_L = (ℓ − mean ℓ) − (r − mean r)·W_U, the restricted logits are mean ℓ + P(Y) and the
excluded ones mean ℓ + Y − P(Y) (plus the centred direct path with ``direct_path="keep"``), all
from a :class:`~mi_margin.analysis.core.GridCache`'s logits and ``resid_mid`` in float64
(tests/analysis/test_restricted.py checks them against the activations patched into the model).
Restricted loss is evaluated on all data (or the test set), excluded loss on the training set only
(docs/mathematics.md §4.3, §7.6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mi_margin.analysis.ablation import ablation_edit
from mi_margin.analysis.basis import PLURAL, basis_for, require_labels
from mi_margin.analysis.core import POST, RESID_MID, ROWS, Analyzable, GridCache, cached
from mi_margin.analysis.results import AnalysisResult, KeyLabels
from mi_margin.analysis.spectrum import key_components, key_frequencies, key_irreps
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import cross_entropy64
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task
from mi_margin.tasks.base import subset_indices


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
        return f"key {PLURAL[self.label_kind]} {list(self.labels)}"

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


def per_example(task: Any, logits: Tensor) -> Tensor:
    """Grid logits [N, V] → [N, 2]: float64 cross-entropy and correctness per example."""
    out = torch.empty((len(logits), 2), dtype=torch.float64)
    for rows, part, y in zip(torch.arange(len(logits)).split(ROWS), logits.split(ROWS),
                             task.labels.split(ROWS)):
        out[rows, 0] = cross_entropy64(part, y, reduction="none")
        out[rows, 1] = (part.argmax(-1) == y).double()
    return out


def loss_on(per_row: Tensor, idx: Tensor) -> tuple[float, float]:
    """(mean loss, accuracy) of :func:`per_example`'s rows ``idx`` (NaN for none)."""
    if len(idx) == 0:
        return float("nan"), float("nan")
    part = per_row[idx]
    return float(part[:, 0].mean()), float(part[:, 1].mean())


def direct_logits(c: GridCache) -> Tensor | None:
    """What bypasses the MLP, centred over the grid: (resid_mid − its grid mean)·W_U at the last
    position, float64 [N, V] (transformers); None for an MLP, whose logits all come from its
    neurons."""
    if c.kind != "transformer":
        return None
    mid = c[RESID_MID].double()
    return (mid - mid.mean(0)) @ c.subject.unembed().double()


def _ablated(c: GridCache, labels: Sequence[Any], modes: Sequence[str], direct_path: str,
             subspace: str = "product") -> list[Tensor]:
    """For each mode, float64 grid logits with the labels' subspace of the MLP output kept or
    removed, computed from the cache (module docstring): base + edit(Y), Y = h_c·W_L."""
    if direct_path not in ("mean", "keep"):
        raise MiMarginError(f"direct_path must be 'mean' or 'keep', got {direct_path!r}")
    full = c.logits.double()
    base = full.mean(0)
    neurons = full - base                                  # h_c·W_L (+ the direct path)
    direct = direct_logits(c)
    if direct is not None:
        neurons -= direct
        if direct_path == "keep":
            base = base + direct
    return [base + ablation_edit(c.task, labels, mode, subspace)(neurons) for mode in modes]


def ablated_logits(model: Analyzable, task: Task, labels: Sequence[Any], mode: str,
                   direct_path: str = "mean", subspace: str = "product") -> Tensor:
    """Logits over the whole grid with the labels' subspace kept or removed at the MLP output,
    in the model's dtype; ``model`` may be a :class:`~mi_margin.analysis.core.GridCache`.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(ablated_logits(mlp, task, ["sign"], "keep").shape)
        (36, 6)
    """
    c = cached(model, task)
    return _ablated(c, labels, (mode,), direct_path, subspace)[0].to(c.logits.dtype)


def restricted_loss(model: Analyzable, task: Task, labels: Sequence[Any] | None = None,
                    restricted_on: str = "all", direct_path: str = "mean") -> RestrictedLoss:
    """Restricted loss (only the key labels' product subspace) and excluded loss (it removed).

    Args:
        model: HookedOneLayerTransformer (or its bridge) or HookedMLP on any task, or its
            :class:`~mi_margin.analysis.core.GridCache` (read, not run again).
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
    c = cached(model, task)
    eval_idx = _evaluated_on(task, restricted_on)
    chosen = (c.basis.resolve(default_components(c, task)) if labels is None
              else c.basis.user_labels(labels, "labels"))
    full = per_example(task, c.logits)
    kept, removed = (per_example(task, logits)
                     for logits in _ablated(c, chosen, ("keep", "remove"), direct_path))
    full_loss, full_acc = loss_on(full, eval_idx)
    full_train, full_train_acc = loss_on(full, task.train_idx)
    restricted, restricted_acc = loss_on(kept, eval_idx)
    excluded, excluded_acc = loss_on(removed, task.train_idx)
    return RestrictedLoss(label_kind=c.basis.label_kind, labels=chosen,
                          n_directions=c.basis.term_directions(task, chosen).shape[1],
                          restricted_on=restricted_on, full_loss=full_loss,
                          restricted=restricted, restricted_acc=restricted_acc,
                          full_train_loss=full_train, excluded=excluded,
                          excluded_acc=excluded_acc, full_acc=full_acc,
                          full_train_acc=full_train_acc)


def _evaluated_on(task: Task, restricted_on: str) -> Tensor:
    """The rows the restricted loss is averaged over; refused when empty (a task trained on
    every input has no test split), as :func:`~mi_margin.margin` refuses it."""
    try:
        return subset_indices(task, restricted_on)
    except MiMarginError as err:
        raise MiMarginError(f"restricted_on={restricted_on!r}: {err} (restricted_on='all')"
                            ) from None


def default_components(model: Analyzable, task: Task) -> list[Any]:
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

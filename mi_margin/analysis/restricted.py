"""Restricted and excluded loss (Nanda et al. 2023 §4.3; Chughtai et al. 2023 App. E.1), via hooks.

Last-position MLP activations over the whole grid (``blocks.0.mlp.hook_post``) are projected onto
("restricted") or off ("excluded") the span of cos/sin(ω_f(a_1+…+a_k)) for the key frequencies f,
keeping each neuron's mean over the grid (:func:`~mi_margin.analysis.ablation.frequency_ablation_hook`).
For transformers the residual stream that bypasses the MLP (embeddings + attention output at the
last position) is replaced by its mean over the grid, so that the logits come from the projected
neurons through W_L = W_out·W_U plus an input-independent term, as in Nanda et al.'s
implementation (``direct_path="mean"``; ``"keep"`` leaves that path untouched).

docs/mathematics.md §4.3 and §7.6: restricted loss is evaluated on all data (or the test set), excluded
loss on the training set only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mi_margin.analysis._grid import POST, Hook, check_modular, check_outputs, model_kind, run_grid
from mi_margin.analysis.ablation import HookFn, frequency_ablation_hook
from mi_margin.analysis.fourier import key_frequencies
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import check_frequencies
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import cross_entropy64

RESID_MID, RESID_POST = "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"


@dataclass(frozen=True)
class AblationLosses(AnalysisResult):
    """Restricted and excluded loss (Nanda et al. §4.3; Chughtai et al. App. E.1), shared by the
    frequency and the irrep versions.

    Attributes:
        restricted_on: "all" or "test", the data the restricted loss is averaged over.
        full_loss, restricted, restricted_acc: loss of the unmodified model and of the restricted
            model, with its accuracy, on ``restricted_on``.
        full_train_loss, excluded, excluded_acc: the same on the training set for the excluded model.
    """

    _score = "loss"

    restricted_on: str
    full_loss: float
    restricted: float
    restricted_acc: float
    full_train_loss: float
    excluded: float
    excluded_acc: float

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame([
            {"measure": "full", "data": self.restricted_on, "loss": self.full_loss},
            {"measure": "restricted", "data": self.restricted_on, "loss": self.restricted,
             "accuracy": self.restricted_acc},
            {"measure": "full", "data": "train", "loss": self.full_train_loss},
            {"measure": "excluded", "data": "train", "loss": self.excluded,
             "accuracy": self.excluded_acc}])

    def subject(self) -> str:
        """What was kept or removed, for titles."""
        raise NotImplementedError


@dataclass(frozen=True)
class RestrictedLoss(AblationLosses):
    """Restricted/excluded loss of key frequencies (see :func:`restricted_loss`).

    Attributes:
        frequencies: the key frequencies kept (restricted) or removed (excluded).
        (the losses: see :class:`AblationLosses`)
    """

    _plot = "mi_margin.viz.ablation:plot_ablation_losses"

    frequencies: tuple[int, ...]

    def subject(self) -> str:
        return f"key frequencies {list(self.frequencies)}"


def direct_path_hooks(model: Any) -> list[tuple[str, Hook]]:
    """Hooks replacing the MLP-bypassing residual (last position) by its mean over the grid."""
    saved: dict[str, Tensor] = {}

    def save(act: Tensor, hook: Any) -> None:
        saved["mid"] = act[:, -1].detach()

    def subtract(act: Tensor, hook: Any) -> Tensor:
        mid = saved["mid"]
        out = act.clone()
        out[:, -1] = act[:, -1] - (mid - mid.mean(dim=0, keepdim=True))
        return out

    return [(RESID_MID, save), (RESID_POST, subtract)]


def _loss(logits: Tensor, labels: Tensor, idx: Tensor) -> tuple[float, float]:
    if len(idx) == 0:
        return float("nan"), float("nan")
    part = logits[idx]
    acc = (part.argmax(-1) == labels[idx]).double().mean()
    return float(cross_entropy64(part, labels[idx])), float(acc)


def projected_logits(model: Any, task: Any, hook: HookFn, direct_path: str = "mean") -> Tensor:
    """Logits over the whole grid with ``hook`` at ``blocks.0.mlp.hook_post`` (and, for transformers
    with ``direct_path="mean"``, the residual path around the MLP replaced by its grid mean)."""
    if direct_path not in ("mean", "keep"):
        raise MiMarginError(f"direct_path must be 'mean' or 'keep', got {direct_path!r}")
    hooks: list[tuple[str, Hook]] = [(POST, hook)]
    if model_kind(model) == "transformer" and direct_path == "mean":
        hooks += direct_path_hooks(model)
    logits, _ = run_grid(model, task, hooks=hooks)
    return logits


def ablation_losses(model: Any, task: Any, make_hook: Callable[[str], HookFn], restricted_on: str,
                    direct_path: str) -> dict[str, Any]:
    """The fields of :class:`AblationLosses`: the full model, the model with only the subspace kept
    (``make_hook("keep")``) on ``restricted_on`` data, and with it removed (``make_hook("remove")``)
    on the training set."""
    eval_idx = torch.arange(len(task.labels)) if restricted_on == "all" else task.test_idx
    full, _ = run_grid(model, task)
    kept = projected_logits(model, task, make_hook("keep"), direct_path)
    removed = projected_logits(model, task, make_hook("remove"), direct_path)
    full_loss, _ = _loss(full, task.labels, eval_idx)
    full_train, _ = _loss(full, task.labels, task.train_idx)
    restricted, restricted_acc = _loss(kept, task.labels, eval_idx)
    excluded, excluded_acc = _loss(removed, task.labels, task.train_idx)
    return {"restricted_on": restricted_on, "full_loss": full_loss, "restricted": restricted,
            "restricted_acc": restricted_acc, "full_train_loss": full_train,
            "excluded": excluded, "excluded_acc": excluded_acc}


def ablated_logits(model: Any, task: Any, frequencies: Sequence[int], mode: str,
                   direct_path: str = "mean") -> Tensor:
    """Logits over the whole grid with the key-frequency projection at ``blocks.0.mlp.hook_post``.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(ablated_logits(mlp, task, [1], "keep").shape)
        (49, 7)
    """
    check_fits(model, task, finite=True)
    return projected_logits(model, task, frequency_ablation_hook(task, frequencies, mode), direct_path)


def restricted_loss(model: Any, task: Any, frequencies: Sequence[int] | None = None,
                    restricted_on: str = "all", direct_path: str = "mean") -> RestrictedLoss:
    """Restricted loss (key frequencies only) and excluded loss (key frequencies removed).

    Args:
        model: HookedOneLayerTransformer or HookedMLP on a ModularAddition task (any k).
        task: the task (its train split defines the excluded-loss data).
        frequencies: the key frequencies; default :func:`key_frequencies` of the model.
        restricted_on: "all" (Nanda, Chughtai) or "test" data for the restricted loss.
        direct_path: transformers only — "mean" (default, Nanda's W_L-only logits) or "keep".

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, train_fraction=0.5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> res = restricted_loss(mlp, task, frequencies=[1, 2])
        >>> list(res.to_dataframe()["measure"])
        ['full', 'restricted', 'full', 'excluded']
    """
    check_modular(task, "restricted_loss")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    if restricted_on not in ("all", "test"):
        raise MiMarginError(f"restricted_on must be 'all' or 'test', got {restricted_on!r}")
    freqs = key_frequencies(model, task) if frequencies is None else \
        check_frequencies(task.p, frequencies)

    def make_hook(mode: str) -> HookFn:
        return frequency_ablation_hook(task, freqs, mode)

    return RestrictedLoss(frequencies=tuple(freqs),
                          **ablation_losses(model, task, make_hook, restricted_on, direct_path))

"""Progress measures over a run's checkpoints (Nanda et al. 2023 §5, Fig. 7; Chughtai et al. 2023,
Fig. 4 and App. E.5; docs/mathematics.md §3.5, §4.3).

For every kept checkpoint of a :class:`~mi_margin.Run` (no re-training), for a fixed set of key
labels (default: those of the final model, as both papers do): train/test loss and accuracy,
restricted loss (all data) and excluded loss (train data), the share of logit variance on the key
labels' characters, the share of the centred neuron activations in their product subspace
(Chughtai's "MLP ρ(ab)"), the Gini coefficients of the embedding's and W_L's basis norms, the sum
of squared weights, and the logit similarity of every label (``sim[<label>]``). One implementation
for every task; :func:`irrep_progress` is the group view. Checkpoints are streamed: each is one
pass over the grid (a :class:`~mi_margin.analysis.core.GridCache`) that every column reads, and
only one checkpoint's activations are in memory at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mi_margin._progress import progress_bar
from mi_margin.analysis.basis import basis_for, require_labels
from mi_margin.analysis.core import ENERGY_CHUNK, POST, RESID_MID, GridCache, grid_cache
from mi_margin.analysis.restricted import (
    default_components,
    loss_on,
    per_example,
    restricted_loss,
)
from mi_margin.analysis.results import AnalysisResult, KeyLabels
from mi_margin.analysis.spectrum import fourier_gini, logit_similarity
from mi_margin.checks import as_python, check_int
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import weight_norm_sq

COLUMNS = ["step", "train_loss", "train_acc", "test_loss", "test_acc", "restricted_loss",
           "excluded_loss", "gini_embed", "gini_W_L", "weight_norm_sq", "key_logit_fve",
           "hidden_product_fve"]


@dataclass(frozen=True)
class ProgressMeasures(KeyLabels, AnalysisResult):
    """Progress measures per checkpoint (see :func:`progress_measures`).

    Attributes:
        label_kind, labels: the key labels used for the restricted/excluded losses and FVEs.
        table: one row per checkpoint with the columns of ``COLUMNS`` then ``sim[<label>]``.
    """

    _score = "step"

    label_kind: str
    labels: tuple[Any, ...]
    table: pd.DataFrame = field(repr=False)

    def _table(self) -> pd.DataFrame:
        return self.table.copy()


def row_hooks(kind: str) -> list[str]:
    """The hooks one row reads: the neurons, and for transformers the residual stream after
    attention (the direct path of the restricted and excluded losses)."""
    return [POST, *([RESID_MID] if kind == "transformer" else [])]


def checkpoint_caches(run: Any, steps: Sequence[int], names: Sequence[str],
                      desc: str = "checkpoints", progress: bool = True
                      ) -> Iterator[tuple[int, GridCache]]:
    """(step, grid cache of the checkpoint at ``step`` with ``names``), one checkpoint at a time:
    each cache is one pass over the grid, and only the one being read is held in memory. A tqdm
    bar counts the checkpoints (``progress=False`` or ``TQDM_DISABLE=1`` hide it).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5)
        >>> run = mm.train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task,
        ...                mm.TrainConfig(steps=4, n_checkpoints=2, progress=False))
        >>> [(step, c.passes) for step, c in checkpoint_caches(run, [0, 4], [POST], progress=False)]
        [(0, 1), (4, 1)]
    """
    bar = progress_bar(steps, desc=desc, leave=False, **({} if progress else {"disable": True}))
    for step in bar:
        yield step, grid_cache(run.model_at(step), run.task, names)


def hidden_product_shares(c: GridCache) -> Tensor:
    """Share of the neurons' total centred variance over the grid in each label's ρ(product)
    subspace, [L] (Chughtai et al.'s "MLP ρ(ab)"; ``spectrum(...).hidden_fractions()[:, -1]``)."""
    post, b = c[POST], c.basis
    energy = b.term_energy(c.task, post, b.terms()[-1]).sum(1)
    width = max(1, ENERGY_CHUNK // len(post))
    parts = (post[:, i:i + width].double() for i in range(0, post.shape[1], width))
    total = sum(float(torch.linalg.vector_norm(part) ** 2 - part.sum(0).square().sum() / len(part))
                for part in parts)                         # Σ x² − N·mean², a few columns at a time
    return energy / total if total > 0 else energy


def progress_row(c: GridCache, labels: tuple[Any, ...]) -> dict[str, Any]:
    """The progress measures of one model (its grid cache, read without another pass) for the key
    ``labels``: the columns of :data:`COLUMNS` but ``step``, then ``sim[<label>]``. With no key
    labels (a model that has not learned any) the restricted and excluded losses are NaN: there
    is nothing to keep or remove."""
    task = c.task
    per_row = per_example(task, c.logits)
    (train_loss, train_acc), (test_loss, test_acc) = (loss_on(per_row, idx)
                                                      for idx in (task.train_idx, task.test_idx))
    losses = restricted_loss(c, task, labels) if labels else None
    sim = logit_similarity(c, task)
    product = hidden_product_shares(c)
    gini = fourier_gini(c, task) if task.algebra.inputs == "operands" else {}   # weights over elements
    row = {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
           "test_acc": test_acc, "restricted_loss": losses.restricted if losses else math.nan,
           "excluded_loss": losses.excluded if losses else math.nan,
           "gini_embed": gini.get("embed", math.nan), "gini_W_L": gini.get("W_L", math.nan),
           "weight_norm_sq": weight_norm_sq(c.model),
           "key_logit_fve": sim.fve(labels),
           "hidden_product_fve": float(sum(float(product[c.basis.labels.index(lab)])
                                           for lab in labels))}
    row.update({f"sim[{lab}]": float(x) for lab, x in zip(sim.labels, sim.similarity)})
    return row


def _requested_steps(run: Any, steps: Any) -> list[int]:
    """The kept checkpoints' steps that ``steps`` names, ascending: all of them for None, one
    for an integer; refused when empty or when a step has no checkpoint."""
    kept = sorted(run.checkpoints)
    if steps is None:
        return kept
    given = as_python(steps)
    given = [given] if isinstance(given, int) else given
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise MiMarginError(f"steps must be a checkpoint step or a list of them (kept: {kept}), "
                            f"got steps={steps!r}")
    chosen = sorted({check_int("steps", as_python(step), low=0) for step in given})
    if not chosen:
        raise MiMarginError(f"steps={steps!r} is empty: name at least one checkpoint step "
                            f"(kept: {kept}), or steps=None for all of them")
    missing = sorted(set(chosen) - set(kept))
    if missing:
        raise MiMarginError(f"no checkpoints at steps {missing}; kept: {kept}")
    return chosen


def progress_measures(run: Any, labels: Sequence[Any] | None = None,
                      steps: Sequence[int] | int | None = None, *,
                      progress: bool = True
                      ) -> ProgressMeasures:
    """The progress measures at every kept checkpoint of ``run`` as one table.

    Args:
        run: a :class:`~mi_margin.Run` (``run.checkpoints``) on any task, or its run folder.
        labels: key frequencies / irreps / subsets; default those of the final model
            (:func:`~mi_margin.analysis.restricted.default_components`).
        steps: checkpoint steps to evaluate, or one step (default: all kept, ascending).
        progress: show a progress bar over the checkpoints (``TQDM_DISABLE=1`` hides it too).

    Each checkpoint is one pass over the grid (:func:`checkpoint_caches`), from which every
    column is computed (:func:`progress_row`); one more pass finds the default key labels.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, train_fraction=0.5)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> run = mm.train(model, task, mm.TrainConfig(steps=20, eval_every=10, n_checkpoints=3,
        ...                                            progress=False))
        >>> table = progress_measures(run, [1]).to_dataframe()
        >>> table["step"].tolist() == sorted(run.checkpoints)
        True
    """
    from mi_margin.training.run_folder import as_run

    run = as_run(run, "progress_measures reads a run's checkpoints")
    task = run.task
    if not run.checkpoints:
        raise MiMarginError("the run has no checkpoints; train with checkpoint_schedule "
                            "'log' or 'linear'")
    chosen = _requested_steps(run, steps)
    basis = basis_for(task)
    keys = (basis.resolve(default_components(run.model, task)) if labels is None
            else basis.user_labels(labels, "labels"))
    caches = checkpoint_caches(run, chosen, row_hooks(run.model.model_kind),
                               "progress measures", progress)
    rows = [{"step": step, **progress_row(c, keys)} for step, c in caches]
    return ProgressMeasures(label_kind=basis.label_kind, labels=keys, table=pd.DataFrame(rows))


def irrep_progress(run: Any, irreps: Sequence[str] | None = None,
                   steps: Sequence[int] | int | None = None, *,
                   progress: bool = True) -> ProgressMeasures:
    """:func:`progress_measures` of a group-composition run, for irreps (Chughtai et al. Fig. 4).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3", train_fraction=0.8)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> run = mm.train(model, task, mm.TrainConfig(steps=20, progress=False, n_checkpoints=3))
        >>> prog = irrep_progress(run, irreps=["standard"], progress=False)
        >>> prog.irreps, list(prog.to_dataframe()["step"])[0]
        (('(2,1)',), 0)
    """
    require_labels(run.task, "irrep", "irrep_progress")
    return progress_measures(run, irreps, steps, progress=progress)

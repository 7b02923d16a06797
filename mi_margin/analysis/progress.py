"""Progress measures over a run's checkpoints (Nanda et al. 2023 §5, Fig. 7; Chughtai et al. 2023,
Fig. 4 and App. E.5; docs/mathematics.md §3.5, §4.3).

For every kept checkpoint of a :class:`~mi_margin.Run` (no re-training), for a fixed set of key
labels (default: those of the final model, as both papers do): train/test loss and accuracy,
restricted loss (all data) and excluded loss (train data), the share of logit variance on the key
labels' characters, the share of the centred neuron activations in their product subspace
(Chughtai's "MLP ρ(ab)"), the Gini coefficients of the embedding's and W_L's basis norms, the sum
of squared weights, and the logit similarity of every label (``sim[<label>]``). One implementation
for every task; :func:`irrep_progress` is the group view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mi_margin.analysis.basis import basis_for
from mi_margin.analysis.core import require
from mi_margin.analysis.restricted import default_components, restricted_loss
from mi_margin.analysis.results import AnalysisResult, KeyLabels
from mi_margin.analysis.spectrum import fourier_gini, logit_similarity, renamed, spectrum
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import evaluate, weight_norm_sq

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


def _row(model: Any, task: Any, labels: tuple[Any, ...]) -> dict[str, Any]:
    train_loss, train_acc = evaluate(model, task, task.train_idx)
    test_loss, test_acc = evaluate(model, task, task.test_idx)
    losses = restricted_loss(model, task, labels)
    sim = logit_similarity(model, task)
    spec = spectrum(model, task, where="neurons")
    product = spec.hidden_fractions()[:, -1]
    gini = fourier_gini(model, task) if task.kind != "sparse_parity" else {}
    row = {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
           "test_acc": test_acc, "restricted_loss": losses.restricted,
           "excluded_loss": losses.excluded, "gini_embed": gini.get("embed", float("nan")),
           "gini_W_L": gini.get("W_L", float("nan")), "weight_norm_sq": weight_norm_sq(model),
           "key_logit_fve": sim.fve(labels),
           "hidden_product_fve": float(sum(float(product[spec.labels.index(lab)])
                                           for lab in labels))}
    row.update({f"sim[{lab}]": float(x) for lab, x in zip(sim.labels, sim.similarity)})
    return row


def progress_measures(run: Any, labels: Sequence[Any] | None = None,
                      steps: Sequence[int] | None = None, *,
                      frequencies: Sequence[int] | None = None) -> ProgressMeasures:
    """The progress measures at every kept checkpoint of ``run`` as one table.

    Args:
        run: a :class:`~mi_margin.Run` (``run.checkpoints``) on any task.
        labels: key frequencies / irreps / subsets; default those of the final model
            (:func:`~mi_margin.analysis.restricted.default_components`). ``frequencies=`` is the
            deprecated name.
        steps: checkpoint steps to evaluate (default: all kept, ascending).

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
    labels = renamed("frequencies", "labels", frequencies, labels, None)
    task = run.task
    if not run.checkpoints:
        raise MiMarginError("the run has no checkpoints; train with checkpoint_schedule "
                            "'log' or 'linear'")
    kept = sorted(run.checkpoints)
    chosen = kept if steps is None else sorted(set(steps))
    missing = sorted(set(chosen) - set(kept))
    if missing:
        raise MiMarginError(f"no checkpoints at steps {missing}; kept: {kept}")
    basis = basis_for(task)
    keys = basis.resolve(default_components(run.model, task) if labels is None else labels)
    rows = [{"step": step, **_row(run.model_at(step), task, keys)} for step in chosen]
    return ProgressMeasures(label_kind=basis.label_kind, labels=keys, table=pd.DataFrame(rows))


def irrep_progress(run: Any, irreps: Sequence[str] | None = None,
                   steps: Sequence[int] | None = None) -> ProgressMeasures:
    """:func:`progress_measures` of a group-composition run, for irreps (Chughtai et al. Fig. 4).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3", train_fraction=0.8)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> run = mm.train(model, task, mm.TrainConfig(steps=20, progress=False, n_checkpoints=3))
        >>> prog = irrep_progress(run, irreps=["standard"])
        >>> prog.irreps, list(prog.to_dataframe()["step"])[0]
        (('(2,1)',), 0)
    """
    require(run.task, "group_composition", "irrep_progress")
    return progress_measures(run, irreps, steps)

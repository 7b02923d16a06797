"""Irrep progress measures over a run's checkpoints (Chughtai et al. 2023, Fig. 4 and App. E.5).

Chughtai et al. track, for the irreps the *final* model uses, how the logit similarity with
χ_ρ(abc⁻¹), the restricted and excluded losses and the sum of squared weights evolve; together
they show memorization, circuit formation and cleanup (docs/mathematics.md §3.5; Nanda et al. 2023's
progress measures, docs/mathematics.md §4.3). :func:`irrep_progress` computes them at every kept checkpoint
of a :class:`~mi_margin.Run` with the analyzers of :mod:`mi_margin.analysis.irreps` and
:mod:`mi_margin.analysis.irrep_ablation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from mi_margin.analysis.irrep_ablation import canonical_irreps, irrep_restricted_loss
from mi_margin.analysis.irreps import (
    check_group,
    irrep_logit_similarity,
    irrep_spectrum,
    key_irreps,
)
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import evaluate, weight_norm_sq


@dataclass(frozen=True)
class IrrepProgress(AnalysisResult):
    """Irrep progress measures per checkpoint (see :func:`irrep_progress`).

    Mirrors :class:`~mi_margin.analysis.progress.ProgressMeasures` (same columns where they mean
    the same thing), with irreps in place of frequencies.

    Attributes:
        irreps: the key irreps tracked (from the final model unless given).
        table: one row per checkpoint: ``step``, ``train_loss``, ``train_acc``, ``test_loss``,
            ``test_acc``, ``restricted_loss`` (all pairs), ``excluded_loss`` (train pairs),
            ``key_logit_fve`` (Σ over the key irreps of sim²), ``hidden_product_fve`` (share of
            the centred MLP activations in the key irreps' ρ(ab) subspace, Chughtai's Table 3
            "MLP ρ(ab)" column), ``weight_norm_sq`` (sum of squared weights), and
            ``sim[<irrep>]`` for every irrep of the group.
    """

    _score: ClassVar[str] = "step"
    _plot: ClassVar[str | None] = "mi_margin.viz.irreps:plot_irrep_progress"

    irreps: tuple[str, ...]
    table: pd.DataFrame = field(repr=False)

    def _table(self) -> pd.DataFrame:
        return self.table.copy()


def _row(model: Any, task: Any, irreps: tuple[str, ...]) -> dict[str, float]:
    train_loss, train_acc = evaluate(model, task, task.train_idx)
    test_loss, test_acc = evaluate(model, task, task.test_idx)
    sim = irrep_logit_similarity(model, task)
    spec = irrep_spectrum(model, task, where="neurons")
    hidden = spec.hidden_fractions()[:, -1]
    ablation = irrep_restricted_loss(model, task, irreps)
    row = {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
           "test_acc": test_acc, "restricted_loss": ablation.restricted,
           "excluded_loss": ablation.excluded, "key_logit_fve": sim.fve(irreps),
           "hidden_product_fve": float(sum(float(hidden[spec.irreps.index(name)])
                                           for name in irreps)),
           "weight_norm_sq": weight_norm_sq(model)}
    row.update({f"sim[{name}]": float(s) for name, s in zip(sim.irreps, sim.similarity)})
    return row


def irrep_progress(run: Any, irreps: Sequence[str] | None = None,
                   steps: Sequence[int] | None = None) -> IrrepProgress:
    """Chughtai et al.'s irrep progress measures at every kept checkpoint of ``run``.

    Args:
        run: a :class:`~mi_margin.Run` on a :class:`~mi_margin.GroupComposition` task.
        irreps: the irreps to track; default the key irreps of the final model
            (:func:`~mi_margin.analysis.irreps.key_irreps`), as in Chughtai et al. and Nanda et al.
        steps: checkpoint steps to evaluate (default all kept, ascending).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3", train_fraction=0.8)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> run = mm.train(model, task, mm.TrainConfig(steps=20, progress=False, n_checkpoints=3))
        >>> prog = irrep_progress(run, irreps=["standard"])
        >>> prog.irreps, list(prog.to_dataframe()["step"])[0]
        (('(2,1)',), 0)
    """
    check_fits(run.model, run.task)
    task = run.task
    check_group(task, "irrep_progress")
    if not run.checkpoints:
        raise MiMarginError("the run has no checkpoints; train with checkpoint_schedule "
                            "'log' or 'linear'")
    kept = sorted(run.checkpoints)
    chosen = kept if steps is None else sorted(set(steps))
    missing = sorted(set(chosen) - set(kept))
    if missing:
        raise MiMarginError(f"no checkpoints at steps {missing}; kept: {kept}")
    names = canonical_irreps(task, key_irreps(run.model, task) if irreps is None else irreps)
    rows = [{"step": step, **_row(run.model_at(step), task, names)} for step in chosen]
    return IrrepProgress(irreps=names, table=pd.DataFrame(rows))

"""Progress measures over a run's checkpoints (Nanda et al. 2023 §5, Fig. 7; docs/mathematics.md §4.3).

For every kept checkpoint of a :class:`~mi_margin.Run` (no re-training): train/test loss and
accuracy, restricted loss (all data) and excluded loss (train data) for a fixed key-frequency set,
the Gini coefficients of the Fourier-component norms of the embedding and of W_L, and the total sum
of squared weights. The key frequencies default to those of the final model, as in Nanda et al.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mi_margin.analysis.fourier import fourier_gini, key_frequencies
from mi_margin.analysis.restricted import restricted_loss
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import evaluate, weight_norm_sq

COLUMNS = ["step", "train_loss", "train_acc", "test_loss", "test_acc", "restricted_loss",
           "excluded_loss", "gini_embed", "gini_W_L", "weight_norm_sq"]


@dataclass(frozen=True)
class ProgressMeasures(AnalysisResult):
    """Progress measures per checkpoint (see :func:`progress_measures`).

    Attributes:
        frequencies: the key frequencies used for the restricted and excluded losses.
        table: one row per checkpoint step with the columns of ``COLUMNS``.
    """

    _score = "step"
    _plot = "mi_margin.viz.fourier:plot_progress"

    frequencies: tuple[int, ...]
    table: pd.DataFrame = field(repr=False)

    def _table(self) -> pd.DataFrame:
        return self.table.copy()


def _row(model: Any, task: Any, step: int, freqs: list[int]) -> dict[str, float]:
    train_loss, train_acc = evaluate(model, task, task.train_idx)
    test_loss, test_acc = evaluate(model, task, task.test_idx)
    rl = restricted_loss(model, task, freqs)
    gini = fourier_gini(model, task)
    return {"step": step, "train_loss": train_loss, "train_acc": train_acc,
            "test_loss": test_loss, "test_acc": test_acc, "restricted_loss": rl.restricted,
            "excluded_loss": rl.excluded, "gini_embed": gini["embed"], "gini_W_L": gini["W_L"],
            "weight_norm_sq": weight_norm_sq(model)}


def progress_measures(run: Any, frequencies: Sequence[int] | None = None,
                      steps: Sequence[int] | None = None) -> ProgressMeasures:
    """Nanda et al.'s progress measures at every kept checkpoint of ``run`` as one DataFrame.

    Args:
        run: a :class:`~mi_margin.Run` on a ModularAddition task (``run.checkpoints``).
        frequencies: key frequencies; default :func:`key_frequencies` of the final model.
        steps: checkpoint steps to evaluate (default: all kept, sorted).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, train_fraction=0.5)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> run = mm.train(model, task, mm.TrainConfig(steps=20, eval_every=10, n_checkpoints=3,
        ...                                            progress=False))
        >>> table = progress_measures(run, frequencies=[1]).to_dataframe()
        >>> table["step"].tolist() == sorted(run.checkpoints)
        True
    """
    check_fits(run.model, run.task)
    task = run.task
    chosen = sorted(run.checkpoints) if steps is None else list(steps)
    missing = [s for s in chosen if s not in run.checkpoints]
    if missing:
        raise MiMarginError(f"no checkpoints at steps {missing}; kept: {sorted(run.checkpoints)}")
    freqs = key_frequencies(run.model, task) if frequencies is None else list(frequencies)
    rows = [_row(run.model_at(step), task, step, freqs) for step in chosen]
    return ProgressMeasures(frequencies=tuple(freqs), table=pd.DataFrame(rows, columns=COLUMNS))

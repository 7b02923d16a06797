"""NFA quantities over a run's checkpoints (Mallinar et al. 2024 Fig. on NFA during grokking).

For every kept checkpoint: the NFA correlation ρ(W^T W, G^s) (Pearson and cosine), the centered
NFA ρ(ΔW^T ΔW, (ΔW^T K ΔW)^s) (Beaglehole et al. 2024), ||W − W_0|| / ||W||, and for modular
addition MLPs the circulant deviation D of the NFM's and of G^s's cross-operand blocks (docs/mathematics.md
§5). One pre-activation kernel K per checkpoint gives both G = W^T K W and the centered matrices.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import pandas as pd
from torch import Tensor

from mi_margin.analysis.agop import agop
from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.nfa import alignment, circulant_deviation
from mi_margin.analysis.nfm import axis_labels, layer_weight
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Cyclic, Task


@dataclass(frozen=True)
class NFATrajectory(AnalysisResult):
    """NFA diagnostics per checkpoint of a run (``.top(k)``: the k best-aligned checkpoints).

    Attributes:
        frame: one row per checkpoint: ``step``, ``pearson``, ``cosine``,
            ``off_diagonal_pearson``, ``off_diagonal_cosine``, the same four prefixed
            ``centered_`` (NaN at step 0, where ΔW = 0), ``relative_change``, for modular
            addition MLPs ``nfm_circulant_deviation`` and ``agop_circulant_deviation``, and the
            run history's ``train_acc``/``test_acc``/``train_loss``/``test_loss`` at the last
            evaluation at or before the step.
        power, subset, layer: the arguments used.
    """

    _score: ClassVar[str] = "pearson"

    frame: pd.DataFrame
    power: float
    subset: str
    layer: int

    def _table(self) -> pd.DataFrame:
        return self.frame.copy()


def _mean_deviation(fm: FeatureMatrix) -> float:
    """Mean circulant deviation over operand pairs i > j (Mallinar's bottom-left block for k=2)."""
    pairs = [(i, j) for j, i in combinations(range(fm.n_blocks), 2)]
    return sum(circulant_deviation(fm, pair) for pair in pairs) / len(pairs)


def _row(model: HookedModel, task: Task, W0: Tensor, layer: int, power: float, subset: str,
         method: str, with_deviation: bool) -> dict[str, float]:
    W = layer_weight(model, layer)
    K = agop(model, task, layer, "preactivation", subset, method=method).matrix
    dW = W - W0
    plain, centered = alignment(W.T @ W, W.T @ K @ W, power), alignment(
        dW.T @ dW, dW.T @ K @ dW, power)
    target = plain.pop("target")
    centered.pop("target")
    row = {**plain, **{f"centered_{name}": value for name, value in centered.items()},
           "relative_change": float(dW.norm() / W.norm())}
    if with_deviation:
        labels, block = axis_labels(model)
        row["nfm_circulant_deviation"] = _mean_deviation(FeatureMatrix(W.T @ W, "NFM", labels,
                                                                       block))
        row["agop_circulant_deviation"] = _mean_deviation(
            FeatureMatrix(target, "AGOP^s", labels, block))
    return row


def nfa_over_training(run: Any, layer: int = 0, power: float = 0.5, subset: str = "train",
                      steps: list[int] | None = None, method: str = "factored"
                      ) -> NFATrajectory:
    """NFA correlation, centered NFA and circulant deviation at each kept checkpoint of ``run``.

    Args:
        run: a :class:`~mi_margin.Run` (its ``checkpoints[0]`` is the initialization W_0).
        layer, power, subset: as for :func:`~mi_margin.analysis.nfa.nfa_correlation`.
        steps: checkpoint steps to use (default: all kept checkpoints).
        method: how K is computed at each checkpoint (see :func:`~mi_margin.analysis.agop.agop`);
            ``"factored"`` by default because this loops over many checkpoints (tests check it
            equals ``"jacrev"``).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, train_fraction=0.6)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> run = mm.train(mlp, task, mm.TrainConfig(steps=20, n_checkpoints=3, progress=False))
        >>> list(nfa_over_training(run).frame["step"])
        [0, 3, 7, 20]
    """
    check_fits(run.model, run.task)
    kept = sorted(run.checkpoints)
    steps = kept if steps is None else sorted(steps)
    missing = sorted(set(steps) - set(kept))
    if missing or not steps:
        raise MiMarginError(f"steps must be non-empty checkpoint steps of the run; missing "
                            f"{missing}, kept: {kept}")
    W0 = layer_weight(run.model_at(0), layer)
    task = run.task
    alg = task.algebra                   # circulant in token order: Z_n with tokens as elements
    with_dev = (isinstance(alg.domain, Cyclic) and alg.encoding is None and alg.k >= 2
                and run.model.model_kind == "mlp")
    rows = [{"step": s, **_row(run.model_at(s), task, W0, layer, power, subset, method,
                               with_dev)}
            for s in steps]
    frame = pd.DataFrame(rows)
    history = run.history
    cols = [c for c in ["train_loss", "train_acc", "test_loss", "test_acc"] if c in history]
    if len(history) and cols:
        frame = pd.merge_asof(frame, history[["step", *cols]].sort_values("step"), on="step")
    return NFATrajectory(frame, power, subset, layer)


"""Training curves: loss (log scale), accuracy and weight norm, and progress measures over steps.

Grokking (Nanda et al. 2023, docs/mathematics.md §4.3) is read from these curves: train loss falls first,
test loss much later, while the weight norm shrinks under weight decay; the progress measures
(restricted/excluded loss, Gini coefficients) recorded as extra history columns show the circuit
forming in between.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.errors import MiMarginError

STANDARD = ("step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "weight_norm_sq")
_SPLIT_STYLE = {"train": "solid", "test": "dash"}


def history_frame(run_or_history: Any) -> pd.DataFrame:
    """The metrics DataFrame of a :class:`~mi_margin.Run` (or the DataFrame itself), checked."""
    frame = getattr(run_or_history, "history", run_or_history)
    if not isinstance(frame, pd.DataFrame):
        raise MiMarginError(f"expected a Run or a history DataFrame, got {type(run_or_history).__name__}")
    if "step" not in frame.columns or len(frame) == 0:
        raise MiMarginError(f"the history must have rows and a 'step' column; got {len(frame)} rows "
                            f"with columns {list(frame.columns)}")
    return frame


def _has(frame: pd.DataFrame, col: str) -> bool:
    return col in frame.columns and bool(frame[col].notna().any())


def progress_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric history columns beyond the standard ones (custom metrics, progress measures)."""
    return [c for c in frame.columns if c not in STANDARD
            and pd.api.types.is_numeric_dtype(frame[c]) and _has(frame, c)]


def training_curves(run_or_history: Any, log_x: bool = False, title: str | None = None
                    ) -> go.Figure:
    """Three panels against step: train/test loss (log y), train/test accuracy, weight norm ‖θ‖₂.

    Args:
        run_or_history: a Run or its ``history`` DataFrame.
        log_x: log-scale steps (step 0 is drawn at 1).

    Example:
        >>> import pandas as pd
        >>> h = pd.DataFrame({"step": [0, 10], "train_loss": [4.0, 0.1], "test_loss": [4.0, 3.0],
        ...                   "train_acc": [0.0, 1.0], "test_acc": [0.0, 0.1],
        ...                   "weight_norm_sq": [9.0, 4.0]})
        >>> [t.name for t in training_curves(h).data]
        ['train loss', 'test loss', 'train accuracy', 'test accuracy', 'weight norm']
    """
    frame = history_frame(run_or_history)
    x = frame["step"].clip(lower=1) if log_x else frame["step"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=["loss", "accuracy", "weight norm ‖θ‖₂"],
                        horizontal_spacing=0.08)
    for col, metric in enumerate(["loss", "acc"], start=1):
        for split, dash in _SPLIT_STYLE.items():
            name = f"{split}_{metric}"
            if _has(frame, name):
                label = f"{split} {'loss' if metric == 'loss' else 'accuracy'}"
                fig.add_trace(go.Scatter(x=x, y=frame[name], mode="lines", name=label,
                                         line={"dash": dash}), row=1, col=col)
    if _has(frame, "weight_norm_sq"):
        fig.add_trace(go.Scatter(x=x, y=np.sqrt(frame["weight_norm_sq"]), mode="lines",
                                 name="weight norm"), row=1, col=3)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="step", type="log" if log_x else "linear")
    fig.update_layout(title=title or "Training curves", width=1100, height=380)
    return fig


def progress_curves(run_or_history: Any, columns: list[str] | None = None, log_x: bool = False,
                    title: str | None = None) -> go.Figure:
    """Progress measures against step: loss-like columns on a log panel, the others on a linear one.

    Args:
        run_or_history: a Run, its history, or any DataFrame with a ``step`` column (e.g. a
            progress-measures table computed over checkpoints).
        columns: which columns (default: every numeric non-standard column, see
            :func:`progress_columns`).

    Example:
        >>> import pandas as pd
        >>> h = pd.DataFrame({"step": [0, 10], "restricted_loss": [4.0, 0.5], "gini_W_E": [0.1, 0.6]})
        >>> [t.name for t in progress_curves(h).data]
        ['restricted_loss', 'gini_W_E']
    """
    frame = history_frame(run_or_history)
    chosen = progress_columns(frame) if columns is None else list(columns)
    missing = [c for c in chosen if c not in frame.columns]
    if not chosen or missing:
        raise MiMarginError(f"no progress columns to plot (asked {columns}, missing {missing}); "
                            f"numeric extra columns: {progress_columns(frame)}")
    losses = [c for c in chosen if "loss" in c]
    others = [c for c in chosen if c not in losses]
    panels = [p for p in (losses, others) if p]
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1,
                        subplot_titles=["losses" if p is losses else "other measures" for p in panels])
    x = frame["step"].clip(lower=1) if log_x else frame["step"]
    for col, cols in enumerate(panels, start=1):
        for name in cols:
            fig.add_trace(go.Scatter(x=x, y=frame[name], mode="lines+markers", name=name),
                          row=1, col=col)
        if cols is losses:
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_xaxes(title_text="step", type="log" if log_x else "linear")
    fig.update_layout(title=title or "Progress measures", width=550 * len(panels) + 100, height=380)
    return fig

"""Plotly figures for feature alignment: NFM/AGOP heatmaps and NFA correlation over training.

Beaglehole et al. 2024; Mallinar et al. 2024 (docs/mathematics.md §5): the NFM W^T W next to the AGOP power
G^s shows the alignment by eye (for modular addition both have circulant cross-operand blocks);
the NFA correlation over checkpoints shows it rise during training.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.analysis.feature_matrix import FeatureMatrix


def _heatmap(fm: FeatureMatrix, showscale: bool = True) -> go.Heatmap:
    z = fm.matrix.float().numpy()
    return go.Heatmap(z=z, x=list(fm.labels), y=list(fm.labels), colorscale="RdBu",
                      zmid=0.0, showscale=showscale)


def feature_matrix_heatmap(fm: FeatureMatrix, title: str | None = None) -> go.Figure:
    """Heatmap of one feature matrix (rows top to bottom, diverging colours centred at 0).

    Example:
        >>> import torch
        >>> fm = FeatureMatrix(torch.eye(2, dtype=torch.float64), "NFM", ("a", "b"))
        >>> feature_matrix_heatmap(fm).layout.title.text
        'NFM'
    """
    fig = go.Figure(_heatmap(fm))
    fig.update_layout(title=title or fm.name, width=560, height=520)
    fig.update_yaxes(autorange="reversed")
    return fig


def nfa_heatmaps(result: Any, title: str | None = None) -> go.Figure:
    """The NFM and the AGOP power of an :class:`~mi_margin.analysis.nfa.NFAResult`, side by side.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.nfa import nfa_correlation
        >>> task = mm.ModularAddition(p=5, train_fraction=0.6)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> len(nfa_heatmaps(nfa_correlation(mlp, task)).data)
        2
    """
    kind = "centered " if result.centered else ""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[
        f"{kind}NFM", f"{kind}{result.agop_power.name}"])
    fig.add_trace(_heatmap(result.nfm, showscale=False), row=1, col=1)
    fig.add_trace(_heatmap(result.agop_power, showscale=False), row=1, col=2)
    fig.update_yaxes(autorange="reversed", title_text="input feature")
    fig.update_xaxes(title_text="input feature")
    default = (f"{kind}NFA: Pearson {result.pearson:.3f}, cosine {result.cosine:.3f} "
               f"(s = {result.power:g}, {result.subset})")
    fig.update_layout(title=title or default, width=1000, height=500)
    return fig


def nfa_training_figure(trajectory: Any, title: str | None = None) -> go.Figure:
    """NFA correlations (and test/train accuracy when recorded) against training step.

    Example:
        >>> import pandas as pd
        >>> from mi_margin.analysis.nfa_training import NFATrajectory
        >>> frame = pd.DataFrame({"step": [0, 10], "pearson": [0.1, 0.9],
        ...                       "off_diagonal_pearson": [0.0, 0.8]})
        >>> len(nfa_training_figure(NFATrajectory(frame, 0.5, "train", 0)).data)
        2
    """
    df = trajectory.frame
    x = df["step"].clip(lower=1)
    fig = go.Figure()
    for col in ["pearson", "off_diagonal_pearson", "centered_pearson",
                "centered_off_diagonal_pearson", "nfm_circulant_deviation", "train_acc",
                "test_acc"]:
        if col in df:
            dash = "dot" if col.endswith("acc") else None
            fig.add_trace(go.Scatter(x=x, y=df[col], mode="lines+markers", name=col,
                                     line={"dash": dash}))
    default = f"NFA over training (s = {trajectory.power:g}, AGOP on {trajectory.subset})"
    fig.update_layout(title=title or default, xaxis_title="step (log; step 0 drawn at 1)",
                      yaxis_title="correlation / accuracy / D", width=800, height=450)
    fig.update_xaxes(type="log")
    return fig

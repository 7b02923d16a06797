"""Plotly figures of a sweep: the universality bar chart and a metric heatmap over two axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mi_margin.sweep.summary import grid_metric, universality


def universality_figure(table: pd.DataFrame, column: str | None = None,
                        by: str | Sequence[str] | None = None, title: str | None = None
                        ) -> go.Figure:
    """Bar chart: fraction of runs in which each irrep / frequency is key (Chughtai et al. Fig. 7).

    Example:
        >>> t = pd.DataFrame({"status": ["finished"] * 2,
        ...                   "key_irreps": [["sign"], ["sign", "std"]]})
        >>> [bar.y.tolist() for bar in universality_figure(t).data]
        [[1.0, 0.5]]
    """
    counts = universality(table, column, by)
    keys = [by] if isinstance(by, str) else list(by or [])
    groups = counts.groupby(keys, dropna=False) if keys else [((), counts)]
    fig = go.Figure()
    for group, part in groups:
        values = group if isinstance(group, tuple) else (group,)
        name = ", ".join(f"{k}={v}" for k, v in zip(keys, values)) or "all runs"
        fig.add_bar(x=part["label"].tolist(), y=part["fraction"].to_numpy(), name=name,
                    text=[f"{a}/{b}" for a, b in zip(part["n_key"], part["n_runs"])],
                    textposition="outside")
    fig.update_layout(title=title or "How often each representation is key", barmode="group",
                      xaxis_title="irrep / frequency", yaxis_title="fraction of runs",
                      yaxis_range=[0, 1.1])
    return fig


def heatmap_figure(table: pd.DataFrame, x: str, y: str, metric: str, agg: str = "median",
                   title: str | None = None) -> go.Figure:
    """Heatmap of ``metric`` over the grid of axes ``x`` and ``y`` (e.g. weight decay × train
    fraction → grokking step), each cell annotated with its value; empty where no run has one.

    Example:
        >>> t = pd.DataFrame({"wd": [0.1, 1.0], "frac": [0.3, 0.3],
        ...                   "grokking_step": [400.0, 200.0]})
        >>> heatmap_figure(t, "wd", "frac", "grokking_step").data[0].z.tolist()
        [[400.0, 200.0]]
    """
    grid = grid_metric(table, x, y, metric, agg)
    z = grid.to_numpy(dtype=float)
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.3g}")(z))
    heat = go.Heatmap(z=z, x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
                      text=text, texttemplate="%{text}", colorscale="Viridis",
                      colorbar={"title": metric})
    fig = go.Figure(heat)
    fig.update_layout(title=title or f"{agg} {metric}", xaxis_title=x, yaxis_title=y)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig

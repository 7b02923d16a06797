"""Pictures of a finite group: its Cayley table and its character table.

The Cayley table is the task a group-composition model learns (Chughtai et al. 2023); the
character table lists the irreps it may use and χ_ρ(abc⁻¹), the "trace cube" that a key irrep's
logits follow (THEORY.md §3.4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

#: label axes with element names only up to this order (beyond it they are unreadable)
MAX_LABELLED = 60


def cayley_table_figure(G: Any, title: str | None = None) -> go.Figure:
    """Heatmap of the Cayley table: cell (a, b) is coloured by the index of a·b.

    Example:
        >>> from mi_margin import groups
        >>> fig = cayley_table_figure(groups.cyclic(4))
        >>> fig.data[0].z.shape
        (4, 4)
    """
    table = np.asarray(G.table)
    names = list(G.labels) if G.order <= MAX_LABELLED else list(range(G.order))
    text = np.asarray(G.labels, dtype=object)[table]
    fig = go.Figure(go.Heatmap(
        z=table, x=names, y=names, text=text, colorscale="Turbo", showscale=False,
        hovertemplate="%{y} · %{x} = %{text}<extra></extra>"))
    fig.update_xaxes(title_text="b", type="category")
    fig.update_yaxes(title_text="a", type="category", autorange="reversed")
    size = min(80 + 14 * G.order, 900)
    fig.update_layout(title=title or f"Cayley table of {G.name} (colour = a·b)", width=size + 80,
                      height=size + 60)
    return fig


def _format(value: complex) -> str:
    re, im = round(value.real, 3) + 0.0, round(value.imag, 3) + 0.0
    if im == 0:
        return f"{re:g}"
    return f"{re:g}{im:+g}i" if re else f"{im:g}i"


def character_table_figure(G: Any, title: str | None = None) -> go.Figure:
    """The character table as an annotated heatmap (rows irreps with their dimension, columns
    conjugacy classes with representative and size; colour = real part).

    Example:
        >>> from mi_margin import groups
        >>> fig = character_table_figure(groups.symmetric(3))
        >>> fig.data[0].z.shape
        (3, 3)
    """
    ct = G.character_table()
    values = np.asarray(ct.values)
    rows = [f"{name} (d={int(d)})" for name, d in zip(ct.irrep_names, ct.dims)]
    cols = [f"{lab} [{int(s)}]" for lab, s in zip(ct.class_labels, ct.class_sizes)]
    text = [[_format(v) for v in row] for row in values]
    limit = float(np.abs(values.real).max())
    fig = go.Figure(go.Heatmap(
        z=values.real, x=cols, y=rows, text=text, texttemplate="%{text}", colorscale="RdBu",
        zmid=0.0, zmin=-limit, zmax=limit, colorbar={"title": "Re χ"},
        hovertemplate="χ_%{y}(%{x}) = %{text}<extra></extra>"))
    fig.update_xaxes(title_text="conjugacy class [size]", type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title=title or f"Character table of {G.name}",
                      width=min(220 + 90 * len(cols), 1100), height=min(160 + 40 * len(rows), 900))
    return fig

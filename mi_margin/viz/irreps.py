"""Plotly figures of a finite group itself: its Cayley table and its character table (the
group a composition task lives in; Chughtai et al. 2023). Figures of analysis results, for every
basis, are in :mod:`mi_margin.viz.harmonic`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from mi_margin.groups import FiniteGroup


def cayley_table_figure(G: FiniteGroup, title: str | None = None) -> go.Figure:
    """Heatmap of the Cayley table a·b (rows a, columns b), labelled by element labels.

    Example:
        >>> from mi_margin import groups
        >>> np.asarray(cayley_table_figure(groups.symmetric(3)).data[0].z).shape
        (6, 6)
    """
    labels = [str(lab) for lab in G.labels]
    text = [[labels[c] for c in row] for row in G.table.tolist()]
    fig = go.Figure(go.Heatmap(z=G.table, x=labels, y=labels, text=text,
                               hovertemplate="%{y} · %{x} = %{text}<extra></extra>",
                               colorscale="Turbo", showscale=False))
    fig.update_layout(title=title or f"Cayley table of {G.name}", height=560, width=600,
                      xaxis_title="b", yaxis_title="a")
    fig.update_yaxes(autorange="reversed")
    return fig


def character_table_figure(G: FiniteGroup, title: str | None = None) -> go.Figure:
    """The complex character table as an annotated heatmap (real parts coloured).

    Example:
        >>> from mi_margin import groups
        >>> np.asarray(character_table_figure(groups.symmetric(3)).data[0].z).shape
        (3, 3)
    """
    ct = G.character_table()
    values = np.asarray(ct.values)
    cells = [[f"{z.real:.3g}" if abs(z.imag) < 1e-9 else f"{z.real:.3g}{z.imag:+.3g}i"
              for z in row] for row in values]
    columns = [f"{lab} [{size}]" for lab, size in zip(ct.class_labels, ct.class_sizes)]
    fig = go.Figure(go.Heatmap(z=values.real, x=columns, y=list(ct.irrep_names), text=cells,
                               texttemplate="%{text}", colorscale="RdBu", zmid=0.0))
    fig.update_layout(title=title or f"Character table of {G.name}", height=120 + 40 * len(values),
                      width=160 + 90 * len(columns), xaxis_title="class [size]")
    fig.update_yaxes(autorange="reversed")
    return fig

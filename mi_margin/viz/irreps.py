"""Plotly figures for the irrep analysis of group-composition models (Chughtai et al. 2023).

Bars of the variance each irrep explains in the embeddings, unembedding and MLP activations
(Chughtai's Tables 1–2), logit–character similarities with the key-irrep threshold (Fig. 3), neuron
counts per irrep and a per-neuron purity heatmap (Fig. 5; Morwani et al. Thm 9's one-irrep-per-neuron
prediction), restricted/excluded losses, progress over checkpoints (Fig. 4), and for the group
itself its Cayley table and character table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.analysis.key_rules import KEY_SIMILARITY
from mi_margin.groups import FiniteGroup


def _irrep_label(name: str, dim: int) -> str:
    return f"{name} ({dim})"


def plot_irrep_spectrum(result: Any, title: str | None = None) -> go.Figure:
    """Weight FVE per irrep (grouped by component) and MLP-activation FVE per irrep and term.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.spectrum import irrep_spectrum
        >>> task = mm.GroupComposition("S3")
        >>> spec = irrep_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> len(plot_irrep_spectrum(spec).data)       # 3 weight components + 3 terms
        6
    """
    labels = [_irrep_label(n, d) for n, d in zip(result.irreps, result.dims)]
    cols = 2 if result.hidden is not None else 1
    fig = make_subplots(rows=1, cols=cols, subplot_titles=[
        "weights: fraction of squared norm", "MLP activations: fraction of variance"][:cols])
    for comp, values in result.weights.items():
        fig.add_trace(go.Bar(x=labels, y=values.tolist(), name=comp), row=1, col=1)
    if result.hidden is not None:
        fr = result.hidden_fractions()
        for t, term in enumerate(result.terms):
            fig.add_trace(go.Bar(x=labels, y=fr[:, t].tolist(), name=f"ρ({term})"),
                          row=1, col=2)
        fig.update_layout(barmode="group")
    fig.update_layout(title=title or f"Irrep spectrum ({result.model_kind})",
                      barmode="group", height=420, width=520 * cols)
    return fig


def plot_irrep_logit_similarity(result: Any, title: str | None = None) -> go.Figure:
    """Logit similarity with χ_ρ(abc⁻¹) per irrep, with the key-irrep threshold of the task's rule
    (``result.key_threshold``; Chughtai's 0.005 when the result does not carry one).

    Example:
        >>> import torch
        >>> from mi_margin.analysis.spectrum import LogitSimilarity
        >>> sim = LogitSimilarity("irrep", ("sign", "standard"), (1, 4), torch.tensor([0.2, 0.9]))
        >>> plot_irrep_logit_similarity(sim).data[0].type
        'bar'
    """
    labels = [_irrep_label(n, d) for n, d in zip(result.irreps, result.dims)]
    sim = result.similarity.tolist()
    cut = KEY_SIMILARITY if result.key_threshold is None else result.key_threshold
    colors = ["crimson" if s > cut else "lightgray" for s in sim]
    fig = go.Figure(go.Bar(x=labels, y=sim, marker_color=colors, name="similarity"))
    fig.add_hline(y=cut, line_dash="dot", annotation_text=f"key threshold {cut:.3g}")
    fig.update_layout(title=title or "Logit similarity with χ_ρ(abc⁻¹); "
                      f"logit FVE {result.fve():.3f}", yaxis_title="cosine similarity",
                      height=420, width=640)
    return fig


def plot_neuron_irreps(result: Any, title: str | None = None) -> go.Figure:
    """Number of neurons dominated by each irrep ("none": unassigned or dead).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.neurons import neuron_irrep_clusters
        >>> task = mm.GroupComposition("S3")
        >>> res = neuron_irrep_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sum(plot_neuron_irreps(res).data[0].y)
        8
    """
    counts = result.counts
    names = [n for n in [*result.labels, None] if n in counts]
    fig = go.Figure(go.Bar(x=["none" if n is None else n for n in names],
                           y=[counts[n] for n in names]))
    fig.update_layout(title=title or f"Neurons per irrep (purity ≥ "
                      f"{result.min_purity:g}, {result.source})", yaxis_title="neurons",
                      height=420, width=640)
    return fig


def neuron_purity_heatmap(result: Any, title: str | None = None) -> go.Figure:
    """Each neuron's share of energy per irrep, neurons sorted by dominant irrep then purity.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.neurons import neuron_irrep_clusters
        >>> task = mm.GroupComposition("S3")
        >>> res = neuron_irrep_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> np.asarray(neuron_purity_heatmap(res).data[0].z).shape
        (8, 3)
    """
    share = result.shares.double().numpy()
    rank = {name: i for i, name in enumerate([*result.labels, None])}
    purity = np.nan_to_num(result.purity.numpy())
    order = sorted(range(len(result.irrep)), key=lambda i: (rank[result.irrep[i]], -purity[i]))
    fig = go.Figure(go.Heatmap(z=share[order], x=list(result.labels),
                               y=[f"n{i} ({result.irrep[i] or 'none'})" for i in order],
                               colorscale="Viridis", zmin=0.0, zmax=1.0))
    fig.update_layout(title=title or "Neuron energy share per irrep",
                      height=max(400, 8 * len(order)), width=640)
    fig.update_yaxes(autorange="reversed")
    return fig


def plot_irrep_progress(result: Any, title: str | None = None) -> go.Figure:
    """Losses (log) and key-irrep similarities / FVE over checkpoints (log-step axis).

    Example:
        >>> import pandas as pd
        >>> from mi_margin.analysis.progress import ProgressMeasures
        >>> frame = pd.DataFrame({"step": [0, 10], "train_loss": [2.0, 0.1], "test_loss": [2.0, 1.0],
        ...     "restricted_loss": [2.0, 0.5], "excluded_loss": [2.0, 3.0], "key_logit_fve": [0, .5],
        ...     "sim[sign]": [0.0, 0.7]})
        >>> len(plot_irrep_progress(ProgressMeasures("irrep", ("sign",), frame)).data)
        6
    """
    frame = result.table
    step = (frame["step"] + 1).tolist()
    fig = make_subplots(rows=1, cols=2, subplot_titles=["losses", "logit similarity / FVE"])
    for col in ("train_loss", "test_loss", "restricted_loss", "excluded_loss"):
        fig.add_trace(go.Scatter(x=step, y=frame[col].tolist(), name=col, mode="lines+markers"),
                      row=1, col=1)
    for col in ["key_logit_fve", *[f"sim[{name}]" for name in result.irreps]]:
        fig.add_trace(go.Scatter(x=step, y=frame[col].tolist(), name=col, mode="lines+markers"),
                      row=1, col=2)
    fig.update_xaxes(type="log", title_text="step + 1")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title=title or f"Irrep progress measures, key irreps {list(result.irreps)}",
                      height=420, width=1040)
    return fig


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

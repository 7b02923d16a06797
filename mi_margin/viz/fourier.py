"""Plotly figures for frequency-labelled results (modular addition; Nanda et al. 2023).

Every function returns a ``plotly.graph_objects.Figure`` and touches no network: render it in a
notebook, or write it with ``fig.write_html(path, include_plotlyjs=True)`` for an offline file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.analysis.clock_pizza import ClockPizza
from mi_margin.analysis.core import subject
from mi_margin.analysis.neurons import NeuronClusters, neuron_clusters
from mi_margin.analysis.progress import ProgressMeasures
from mi_margin.analysis.spectrum import LogitSimilarity, Spectrum
from mi_margin.errors import MiMarginError
from mi_margin.models.tl_interface import operand_names


def plot_spectrum(spec: Spectrum, components: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars: share of each component per frequency (weights: norm², grid: variance).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.spectrum import fourier_spectrum
        >>> task = mm.ModularAddition(p=7)
        >>> spec = fourier_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> len(plot_spectrum(spec).data)
        5
    """
    table = spec.to_dataframe().query("kind != 'term'")
    names = list(dict.fromkeys(table["component"])) if components is None else list(components)
    fig = go.Figure()
    for name in names:
        part = table[table["component"] == name]
        if part.empty:
            raise MiMarginError(f"unknown component {name!r}; have {sorted(set(table['component']))}")
        fig.add_bar(x=[str(x) for x in part[spec.label_kind]], y=part["fraction"], name=name)
    fig.update_layout(barmode="group", title=f"{spec.label_kind} spectrum (n={spec.n}, k={spec.k})",
                      xaxis_title=spec.label_kind, yaxis_title="share")
    return fig


def plot_neuron_clusters(res: NeuronClusters) -> go.Figure:
    """Neuron count per dominant frequency, and the histogram of explained-variance fractions.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> res = neuron_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> len(plot_neuron_clusters(res).data)
        2
    """
    counts = res.counts
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"neurons per {res.label_kind}", f"purity (share of variance of the best {res.label_kind})"))
    fig.add_bar(x=["none" if lab is None else str(lab) for lab in counts],
                y=list(counts.values()), name="neurons", row=1, col=1)
    fig.add_histogram(x=res.purity.tolist(), nbinsx=40, name="purity", row=1, col=2)
    fig.add_vline(x=res.min_purity, line_dash="dash", row=1, col=2)
    fig.update_xaxes(title_text=res.label_kind, type="category", row=1, col=1)   # labels, not a scale
    fig.update_xaxes(title_text="purity", row=1, col=2)
    fig.update_layout(showlegend=False, title=f"Neuron clusters ({res.source}, {res.model_kind})")
    return fig


def neuron_heatmaps(model: Any, task: Any, neurons: Sequence[int] | None = None, n: int = 4,
                    min_purity: float = 0.5) -> go.Figure:
    """Heatmaps of neuron activations over the (a, b) grid (rows a, columns b, as every grid
    heatmap here), titled with the dominant frequency.

    For k > 2 the other operands are fixed to 0. Default neurons: the ``n`` with the largest
    purity.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> fig = neuron_heatmaps(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task, n=2)
        >>> len(fig.data)
        2
    """
    res = neuron_clusters(model, task, min_purity)
    chosen = list(neurons) if neurons is not None else \
        res.purity.nan_to_num(0.0).argsort(descending=True)[:n].tolist()
    p, k = task.p, task.k
    acts = subject(model, task).neurons().double().reshape(p, p, p ** (k - 2), -1)[:, :, 0]
    titles = [f"n{j}: f={int(res.frequency[j])} ({float(res.purity[j]):.0%})" for j in chosen]
    first, second = operand_names(k)[:2]       # "a", "b" as on every grid heatmap (a1, a2 for k > 2)
    fig = make_subplots(rows=1, cols=len(chosen), subplot_titles=titles)
    for col, j in enumerate(chosen, start=1):
        fig.add_heatmap(z=acts[..., j].tolist(), coloraxis="coloraxis", row=1, col=col)
        fig.update_xaxes(title_text=second, row=1, col=col)
        fig.update_yaxes(title_text=first, row=1, col=col)
    fig.update_layout(title="neuron activations over the input grid")
    return fig


def plot_logit_similarity(res: LogitSimilarity) -> go.Figure:
    """Bars: similarity of the centred logits with cos(ω_f(Σa_i − c)) per frequency.

    Example:
        >>> import torch
        >>> from mi_margin.analysis.spectrum import LogitSimilarity
        >>> res = LogitSimilarity("frequency", (1, 2, 3), (2, 2, 2), torch.zeros(3))
        >>> len(plot_logit_similarity(res).data)
        1
    """
    table = res.to_dataframe()
    fig = go.Figure(go.Bar(x=table[res.label_kind], y=table["similarity"], name="similarity"))
    fig.update_layout(title=f"logit similarity to cos(ω_f(Σa − c)); FVE = {res.fve():.3f}",
                      xaxis_title="frequency f", yaxis_title="cosine similarity")
    return fig


def plot_progress(res: ProgressMeasures) -> go.Figure:
    """Progress measures over training: losses (log scale), Gini coefficients, weight norm.

    Example:
        >>> import pandas as pd
        >>> from mi_margin.analysis.progress import COLUMNS, ProgressMeasures
        >>> frame = pd.DataFrame([[0] * len(COLUMNS)], columns=COLUMNS)
        >>> res = ProgressMeasures("frequency", (1,), frame)
        >>> len(plot_progress(res).data)
        7
    """
    t = res.to_dataframe()
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True,
                        subplot_titles=("loss", "Gini of Fourier norms", "sum of squared weights"))
    for col in ["train_loss", "test_loss", "restricted_loss", "excluded_loss"]:
        fig.add_scatter(x=t["step"], y=t[col], mode="lines+markers", name=col, row=1, col=1)
    for col in ["gini_embed", "gini_W_L"]:
        fig.add_scatter(x=t["step"], y=t[col], mode="lines+markers", name=col, row=2, col=1)
    fig.add_scatter(x=t["step"], y=t["weight_norm_sq"], mode="lines+markers",
                    name="weight_norm_sq", row=3, col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_layout(title=f"progress measures (key frequencies {list(res.frequencies)})",
                      height=800)
    return fig


def plot_clock_pizza(res: ClockPizza) -> go.Figure:
    """Heatmap of the correct-logit matrix L_{a,b}, titled with s_g and q.

    Example:
        >>> import torch
        >>> from mi_margin.analysis.clock_pizza import ClockPizza
        >>> z = torch.zeros(5, 5)
        >>> len(plot_clock_pizza(ClockPizza(1., 0., torch.zeros(1, 3), z[0], z)).data)
        1
    """
    fig = go.Figure(go.Heatmap(z=res.correct_logits.tolist()))
    fig.update_layout(title=(f"correct logit L[a, b]: gradient symmetricity "
                             f"{res.gradient_symmetricity:.3f}, distance irrelevance "
                             f"{res.distance_irrelevance:.3f}"),
                      xaxis_title="b", yaxis_title="a")
    return fig

"""Plotly figures for margins and for the observed-vs-predicted comparison with margin theory.

Every function returns a ``plotly.graph_objects.Figure`` and touches no network: render it in a
notebook, or write it with ``fig.write_html(path, include_plotlyjs=True)`` for an offline file.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.analysis.margin import MarginResult
from mi_margin.theory.compare import TheoryComparison


def margin_figure(res: MarginResult) -> go.Figure:
    """Histogram of per-example margins with the dataset margin h(θ) marked.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.margin import margin
        >>> task = mm.ModularAddition(p=5)
        >>> res = margin(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> len(margin_figure(res).data)
        1
    """
    fig = go.Figure(go.Histogram(x=res.per_example.numpy(), name="margin", nbinsx=50))
    fig.add_vline(x=res.value, line_dash="dash", annotation_text=f"h(θ) = {res.value:.4g}")
    norm = "undefined" if res.normalized is None else f"{res.normalized:.4g}"
    fig.update_layout(title=f"Margins ({res.subset}, {len(res.idx)} examples); "
                            f"normalized margin {norm}",
                      xaxis_title="correct logit − best wrong logit", yaxis_title="examples")
    return fig


def comparison_figure(cmp: TheoryComparison) -> go.Figure:
    """Observed vs predicted side by side: budget share and neuron count per frequency/irrep,
    the neuron purity histogram, and the normalized margin against γ*.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory import certificate, compare_to_theory
        >>> task = mm.ModularAddition(p=5)
        >>> len(comparison_figure(compare_to_theory(certificate(task), task)).data)
        6
    """
    table = cmp.to_dataframe()
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "budget share per label", "neurons per label", "neuron purity (live neurons)",
        "normalized margin"))
    labels = table["label"].tolist()
    fig.add_bar(x=labels, y=table["share_observed"], name="share observed", row=1, col=1)
    fig.add_bar(x=labels, y=table["share_predicted"].fillna(0.0), name="share predicted",
                row=1, col=1)
    fig.add_bar(x=labels, y=table["neurons_observed"], name="neurons observed", row=1, col=2)
    fig.add_bar(x=labels, y=table["neurons_certificate"].fillna(0), name="neurons (certificate)",
                row=1, col=2)
    s = cmp.structure
    fig.add_histogram(x=s.purity[s.live].numpy(), nbinsx=20, name="purity", row=2, col=1)
    observed = cmp.margins.normalized
    gamma = cmp.prediction.gamma
    fig.add_bar(x=["observed", "γ* (predicted)"],
                y=[observed if observed is not None else 0.0, gamma if gamma is not None else 0.0],
                name="normalized margin", row=2, col=2)
    for (row, col), (x, y) in {(1, 1): ("label", "share of the parameter budget"),
                               (1, 2): ("label", "neurons"), (2, 1): ("purity", "live neurons"),
                               (2, 2): ("", "γ (normalized margin)")}.items():
        fig.update_xaxes(title_text=x, row=row, col=col)
        fig.update_yaxes(title_text=y, row=row, col=col)
    ratio = "undefined" if cmp.ratio is None else f"{cmp.ratio:.4f}"
    fig.update_layout(barmode="group", title=f"{cmp.prediction.theorem}: observed vs predicted "
                                             f"(ratio {ratio})")
    return fig

"""Figures of an explanation, its fidelity and its certificate (docs/mathematics.md §6.4).

- :func:`explanation_figure`: neurons per label (zeroed ones as "none"), and each neuron's share of
  its weights the explanation keeps, sorted, so one sees at a glance how much of the network the
  idealized circuit covers.
- :func:`fidelity_figure`: the loss of every measured network (log scale), the scrub and baseline
  rows beside the model's, with accuracies in the hover text.
- :func:`certificate_figure`: the per-input certified lower bound on the margin, as a histogram;
  inputs right of 0 are certified correct.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.analysis.certify import Certificate
from mi_margin.analysis.explain import Explanation, Fidelity


def explanation_figure(expl: Explanation) -> go.Figure:
    """Neurons per kept label, and the kept share of each neuron's weights (sorted)."""
    kind = expl.clusters.label_kind
    live = sorted(((str(lab), n) for lab, n in expl.counts.items() if lab is not None),
                  key=lambda item: -item[1])
    counts = [*live, ("none", expl.counts.get(None, 0))]
    kept = sorted(expl.kept.tolist(), reverse=True)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"neurons per {kind}",
                                                         "share of each neuron's weights kept"))
    fig.add_bar(x=[c[0] for c in counts], y=[c[1] for c in counts], row=1, col=1,
                name="neurons")
    fig.add_scatter(y=kept, mode="lines", row=1, col=2, name="kept share")
    fig.update_xaxes(type="category", title_text=kind, row=1, col=1)
    fig.update_xaxes(title_text="neurons, most kept first", row=1, col=2)
    fig.update_yaxes(title_text="neurons", row=1, col=1)
    fig.update_yaxes(title_text="kept share", range=[0, 1.05], row=1, col=2)
    fig.update_layout(title=f"explanation: {len(live)} {kind} label(s) carry "
                            f"{sum(n for _, n in live)} of {len(expl.label)} neurons",
                      showlegend=False)
    return fig


def fidelity_figure(fid: Fidelity) -> go.Figure:
    """Loss of each measured network on every input, log scale; accuracy on hover."""
    table = fid.to_dataframe()
    fig = go.Figure(go.Bar(x=table["measure"], y=table["loss"],
                           customdata=table[["accuracy"]].to_numpy(),
                           hovertemplate="%{x}: loss %{y:.3g}, accuracy %{customdata[0]:.4f}"
                                         "<extra></extra>"))
    fig.update_layout(title=f"fidelity: scrub recovers {fid.recovered:.3f} of the loss gap",
                      yaxis_type="log", yaxis_exponentformat="power", yaxis_title="loss (all inputs)",
                      xaxis_title="network")
    return fig


def certificate_figure(cert: Certificate) -> go.Figure:
    """Histogram of the per-input certified margin bound; inputs right of 0 are certified."""
    fig = go.Figure(go.Histogram(x=cert.margin_bound.tolist(), name="inputs"))
    fig.add_vline(x=0.0, line_dash="dash")
    fig.update_layout(title=f"certified accuracy ≥ {cert.certified_accuracy:.4f} (brute force "
                            f"{cert.accuracy:.4f}); min certified margin "
                            f"{cert.min_certified_margin:.4g}",
                      xaxis_title="certified lower bound on the margin", yaxis_title="inputs")
    return fig

"""The figure of restricted and excluded loss, for frequencies (Nanda et al.) and irreps (Chughtai et al.)."""

from __future__ import annotations

import plotly.graph_objects as go

from mi_margin.analysis.restricted import RestrictedLoss


def plot_ablation_losses(res: RestrictedLoss, title: str | None = None) -> go.Figure:
    """Bars (log scale): full, restricted (on ``restricted_on``) and excluded (train) loss.

    Example:
        >>> res = RestrictedLoss("frequency", (1,), 2, restricted_on="all", full_loss=.1,
        ...                      restricted=.1, restricted_acc=1., full_train_loss=.1, excluded=2.,
        ...                      excluded_acc=0., full_acc=1., full_train_acc=1.)
        >>> list(plot_ablation_losses(res).data[0].x)
        ['full (all)', 'restricted (all)', 'full (train)', 'excluded (train)']
    """
    table = res.to_dataframe()
    labels = [f"{m} ({d})" for m, d in zip(table["measure"], table["data"], strict=True)]
    fig = go.Figure(go.Bar(x=labels, y=table["loss"].tolist()))
    fig.update_layout(title=title or f"Restricted / excluded loss, {res.subject()}",
                      yaxis_type="log", yaxis_title="cross-entropy", height=420, width=640)
    return fig

"""One figure per harmonic result type, labelled from the result's own basis labels.

Frequencies (Nanda et al. 2023), irreps (Chughtai et al. 2023) and parity subsets are drawn by the
same functions: the x axis is ``result.label_kind`` and its ticks are ``result.labels`` (with the
subspace dimension where a label has one). Every function returns a ``plotly.graph_objects.Figure``
and touches no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.analysis.basis import PLURAL, basis_for
from mi_margin.analysis.clock_pizza import ClockPizza
from mi_margin.analysis.core import subject
from mi_margin.analysis.neurons import NeuronClusters, neuron_clusters
from mi_margin.analysis.progress import ProgressMeasures
from mi_margin.analysis.spectrum import LogitSimilarity, Spectrum
from mi_margin.errors import MiMarginError
from mi_margin.models.protocol import HookedModel
from mi_margin.models.tl_interface import operand_names
from mi_margin.tasks import Task

#: the progress table's columns drawn on the losses panel
LOSSES = ("train_loss", "test_loss", "restricted_loss", "excluded_loss")


def tick(label: Any) -> Any:
    """A label as a plotly tick: frequencies and irrep names as they are, subsets as text."""
    return label if isinstance(label, (int, str)) else str(label)


def spectrum_figure(spec: Spectrum, components: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars: each component's share per label (weights: squared norm, grid parts:
    variance) and, when neurons were analysed, their share per label and term ρ(term).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.spectrum import spectrum
        >>> task = mm.ModularAddition(p=7)
        >>> spec = spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> len(spectrum_figure(spec).data) >= 3
        True
    """
    table = spec.to_dataframe().query("kind != 'term'")
    names = list(dict.fromkeys(table["component"])) if components is None else list(components)
    cols = 2 if spec.hidden is not None else 1
    fig = make_subplots(rows=1, cols=cols, subplot_titles=[
        "share per component", "neuron activations: share per term"][:cols])
    for name in names:
        part = table[table["component"] == name]
        if part.empty:
            raise MiMarginError(f"unknown component {name!r}; have {sorted(set(table['component']))}")
        fig.add_bar(x=[tick(x) for x in part[spec.label_kind]], y=part["fraction"], name=name,
                    row=1, col=1)
    if spec.hidden is not None:
        fr = spec.hidden_fractions()
        for t, term in enumerate(spec.terms):
            fig.add_bar(x=[tick(lab) for lab in spec.labels], y=fr[:, t].tolist(),
                        name=f"ρ({term})", row=1, col=2)
    fig.update_xaxes(title_text=spec.label_kind)
    fig.update_layout(barmode="group", yaxis_title="share",
                      title=f"{spec.label_kind} spectrum (n={spec.n}, k={spec.k}, "
                            f"{spec.model_kind})")
    return fig


def similarity_figure(res: LogitSimilarity) -> go.Figure:
    """Bars: cosine similarity of the centred logits with each label's character χ(g_1⋯g_k c⁻¹)
    (cos(ω_f(Σa_i − c)) for a frequency), and the variance they explain together.

    Example:
        >>> import torch
        >>> from mi_margin.analysis.spectrum import LogitSimilarity
        >>> res = LogitSimilarity("irrep", ("sign", "standard"), (1, 4), torch.tensor([0.25, 0.5]))
        >>> similarity_figure(res).data[0].y
        (0.25, 0.5)
    """
    fig = go.Figure(go.Bar(x=[tick(lab) for lab in res.labels], y=res.similarity.tolist(),
                           name="similarity"))
    fig.update_layout(title=f"logit similarity with each {res.label_kind}'s character; "
                            f"explained variance {res.fve():.3f}",
                      xaxis_title=res.label_kind, yaxis_title="cosine similarity")
    return fig


def clusters_figure(res: NeuronClusters) -> go.Figure:
    """Neurons per dominant label ("none": unassigned or dead), and the histogram of purities.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> res = neuron_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sum(clusters_figure(res).data[0].y)
        8
    """
    counts = res.counts
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"neurons per {res.label_kind}", f"purity (share of the best {res.label_kind})"))
    fig.add_bar(x=["none" if lab is None else tick(lab) for lab in counts],
                y=list(counts.values()), name="neurons", row=1, col=1)
    fig.add_histogram(x=res.purity.tolist(), nbinsx=40, name="purity", row=1, col=2)
    fig.add_vline(x=res.min_purity, line_dash="dash", row=1, col=2)
    fig.update_xaxes(title_text=res.label_kind, type="category", row=1, col=1)   # labels, not a scale
    fig.update_xaxes(title_text="purity", row=1, col=2)
    fig.update_layout(showlegend=False, title=f"Neuron clusters ({res.source}, {res.model_kind})")
    return fig


def neuron_purity_heatmap(res: NeuronClusters, title: str | None = None) -> go.Figure:
    """Each neuron's share of energy per label, neurons sorted by dominant label then purity.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> res = neuron_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> np.asarray(neuron_purity_heatmap(res).data[0].z).shape
        (8, 3)
    """
    share = res.shares.double().numpy()
    rank = {name: i for i, name in enumerate([*res.labels, None])}
    purity = np.nan_to_num(res.purity.numpy())
    order = sorted(range(len(res.label)), key=lambda i: (rank[res.label[i]], -purity[i]))
    fig = go.Figure(go.Heatmap(z=share[order], x=[str(lab) for lab in res.labels],
                               y=[f"n{i} ({res.label[i] if res.label[i] is not None else 'none'})"
                                  for i in order],
                               colorscale="Viridis", zmin=0.0, zmax=1.0))
    fig.update_layout(title=title or f"Neuron energy share per {res.label_kind}",
                      height=max(400, 8 * len(order)), width=640)
    fig.update_yaxes(autorange="reversed")
    return fig


def progress_figure(res: ProgressMeasures) -> go.Figure:
    """Progress over checkpoints: losses (log scale), the key labels' measures (every other
    column of the table), and the weights' (Gini coefficients, squared norm).

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"step": [0, 10], "train_loss": [2.0, 0.1],
        ...     "key_logit_fve": [0.0, 0.5], "weight_norm_sq": [1.0, 2.0]})
        >>> [t.name for t in progress_figure(ProgressMeasures("irrep", ("sign",), frame)).data]
        ['train_loss', 'key_logit_fve', 'weight_norm_sq']
    """
    t = res.to_dataframe()
    weights = [c for c in t.columns if c.startswith("gini_") or c == "weight_norm_sq"]
    measures = [c for c in t.columns if c not in ("step", *LOSSES, *weights)
                and not c.endswith("_acc") and t[c].dtype.kind == "f"]
    panels = ([c for c in LOSSES if c in t], measures, weights)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=(
        "losses", f"key {res.label_kind} measures", "weights"))
    for row, columns in enumerate(panels, start=1):
        for col in columns:
            fig.add_scatter(x=t["step"], y=t[col], mode="lines+markers", name=col, row=row,
                            col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_layout(title=f"progress measures (key {PLURAL[res.label_kind]} "
                            f"{[tick(lab) for lab in res.labels]})", height=800)
    return fig


def neuron_heatmaps(model: HookedModel, task: Task, neurons: Sequence[int] | None = None, n: int = 4,
                    min_purity: float = 0.5) -> go.Figure:
    """Heatmaps of neuron activations over the first two operands' group elements, titled with
    the dominant label (other operands at the identity element 0).

    Default neurons: the ``n`` with the largest purity.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> fig = neuron_heatmaps(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task, n=2)
        >>> len(fig.data)
        2
    """
    basis = basis_for(task)
    if basis.k < 2:
        raise MiMarginError(f"neuron heatmaps draw two operands; {task!r} has k={basis.k}")
    res = neuron_clusters(model, task, min_purity)
    chosen = list(neurons) if neurons is not None else \
        res.purity.nan_to_num(0.0).argsort(descending=True)[:n].tolist()
    m = basis.n
    acts = basis.grid_order(subject(model, task).neurons().double())
    acts = acts.reshape(m, m, m ** (basis.k - 2), -1)[:, :, 0]
    titles = [f"neuron {j}<br>{res.label_kind} {res.label[j]} ({float(res.purity[j]):.0%})"
              for j in chosen]                    # two lines: side-by-side titles do not overlap
    first, second = operand_names(basis.k)[:2]     # "a", "b" as on every grid heatmap (a1, a2 for k > 2)
    fig = make_subplots(rows=1, cols=len(chosen), subplot_titles=titles)
    for col, j in enumerate(chosen, start=1):
        fig.add_heatmap(z=acts[..., j].tolist(), coloraxis="coloraxis", row=1, col=col)
        fig.update_xaxes(title_text=second, row=1, col=col)
    fig.update_yaxes(title_text=first, row=1, col=1)     # once: inner titles would overlap panels
    fig.update_layout(title="neuron activations over the input grid", margin={"t": 110})
    return fig


def clock_pizza_figure(res: ClockPizza) -> go.Figure:
    """Heatmap of the correct-logit matrix L_{a,b}, titled with s_g and q (Zhong et al. 2023).

    Example:
        >>> import torch
        >>> z = torch.zeros(5, 5)
        >>> len(clock_pizza_figure(ClockPizza(1., 0., torch.zeros(1, 3), z[0], z)).data)
        1
    """
    fig = go.Figure(go.Heatmap(z=res.correct_logits.tolist()))
    fig.update_layout(title=(f"correct logit L[a, b]: gradient symmetricity "
                             f"{res.gradient_symmetricity:.3f}, distance irrelevance "
                             f"{res.distance_irrelevance:.3f}"),
                      xaxis_title="b", yaxis_title="a")
    return fig

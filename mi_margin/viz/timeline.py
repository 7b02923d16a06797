"""The training timeline: one slider over a run's checkpoints that moves several figures together.

Watching a circuit form (Nanda et al. 2023 §5; docs/mathematics.md §4.3): at each kept checkpoint
we compute the spectra of the embeddings, the neurons and the logits — over frequencies for modular
addition, over irreps for group composition (Chughtai et al. 2023) — the number of neurons in each
frequency/irrep cluster, and the restricted and excluded losses for the final model's key
frequencies/irreps. Those losses are read from the run's progress measures
(:func:`~mi_margin.analysis.progress_measures`), which the report computes anyway: each checkpoint's
restricted and excluded loss is computed once. The page switches between the precomputed
checkpoints with a few lines of inline script (no server, no network); a vertical marker shows the
checkpoint on the loss curves.
At most :data:`MAX_CHECKPOINTS` checkpoints are kept (evenly by index, first and last always), so
the file stays small however densely the run was checkpointed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import mi_margin.analysis as A
from mi_margin._progress import progress_bar
from mi_margin.errors import MiMarginError
from mi_margin.viz import _html

MAX_CHECKPOINTS = 40
SPECTRA = ("embeddings", "neurons", "logits")
PLURAL = {"frequency": "frequencies", "irrep": "irreps"}
IDS = {"slider": "mm-timeline-slider", "label": "mm-timeline-step", "data": "mm-timeline-data",
       "spectra": "mm-timeline-spectra", "clusters": "mm-timeline-clusters",
       "curves": "mm-timeline-curves"}
_SCRIPT = """
(() => {
  const d = JSON.parse(document.getElementById("%(data)s").textContent);
  const slider = document.getElementById("%(slider)s");
  const label = document.getElementById("%(label)s");
  slider.addEventListener("input", () => {
    const i = Number(slider.value), step = d.steps[i];
    label.textContent = `step ${step} (checkpoint ${i + 1} of ${d.steps.length})`;
    for (const f of d.figures) {
      Plotly.restyle(f.div, {y: f.y.map(t => t[i])}, f.y.map((_, j) => j));
    }
    Plotly.relayout(d.marker, {"shapes[0].x0": step, "shapes[0].x1": step});
  });
})();
"""


def select_steps(steps: Sequence[int], limit: int = MAX_CHECKPOINTS) -> list[int]:
    """At most ``limit`` of the sorted ``steps``, evenly spaced by index, first and last kept.

    Example:
        >>> select_steps(range(0, 100, 10), limit=4)
        [0, 30, 60, 90]
        >>> select_steps([5, 0, 2], limit=40)
        [0, 2, 5]
    """
    if limit < 2:
        raise MiMarginError(f"limit must be at least 2 (first and last checkpoint), got {limit}")
    ordered = sorted(steps)
    if len(ordered) <= limit:
        return ordered
    return [ordered[i] for i in np.linspace(0, len(ordered) - 1, limit).round().astype(int)]


@dataclass(frozen=True)
class Snapshot:
    """What the slider shows at one checkpoint.

    Attributes:
        spectra: "embeddings", "neurons", "logits" → share per basis label (frequency or irrep).
        counts: number of neurons per cluster label.
        restricted, excluded: restricted and excluded loss for the run's key set (NaN without one).
    """

    spectra: dict[str, list[float]]
    counts: list[int]
    restricted: float
    excluded: float


@dataclass(frozen=True)
class Basis:
    """How one task kind is read: basis labels, cluster labels, the final key set, and the
    spectra and cluster counts of a model (``structure(model, task)``)."""

    name: str
    labels: list[str]
    cluster_labels: list[str]
    keys: list[Any]
    structure: Callable[[Any, Any], tuple[dict[str, list[float]], list[int]]]


def _mean(rows: list[Any]) -> list[float]:
    return np.mean([np.asarray(r, dtype=float) for r in rows], axis=0).tolist()


def fourier_structure(model: Any, task: Any) -> tuple[dict[str, list[float]], list[int]]:
    """Frequency shares (1..p//2) of the embeddings, neurons and logits; neurons per frequency.

    Embeddings: every input map's share of squared Fourier norm (averaged over operands for
    MLPs); neurons and logits: variance-weighted share of their variance over the input grid
    (as ``fourier_spectrum(...).shares``). The neurons' shares are pooled from
    :func:`~mi_margin.neuron_clusters` (Σ_j energy_j / Σ_j total_j), which also gives the cluster
    counts, so the neurons' grid spectrum is computed once per checkpoint.
    """
    spec = A.fourier_spectrum(model, task, where=("embed", "logits"))
    embeds = [spec.shares(c).tolist() for c in spec.weights if c.startswith("embed")]
    clusters = A.neuron_clusters(model, task)
    total = float(clusters.total.sum())
    blocks = clusters.energy[:, 1:].sum(0)
    neurons = blocks / total if total > 0 else blocks * 0
    counts = clusters.counts
    return ({"embeddings": _mean(embeds), "neurons": neurons.tolist(),
             "logits": spec.shares("logits").tolist()},
            [counts.get(f, 0) for f in [None, *A.basis_for(task).nontrivial]])


def irrep_structure(model: Any, task: Any) -> tuple[dict[str, list[float]], list[int]]:
    """Irrep shares of the embeddings, neurons and logits; neurons per irrep (Chughtai et al.).

    Embeddings: share of squared norm per irrep (averaged over operands for MLPs); neurons: share
    of their centred variance over the grid in each irrep's ρ(a), ρ(b), ρ(ab) subspaces together;
    logits: squared similarity with χ_ρ(abc⁻¹), the share of the centred logits' variance each
    character explains (:func:`~mi_margin.irrep_logit_similarity`).
    """
    spec = A.irrep_spectrum(model, task, where=("embed", "neurons"))
    embeds = [v.tolist() for c, v in spec.weights.items() if c.startswith("embed")]
    counts = A.neuron_irrep_clusters(model, task).counts
    logits = A.irrep_logit_similarity(model, task).similarity.square()
    return ({"embeddings": _mean(embeds), "neurons": spec.hidden_fractions().sum(1).tolist(),
             "logits": logits.tolist()},
            [counts.get(name, 0) for name in [*spec.irreps, None]])


def basis_of(run: Any) -> Basis:
    """The :class:`Basis` of a run's task (modular addition or group composition)."""
    task, model = run.task, run.model
    if task.kind == "modular_addition":
        freqs = [str(f) for f in A.basis_for(task).nontrivial]
        return Basis("frequency", freqs, ["none", *freqs], A.key_frequencies(model, task),
                     fourier_structure)
    if task.kind == "group_composition":
        names = list(A.basis_for(task).labels)
        return Basis("irrep", names, [*names, "none"], A.key_irreps(model, task), irrep_structure)
    raise MiMarginError(f"the timeline needs a modular_addition or group_composition task, got "
                        f"{task.kind!r}")


def key_losses(run: Any, keys: list[Any], steps: list[int],
               measures: A.ProgressMeasures | None = None) -> list[tuple[float, float]]:
    """Restricted and excluded loss of ``keys`` at every step, read from progress measures.

    ``measures`` (e.g. the report's) must hold those steps for those keys; without it they are
    computed with :func:`~mi_margin.analysis.progress_measures`. No keys: NaN at every step.
    """
    if not keys:
        return [(float("nan"), float("nan"))] * len(steps)
    if measures is None:
        measures = A.progress_measures(run, keys, steps)
    wanted = A.basis_for(run.task).resolve(keys)
    if tuple(measures.labels) != wanted:
        kind = PLURAL.get(measures.label_kind, measures.label_kind)
        raise MiMarginError(f"the progress measures are for {kind} {list(measures.labels)}, the "
                            f"timeline needs {list(wanted)}")
    table = measures.table.set_index("step")
    missing = sorted(set(steps) - set(table.index))
    if missing:
        raise MiMarginError(f"the progress measures have no rows at steps {missing}; they hold "
                            f"{sorted(table.index)}")
    return [(float(table.at[s, "restricted_loss"]), float(table.at[s, "excluded_loss"]))
            for s in steps]


@dataclass(frozen=True)
class Timeline:
    """Everything the slider switches between (see :func:`timeline`).

    Attributes:
        basis: "frequency" or "irrep"; labels, cluster_labels: x labels of spectra and counts.
        keys: the final model's key frequencies/irreps (restricted/excluded loss keep/remove them).
        steps: the selected checkpoint steps; snapshots: one per step.
        history: the run's step, train_loss and test_loss columns.
    """

    basis: str
    labels: list[str]
    cluster_labels: list[str]
    keys: list[Any]
    steps: list[int]
    snapshots: list[Snapshot]
    history: pd.DataFrame


def timeline(run: Any, max_checkpoints: int = MAX_CHECKPOINTS, progress: bool = True,
             measures: A.ProgressMeasures | None = None) -> Timeline:
    """Precompute the slider's data at up to ``max_checkpoints`` of the run's checkpoints.

    ``measures``: the run's progress measures at (at least) these checkpoints for the final
    model's key labels; the report passes its own so that no restricted/excluded loss is computed
    twice (default: computed here, see :func:`key_losses`).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, train_fraction=0.6)
        >>> run = mm.train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task,
        ...                mm.TrainConfig(steps=20, eval_every=10, n_checkpoints=3, progress=False))
        >>> t = timeline(run, progress=False)
        >>> t.steps == sorted(run.checkpoints), len(t.snapshots[0].spectra["neurons"])
        (True, 3)
    """
    if len(run.checkpoints) < 2:
        raise MiMarginError(f"the timeline needs at least 2 checkpoints, the run has "
                            f"{len(run.checkpoints)}")
    basis = basis_of(run)
    steps = select_steps(run.checkpoints, max_checkpoints)
    losses = key_losses(run, basis.keys, steps, measures)
    bar = progress_bar(list(zip(steps, losses)), desc="report: checkpoints",
                       disable=not progress, leave=False)
    snapshots = [Snapshot(*basis.structure(run.model_at(step), run.task), *loss)
                 for step, loss in bar]
    columns = [c for c in ("step", "train_loss", "test_loss") if c in run.history.columns]
    return Timeline(basis=basis.name, labels=basis.labels, cluster_labels=basis.cluster_labels,
                    keys=basis.keys, steps=steps, snapshots=snapshots,
                    history=run.history[columns].copy())


# -- figures and page ---------------------------------------------------------------------------
def _round(values: Sequence[float]) -> list[float | None]:
    """4 significant digits (the slider's data is for the eye); NaN as null."""
    return [None if np.isnan(v) else float(f"{v:.4g}") for v in values]


def spectra_figure(t: Timeline, i: int = -1) -> go.Figure:
    """Three bar charts (embeddings, neurons, logits) at checkpoint ``i`` of the timeline."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{name}: share per {t.basis}"
                                                        for name in SPECTRA])
    for col, name in enumerate(SPECTRA, start=1):
        y = _round(t.snapshots[i].spectra[name])
        x = t.labels[len(t.labels) - len(y):]     # irrep logit similarity has no trivial entry
        fig.add_bar(x=x, y=y, name=name, row=1, col=col)
        fig.update_xaxes(title_text=t.basis, type="category", row=1, col=col)
    for col, name in enumerate(SPECTRA, start=1):      # one scale for all checkpoints
        top = max(max(s.spectra[name]) for s in t.snapshots)
        fig.update_yaxes(range=[0, min(1.0, top * 1.05) or 1.0], row=1, col=col)
    fig.update_layout(showlegend=False, height=360, title=f"Spectra over training (by {t.basis})")
    return fig


def clusters_figure(t: Timeline, i: int = -1) -> go.Figure:
    """Neurons per dominant frequency/irrep cluster at checkpoint ``i``."""
    fig = go.Figure(go.Bar(x=t.cluster_labels, y=t.snapshots[i].counts, name="neurons"))
    top = max(max(s.counts) for s in t.snapshots)
    fig.update_layout(title=f"Neurons per {t.basis} cluster", height=340, width=640,
                      yaxis={"range": [0, top * 1.05 + 1e-9], "title": "neurons"},
                      xaxis={"title": t.basis, "type": "category"})
    return fig


def curves_figure(t: Timeline, i: int = -1) -> go.Figure:
    """Train/test loss (history), restricted/excluded loss (checkpoints), marker at step ``i``."""
    fig = go.Figure()
    for col, dash in (("train_loss", "solid"), ("test_loss", "dash")):
        if col in t.history.columns:
            fig.add_scatter(x=t.history["step"], y=t.history[col], mode="lines",
                            name=col.replace("_", " "), line={"dash": dash})
    if t.keys:
        for name in ("restricted", "excluded"):
            fig.add_scatter(x=t.steps, y=_round([getattr(s, name) for s in t.snapshots]),
                            mode="lines+markers", name=f"{name} loss")
    step = t.steps[i]
    fig.add_vline(x=step, line_color="crimson", line_width=2)
    plural = PLURAL[t.basis]
    shown = t.keys if len(t.keys) <= 12 else [*t.keys[:12], f"… {len(t.keys)} in all"]
    keys = (f"key {plural} {shown}" if t.keys else
            f"no key {t.basis} in the final model, so no restricted/excluded loss")
    fig.update_layout(title=f"Loss over training ({keys}); red line: selected checkpoint",
                      height=380, width=1000, xaxis_title="step", yaxis_type="log")
    return fig


def payload(t: Timeline) -> dict[str, Any]:
    """The page's data: per figure and trace, the y values at every selected step."""
    spectra = [[_round(s.spectra[name]) for s in t.snapshots] for name in SPECTRA]
    figures = [{"div": IDS["spectra"], "y": spectra},
               {"div": IDS["clusters"], "y": [[s.counts for s in t.snapshots]]}]
    return {"steps": t.steps, "figures": figures, "marker": IDS["curves"]}


def timeline_html(t: Timeline) -> str:
    """The slider, the three figures (at the last checkpoint), the data and the script."""
    n = len(t.steps)
    control = (f'<p><label for="{IDS["slider"]}"><b>Checkpoint</b></label> '
               f'<input type="range" id="{IDS["slider"]}" min="0" max="{n - 1}" value="{n - 1}" '
               f'step="1" style="width: 60%; vertical-align: middle;"> '
               f'<span id="{IDS["label"]}">step {t.steps[-1]} (checkpoint {n} of {n})</span></p>')
    figures = [_html.figure_div(spectra_figure(t), IDS["spectra"]),
               _html.row([_html.figure_div(clusters_figure(t), IDS["clusters"])]),
               _html.figure_div(curves_figure(t), IDS["curves"])]
    data = _html.json_data(IDS["data"], payload(t))
    return "\n".join([control, *figures, data, f"<script>{_SCRIPT % IDS}</script>"])

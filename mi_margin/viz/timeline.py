"""The training timeline: one slider over a run's checkpoints that moves several figures together.

Watching a circuit form (Nanda et al. 2023 §5; docs/mathematics.md §4.3): at each kept checkpoint
we compute the spectra of the embeddings, the neurons and the logits over the labels of the task's
harmonic basis — frequencies for modular addition, irreps for group composition (Chughtai et al.
2023), subsets for sparse parity; the same measures for every basis — the number of neurons in
each label's cluster, and the progress measures (:func:`~mi_margin.analysis.progress_measures`)
with the restricted and excluded losses for the final model's key labels. Each checkpoint is one
pass over the grid that all of these read, and only one checkpoint is in memory at a time. The
page switches between the precomputed checkpoints with a few lines of inline script (no server,
no network); a vertical marker shows the checkpoint on the loss curves.
At most :data:`MAX_CHECKPOINTS` checkpoints are kept (evenly by index, first and last always), so
the file stays small however densely the run was checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

import mi_margin.analysis as A
from mi_margin.analysis.basis import PLURAL
from mi_margin.analysis.core import PRE, GridCache
from mi_margin.analysis.progress import checkpoint_caches, progress_row, row_hooks
from mi_margin.analysis.restricted import default_components
from mi_margin.errors import MiMarginError
from mi_margin.viz import _html

MAX_CHECKPOINTS = 40
SPECTRA = ("embeddings", "neurons", "logits")
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
        spectra: "embeddings" (when the inputs are maps over the group's elements), "neurons",
            "logits" → share per non-trivial basis label.
        counts: number of neurons per cluster label (the non-trivial labels, then none).
        restricted, excluded: restricted and excluded loss for the run's key set (NaN without one).
    """

    spectra: dict[str, list[float]]
    counts: list[int]
    restricted: float
    excluded: float


def _pooled(c: GridCache, part: str) -> list[float]:
    """Σ over units of the block energies / Σ of their centred energies: the share of all of
    ``part``'s variance over the grid in each non-trivial label's block."""
    energy = c.grid_energy(part)
    total = float(energy.total.sum())
    blocks = energy.blocks.sum(0)
    return (blocks / total if total > 0 else blocks * 0).tolist()


def _embedding_shares(c: GridCache) -> list[float] | None:
    """Share of the input maps' squared norm per non-trivial label (mean over the operands' maps;
    Nanda et al.'s "W_E is sparse in the Fourier basis"), or None where the model reads no map
    over the group's elements (sparse parity reads a ±1 vector)."""
    maps = [W for name, W in c.subject.input_maps().items()
            if name.startswith("embed") and W.shape[0] == c.basis.n]
    if not maps:
        return None
    shares = []
    for W in maps:
        energy = c.basis.weight_energy(W).sum(1)
        total = float(energy.sum())
        shares.append(energy[1:] / total if total > 0 else energy[1:] * 0)
    return torch.stack(shares).mean(0).tolist()


def structure(c: GridCache) -> tuple[dict[str, list[float]], list[int]]:
    """The spectra and cluster counts of one model (its grid cache), the same for every basis.

    Embeddings: :func:`_embedding_shares`; neurons and logits (class-centred): the share of their
    variance over the grid in each single-label block (``spectrum(...).shares``); clusters: each
    neuron's dominant label in its activation (:func:`~mi_margin.neuron_clusters`, which reads
    the same transform of the neurons from the cache).
    """
    spectra = {"embeddings": _embedding_shares(c), "neurons": _pooled(c, "neurons"),
               "logits": _pooled(c, "logits")}
    counts = A.neuron_clusters(c, c.task).counts
    return ({name: v for name, v in spectra.items() if v is not None},
            [counts.get(lab, 0) for lab in [*c.basis.nontrivial, None]])


@dataclass(frozen=True)
class Timeline:
    """Everything the slider switches between (see :func:`timeline`).

    Attributes:
        basis: the basis's label kind ("frequency", "irrep", "subset"); labels: the non-trivial
            labels (x of the spectra); cluster_labels: x of the counts (labels, then "none").
        keys: the final model's key labels (restricted/excluded loss keep/remove them).
        steps: the selected checkpoint steps; snapshots: one per step.
        measures: the progress measures at those steps for ``keys``, from the same passes.
        history: the run's step, train_loss and test_loss columns.
    """

    basis: str
    labels: list[str]
    cluster_labels: list[str]
    keys: list[Any]
    steps: list[int]
    snapshots: list[Snapshot]
    measures: A.ProgressMeasures
    history: pd.DataFrame


def timeline(run: Any, max_checkpoints: int = MAX_CHECKPOINTS, progress: bool = True,
             keys: Sequence[Any] | None = None) -> Timeline:
    """The slider's data and the progress measures at up to ``max_checkpoints`` checkpoints.

    Checkpoints are streamed: each is one pass over the grid
    (:func:`~mi_margin.analysis.progress.checkpoint_caches`) from which both its snapshot
    (:func:`structure`) and its row of progress measures are computed, and then dropped.
    ``keys``: the key labels of the restricted/excluded losses (default: the final model's,
    :func:`~mi_margin.analysis.restricted.default_components`). A progress bar counts the
    checkpoints (``progress=False`` or ``TQDM_DISABLE=1`` hide it).

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
    basis = A.basis_for(run.task)
    chosen = list(basis.resolve(default_components(run.model, run.task) if keys is None
                                else keys))
    steps = select_steps(run.checkpoints, max_checkpoints)
    names = [*row_hooks(run.model.model_kind), PRE]
    rows, snapshots = [], []
    for step, c in checkpoint_caches(run, steps, names, "checkpoints", progress):
        row = progress_row(c, tuple(chosen))
        rows.append({"step": step, **row})
        nan = float("nan")
        snapshots.append(Snapshot(*structure(c), row["restricted_loss"] if chosen else nan,
                                  row["excluded_loss"] if chosen else nan))
    measures = A.ProgressMeasures(label_kind=basis.label_kind, labels=tuple(chosen),
                                  table=pd.DataFrame(rows))
    labels = [str(lab) for lab in basis.nontrivial]
    columns = [c for c in ("step", "train_loss", "test_loss") if c in run.history.columns]
    return Timeline(basis=basis.label_kind, labels=labels, cluster_labels=[*labels, "none"],
                    keys=chosen, steps=steps, snapshots=snapshots, measures=measures,
                    history=run.history[columns].copy())


# -- figures and page ---------------------------------------------------------------------------
def _round(values: Sequence[float]) -> list[float | None]:
    """4 significant digits (the slider's data is for the eye); NaN as null."""
    return [None if np.isnan(v) else float(f"{v:.4g}") for v in values]


def spectra_parts(t: Timeline) -> list[str]:
    """The spectra the timeline holds, in :data:`SPECTRA` order."""
    return [name for name in SPECTRA if name in t.snapshots[0].spectra]


def spectra_figure(t: Timeline, i: int = -1) -> go.Figure:
    """Three bar charts (embeddings, neurons, logits) at checkpoint ``i`` of the timeline."""
    parts = spectra_parts(t)
    fig = make_subplots(rows=1, cols=len(parts), subplot_titles=[f"{name}: share per {t.basis}"
                                                                 for name in parts])
    for col, name in enumerate(parts, start=1):
        fig.add_bar(x=t.labels, y=_round(t.snapshots[i].spectra[name]), name=name, row=1, col=col)
        fig.update_xaxes(title_text=t.basis, type="category", row=1, col=col)
    for col, name in enumerate(parts, start=1):      # one scale for all checkpoints
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
    spectra = [[_round(s.spectra[name]) for s in t.snapshots] for name in spectra_parts(t)]
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

"""The neuron inspector: pick a neuron or a cluster of the final model and see what it computes.

For every MLP neuron (at the last position for transformers) the report stores its spectrum — the
share of its variance over the input grid in each single-frequency block (Nanda et al. 2023 §4.2;
docs/mathematics.md §4.2) or, for group composition, in each irrep's ρ(a), ρ(b) and ρ(ab)
subspaces (Chughtai et al. 2023, Table 2) — and the vectors it reads from each token and writes to
the logits, expressed in the task's basis (the analysis core's ``basis_for(task)``): the real
Fourier basis of Z_p, or orthonormal bases of the irreps' isotypic subspaces (docs/mathematics.md
§3). Its activation over the (a, b) grid (other operands 0 when k > 2) is stored for the
strongest neurons of every cluster, up to :data:`HEATMAP_BYTES`. Clusters are those of
:func:`~mi_margin.neuron_clusters` (dominant frequency of the activation) and
:func:`~mi_margin.neuron_irrep_clusters` (dominant irrep of the weights, Morwani et al. 2024
Thm 9); a cluster shows its pooled spectrum and its strongest neuron.

To keep the file small, spectra and weights are stored as int16 with one scale per neuron and
heatmaps as uint8 with one range per neuron (base64; decoded by a few lines of inline script).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

import mi_margin.analysis as A
from mi_margin.analysis.core import Subject, subject
from mi_margin.errors import MiMarginError
from mi_margin.viz import _html

#: raw bytes of heatmaps stored (one byte per grid cell and neuron)
HEATMAP_BYTES = 400_000
IDS = {"pick": "mm-inspector-pick", "info": "mm-inspector-info", "data": "mm-inspector-data",
       "spectrum": "mm-inspector-spectrum", "weights": "mm-inspector-weights",
       "heatmap": "mm-inspector-heatmap"}
_SCRIPT = """
(() => {
  const d = JSON.parse(document.getElementById("%(data)s").textContent);
  const raw = s => Uint8Array.from(atob(s), c => c.charCodeAt(0));
  const rows = (m, decode, value) => {      // decoded on first use, not while the page loads
    let q = null;
    return r => { q = q || decode(raw(m.b64));
      return Array.from(q.subarray(r * m.cols, (r + 1) * m.cols), v => value(v, r)); }; };
  const int16 = m => rows(m, b => new Int16Array(b.buffer), (v, r) => v * m.scale[r]);
  const uint8 = m => rows(m, b => b, (v, r) => m.lo[r] + v * (m.hi[r] - m.lo[r]) / 255);
  const spectrum = int16(d.spectrum), weights = d.weights.map(int16), grid = uint8(d.grid);
  const T = d.terms.length, side = d.grid.side;
  const byTerm = flat => d.terms.map((_, t) => flat.filter((_, i) => i %% T === t));
  function show(j, flat, text) {
    Plotly.restyle("%(spectrum)s", {y: byTerm(flat)}, d.terms.map((_, t) => t));
    Plotly.restyle("%(weights)s", {y: weights.map(w => w(j))}, weights.map((_, i) => i));
    const slot = d.grid.neurons.indexOf(j);
    const cells = slot < 0 ? [] : grid(slot);
    const z = [];
    for (let r = 0; r < cells.length / side; r++) z.push(cells.slice(r * side, (r + 1) * side));
    Plotly.restyle("%(heatmap)s", {z: [z]}, [0]);
    Plotly.relayout("%(heatmap)s", {"title.text": slot < 0
      ? `n${j}: activation not stored (${d.grid.note})` : `activation of n${j} over the grid`});
    document.getElementById("%(info)s").textContent = text;
  }
  const pick = document.getElementById("%(pick)s");
  pick.addEventListener("change", () => {
    const [kind, i] = [pick.value[0], Number(pick.value.slice(1))];
    if (kind === "c") { const c = d.clusters[i]; show(c.top, c.spectrum, c.info); }
    else show(i, spectrum(i), d.info[i]);
  });
})();
"""


@dataclass(frozen=True)
class Cluster:
    """Neurons sharing a dominant frequency/irrep (``assigned``) or none: label, members
    (strongest first), the pooled spectrum [X, T], and a one-line description."""

    label: str
    assigned: bool
    neurons: list[int]
    spectrum: np.ndarray
    info: str


@dataclass(frozen=True)
class Inspector:
    """Per-neuron data of the final model (see :func:`inspector`).

    Attributes:
        basis: "frequency" or "irrep".
        labels: spectrum x labels (frequencies 1..p//2, or irrep names); terms: its traces (one
            for frequencies; ρ(a), ρ(b), ρ(ab) for irreps).
        spectrum: [d_mlp, X, T] share of each neuron's variance over the grid.
        weight_labels: names of the basis vectors; weights: vector name → [d_mlp, n] coefficients.
        info: one line per neuron; clusters: :class:`Cluster` list, largest first, unassigned
            last.
        grid_neurons: neurons whose activation is stored; grid: their activations [m, n, n]
            over (a_1, a_2); axis: the element labels of the grid axes.
    """

    basis: str
    labels: list[str]
    terms: list[str]
    spectrum: np.ndarray
    weight_labels: list[str]
    weights: dict[str, np.ndarray]
    info: list[str]
    clusters: list[Cluster]
    grid_neurons: list[int]
    grid: np.ndarray
    axis: list[str]


# -- what the neurons read and write, in the task's basis ----------------------------------------
def neuron_maps(s: Subject) -> dict[str, torch.Tensor]:
    """The maps over the group a neuron reads (per operand) and writes, each [n, d_mlp], named
    for the page: the analysis core's :meth:`~mi_margin.analysis.core.Subject.neuron_input_maps`
    (W_E[:n]·W_in, or each W_in_eff[i]) and :meth:`~mi_margin.analysis.core.Subject.
    neuron_logit_map` (W_out·W_U, or W_out) transposed."""
    reads = s.neuron_input_maps()
    if s.kind == "transformer":
        return {"reads (W_E·W_in)": reads[0], "writes (W_out·W_U)": s.neuron_logit_map().T}
    return {**{f"reads operand {i + 1}": W for i, W in enumerate(reads)},
            "writes (W_out)": s.neuron_logit_map().T}


def in_basis(s: Subject) -> tuple[list[str], dict[str, np.ndarray]]:
    """Names of the task basis's vectors and every neuron map's coefficients, name → [d_mlp, n]."""
    return s.basis.coefficient_names(), {name: s.basis.coefficients(W).T.numpy()
                                         for name, W in neuron_maps(s).items()}


def grid_activations(s: Subject) -> np.ndarray:
    """Neuron activations over (a_1, a_2) with the other operands 0, [d_mlp, n, n]."""
    post = s.neurons().double().numpy()
    n = s.basis.n
    return post.reshape(n, n, -1, post.shape[-1])[:, :, 0].transpose(2, 0, 1)


# -- spectra and clusters ----------------------------------------------------------------------
def _fourier(model: Any, task: Any) -> tuple[np.ndarray, list[str], list[str], list[Cluster]]:
    res = A.neuron_clusters(model, task)
    blocks = res.shares[:, 1:].double().numpy()           # [d_mlp, p//2]: frequencies 1..p//2
    var = res.total.double().numpy()
    purity = np.nan_to_num(res.purity.double().numpy())
    info = []
    for j, (f, share) in enumerate(zip(res.label, purity)):
        best = int(blocks[j].argmax()) + 1 if var[j] > 0 else 0
        line = (f"n{j}: frequency {f} ({share:.0%} of its variance)" if f is not None else
                f"n{j}: no frequency dominates (best {best}, {share:.0%})")
        if res.phase_error is not None and f is not None:
            line += f"; phase error |θ_1+…+θ_k − θ_w| = {float(res.phase_error[j]):.3f}"
        info.append(line)
    clusters = []
    for f, members in res.clusters.items():
        members = sorted(members, key=lambda j: -purity[j])
        total = var[members].sum()
        pooled = var[members] @ blocks[members] / total if total > 0 else blocks[0] * 0
        label = f"frequency {f}" if f is not None else "no dominant frequency"
        clusters.append(Cluster(label, f is not None, members, pooled[:, None],
                                f"{label}: {len(members)} neurons; variance-weighted spectrum "
                                f"of the cluster; weights and activation of its strongest "
                                f"neuron, n{members[0]}"))
    return blocks[:, :, None], ["share"], info, clusters


def _irreps(model: Any, task: Any) -> tuple[np.ndarray, list[str], list[str], list[Cluster]]:
    spec = A.irrep_spectrum(model, task, where="neurons")
    assert spec.hidden is not None and spec.hidden_variance is not None
    hidden, var = spec.hidden.double().numpy(), spec.hidden_variance.double().numpy()
    split = np.divide(hidden, var[:, None, None], out=np.zeros_like(hidden),
                      where=var[:, None, None] > 0)
    res = A.neuron_irrep_clusters(model, task)
    purity = np.nan_to_num(res.purity.double().numpy())
    terms = ", ".join(f"ρ({t})" for t in spec.terms)
    info = []
    for j, name in enumerate(res.irrep):
        if name is None:
            info.append(f"n{j}: no irrep dominates{' (dead)' if bool(res.dead[j]) else ''}; "
                        f"weight purity {purity[j]:.0%}")
            continue
        parts = split[j, spec.irreps.index(name)]
        info.append(f"n{j}: irrep {name} (weight purity {purity[j]:.0%}); share of its "
                    f"activation variance in {name}'s {terms}: "
                    + ", ".join(f"{v:.0%}" for v in parts))
    clusters = []
    for name, members in res.clusters.items():
        members = sorted(members, key=lambda j: -purity[j])
        label = f"irrep {name}" if name is not None else "no dominant irrep"
        clusters.append(Cluster(label, name is not None, members,
                                spec.hidden_fractions(members).numpy(),
                                f"{label}: {len(members)} neurons; share of their total variance "
                                f"per irrep and term (Chughtai et al. Table 2); weights and "
                                f"activation of the strongest, n{members[0]}"))
    return split, [f"ρ({t})" for t in spec.terms], info, clusters


def _heatmap_neurons(clusters: list[Cluster], limit: int) -> list[int]:
    """Round robin over the clusters in order, each cluster's strongest neurons first."""
    rounds = zip_longest(*[c.neurons for c in clusters])
    return [j for layer in rounds for j in layer if j is not None][:limit]


def inspector(model: Any, task: Any, heatmap_bytes: int = HEATMAP_BYTES) -> Inspector:
    """Precompute the inspector's data for ``model`` on a modular-addition or group task.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> ins = inspector(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> ins.spectrum.shape, ins.grid.shape, sorted(ins.weights)[0]
        ((8, 3, 1), (8, 7, 7), 'reads operand 1')
    """
    if task.kind == "modular_addition":
        spectrum, terms, info, clusters = _fourier(model, task)
        basis, labels = "frequency", [str(f) for f in range(1, task.p // 2 + 1)]
        axis = [str(a) for a in range(task.p)]
    elif task.kind == "group_composition":
        spectrum, terms, info, clusters = _irreps(model, task)
        basis, labels = "irrep", [rho.name for rho in task.group.irreps()]
        axis = [str(g) for g in task.group.labels]
    else:
        raise MiMarginError(f"the neuron inspector needs a modular_addition or group_composition "
                            f"task, got {task.kind!r}")
    clusters = sorted(clusters, key=lambda c: (not c.assigned, -len(c.neurons)))
    s = subject(model, task)
    weight_labels, weights = in_basis(s)
    chosen = _heatmap_neurons(clusters, max(1, heatmap_bytes // len(axis) ** 2))
    grid = grid_activations(s)[chosen]
    return Inspector(basis=basis, labels=labels, terms=terms, spectrum=spectrum,
                     weight_labels=weight_labels, weights=weights, info=info, clusters=clusters,
                     grid_neurons=chosen, grid=grid, axis=axis)


# -- compact encodings ---------------------------------------------------------------------------
def encode_int16(rows: np.ndarray) -> dict[str, Any]:
    """Rows as little-endian int16 with one scale per row (max |error| = scale/2), base64.

    Example:
        >>> m = encode_int16(np.array([[0.5, -1.0], [0.0, 0.0]]))
        >>> m["cols"], m["scale"][1], decode_int16(m).round(4).tolist()
        (2, 1.0, [[0.5, -1.0], [0.0, 0.0]])
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    peak = np.abs(rows).max(axis=1)
    scale = np.where(peak > 0, peak / 32767, 1.0)
    q = np.round(rows / scale[:, None]).astype("<i2")
    return {"cols": rows.shape[1], "scale": scale.tolist(),
            "b64": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_int16(m: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_int16` (what the page's script computes)."""
    q = np.frombuffer(base64.b64decode(m["b64"]), dtype="<i2").reshape(-1, m["cols"])
    return q * np.asarray(m["scale"])[:, None]


def encode_uint8(rows: np.ndarray) -> dict[str, Any]:
    """Rows as uint8 levels between each row's min and max (max |error| = range/510), base64.

    Example:
        >>> m = encode_uint8(np.array([[0.0, 1.0, 2.0]]))
        >>> decode_uint8(m).round(2).tolist()
        [[0.0, 1.0, 2.0]]
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    lo, hi = rows.min(axis=1, initial=0.0), rows.max(axis=1, initial=0.0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.round((rows - lo[:, None]) / span[:, None] * 255).astype(np.uint8)
    return {"cols": rows.shape[1], "lo": lo.tolist(), "hi": hi.tolist(),
            "b64": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_uint8(m: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_uint8` (what the page's script computes)."""
    q = np.frombuffer(base64.b64decode(m["b64"]), dtype=np.uint8).reshape(-1, m["cols"])
    lo, hi = np.asarray(m["lo"]), np.asarray(m["hi"])
    return lo[:, None] + q * (hi - lo)[:, None] / 255


# -- figures and page -----------------------------------------------------------------------------
def payload(ins: Inspector) -> dict[str, Any]:
    """The page's data (see the module docstring for the encodings)."""
    note = f"kept for {len(ins.grid_neurons)} of {len(ins.spectrum)} neurons"
    return {"terms": ins.terms, "info": ins.info, "spectrum": encode_int16(ins.spectrum),
            "weights": [encode_int16(w) for w in ins.weights.values()],
            "grid": {**encode_uint8(ins.grid), "side": len(ins.axis),
                     "neurons": ins.grid_neurons, "note": note},
            "clusters": [{"top": c.neurons[0], "info": c.info,
                          "spectrum": [float(f"{v:.4g}") for v in c.spectrum.flatten()]}
                         for c in ins.clusters]}


def figures(ins: Inspector, neuron: int) -> list[go.Figure]:
    """Spectrum, weights in the task's basis and activation heatmap of one neuron."""
    spectrum = go.Figure([go.Bar(x=ins.labels, y=ins.spectrum[neuron, :, t].tolist(), name=term)
                          for t, term in enumerate(ins.terms)])
    spectrum.update_layout(title=f"share of the neuron's variance per {ins.basis}",
                           barmode="group", height=360, width=520, yaxis_range=[0, 1],
                           xaxis_type="category")
    weights = go.Figure([go.Bar(x=ins.weight_labels, y=w[neuron].tolist(), name=name)
                         for name, w in ins.weights.items()])
    weights.update_layout(title=f"weights in the {ins.basis} basis", barmode="group",
                          height=360, width=1000, xaxis_type="category")
    slot = ins.grid_neurons.index(neuron)
    z = [[float(f"{v:.3g}") for v in row] for row in ins.grid[slot]]        # for the eye
    heatmap = go.Figure(go.Heatmap(z=z, x=ins.axis, y=ins.axis, colorscale="Viridis"))
    heatmap.update_layout(title=f"activation of n{neuron} over the grid", height=460, width=500,
                          xaxis={"title": "b (second operand)", "type": "category"},
                          yaxis={"title": "a (first operand)", "type": "category",
                                 "autorange": "reversed"})
    return [spectrum, weights, heatmap]


def inspector_html(ins: Inspector) -> str:
    """The picker, the three figures (the largest cluster's strongest neuron), data and script."""
    first = ins.grid_neurons[0]
    options = [f'<option value="c{i}">{_html.escape(c.label)} ({len(c.neurons)} neurons)</option>'
               for i, c in enumerate(ins.clusters)]
    options += [f'<option value="n{j}"{" selected" if j == first else ""}>'
                f'{_html.escape(line)}</option>' for j, line in enumerate(ins.info)]
    spectrum, weights, heatmap = figures(ins, first)
    control = (f'<p><label for="{IDS["pick"]}"><b>Neuron or cluster</b></label> '
               f'<select id="{IDS["pick"]}" style="max-width: 80%;">{"".join(options)}</select></p>'
               f'<p id="{IDS["info"]}">{_html.escape(ins.info[first])}</p>'
               f'<p>Final model. Spectra and weights are kept for every neuron; activations '
               f'over the grid for {len(ins.grid_neurons)} of {len(ins.info)} (the strongest '
               f'neurons of each cluster in turn), to keep the file small.</p>')
    parts = [control,
             _html.row([_html.figure_div(heatmap, IDS["heatmap"]),
                        _html.figure_div(spectrum, IDS["spectrum"])]),
             _html.figure_div(weights, IDS["weights"]),
             _html.json_data(IDS["data"], payload(ins)),
             f"<script>{_SCRIPT % IDS}</script>"]
    return "\n".join(parts)

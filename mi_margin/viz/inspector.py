"""The neuron inspector: pick a neuron or a cluster of the final model and see what it computes.

For every MLP neuron (at the last position for transformers) the report stores its spectrum — the
share of its variance over the input grid in each single-frequency block (Nanda et al. 2023 §4.2;
docs/mathematics.md §4.2), for group composition in each irrep's ρ(a), ρ(b) and ρ(ab)
subspaces (Chughtai et al. 2023, Table 2), for sparse parity on each Walsh character χ_S of
Z_2^n (Morwani et al. 2024 Thm 8: a max-margin x^k neuron reads exactly the support bits) — and
the vectors it reads and writes: for tasks read as operands, from each token and to the logits,
expressed in the task's basis (the analysis core's ``basis_for(task)``): the real Fourier basis
of Z_p, or orthonormal bases of the irreps' isotypic subspaces (docs/mathematics.md §3); for a
task read as a ±1 vector (sparse parity), the weight on each input bit (the degree-1 characters
χ_{i}) and on each class. Its activation over the (a, b) grid (other operands 0 when k > 2), or
over the cube {±1}^n laid out as (low bits) × (high bits), is computed in the page for every
neuron from a few maps (:func:`heatmap_factors`: the MLP's two input maps, or the transformer's
value vectors, W_in and its attention pattern over the grid; the transformer's pre-activations
over the cube), not stored per neuron. Clusters are those of
:func:`~mi_margin.neuron_clusters` (dominant frequency or subset of the activation) and
:func:`~mi_margin.neuron_irrep_clusters` (dominant irrep of the weights, Morwani et al. 2024
Thm 9); a cluster shows its pooled spectrum and its strongest neuron.

To keep the file small, spectra are stored as int16 and weights as int8 with one scale per
neuron, the heatmaps' maps as int8 with one scale per row and the attention pattern as bytes (base64;
decoded by a few lines of inline script, :func:`decode_factors` and :func:`preactivations` do
the same in Python).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

import mi_margin.analysis as A
from mi_margin.analysis.core import PATTERN, POST, PRE, GridCache, Subject, cached
from mi_margin.models.config import polynomial_degree
from mi_margin.viz import _html
from mi_margin.viz._html import rounded

#: most subsets the spectrum of a parity model shows (all of them up to n = 10 bits)
MAX_SUBSETS = 1023
#: share of ||w_in||² on the bits a parity neuron reads most that puts it in their cluster
MIN_SHARE = 0.5
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
  const int8 = m => rows(m, b => new Int8Array(b.buffer), (v, r) => v * m.scale[r]);
  const spectrum = int16(d.spectrum), weights = d.weights.map(int8), g = d.grid, n = g.side;
  const T = d.terms.length;
  const byTerm = flat => d.terms.map((_, t) => flat.filter((_, i) => i %% T === t));
  const erf = x => {                        // Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7)
    const t = 1 / (1 + 0.3275911 * Math.abs(x));
    const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
                   + 0.254829592) * t * Math.exp(-x * x);
    return x < 0 ? -y : y; };
  const act = {relu: x => Math.max(0, x), quadratic: x => x * x, power: x => x ** g.degree,
               gelu: x => 0.5 * x * (1 + erf(x / Math.SQRT2))}[g.act];
  const dot = (u, v) => u.reduce((s, x, i) => s + x * v[i], 0);
  const range = k => [...Array(k).keys()];
  let heat;                                 // neuron j -> its activation over the (a, b) slice
  if (g.kind === "mlp") {
    const A = int8(g.A), B = int8(g.B);
    heat = j => { const a = A(j), b = B(j); return a.map(x => b.map(y => act(x + y))); };
  } else if (g.kind === "table") {
    const Z = int8(g.pre);
    heat = j => { const z = Z(j);
      return range(g.rows).map(a => z.slice(a * g.cols, (a + 1) * g.cols).map(act)); };
  } else {
    const H = g.heads, P = g.positions, V01 = int8(g.V01), Vrest = int8(g.Vrest), W = int8(g.W_in);
    let pat = null;
    heat = j => {
      pat = pat || raw(g.pattern);
      const w = W(j), bias = g.b_in[j] + dot(g.c0, w);
      const u = range(H).map(h => [0, 1].map(q => range(n).map(t => dot(V01((h * 2 + q) * n + t), w))));
      const r = range(H).map(h => range(P - 2).map(q => dot(Vrest(h * (P - 2) + q), w)));
      return range(n).map(a => range(n).map(b => {
        let s = bias;
        for (let h = 0; h < H; h++) {
          const o = ((a * n + b) * H + h) * P;
          s += (pat[o] * u[h][0][a] + pat[o + 1] * u[h][1][b]) / 255;
          for (let q = 0; q < P - 2; q++) s += pat[o + 2 + q] * r[h][q] / 255;
        }
        return act(s); })); };
  }
  function show(j, flat, text) {
    Plotly.restyle("%(spectrum)s", {y: byTerm(flat)}, d.terms.map((_, t) => t));
    Plotly.restyle("%(weights)s", {y: weights.map(w => w(j))}, weights.map((_, i) => i));
    Plotly.restyle("%(heatmap)s", {z: [heat(j)]}, [0]);
    Plotly.relayout("%(heatmap)s", {"title.text": `activation of n${j} over the grid`});
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
    """Neurons sharing a dominant frequency/irrep/subset or (parity MLPs) the bits they read
    (``assigned``), or none: label, members (strongest first), the pooled spectrum [X, T], and
    a one-line description."""

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
        weights: vector name → [d_mlp, c] coefficients; weight_labels: vector name → the names
            of its c coefficients; weights_title: what they are.
        info: one line per neuron; clusters: :class:`Cluster` list, largest first, unassigned
            last.
        grid: every neuron's activation [d_mlp, rows, columns] over (a_1, a_2), or over the
            cube as (low bits, high bits); axes: the row and column labels, axis_titles their
            titles; factors: :func:`heatmap_factors`, from which the page computes any
            neuron's heatmap; activation: the activation function and its degree.
    """

    basis: str
    labels: list[str]
    terms: list[str]
    spectrum: np.ndarray
    weight_labels: dict[str, list[str]]
    weights: dict[str, np.ndarray]
    weights_title: str
    info: list[str]
    clusters: list[Cluster]
    grid: np.ndarray
    axes: tuple[list[str], list[str]]
    axis_titles: tuple[str, str]
    factors: dict[str, Any]
    activation: tuple[str, int | None]


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


def in_basis(s: Subject) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Every neuron map's coefficient names and coefficients, name → [d_mlp, c]: in the task
    basis for tasks read as operands; for a task read as one ±1 vector (sparse parity), the
    weight on each input bit (its degree-1 character χ_{i}, x_i itself) or token, and on each
    class."""
    maps = neuron_maps(s)
    if s.task.algebra.inputs == "operands":
        names = s.basis.coefficient_names()
        return ({name: names for name in maps},
                {name: s.basis.coefficients(W).T.numpy() for name, W in maps.items()})
    rows = {"reads operand 1": [f"x_{i}" for i in range(s.task.n)],
            "reads (W_E·W_in)": ["token x=+1", "token x=−1"]}
    classes = ["class 0 (y=+1)", "class 1 (y=−1)"]
    return ({name: rows.get(name, classes) for name in maps},
            {name: W.double().T.numpy() for name, W in maps.items()})


def cube_bits(c: GridCache) -> int:
    """The n of the cube {±1}^n: its 2^n points are the basis's elements."""
    return int(c.basis.n).bit_length() - 1


def cube_split(c: GridCache) -> int:
    """The bits along the rows of a cube's heatmap (the low half; the rest along the columns)."""
    return cube_bits(c) // 2


def signs(bits: int) -> torch.Tensor:
    """x_0..x_{bits−1} ∈ {±1} of every index 0..2^bits − 1 (bit j set: x_j = −1), float64
    [2^bits, bits]: the cube's rows in the task's binary order."""
    return 1.0 - 2.0 * ((torch.arange(2**bits)[:, None] >> torch.arange(bits)) & 1).double()


def cube_axes(c: GridCache) -> tuple[list[str], list[str]]:
    """Row and column labels of a cube's heatmap: the signs of their bits, x_0 first."""
    h, n = cube_split(c), cube_bits(c)
    rows, cols = ([''.join("+" if v > 0 else "−" for v in row) for row in signs(bits).tolist()]
                  for bits in (h, n - h))
    return rows, cols


def cube_order(c: GridCache, values: torch.Tensor) -> torch.Tensor:
    """[2^n, m] values over the cube (row r = low bits + 2^h · high bits) as [m, 2^h, 2^(n−h)]."""
    h = cube_split(c)
    return values.reshape(-1, 2**h, values.shape[-1]).permute(2, 1, 0)


def slice_rows(c: GridCache) -> torch.Tensor:
    """The grid rows (a_1, a_2, 0, ..., 0) in (a_1, a_2) order (``task.inputs`` is lexicographic)."""
    n, k = c.basis.n, c.basis.k
    return torch.arange(n * n) * n ** (k - 2)


def heatmap_factors(c: GridCache) -> dict[str, Any]:
    """What the page needs to compute every neuron's pre-activation over the (a_1, a_2) slice,
    so that every neuron's heatmap is available without storing n² values per neuron.

    MLP: pre_j(a, b) = A[a, j] + B[b, j], with A = W_in_eff[0] + b_in + Σ_{i≥2} W_in_eff[i][0]
    and B = W_in_eff[1]. Transformer (last position, no LayerNorm): resid_mid = c0 +
    Σ_h Σ_pos pattern[h, pos]·V[h, pos, token at pos], with V = (X W_V[h] + b_V[h]) W_O[h],
    X[pos, t] = W_E[t] + W_pos[pos] and c0 = X[last, '='] + b_O, so pre_j = resid_mid · W_in[:, j]
    + b_in[j]; the pattern over the slice comes from the grid cache.

    Cube {±1}^n (rows: the low h = n//2 bits, columns: the rest): an MLP's pre-activation is
    A[a, j] + B[b, j] with A = X_low W_in[:h] + b_in and B = X_high W_in[h:]; a transformer's,
    which attends to every bit, is stored as a table of pre-activations (``"table"``).
    """
    model, n = c.model, c.basis.n
    if c.task.algebra.inputs == "vectors":
        if c.kind == "transformer":
            return {"kind": "table", "pre": cube_order(c, c[PRE].double()).numpy()}
        h, W = cube_split(c), model.W_in_eff.detach().double()[0]
        return {"kind": "mlp", "A": (signs(h) @ W[:h] + model.b_in.detach().double()).T.numpy(),
                "B": (signs(cube_bits(c) - h) @ W[h:]).T.numpy()}
    if c.kind == "mlp":
        T = model.W_in_eff.detach().double()
        const = model.b_in.detach().double() + T[2:, 0].sum(0)
        return {"kind": "mlp", "A": (T[0] + const).T.numpy(), "B": T[1].T.numpy()}
    W = {name: getattr(model, name).detach().double()
         for name in ("W_E", "W_pos", "W_V", "b_V", "W_O", "b_O", "W_in", "b_in")}
    last, eq = W["W_pos"].shape[0] - 1, model.cfg.d_vocab - 1
    tokens = [torch.arange(n), torch.arange(n), *[torch.zeros(1, dtype=torch.long)] * (last - 2),
              torch.tensor([eq])]
    X = [W["W_E"][t] + W["W_pos"][pos] for pos, t in enumerate(tokens)]      # [tokens, d]
    V = [torch.einsum("td,hde,hef->htf", x, W["W_V"][0], W["W_O"][0]) +
         torch.einsum("he,hef->hf", W["b_V"][0], W["W_O"][0])[:, None] for x in X]
    return {"kind": "transformer", "pattern": c[PATTERN][slice_rows(c)].double().numpy(),
            "V01": torch.stack(V[:2], 1).numpy(),                             # [H, 2, n, d]
            "Vrest": torch.cat(V[2:], 1).numpy(),                             # [H, R, d]
            "c0": (X[last][0] + W["b_O"][0]).numpy(), "W_in": W["W_in"][0].T.numpy(),
            "b_in": W["b_in"][0].numpy()}


def preactivations(f: dict[str, Any]) -> np.ndarray:
    """Every neuron's pre-activation over the slice from :func:`heatmap_factors` (or from the
    page's decoded data, :func:`decode_factors`), [d_mlp, n, n]: what the page's script computes.
    """
    if f["kind"] == "mlp":
        return f["A"][:, :, None] + f["B"][:, None, :]
    if f["kind"] == "table":
        return f["pre"]
    W = f["W_in"]                                                   # [m, d]
    u = f["V01"] @ W.T                                              # [H, 2, n, m]
    rest = f["Vrest"] @ W.T                                         # [H, R, m]
    p = f["pattern"]                                                # [n², H, P]
    n = u.shape[2]
    a, b = np.divmod(np.arange(n * n), n)
    pre = (np.einsum("rh,hrm->rm", p[:, :, 0], u[:, 0][:, a]) +
           np.einsum("rh,hrm->rm", p[:, :, 1], u[:, 1][:, b]) +
           np.einsum("rhq,hqm->rm", p[:, :, 2:], rest) + (f["c0"] @ W.T + f["b_in"]))
    return pre.T.reshape(-1, n, n)


def activation_of(c: GridCache) -> tuple[str, int | None]:
    """The model's activation function and degree (what the page applies to pre-activations)."""
    cfg = c.model.cfg
    return cfg.act_fn, polynomial_degree(cfg.act_fn, cfg.act_degree)


def grid_activations(c: GridCache) -> np.ndarray:
    """Neuron activations over (a_1, a_2) with the other operands 0, [d_mlp, n, n], or over the
    cube, [d_mlp, 2^h, 2^(n−h)] (:func:`cube_order`)."""
    if c.task.algebra.inputs == "vectors":
        return cube_order(c, c[POST].double()).numpy()
    post = c[POST].double().numpy()
    n = c.basis.n
    return post.reshape(n, n, -1, post.shape[-1])[:, :, 0].transpose(2, 0, 1)


# -- spectra and clusters ----------------------------------------------------------------------
def _fourier(c: GridCache) -> tuple[np.ndarray, list[str], list[str], list[Cluster]]:
    res = A.neuron_clusters(c, c.task)
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


def _irreps(c: GridCache) -> tuple[np.ndarray, list[str], list[str], list[Cluster]]:
    spec = A.spectrum(c, c.task, where="neurons")
    assert spec.hidden is not None and spec.hidden_variance is not None
    hidden, var = spec.hidden.double().numpy(), spec.hidden_variance.double().numpy()
    split = np.divide(hidden, var[:, None, None], out=np.zeros_like(hidden),
                      where=var[:, None, None] > 0)
    res = A.neuron_clusters(c, c.task, source="weights")
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


def shown_subsets(labels: tuple[Any, ...], energy: np.ndarray) -> list[int]:
    """Indices of the subsets the spectrum shows, by degree then bits: all of them up to
    ``MAX_SUBSETS``, else the ``MAX_SUBSETS`` with the most energy summed over the neurons
    (``energy`` [L−1], non-trivial labels in basis order)."""
    keep = np.argsort(-energy, kind="stable")[:MAX_SUBSETS]
    return sorted(keep.tolist(), key=lambda i: (len(labels[i]), labels[i]))


def heavy_bits(w: np.ndarray) -> tuple[tuple[int, ...], float]:
    """The bits a neuron reads most — those with |w_i| ≥ ½ max |w| — and their share of ||w||²
    (Morwani et al. 2024 Thm 8: a max-margin neuron puts equal weight on the support, none
    elsewhere).

    Example:
        >>> heavy_bits(np.array([0.0, 1.0, -0.9, 0.1]))
        ((1, 2), 0.9945...)
    """
    a = np.abs(w)
    bits = tuple(int(i) for i in np.flatnonzero(a >= a.max() / 2)) if a.max() > 0 else ()
    total = float(np.square(w).sum())
    return bits, float(np.square(w[list(bits)]).sum()) / total if total > 0 else 0.0


def _walsh(c: GridCache) -> tuple[np.ndarray, list[str], list[str], list[Cluster], list[str]]:
    res = A.neuron_clusters(c, c.task)
    subsets = c.basis.nontrivial
    shares = res.shares[:, 1:].double().numpy()           # [d_mlp, 2^n − 1], basis order
    var = res.total.double().numpy()
    keep = shown_subsets(subsets, res.energy[:, 1:].double().sum(0).numpy())
    purity = np.nan_to_num(res.purity.double().numpy())
    W = c.model.W_in_eff.detach().double()[0].numpy() if c.kind == "mlp" else None
    reads = [heavy_bits(W[:, j]) for j in range(len(purity))] if W is not None else []
    order = len(c.task.support)                # a neuron's subset is one of the task's order
    of_order = np.array([len(S) == order for S in subsets])
    info = []
    for j, (S, share) in enumerate(zip(res.label, purity)):
        best = subsets[int(np.where(of_order, shares[j], -1.0).argmax())]
        line = (f"n{j}: subset {S} ({share:.0%} of its energy in order-{order} subsets)"
                if S is not None else
                f"n{j}: no subset of order {order} dominates"
                f"{' (dead)' if bool(res.dead[j]) else ''} (best {best}, {share:.0%})")
        if reads:
            line += f"; reads bits {reads[j][0]} most ({reads[j][1]:.0%} of ||w_in||²)"
        info.append(line)

    def cluster(label: str, assigned: bool, members: list[int], what: str) -> Cluster:
        total = var[members].sum()
        pooled = var[members] @ shares[members] / total if total > 0 else shares[0] * 0
        return Cluster(label, assigned, members, pooled[keep][:, None],
                       f"{label}: {len(members)} neurons{what}; variance-weighted Walsh spectrum "
                       f"of the cluster; weights and activation of its strongest neuron, "
                       f"n{members[0]}")

    clusters = [cluster(f"subset {S}" if S is not None else "no dominant subset", S is not None,
                        sorted(members, key=lambda j: -purity[j]), "")
                for S, members in res.clusters.items()]
    by_bits: dict[tuple[int, ...], list[int]] = {}
    for j, (bits, weight) in enumerate(reads):
        if weight >= MIN_SHARE and not bool(res.dead[j]):
            by_bits.setdefault(bits, []).append(j)
    clusters += [cluster(f"reads bits {bits}", True,
                         sorted(members, key=lambda j: -reads[j][1]),
                         f" with at least {MIN_SHARE:.0%} of ||w_in||² on these bits")
                 for bits, members in by_bits.items()]
    return (shares[:, keep][:, :, None], ["share"], info, clusters,
            [str(subsets[i]) for i in keep])


def inspector(model: Any, task: Any) -> Inspector:
    """Precompute the inspector's data for ``model`` (or its grid cache) on a task with a
    harmonic basis: frequencies, irreps or the subsets of sparse parity's cube (n ≤ 16).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> ins = inspector(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> ins.spectrum.shape, ins.grid.shape, sorted(ins.weights)[0]
        ((8, 3, 1), (8, 7, 7), 'reads operand 1')
    """
    c = cached(model, task)
    basis = c.basis.label_kind
    if basis == "frequency":
        spectrum, terms, info, clusters = _fourier(c)
        labels = [str(f) for f in c.basis.nontrivial]
    elif basis == "irrep":
        spectrum, terms, info, clusters = _irreps(c)
        labels = [str(name) for name in c.basis.labels]
    else:
        spectrum, terms, info, clusters, labels = _walsh(c)
    clusters = sorted(clusters, key=lambda cl: (not cl.assigned, -len(cl.neurons)))
    weight_labels, weights = in_basis(c.subject)
    if task.algebra.inputs == "vectors":
        h = cube_split(c)
        axes, titles = cube_axes(c), (f"x_0 … x_{h - 1}", f"x_{h} … x_{cube_bits(c) - 1}")
        weights_title = "weights: what the neuron reads per input bit and writes per class"
    else:
        axis = [str(g) for g in getattr(getattr(c.basis, "group", None), "labels",
                                        range(c.basis.n))]
        axes, titles = (axis, axis), ("a (first operand)", "b (second operand)")
        weights_title = f"weights in the {basis} basis"
    return Inspector(basis=basis, labels=labels, terms=terms, spectrum=spectrum,
                     weight_labels=weight_labels, weights=weights, weights_title=weights_title,
                     info=info, clusters=clusters, grid=grid_activations(c), axes=axes,
                     axis_titles=titles, factors=heatmap_factors(c), activation=activation_of(c))


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


def encode_int8(rows: np.ndarray) -> dict[str, Any]:
    """Rows as int8 with one scale per row (max |error| = scale/2), base64.

    Example:
        >>> decode_int8(encode_int8(np.array([[0.25, -1.0]]))).round(4).tolist()
        [[0.252, -1.0]]
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    peak = np.abs(rows).max(axis=1)
    scale = np.where(peak > 0, peak / 127, 1.0)
    q = np.round(rows / scale[:, None]).astype(np.int8)
    return {"cols": rows.shape[1], "scale": [float(f"{v:.6g}") for v in scale],
            "b64": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_int8(m: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_int8` (what the page's script computes)."""
    q = np.frombuffer(base64.b64decode(m["b64"]), dtype=np.int8).reshape(-1, m["cols"])
    return q * np.asarray(m["scale"])[:, None]


def encode_factors(f: dict[str, Any]) -> dict[str, Any]:
    """:func:`heatmap_factors` for the page: maps as int8 rows (one scale per row), the
    attention pattern (in [0, 1]) as bytes of 1/255."""
    if f["kind"] == "mlp":
        return {"kind": "mlp", "A": encode_int8(f["A"]), "B": encode_int8(f["B"])}
    if f["kind"] == "table":
        m, rows, cols = f["pre"].shape
        return {"kind": "table", "rows": rows, "cols": cols,
                "pre": encode_int8(f["pre"].reshape(m, -1))}
    H, _, n, d = f["V01"].shape
    pattern = np.round(np.clip(f["pattern"], 0, 1) * 255).astype(np.uint8)
    return {"kind": "transformer", "heads": H, "positions": f["pattern"].shape[2], "side": n,
            "pattern": base64.b64encode(pattern.tobytes()).decode("ascii"),
            "V01": encode_int8(f["V01"].reshape(-1, d)), "Vrest": encode_int8(f["Vrest"].reshape(-1, d)),
            "W_in": encode_int8(f["W_in"]), "c0": rounded(f["c0"]), "b_in": rounded(f["b_in"])}


def decode_factors(m: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_factors` (up to its rounding)."""
    if m["kind"] == "mlp":
        return {"kind": "mlp", "A": decode_int8(m["A"]), "B": decode_int8(m["B"])}
    if m["kind"] == "table":
        return {"kind": "table", "pre": decode_int8(m["pre"]).reshape(-1, m["rows"], m["cols"])}
    H, P, n = m["heads"], m["positions"], m["side"]
    pattern = np.frombuffer(base64.b64decode(m["pattern"]), dtype=np.uint8) / 255
    V01 = decode_int8(m["V01"])
    return {"kind": "transformer", "pattern": pattern.reshape(-1, H, P),
            "V01": V01.reshape(H, 2, n, -1), "Vrest": decode_int8(m["Vrest"]).reshape(H, P - 2, -1),
            "W_in": decode_int8(m["W_in"]), "c0": np.asarray(m["c0"], dtype=np.float64),
            "b_in": np.asarray(m["b_in"], dtype=np.float64)}


# -- figures and page -----------------------------------------------------------------------------
def payload(ins: Inspector) -> dict[str, Any]:
    """The page's data (see the module docstring for the encodings)."""
    act, degree = ins.activation
    return {"terms": ins.terms, "info": ins.info, "spectrum": encode_int16(ins.spectrum),
            "weights": [encode_int8(w) for w in ins.weights.values()],
            "grid": {**encode_factors(ins.factors), "side": len(ins.axes[0]), "act": act,
                     "degree": degree},
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
    weights = go.Figure([go.Bar(x=ins.weight_labels[name], y=w[neuron].tolist(), name=name)
                         for name, w in ins.weights.items()])
    weights.update_layout(title=ins.weights_title, barmode="group",
                          height=360, width=1000, xaxis_type="category")
    rows, cols = ins.axes
    heatmap = go.Figure(go.Heatmap(z=ins.grid[neuron], x=cols, y=rows, colorscale="Viridis"))
    heatmap.update_layout(title=f"activation of n{neuron} over the grid", height=460, width=500,
                          xaxis={"title": ins.axis_titles[1], "type": "category"},
                          yaxis={"title": ins.axis_titles[0], "type": "category",
                                 "autorange": "reversed"})
    return [spectrum, weights, heatmap]


def inspector_html(ins: Inspector) -> str:
    """The picker, the three figures (the largest cluster's strongest neuron), data and script."""
    first = ins.clusters[0].neurons[0]
    options = [f'<option value="c{i}">{_html.escape(c.label)} ({len(c.neurons)} neurons)</option>'
               for i, c in enumerate(ins.clusters)]
    options += [f'<option value="n{j}"{" selected" if j == first else ""}>'
                f'{_html.escape(line)}</option>' for j, line in enumerate(ins.info)]
    spectrum, weights, heatmap = figures(ins, first)
    control = (f'<p><label for="{IDS["pick"]}"><b>Neuron or cluster</b></label> '
               f'<select id="{IDS["pick"]}" style="max-width: 80%;">{"".join(options)}</select></p>'
               f'<p id="{IDS["info"]}">{_html.escape(ins.info[first])}</p>'
               f'<p>Final model, every neuron: its activation over the grid is computed in the '
               f'page from the model\'s weights (and, for a transformer, its attention pattern '
               f'over the grid), stored with 8 bits per number.</p>')
    parts = [control,
             _html.row([_html.figure_div(heatmap, IDS["heatmap"]),
                        _html.figure_div(spectrum, IDS["spectrum"])]),
             _html.figure_div(weights, IDS["weights"]),
             _html.json_data(IDS["data"], payload(ins)),
             f"<script>{_SCRIPT % IDS}</script>"]
    return "\n".join(parts)

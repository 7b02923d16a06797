"""Irrep analysis of group-composition models: which irreducible representations a model uses.

Chughtai, Chan & Nanda (2023, "A toy model of universality"; docs/mathematics.md §3) show that networks
trained on composition in a finite group G implement the "group composition via representations"
algorithm for a few irreps ρ: embed a, b as ρ(a), ρ(b), multiply to ρ(ab), read the logit of c as
χ_ρ(abc⁻¹). Morwani et al. (2024, Thm 9; docs/mathematics.md §1.5) predict that every neuron of a max-margin
network is spanned by the matrix coefficients of a single non-trivial irrep. This module measures
both for :class:`~mi_margin.HookedMLP` and :class:`~mi_margin.HookedOneLayerTransformer` (last
position), for any :class:`~mi_margin.groups.FiniteGroup` and k ≥ 2 operands, in float64, with
the real irreps of ``G.irreps()`` (names as there). It mirrors :mod:`mi_margin.analysis.fourier`:
on a cyclic group of odd order, irrep ``freq_f`` *is* frequency f (the same subspaces), so the two
analyses give identical numbers.

- :func:`irrep_spectrum`: fraction of variance per irrep of the embeddings, unembedding and MLP
  activations (split into the ρ(a), ρ(b), ρ(ab) subspaces over the input grid).
- :func:`irrep_logit_similarity` / :func:`key_irreps`: cosine similarity of the centred logits with
  the character χ_ρ(abc⁻¹); key irreps are those above Chughtai's threshold.
- :func:`neuron_irrep_clusters` / :func:`neuron_irreps`: every neuron's dominant irrep and purity.
- :func:`irrep_grid_basis`: orthonormal bases of ρ(a), ρ(b), ρ(ab) over the grid (also used by the
  ablations in :mod:`mi_margin.analysis.irrep_ablation`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis._grid import (
    POST,
    check_outputs,
    embed_maps,
    model_kind,
    neuron_logit_map,
    run_grid,
    unembed_map,
)
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.fourier.group import isotypic_basis
from mi_margin.groups import FiniteGroup, Irrep
from mi_margin.models.compat import check_fits

WEIGHT_PARTS = ("embed", "neuron_in", "unembed", "W_L")
GRID_PARTS = ("neurons",)
SOURCES = ("weights", "activations")
#: Chughtai et al. (2023, p4-10): an irrep is key when its logit similarity exceeds this.
KEY_THRESHOLD = 0.005


# -- task and grid helpers -------------------------------------------------------------------------
def check_group(task: Any, what: str) -> tuple[FiniteGroup, int]:
    """(G, k) of a group-composition task with k ≥ 2; a clear error for anything else."""
    if getattr(task, "kind", None) != "group_composition":
        raise MiMarginError(f"{what} needs a GroupComposition task, got "
                            f"{type(task).__name__} (kind={getattr(task, 'kind', None)!r})")
    if task.k < 2:
        raise MiMarginError(f"{what} needs k >= 2 operands (a product to compose), got k={task.k}")
    if task.k > len(string.ascii_lowercase):
        raise MiMarginError(f"{what} supports k <= 26 operands, got k={task.k}")
    return task.group, task.k


def term_labels(k: int) -> tuple[str, ...]:
    """Names of the grid terms for k operands: ``("a", "b", "ab")`` for k = 2, then "abc", ...

    Example:
        >>> term_labels(3)
        ('a', 'b', 'c', 'abc')
    """
    letters = string.ascii_lowercase[:k]
    return (*letters, letters)


def _term_column(task: Any, term: str) -> Tensor:
    """The group element each grid input feeds to ``term``: one operand, or the product (label)."""
    _, k = check_group(task, "irrep_grid_basis")
    labels = term_labels(k)
    if term not in labels:
        raise MiMarginError(f"term must be one of {labels} for k={k}, got term={term!r}")
    return task.labels if term == labels[-1] else task.inputs[:, labels.index(term)]


def _basis(G: FiniteGroup, rho: Irrep) -> Tensor:
    return torch.from_numpy(np.array(isotypic_basis(G, rho)))


def irrep_grid_basis(task: Any, irreps: Sequence[str] | str, term: str | None = None
                     ) -> Float[Tensor, "N r"]:
    """Orthonormal basis over the input grid of the functions x ↦ ρ(g(x))_ij for chosen irreps.

    g(x) is one operand (``term="a"``, ``"b"``, ...) or the product of all operands (``term="ab"``
    for k = 2, the default: the last of :func:`term_labels`). Because every element appears
    |G|^{k−1} times in each column of the grid, the isotypic basis Q_ρ of
    :func:`~mi_margin.fourier.group.isotypic_basis` becomes orthonormal over the grid after
    division by sqrt(|G|^{k−1}). Bases of different irreps, and for non-trivial irreps of different
    terms, are orthogonal (Schur orthogonality) — Chughtai et al.'s QR of stacked ρ matrices over
    pairs (App. E, p22-4). Complex/quaternionic-type irreps span d²/2 and d²/4 dimensions.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> Q = irrep_grid_basis(task, ["sign", "standard"])
        >>> tuple(Q.shape), bool(torch.allclose(Q.T @ Q, torch.eye(5, dtype=torch.float64)))
        ((36, 5), True)
    """
    G, k = check_group(task, "irrep_grid_basis")
    names = [irreps] if isinstance(irreps, str) else list(irreps)
    column = _term_column(task, term_labels(k)[-1] if term is None else term)
    blocks = [_basis(G, G.irrep(name))[column] for name in names]
    if not blocks:
        return torch.zeros((len(column), 0), dtype=torch.float64)
    return torch.cat(blocks, dim=1) / float(G.order ** (k - 1)) ** 0.5


def _term_energy(G: FiniteGroup, k: int, H: Tensor, column: Tensor) -> Tensor:
    """Squared norm of each unit's projection onto every irrep's term subspace, [K, units].

    Qᵀ H with Q = Q_ρ[column]/sqrt(n^{k−1}) equals Q_ρᵀ (Σ of H's rows per element) / sqrt(n^{k−1}),
    so the [N, r] basis is never built.
    """
    n = G.order
    summed = H.new_zeros((n, H.shape[1])).index_add_(0, column, H)
    return torch.stack([(_basis(G, rho).T @ summed).square().sum(0) / n ** (k - 1)
                        for rho in G.irreps()])


def _fractions(W: Tensor, G: FiniteGroup) -> Tensor:
    """Fraction of ||W||_F² (no centering, Chughtai's convention) per irrep along axis 0, [K]."""
    W = W.detach().double()
    total = W.square().sum()
    energy = torch.stack([(_basis(G, rho).T @ W).square().sum() for rho in G.irreps()])
    return energy / total if float(total) > 0 else energy


def _post(model: Any, task: Any) -> Tensor:
    _, acts = run_grid(model, task, [POST])
    post = acts[POST]
    return (post[:, -1] if post.ndim == 3 else post).double()


# -- irrep_spectrum --------------------------------------------------------------------------------
@dataclass(frozen=True)
class IrrepSpectrum(AnalysisResult):
    """Per-irrep variance fractions of a group-composition model (see :func:`irrep_spectrum`).

    Attributes:
        group, k, model_kind: the group's name, operand count, "transformer" or "mlp".
        irreps: names of G's irreps (``G.irreps()`` order); dims: their real dimensions.
        weights: component → [K] fraction of its squared norm in each irrep's isotypic subspace
            along the token axis (embeddings) or the output axis (unembedding); sums to 1.
        terms: the grid terms (``("a", "b", "ab")`` for k = 2).
        hidden: [d_mlp, K, T] squared norm of each neuron's centred activation over the grid in
            each irrep's ρ(term) subspace (None if neurons were not analysed).
        hidden_variance: [d_mlp] each neuron's centred sum of squares over the grid.
    """

    _score = "fraction"
    _group = "component"
    _plot = "mi_margin.viz.irreps:plot_irrep_spectrum"

    group: str
    k: int
    model_kind: str
    irreps: tuple[str, ...]
    dims: tuple[int, ...]
    weights: dict[str, Tensor] = field(default_factory=dict, repr=False)
    terms: tuple[str, ...] = ()
    hidden: Float[Tensor, "d_mlp K T"] | None = field(default=None, repr=False)
    hidden_variance: Float[Tensor, " d_mlp"] | None = field(default=None, repr=False)

    def hidden_fractions(self, neurons: Sequence[int] | None = None) -> Float[Tensor, "K T"]:
        """Share of the neurons' total centred variance in each (irrep, term) subspace.

        ``neurons`` selects a cluster (e.g. ``neuron_irrep_clusters(...).clusters["sign"]``, as in
        Chughtai et al.'s Table 2); default all. The residual is ``1 − sum``.

        Example:
            >>> import mi_margin as mm
            >>> task = mm.GroupComposition("S3")
            >>> spec = irrep_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
            >>> tuple(spec.hidden_fractions([0, 1]).shape)
            (3, 3)
        """
        if self.hidden is None or self.hidden_variance is None:
            raise MiMarginError("neurons were not analysed; call irrep_spectrum with "
                                "where including 'neurons'")
        idx = torch.arange(self.hidden.shape[0]) if neurons is None else \
            torch.as_tensor(list(neurons), dtype=torch.long)
        total = self.hidden_variance[idx].sum()
        energy = self.hidden[idx].sum(0)
        return energy / total if float(total) > 0 else energy

    def fve(self, component: str) -> dict[str, float]:
        """Irrep → fraction for a weight component, or for ``"neurons"`` summed over the terms."""
        if component in self.weights:
            values = self.weights[component]
        elif component == "neurons" and self.hidden is not None:
            values = self.hidden_fractions().sum(1)
        else:
            raise MiMarginError(f"unknown component {component!r}; have "
                                f"{[*self.weights, *(['neurons'] if self.hidden is not None else [])]}")
        return dict(zip(self.irreps, values.tolist()))

    def _table(self) -> pd.DataFrame:
        rows = [{"component": comp, "kind": "weight", "irrep": name, "dim": d, "term": "",
                 "fraction": float(f)}
                for comp, W in self.weights.items()
                for name, d, f in zip(self.irreps, self.dims, W.tolist())]
        if self.hidden is not None:
            fr = self.hidden_fractions()
            rows += [{"component": "neurons", "kind": "grid", "irrep": name, "dim": d,
                      "term": term, "fraction": float(fr[i, t])}
                     for i, (name, d) in enumerate(zip(self.irreps, self.dims))
                     for t, term in enumerate(self.terms)]
            rows.append({"component": "neurons", "kind": "grid", "irrep": "residual", "dim": 0,
                         "term": "", "fraction": float(1 - fr.sum()) if fr.sum() > 0 else 0.0})
        return pd.DataFrame(rows, columns=["component", "kind", "irrep", "dim", "term",
                                           "fraction"])


def _parse_where(where: Sequence[str] | str | None, kind: str) -> set[str]:
    valid = {*WEIGHT_PARTS, *GRID_PARTS}
    default = valid - ({"neuron_in", "W_L"} if kind == "mlp" else set())
    if where is None:
        return default
    chosen = {where} if isinstance(where, str) else set(where)
    if not chosen or chosen - valid:
        raise MiMarginError(f"where must name some of {sorted(valid)}, got {where!r}")
    return chosen


def _weight_components(model: Any, n: int, where: set[str]) -> dict[str, Tensor]:
    """Component name → matrix with group elements on axis 0."""
    comps = {name: W for name, W in embed_maps(model, n).items() if name.split("[")[0] in where}
    if "unembed" in where:
        comps["unembed"] = unembed_map(model).T
    if "W_L" in where and model_kind(model) == "transformer":
        comps["W_L"] = neuron_logit_map(model).T
    return comps


def irrep_spectrum(model: Any, task: Any, where: Sequence[str] | str | None = None
                   ) -> IrrepSpectrum:
    """Which irreps each part of a group-composition model carries (Chughtai et al. 2023, §5).

    Weights (fraction of the squared Frobenius norm in each irrep's isotypic subspace
    span{g ↦ ρ(g)_ij}, no centering, so the trivial irrep holds the mean and the fractions sum to
    1; Chughtai's Table 1 / App. E):
      - ``"embed"``: transformer W_E rows 0..|G|−1; MLP every operand's effective input map
        W_in_eff[i] (``"embed[i]"``; for ``input_style="embed"`` this is Chughtai's "total
        embedding" W_E[i]·W_in[i]).
      - ``"neuron_in"`` (transformer): W_E[:|G|]·W_in, what the neurons read from a token apart
        from attention (the analogue of W_in_eff; as in :func:`~mi_margin.fourier_spectrum`).
      - ``"unembed"``: W_U (transformer) or W_out (MLP), over the output axis.
      - ``"W_L"`` (transformer): W_out·W_U over the output axis.
    Grid (``"neurons"``): MLP activations (last position for transformers) over all |G|^k inputs,
    centred over the batch (Chughtai p23-1), projected onto ρ(g_i) for each operand and onto
    ρ(g_1⋯g_k) for every irrep (:func:`irrep_grid_basis`); see
    :meth:`IrrepSpectrum.hidden_fractions`.

    Args:
        model: HookedMLP or HookedOneLayerTransformer with the task's |G| output classes.
        task: a :class:`~mi_margin.GroupComposition` with k ≥ 2.
        where: the components to compute (default: all that apply to the model).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> spec = irrep_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sorted(spec.weights), spec.terms
        (['embed[0]', 'embed[1]', 'unembed'], ('a', 'b', 'ab'))
        >>> round(sum(spec.fve("embed[0]").values()), 9)
        1.0
    """
    G, k = check_group(task, "irrep_spectrum")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    kind = model_kind(model)
    chosen = _parse_where(where, kind)
    weights = {name: _fractions(W, G) for name, W in
               _weight_components(model, G.order, chosen).items()}
    hidden = variance = None
    if "neurons" in chosen:
        H = _post(model, task)
        H = H - H.mean(0, keepdim=True)
        hidden = torch.stack([_term_energy(G, k, H, _term_column(task, t))
                              for t in term_labels(k)], dim=-1).permute(1, 0, 2)
        variance = H.square().sum(0)
    irreps = G.irreps()
    return IrrepSpectrum(group=G.name, k=k, model_kind=kind,
                         irreps=tuple(r.name for r in irreps), dims=tuple(r.dim for r in irreps),
                         weights=weights, terms=term_labels(k), hidden=hidden,
                         hidden_variance=variance)


# -- logit similarity with characters -------------------------------------------------------------
@dataclass(frozen=True)
class IrrepLogitSimilarity(AnalysisResult):
    """Cosine similarity of the centred logits with χ_ρ(g_1⋯g_k c⁻¹), per irrep.

    Attributes:
        group, k: the group's name and the operand count.
        irreps, dims: irrep names (``G.irreps()`` order) and real dimensions.
        similarity: [K] (0 for the trivial irrep: its character is constant over c).

    The character cubes of distinct irreps are orthogonal over the triples, so Σ_ρ sim_ρ² ≤ 1 is
    the share of centred-logit variance they explain (Chughtai's "logit FVE").
    """

    _score = "similarity"
    _plot = "mi_margin.viz.irreps:plot_irrep_logit_similarity"

    group: str
    k: int
    irreps: tuple[str, ...]
    dims: tuple[int, ...]
    similarity: Float[Tensor, " K"] = field(repr=False)

    def key(self, threshold: float = KEY_THRESHOLD) -> list[str]:
        """Irreps with similarity > ``threshold`` (see :func:`key_irreps`), ``G.irreps()`` order."""
        _check_threshold(threshold)
        return [name for name, s in zip(self.irreps, self.similarity.tolist()) if s > threshold]

    def fve(self, irreps: Sequence[str] | None = None) -> float:
        """Σ sim_ρ² over ``irreps`` (default all): the centred-logit variance they explain."""
        chosen = self.irreps if irreps is None else tuple(irreps)
        unknown = set(chosen) - set(self.irreps)
        if unknown:
            raise MiMarginError(f"unknown irreps {sorted(unknown)}; have {list(self.irreps)}")
        return float(sum(s * s for name, s in zip(self.irreps, self.similarity.tolist())
                         if name in chosen))

    def _table(self) -> pd.DataFrame:
        sim = self.similarity.tolist()
        return pd.DataFrame({"irrep": list(self.irreps), "dim": list(self.dims),
                             "similarity": sim, "fve_share": [s * s for s in sim],
                             "key": [s > KEY_THRESHOLD for s in sim]})


def _check_threshold(threshold: float) -> None:
    if not 0 <= threshold < 1:
        raise MiMarginError(f"threshold must be in [0, 1) (a cosine similarity), "
                            f"got threshold={threshold!r}")


def character_similarity(logits: Float[Tensor, "N n"], task: Any) -> Float[Tensor, " K"]:
    """Cosine similarity of output-centred logits with χ_ρ(g_1⋯g_k c⁻¹) over all (x, c), per irrep.

    Logits over the grid are centred over the output c (Chughtai p23-1) and summed per product
    s = g_1⋯g_k into M[s, c]; then ⟨ℓ̃, χ_ρ(s(x) c⁻¹)⟩ = Σ_{s,c} M[s, c] χ_ρ(s c⁻¹), and
    ||χ_ρ-cube||² = |G|^k Σ_g χ_ρ(g)² since c ↦ s c⁻¹ is a bijection. No [N, n, K] tensor is built.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> G = task.group
        >>> chi = torch.tensor(G.irrep("standard").character)
        >>> table, inv = torch.tensor(G.table), torch.tensor(G.inverse)
        >>> logits = chi[table[task.labels][:, inv]]          # χ(ab c⁻¹) exactly
        >>> [round(float(s), 6) for s in character_similarity(logits, task)]
        [0.0, 0.0, 1.0]
    """
    G, k = check_group(task, "character_similarity")
    n = G.order
    if tuple(logits.shape) != (len(task.labels), n):
        raise MiMarginError(f"logits must be [{len(task.labels)}, {n}] (grid × classes), "
                            f"got {tuple(logits.shape)}")
    L = logits.detach().double()
    L = L - L.mean(dim=1, keepdim=True)
    M = L.new_zeros((n, n)).index_add_(0, task.labels, L)
    quotient = torch.tensor(G.table)[:, torch.tensor(G.inverse)]   # [s, c] ↦ s c⁻¹
    chars = torch.tensor(np.stack([rho.character for rho in G.irreps()]))  # K n
    dot = (chars[:, quotient] * M).sum((1, 2))
    norm = (float(n) ** k * chars.square().sum(1)).sqrt() * L.norm()
    return dot / norm if float(L.norm()) > 0 else torch.zeros_like(dot)


def irrep_logit_similarity(model: Any, task: Any) -> IrrepLogitSimilarity:
    """Similarity of the model's logits with the character χ_ρ(abc⁻¹) of every irrep.

    Chughtai et al.'s logit similarity (App. E, ``metrics.py``): logits over all |G|^k inputs,
    centred over the output axis, compared by cosine with the "trace cube"
    tr(ρ(a)ρ(b)ρ(c⁻¹)) = χ_ρ(abc⁻¹) over all |G|^{k+1} triples (:func:`character_similarity`).
    A max-margin network (Morwani Thm 9) has logits ∝ Σ_ρ d_ρ χ_ρ(abc⁻¹), so
    sim_ρ ∝ d_ρ sqrt(e_ρ) for every non-trivial ρ.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("D5")
        >>> sim = irrep_logit_similarity(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sim.irreps, sim.fve() <= 1
        (('trivial', 'sign', 'freq_1', 'freq_2'), True)
    """
    G, k = check_group(task, "irrep_logit_similarity")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    logits, _ = run_grid(model, task)
    irreps = G.irreps()
    return IrrepLogitSimilarity(group=G.name, k=k, irreps=tuple(r.name for r in irreps),
                                dims=tuple(r.dim for r in irreps),
                                similarity=character_similarity(logits, task))


def key_irreps(model: Any, task: Any, threshold: float = KEY_THRESHOLD) -> list[str]:
    """The irreps the model uses: logit similarity with χ_ρ(abc⁻¹) above ``threshold``.

    Default 0.005, Chughtai et al.'s rule (p4-10): on their S5 models the non-key irreps have
    similarity ≈ 0 and the key ones 0.5–0.8. The rule is absolute, so on small groups (few
    triples) an untrained model's chance similarities, ~|G|^{−(k+1)/2}, can exceed it; raise the
    threshold there. Names as in ``G.irreps()``, in that order.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S4")
        >>> keys = key_irreps(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task, 0.5)
        >>> keys
        []
    """
    check_fits(model, task, finite=True)
    _check_threshold(threshold)
    return irrep_logit_similarity(model, task).key(threshold)


# -- neurons -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NeuronIrreps(AnalysisResult):
    """Each neuron's dominant irrep and purity (see :func:`neuron_irrep_clusters`).

    Attributes:
        group, model_kind, source, min_purity: what was measured and the dominance threshold.
        irreps: irrep names (``G.irreps()`` order).
        energy: [d_mlp, K] each neuron's energy per irrep (trivial = 0: the mean is removed).
        purity: [d_mlp] max_ρ energy_ρ / Σ_ρ energy_ρ (NaN for neurons with no energy).
        irrep: per neuron the dominant irrep's name, or None where purity < ``min_purity``, the
            neuron has no energy, or (``dead``) it is constant over the grid.
        dead: [d_mlp] bool, activation constant over the whole input grid ("always off").
    """

    _score = "purity"
    _plot = "mi_margin.viz.irreps:plot_neuron_irreps"

    group: str
    model_kind: str
    source: str
    min_purity: float
    irreps: tuple[str, ...]
    energy: Float[Tensor, "d_mlp K"] = field(repr=False)
    purity: Float[Tensor, " d_mlp"] = field(repr=False)
    irrep: tuple[str | None, ...] = field(repr=False)
    dead: Tensor = field(repr=False)

    @property
    def clusters(self) -> dict[str | None, list[int]]:
        """Irrep → indices of the neurons it dominates (``G.irreps()`` order; None last)."""
        order = [*self.irreps, None]
        out: dict[str | None, list[int]] = {}
        for name in order:
            idx = [i for i, r in enumerate(self.irrep) if r == name]
            if idx:
                out[name] = idx
        return out

    @property
    def counts(self) -> dict[str | None, int]:
        """Irrep → number of neurons it dominates (None: unassigned or dead)."""
        return {name: len(idx) for name, idx in self.clusters.items()}

    def _table(self) -> pd.DataFrame:
        total = self.energy.sum(1, keepdim=True)
        share = torch.where(total > 0, self.energy / total.clamp_min(1e-300), 0.0)
        table = pd.DataFrame({"neuron": range(len(self.irrep)), "irrep": list(self.irrep),
                              "purity": self.purity.tolist(), "dead": self.dead.tolist()})
        for j, name in enumerate(self.irreps):
            table[f"share[{name}]"] = share[:, j].tolist()
        return table


def _neuron_maps(model: Any, n: int) -> list[Tensor]:
    """The vectors over G that define a neuron: u, v, ... (inputs) and w (output), each [n, d_mlp].

    MLP: every W_in_eff[i] and W_outᵀ (docs/mathematics.md §6.3). Transformer: the direct path
    W_E[:n]·W_in (shared by the positions) and W_Lᵀ = (W_out·W_U)ᵀ.
    """
    maps = embed_maps(model, n)
    inputs = [maps["neuron_in"]] if "neuron_in" in maps else list(maps.values())
    return [m.detach().double() for m in [*inputs, neuron_logit_map(model).T]]


def _weight_energy(model: Any, G: FiniteGroup) -> Tensor:
    """docs/mathematics.md §6.3: Σ over the neuron's vectors of ||Q_ρᵀ(x − mean)||², [d_mlp, K]."""
    bases = [_basis(G, rho) for rho in G.irreps()]
    centred = [X - X.mean(0, keepdim=True) for X in _neuron_maps(model, G.order)]
    return torch.stack([torch.stack([(Q.T @ X).square().sum(0) for Q in bases], dim=1)
                        for X in centred]).sum(0)


def neuron_irrep_clusters(model: Any, task: Any, min_purity: float = 0.5,
                          source: str = "weights") -> NeuronIrreps:
    """Every neuron's dominant irrep, its purity, clusters and counts per irrep.

    ``source="weights"`` (default; docs/mathematics.md §6.3, Morwani et al. Thm 9): a neuron is the vectors
    over G it reads and writes — for MLPs u = W_in_eff[0][:, i], v = W_in_eff[1][:, i], ... and
    w = W_out[i]; for transformers W_E[:|G|]·W_in[:, i] and W_L[i] — each centred over G;
    energy_ρ = Σ ||Q_ρᵀ x||² over those vectors. ``source="activations"``: energy_ρ = the neuron's
    centred activation's energy in ρ(g_1), …, ρ(g_k) and ρ(g_1⋯g_k) over the grid (Chughtai's
    clustering; note a ReLU neuron's activation also has energy in products of irreps, which
    count towards no irrep). purity = max_ρ energy_ρ / Σ_ρ energy_ρ; the dominant irrep is
    assigned when purity ≥ ``min_purity`` (default 0.5: a majority, so it is unique; a
    certificate neuron has purity 1). Neurons whose activation is constant over the grid are
    marked ``dead`` and unassigned (Chughtai: "always off").

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> res = neuron_irrep_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> tuple(res.energy.shape), len(res.irrep)
        ((8, 3), 8)
    """
    G, k = check_group(task, "neuron_irrep_clusters")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    if not 0 < min_purity <= 1:
        raise MiMarginError(f"min_purity must be in (0, 1], got min_purity={min_purity!r}")
    if source not in SOURCES:
        raise MiMarginError(f"source must be one of {SOURCES}, got source={source!r}")
    H = _post(model, task)
    H = H - H.mean(0, keepdim=True)
    dead = H.abs().amax(0) <= 1e-12 * max(float(H.abs().max()), 1e-300)
    if source == "weights":
        energy = _weight_energy(model, G)
    else:
        energy = torch.stack([_term_energy(G, k, H, _term_column(task, t))
                              for t in term_labels(k)]).sum(0).T
    total = energy.sum(1)
    best, index = energy.max(1)
    purity = torch.where(total > 0, best / total.clamp_min(1e-300), torch.nan)
    names = [r.name for r in G.irreps()]
    assigned = tuple(names[int(j)] if (bool(p >= min_purity) and not bool(d)) else None
                     for j, p, d in zip(index, purity, dead))
    return NeuronIrreps(group=G.name, model_kind=model_kind(model), source=source,
                        min_purity=min_purity, irreps=tuple(names), energy=energy,
                        purity=purity, irrep=assigned, dead=dead)


def neuron_irreps(model: Any, task: Any, min_purity: float = 0.5) -> list[str | None]:
    """Dominant irrep name of every neuron (None where none dominates or the neuron is dead).

    Shortcut for ``neuron_irrep_clusters(model, task, min_purity).irrep``.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> len(neuron_irreps(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task))
        8
    """
    check_fits(model, task, finite=True)
    return list(neuron_irrep_clusters(model, task, min_purity).irrep)


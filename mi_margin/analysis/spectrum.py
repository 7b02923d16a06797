"""Which frequencies or irreps a model uses: spectra, logit similarity and key components.

One implementation for every task, through the task's harmonic basis
(:mod:`mi_margin.analysis.basis`): Nanda et al.'s (2023, §4; docs/mathematics.md §4) Fourier
spectra and key frequencies of modular addition are the irrep analysis of Z_p^k, Chughtai et al.'s
(2023; docs/mathematics.md §3) irrep spectra and key irreps are that of G^k, and sparse parity gets
the Walsh spectrum of Z_2^n. The field's names are views that also check the task:
:func:`fourier_spectrum` / :func:`irrep_spectrum`, :func:`key_frequencies` / :func:`key_irreps`,
:func:`irrep_logit_similarity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis.basis import PLURAL, basis_for, require_labels
from mi_margin.analysis.core import (
    PATTERN,
    POST,
    Analyzable,
    GridCache,
    Subject,
    cached,
)
from mi_margin.analysis.key_rules import (
    MIN_SHARE,
    KeySet,
    output_harmonics,
    rule_for,
    share_rule,
    similarity_rule,
    warn_unless_generalized,
)
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task

WEIGHT_PARTS = ("embed", "neuron_in", "unembed", "W_L")
GRID_PARTS = ("neurons", "attention", "logits")
KEY_METHODS = ("logits", "similarity", "embed", "W_L")


def gini(values: Float[Tensor, " n"]) -> float:
    """Gini coefficient Σ_i Σ_j |x_i − x_j| / (2 n Σ_i x_i) of non-negative values.

    0 when all values are equal, (n−1)/n when one value holds everything (Nanda et al. §5.1 use it
    on Fourier-component norms; docs/mathematics.md §4.3).

    Example:
        >>> gini(torch.tensor([1.0, 1.0, 1.0])), gini(torch.tensor([0.0, 0.0, 4.0]))
        (0.0, 0.6666666666666666)
    """
    x = values.detach().double().flatten()
    if len(x) == 0 or bool((x < 0).any()) or float(x.sum()) == 0.0:
        raise MiMarginError(f"gini needs non-negative values with a positive sum, got {x.tolist()}")
    return float((x[:, None] - x[None, :]).abs().sum() / (2 * len(x) * x.sum()))


# -- spectrum --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spectrum(AnalysisResult):
    """Per-label spectra of a model's weights and grid functions (see :func:`spectrum`).

    Attributes:
        label_kind: "frequency", "irrep" or "subset"; labels: all labels, trivial first (the
            constant, frequency 0; the trivial irrep; the empty subset); dims: the dimension of
            each label's block of functions on one operand (2 per frequency but the constant;
            d²/e for an irrep of dimension d with a commutant of dimension e; 1 per subset),
            not the irrep's dimension d (``G.irrep(name).dim``).
        n, k, model_kind: elements per operand, operands, "transformer" or "mlp".
        weights: component → [L] fraction of its squared norm per label, along the element axis
            (token axis of embeddings, output axis of the unembedding; no centering, sums to 1).
        gini: component → Gini coefficient of its per-basis-vector norms (Nanda et al. §5.1).
        grid: component → [units, L−1] share of each unit's centred variance over the grid in
            each non-trivial single-label block (Nanda's ``extract_freq_2d`` for k = 2).
        grid_variance: component → [units] each unit's variance over the grid.
        unit_labels: component → names of its units.
        neuron_tuples: frequencies only: share of the centred neuron variance per frequency tuple
            (f_1, ..., f_k), [p//2+1]*k.
        terms: the grid terms (``("a", "b", "ab")`` for k = 2); hidden: [d_mlp, L, T] squared norm
            of each centred neuron activation in every label's ρ(term) subspace (Chughtai's
            Table 2); hidden_variance: [d_mlp] each neuron's centred sum of squares.
    """

    _score = "fraction"
    _group = "component"

    label_kind: str
    labels: tuple[Any, ...]
    dims: tuple[int, ...]
    n: int
    k: int
    model_kind: str
    weights: dict[str, Tensor] = field(default_factory=dict, repr=False)
    gini: dict[str, float] = field(default_factory=dict)
    grid: dict[str, Tensor] = field(default_factory=dict, repr=False)
    grid_variance: dict[str, Tensor] = field(default_factory=dict, repr=False)
    unit_labels: dict[str, list[str]] = field(default_factory=dict, repr=False)
    neuron_tuples: Tensor | None = field(default=None, repr=False)
    terms: tuple[str, ...] = ()
    hidden: Tensor | None = field(default=None, repr=False)
    hidden_variance: Tensor | None = field(default=None, repr=False)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def p(self) -> int:
        """The modulus (frequency spectra)."""
        return self.n

    @property
    def irreps(self) -> tuple[Any, ...]:
        """The labels (irrep spectra: the names of ``G.irreps()``)."""
        return self.labels

    def shares(self, component: str) -> Float[Tensor, " L1"]:
        """Share per non-trivial label of a component (grid parts: variance-weighted mean)."""
        if component in self.weights:
            return self.weights[component][1:]
        if component in self.grid:
            w = self.grid_variance[component]
            total = w.sum()
            return (w @ self.grid[component]) / total if total > 0 else \
                w.new_zeros(len(self.labels) - 1)
        raise MiMarginError(f"unknown component {component!r}; have "
                            f"{sorted([*self.weights, *self.grid])}")

    def hidden_fractions(self, neurons: Sequence[int] | None = None) -> Float[Tensor, "L T"]:
        """Share of the neurons' total centred variance in each (label, term) subspace.

        ``neurons`` selects a cluster (e.g. ``neuron_clusters(...).clusters["sign"]``, as in
        Chughtai et al.'s Table 2); default all. The residual is ``1 − sum``.
        """
        if self.hidden is None or self.hidden_variance is None:
            raise MiMarginError("neurons were not analysed; call spectrum with "
                                "where including 'neurons'")
        idx = torch.arange(self.hidden.shape[0]) if neurons is None else \
            torch.as_tensor(list(neurons), dtype=torch.long)
        total = self.hidden_variance[idx].sum()
        energy = self.hidden[idx].sum(0)
        return energy / total if float(total) > 0 else energy

    def fve(self, component: str) -> dict[Any, float]:
        """Label → fraction for a weight component, or for ``"neurons"`` summed over the terms."""
        if component in self.weights:
            values = self.weights[component]
        elif component == "neurons" and self.hidden is not None:
            values = self.hidden_fractions().sum(1)
        else:
            raise MiMarginError(f"unknown component {component!r}; have "
                                f"{[*self.weights, *(['neurons'] if self.hidden is not None else [])]}")
        return dict(zip(self.labels, values.tolist()))

    def _table(self) -> pd.DataFrame:
        rows = [{"component": comp, "kind": "weight" if comp in self.weights else "grid",
                 self.label_kind: lab, "term": "", "fraction": float(x),
                 "source": self.sources.get(comp, "")}
                for comp in [*self.weights, *self.grid]
                for lab, x in zip(self.labels[1:], self.shares(comp).tolist())]
        if self.hidden is not None:
            fr = self.hidden_fractions()
            source = self.sources.get("neurons", "")
            rows += [{"component": "neurons", "kind": "term", self.label_kind: lab, "term": term,
                      "fraction": float(fr[i, t]), "source": source}
                     for i, lab in enumerate(self.labels) for t, term in enumerate(self.terms)]
            rows.append({"component": "neurons", "kind": "term", self.label_kind: "residual",
                         "term": "", "fraction": float(1 - fr.sum()) if fr.sum() > 0 else 0.0,
                         "source": source})
        return pd.DataFrame(rows, columns=["component", "kind", self.label_kind, "term",
                                           "fraction", "source"])


def _parse_where(where: Sequence[str] | str | None, s: Subject) -> set[str]:
    maps = s.task.algebra.inputs == "operands"           # weights are maps over elements
    valid = set(GRID_PARTS) | (set(WEIGHT_PARTS) if maps else set())
    if s.kind == "mlp":
        valid -= {"neuron_in", "W_L", "attention"}
    if where is None:
        return valid
    chosen = {where} if isinstance(where, str) else set(where)
    if not chosen or chosen - valid:
        raise MiMarginError(f"where must name some of {sorted(valid)} for this "
                            f"{s.kind} and task, got {where!r}")
    return chosen


def _weight_components(s: Subject, where: set[str]) -> dict[str, Tensor]:
    """Component name → matrix with group elements on axis 0."""
    comps = {name: W for name, W in s.input_maps().items() if name.split("[")[0] in where}
    if "unembed" in where:
        comps["unembed"] = s.unembed().T
    if "W_L" in where:
        comps["W_L"] = s.neuron_logit_map().T
    return comps


def component_sources(s: Subject) -> dict[str, str]:
    """Component name → the weights or hook it is read from, for this model and task.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> from mi_margin.analysis.core import subject
        >>> s = subject(mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task)), task)
        >>> component_sources(s)["W_L"], component_sources(s)["neurons"]
        ('W_out @ W_U', 'blocks.0.mlp.hook_post')
    """
    n = s.task.d_vocab
    grids = {"neurons": POST, "attention": PATTERN, "logits": "logits"}
    if s.kind == "transformer":
        return {"embed": f"W_E[:{n}]", "neuron_in": f"W_E[:{n}] @ W_in", "unembed": "W_U",
                "W_L": "W_out @ W_U", **grids}
    inputs = {f"embed[{i}]": f"W_in_eff[{i}]" for i in range(s.model.W_in_eff.shape[0])}
    return {**inputs, "unembed": "W_out", **grids}


def _grid_units(c: GridCache, where: set[str]) -> dict[str, tuple[Tensor, list[str]]]:
    """Grid functions to analyse: component → ([N, units], unit labels)."""
    c.need([n for n, part in ((POST, "neurons"), (PATTERN, "attention")) if part in where])
    units: dict[str, tuple[Tensor, list[str]]] = {}
    if "neurons" in where:
        post = c.grid_function("neurons")
        units["neurons"] = (post, [f"n{i}" for i in range(post.shape[1])])
    if "attention" in where:
        heads = c[PATTERN].shape[1]
        labels = [f"head {h} → a{i + 1}" for h in range(heads) for i in range(c.task.k)]
        units["attention"] = (c.grid_function("attention"), labels)
    if "logits" in where:
        logits = c.grid_function("logits")
        units["logits"] = (logits, [f"c={j}" for j in range(logits.shape[1])])
    return units


def spectrum(model: Analyzable, task: Task, where: Sequence[str] | str | None = None) -> Spectrum:
    """Which labels (frequencies, irreps, subsets) each part of a model carries.

    Weights (fraction of the squared norm per label along the element axis; Nanda et al. §4.1,
    Chughtai et al. Table 1 / App. E; not for sparse parity, whose weights have no element axis):
      - ``"embed"``: transformer W_E[:n]; MLP each operand's effective input map W_in_eff[i]
        (``"embed[i]"``; for ``input_style="embed"`` Chughtai's "total embedding" W_E[i]·W_in[i]).
      - ``"neuron_in"`` (transformer): W_E[:n]·W_in, what the neurons read from a token apart from
        attention (which only rescales the token contributions; W_in_eff's analogue).
      - ``"unembed"``: W_U (transformer) or W_out (MLP) over the output axis.
      - ``"W_L"`` (transformer): W_out·W_U over the output axis.
    Grid functions (share of each unit's variance over the grid in each single-label block):
      - ``"neurons"``: MLP activations (last position), with the per-term energies ``hidden``
        (and for frequencies the per-tuple spectrum ``neuron_tuples``);
      - ``"attention"`` (transformer): attention from the last position to each operand;
      - ``"logits"``: each class's logit after removing the per-input mean (softmax ignores it).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> spec = spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sorted(spec.weights), spec.terms
        (['embed[0]', 'embed[1]', 'unembed'], ('a', 'b', 'ab'))
        >>> round(sum(spec.fve("embed[0]").values()), 9)
        1.0
    """
    c = cached(model, task)
    s, b = c.subject, c.basis
    chosen = _parse_where(where, s)
    weights, ginis = {}, {}
    for name, W in _weight_components(s, chosen).items():
        coef = b.coefficients(W).square()
        energy = coef.new_zeros((len(b.labels), coef.shape[1])).index_add_(0, b.index_labels, coef)
        total = energy.sum()
        weights[name] = energy.sum(1) / total if total > 0 else energy.sum(1)
        if total > 0:
            ginis[name] = gini(coef.sum(1).sqrt())
    grid, variance, units_of = {}, {}, {}
    tuples = hidden = hidden_variance = None
    for name, (values, unit_labels) in _grid_units(c, chosen).items():
        part = c.grid_energy(name)
        safe = torch.where(part.total > 0, part.total, torch.ones_like(part.total))
        grid[name] = torch.where(part.total[:, None] > 0, part.blocks / safe[:, None], 0.0)
        variance[name], units_of[name] = part.total / len(values), unit_labels
        if name == "neurons":
            if part.tuples is not None:
                total = part.tuples.sum()
                tuples = part.tuples / total if total > 0 else part.tuples
            hidden = torch.stack([b.term_energy(task, values, t) for t in b.terms()],
                                 -1).permute(1, 0, 2)
            hidden_variance = part.total
    return Spectrum(label_kind=b.label_kind, labels=b.labels, dims=b.dims, n=b.n, k=b.k,
                    model_kind=s.kind, weights=weights, gini=ginis, grid=grid,
                    grid_variance=variance, unit_labels=units_of, neuron_tuples=tuples,
                    terms=b.terms() if hidden is not None else (), hidden=hidden,
                    hidden_variance=hidden_variance,
                    sources={name: component_sources(s)[name] for name in [*weights, *grid]})


def fourier_spectrum(model: HookedModel, task: Task, where: Sequence[str] | str | None = None
                     ) -> Spectrum:
    """:func:`spectrum` of a modular-addition model, labelled by frequency (Nanda et al. §4.1).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> spec = fourier_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sorted(spec.weights), sorted(spec.grid)
        (['embed[0]', 'embed[1]', 'unembed'], ['logits', 'neurons'])
    """
    require_labels(task, "frequency", "fourier_spectrum")
    return spectrum(model, task, where)


def irrep_spectrum(model: HookedModel, task: Task, where: Sequence[str] | str | None = None) -> Spectrum:
    """:func:`spectrum` of a group-composition model, labelled by irrep (Chughtai et al. §5).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> irrep_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task).irreps
        ('trivial', '(1,1,1)', '(2,1)')
    """
    require_labels(task, "irrep", "irrep_spectrum")
    return spectrum(model, task, where)


# -- logit similarity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogitSimilarity(AnalysisResult):
    """Cosine similarity of the class-centred logits with each label's character cube.

    χ_ρ(g_1⋯g_k c⁻¹): cos(ω_f(Σa_i − c)) for a frequency (Nanda et al. §4.2), the character of an
    irrep (Chughtai et al. App. E), χ_S(x)·(±1 by class) for a parity subset. The cubes of distinct
    labels are orthogonal, so Σ sim² ≤ 1 is the share of centred-logit variance they explain.

    Attributes:
        label_kind, labels: the non-trivial labels (the trivial character is constant over c, so
            its similarity with centred logits is always 0); dims: their blocks' dimensions
            (as :class:`Spectrum`'s: d²/e for an irrep, not d).
        similarity: [L−1] one value per label.
        source: what was compared with the characters: the logits at the last position.
        key_threshold: the irrep basis's key rule threshold on the task (:func:`key_irreps`;
            None for the other bases, whose rule is on logit shares).
    """

    _score = "fve_share"

    label_kind: str
    labels: tuple[Any, ...]
    dims: tuple[int, ...]
    similarity: Float[Tensor, " L1"] = field(repr=False)
    source: str = "logits"
    key_threshold: float | None = None

    @property
    def irreps(self) -> tuple[Any, ...]:
        return self.labels

    def fve(self, labels: Sequence[Any] | None = None) -> float:
        """Σ sim² over ``labels`` (default all): the centred-logit variance they explain."""
        chosen = self.labels if labels is None else tuple(labels)
        unknown = set(chosen) - set(self.labels)
        if unknown:
            raise MiMarginError(f"unknown {PLURAL[self.label_kind]} {sorted(map(str, unknown))}; have "
                                f"{list(self.labels)}")
        return float(sum(s * s for lab, s in zip(self.labels, self.similarity.tolist())
                         if lab in chosen))

    def _table(self) -> pd.DataFrame:
        sim = self.similarity.tolist()
        return pd.DataFrame({self.label_kind: list(self.labels), "block_dim": list(self.dims),
                             "similarity": sim, "fve_share": [s * s for s in sim],
                             "source": self.source})


def logit_similarity(model: Analyzable, task: Task) -> LogitSimilarity:
    """Similarity of the model's logits with every non-trivial label's character cube.

    A max-margin network has logits ∝ Σ_ρ d_ρ χ_ρ(abc⁻¹) (Morwani et al. Thm 7, 9), so equal
    similarity 1/sqrt(p//2) at every frequency; Nanda's trained models concentrate on a few.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, k=3)
        >>> sim = logit_similarity(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sim.labels, sim.fve() <= 1
        ((1, 2, 3), True)
    """
    c = cached(model, task)
    sim = c.basis.logit_similarity(task, c.logits)
    rule = rule_for(task)
    return LogitSimilarity(label_kind=c.basis.label_kind, labels=c.basis.nontrivial,
                           dims=c.basis.dims[1:], similarity=sim[1:],
                           key_threshold=rule.threshold if rule.basis == "irrep" else None)


def irrep_logit_similarity(model: HookedModel, task: Task) -> LogitSimilarity:
    """:func:`logit_similarity` of a group-composition model with χ_ρ(abc⁻¹) (Chughtai et al.).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("D5")
        >>> irrep_logit_similarity(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task).irreps
        ('sign', 'freq_1', 'freq_2')
    """
    require_labels(task, "irrep", "irrep_logit_similarity")
    return logit_similarity(model, task)


def character_similarity(logits: Float[Tensor, "N n"], task: Task) -> Float[Tensor, " L"]:
    """Similarity of given grid logits [N, classes] with every label's character cube, [L]
    (trivial first; see :class:`LogitSimilarity`), for logits that come from anywhere.

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
    if tuple(logits.shape) != (len(task.labels), task.d_vocab_out):
        raise MiMarginError(f"logits must be [{len(task.labels)}, {task.d_vocab_out}] "
                            f"(grid × classes), got {tuple(logits.shape)}")
    return basis_for(task).logit_similarity(task, logits)


# -- key components --------------------------------------------------------------------------------
def _embedding(s: Subject) -> Tensor:
    """The token-indexed embedding: W_E[:n] (transformer) or all W_in_eff[i] side by side."""
    maps = s.input_maps()
    return maps["embed"] if "embed" in maps else torch.cat(list(maps.values()), 1)


def component_shares(model: Analyzable, task: Task, method: str = "logits") -> Float[Tensor, " L1"]:
    """Share of every non-trivial label in the model by ``method`` (see :func:`key_components`).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> component_shares(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task).shape
        torch.Size([3])
    """
    if method not in KEY_METHODS:
        raise MiMarginError(f"method must be one of {KEY_METHODS}, got method={method!r}")
    c = cached(model, task)
    s, b = c.subject, c.basis
    if method == "similarity":
        return b.logit_similarity(task, c.logits)[1:].square()
    if method == "logits":
        energy = c.grid_energy("logits")
        total = energy.total.sum()
        return energy.blocks.sum(0) / total if total > 0 else energy.blocks.sum(0)
    if task.algebra.inputs != "operands":
        raise MiMarginError(f"method={method!r} needs weights indexed by group elements; a task "
                            "read as vectors (sparse parity) has none (use 'logits' or "
                            "'similarity')")
    W = _embedding(s) if method == "embed" else s.neuron_logit_map().T
    pooled = b.weight_energy(W).sum(1)[1:]
    return pooled / pooled.sum() if float(pooled.sum()) > 0 else pooled


def _check_min_share(min_share: float, n_labels: int) -> None:
    if not 0 < min_share <= n_labels:
        raise MiMarginError(f"min_share must be in (0, {n_labels}] (a multiple of the uniform "
                            f"share 1/{n_labels}), got min_share={min_share!r}")


def _accuracy(c: GridCache) -> float:
    """Accuracy on the task's test split (all inputs when it has none), from the cached logits."""
    idx = c.task.test_idx if len(c.task.test_idx) else slice(None)
    return float((c.logits[idx].argmax(-1) == c.task.labels[idx]).double().mean())


def _shares(c: GridCache, method: str, min_share: float) -> tuple[list[Any], dict[Any, float]]:
    _check_min_share(min_share, len(c.basis.nontrivial))
    share = component_shares(c, c.task, method).tolist()
    values = dict(zip(c.basis.nontrivial, share))
    return [lab for lab, x in values.items() if x >= min_share / len(share)], values


def key_components(model: Analyzable, task: Task, method: str = "logits",
                   min_share: float = MIN_SHARE) -> KeySet:
    """The labels (frequencies, irreps, subsets) the model uses, in basis order, as a
    :class:`~mi_margin.analysis.key_rules.KeySet` (a list that records the rule, the model's
    accuracy and whether it has generalized; a :class:`~mi_margin.errors.NotGeneralizedWarning`
    when it has not).

    Rule (the frequency and subset bases' default, :data:`~mi_margin.analysis.key_rules.KEY_RULES`):
    label l is key when its share is at least ``min_share`` times the share it would have if
    all L non-trivial labels shared equally, i.e. share_l ≥ min_share / L. The default 0.5 accepts
    every label of a max-margin network (equal shares, Morwani et al. Thm 7) and rejects labels
    carrying less than half an equal share. Shares by ``method``:

    - ``"logits"`` (Nanda et al.'s logit spectrum, docs/mathematics.md §4.2): the share of the
      class-centred logits' variance over the grid in the single-label block of l. A random
      function on Z_p^k puts (3^k − 1)/(p^k − 1) of its variance in each block, so an untrained
      model has (almost) no key frequency.
    - ``"similarity"``: sim_l², the share of the centred logit variance on l's character cube
      (stricter: the cube lies in the block, so its key set is a subset of ``"logits"``).
    - ``"embed"``: the share of the embeddings' non-trivial squared norm (W_E, or all
      W_in_eff[i]) in l (Nanda's "W_E is sparse in the Fourier basis").
    - ``"W_L"``: the same for the neuron-to-logit map over the output axis.

    On Z_p^k the result's ``harmonics`` are the key frequencies that are output harmonics (no key
    share of the embedding; a sum or difference of two embedded key frequencies); the embedding
    rule itself has none.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> import warnings; warnings.simplefilter("ignore", mm.NotGeneralizedWarning)
        >>> keys = key_components(model, task, method="embed")
        >>> all(1 <= f <= 3 for f in keys), keys.generalized
        (True, False)
    """
    c = cached(model, task)
    labels, values = _shares(c, method, min_share)
    harmonics: list[Any] = []
    if c.basis.label_kind == "frequency" and method not in ("embed", "similarity"):
        embedded, _ = _shares(c, "embed", min_share)
        harmonics = output_harmonics(labels, embedded, task.algebra.domain.order)
    keys = KeySet(labels, share_rule(c.basis.label_kind, len(values), min_share), values,
                  _accuracy(c), harmonics)
    return warn_unless_generalized(keys, "key_components")


def key_frequencies(model: HookedModel, task: Task, method: str = "logits",
                    min_share: float = MIN_SHARE) -> KeySet:
    """:func:`key_components` of a model of a task in a cyclic group: its key frequencies, sorted,
    with the output harmonics among them in ``.harmonics`` (e.g. 42 = 2·21 in the zoo's Nanda
    model).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> import warnings; warnings.simplefilter("ignore", mm.NotGeneralizedWarning)
        >>> all(1 <= f <= 3 for f in key_frequencies(model, task, method="embed"))
        True
    """
    require_labels(task, "frequency", "key_frequencies")
    return key_components(model, task, method, min_share)


def key_irreps(model: Analyzable, task: Task, min_similarity: float | None = None) -> KeySet:
    """The irreps a group-composition model uses: logit similarity above ``min_similarity``.

    Default: the irrep basis's rule (:data:`~mi_margin.analysis.key_rules.KEY_RULES`),
    max(0.005, 4 |G|^{−(k+1)/2}): Chughtai et al.'s absolute 0.005 (p4-10; on their S5 models the
    non-key irreps have similarity ≈ 0 and the key ones 0.5–0.8), raised on small groups, where
    an untrained model's chance similarities ~|G|^{−(k+1)/2} exceed it. Give ``min_similarity=0.005``
    for Chughtai's rule as is. The result is a :class:`~mi_margin.analysis.key_rules.KeySet` that
    records the rule and whether the model has generalized (a
    :class:`~mi_margin.errors.NotGeneralizedWarning` when not).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S4")
        >>> import warnings; warnings.simplefilter("ignore", mm.NotGeneralizedWarning)
        >>> keys = key_irreps(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task, 0.5)
        >>> keys, keys.rule.threshold
        ([], 0.5)
    """
    require_labels(task, "irrep", "key_irreps")
    rule = rule_for(task) if min_similarity is None else similarity_rule(min_similarity)
    if not 0 <= rule.threshold < 1:
        raise MiMarginError(f"min_similarity must be in [0, 1) (a cosine similarity), "
                            f"got min_similarity={min_similarity!r}")
    c = cached(model, task)
    sim = logit_similarity(c, task)
    values = dict(zip(sim.labels, sim.similarity.tolist()))
    keys = KeySet([lab for lab, x in values.items() if x > rule.threshold], rule, values,
                  _accuracy(c))
    return warn_unless_generalized(keys, "key_irreps")


def fourier_gini(model: Analyzable, task: Task) -> dict[str, float]:
    """Gini of the per-basis-vector norms of the embedding and of W_L (Nanda et al. §5.1).

    ``"embed"``: over the token axis of W_E[:n] (transformer) or of all operands' W_in_eff side by
    side (MLP). ``"W_L"``: over the output axis of W_out·W_U (transformer) or W_out (MLP).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> sorted(fourier_gini(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task))
        ['W_L', 'embed']
    """
    s = cached(model, task).subject
    norms = {name: s.basis.coefficients(W).square().sum(1).sqrt()
             for name, W in (("embed", _embedding(s)), ("W_L", s.neuron_logit_map().T))}
    return {name: gini(v) for name, v in norms.items()}

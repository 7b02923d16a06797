"""Fourier analysis of modular-addition models: which frequencies a model uses, and how.

Vocabulary of Nanda et al. (2023, "Progress measures for grokking"; docs/mathematics.md §4) and Chughtai et
al. (2023, "A toy model of universality"; docs/mathematics.md §3.4), generalised to k operands (Li et al.
2024; docs/mathematics.md §2.2). Works for :class:`~mi_margin.HookedOneLayerTransformer` (last position) and
:class:`~mi_margin.HookedMLP`. All maths runs in float64 on the real Fourier basis of
:mod:`mi_margin.fourier.cyclic`; grid functions are transformed with the FFT.

- :func:`fourier_spectrum`: per-frequency spectra of the weights and of grid activations.
- :func:`logit_similarity`: cosine similarity of the centred logits with cos(ω_f(Σa_i − c)).
- :func:`key_frequencies`: the frequencies a model uses (threshold rule documented there).
- :func:`neuron_clusters` / :func:`neuron_frequencies`: each neuron's dominant frequency, the
  share of its variance that frequency explains, clusters, and for MLPs the phases of u, v, ..., w
  with the phase-relation error |wrap(θ_1+…+θ_k − θ_w)| (Morwani et al. Thm 7; Li et al. Thm 4.1).
- :func:`fourier_gini`: Gini coefficient of the Fourier-component norms of W_E and W_L.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from mi_margin.analysis._grid import (
    PATTERN,
    POST,
    check_modular,
    check_outputs,
    embed_maps,
    model_kind,
    neuron_logit_map,
    run_grid,
    unembed_map,
)
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import (
    block_fractions,
    grid_power,
    n_frequencies,
    pool_frequencies,
    to_fourier,
)
from mi_margin.models.compat import check_fits

WEIGHT_PARTS = ("embed", "neuron_in", "unembed", "W_L")
GRID_PARTS = ("neurons", "attention", "logits")
KEY_METHODS = ("logits", "similarity", "embedding", "W_L")


# -- helpers -------------------------------------------------------------------------------------
def _frequency_power(weight: Tensor, p: int, dim: int) -> Tensor:
    """Squared Fourier norm per basis index along ``dim`` (token or output axis), [p]."""
    coef = to_fourier(weight.detach(), dims=(dim,)).movedim(dim, 0)
    return coef.square().flatten(1).sum(1)


def _share(power: Tensor, p: int) -> Tensor:
    """Fraction of the squared norm per frequency 0..p//2 (zeros if the weight is zero)."""
    pooled = pool_frequencies(power, dims=(0,))
    total = pooled.sum()
    return pooled / total if total > 0 else pooled


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


def _input_maps(model: Any, p: int) -> Tensor:
    """The token-indexed input maps as one [p, width] matrix (all operands side by side)."""
    maps = embed_maps(model, p)
    return maps["embed"] if "embed" in maps else torch.cat(list(maps.values()), dim=1)


def fourier_gini(model: Any, task: Any) -> dict[str, float]:
    """Gini of the Fourier-component norms of the embedding and of W_L (Nanda et al. §5.1).

    ``"embed"``: norms over the token axis of W_E[:p] (transformer) or of all operands' W_in_eff
    side by side (MLP), one norm per basis index (const, cos 1, sin 1, ...).
    ``"W_L"``: the same over the output axis of W_L = W_out·W_U (transformer) or W_out (MLP).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> g = fourier_gini(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sorted(g)
        ['W_L', 'embed']
    """
    p, _ = check_modular(task, "fourier_gini")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    embed = _frequency_power(_input_maps(model, p), p, 0).sqrt()
    out = _frequency_power(neuron_logit_map(model), p, 1).sqrt()
    return {"embed": gini(embed), "W_L": gini(out)}


# -- fourier_spectrum ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FourierSpectrum(AnalysisResult):
    """Per-frequency spectra of a modular-addition model (see :func:`fourier_spectrum`).

    Attributes:
        p, k, model_kind: the task's modulus and operand count, "transformer" or "mlp".
        weights: component → fraction of its squared Fourier norm per frequency 0..p//2
            (frequency 0 is the constant), along the token axis (embeddings) or output axis.
        gini: component → Gini coefficient of its per-basis-index Fourier norms.
        grid: component → [units, p//2] share of each unit's variance over the input grid in each
            single-frequency block (neurons, attention to each operand, logits per class).
        grid_variance: component → [units] variance of each unit over the grid.
        unit_labels: component → labels of its units.
        neuron_tuples: share of the total centred neuron variance per frequency tuple
            (f_1, ..., f_k), [p//2+1]*k, or None when neurons were not analysed.
    """

    _score = "fraction"
    _group = "component"
    _plot = "mi_margin.viz.fourier:plot_spectrum"

    p: int
    k: int
    model_kind: str
    weights: dict[str, Tensor] = field(default_factory=dict, repr=False)
    gini: dict[str, float] = field(default_factory=dict)
    grid: dict[str, Tensor] = field(default_factory=dict, repr=False)
    grid_variance: dict[str, Tensor] = field(default_factory=dict, repr=False)
    unit_labels: dict[str, list[str]] = field(default_factory=dict, repr=False)
    neuron_tuples: Tensor | None = field(default=None, repr=False)

    def frequency_shares(self, component: str) -> Float[Tensor, " F"]:
        """Share per frequency 1..p//2 of a component (grid parts: variance-weighted mean)."""
        if component in self.weights:
            return self.weights[component][1:]
        if component in self.grid:
            w = self.grid_variance[component]
            total = w.sum()
            return (w @ self.grid[component]) / total if total > 0 else w.new_zeros(self.p // 2)
        raise MiMarginError(f"unknown component {component!r}; have "
                            f"{sorted([*self.weights, *self.grid])}")

    def _table(self) -> pd.DataFrame:
        rows = []
        for comp in [*self.weights, *self.grid]:
            kind = "weight" if comp in self.weights else "grid"
            shares = self.frequency_shares(comp).tolist()
            rows += [{"component": comp, "kind": kind, "frequency": f + 1, "fraction": s}
                     for f, s in enumerate(shares)]
        return pd.DataFrame(rows, columns=["component", "kind", "frequency", "fraction"])


def _weight_spectra(model: Any, p: int, where: set[str]) -> tuple[dict, dict]:
    comps: dict[str, tuple[Tensor, int]] = {}
    if "embed" in where or "neuron_in" in where:
        for name, W in embed_maps(model, p).items():
            if name.split("[")[0] in where:
                comps[name] = (W, 0)
    if "unembed" in where:
        comps["unembed"] = (unembed_map(model), 1)
    if "W_L" in where and model_kind(model) == "transformer":
        comps["W_L"] = (neuron_logit_map(model), 1)
    power = {name: _frequency_power(W, p, dim) for name, (W, dim) in comps.items()}
    shares = {name: _share(pw, p) for name, pw in power.items()}
    ginis = {name: gini(pw.sqrt()) for name, pw in power.items() if float(pw.sum()) > 0}
    return shares, ginis


def _grid_units(model: Any, task: Any, where: set[str]) -> dict[str, tuple[Tensor, list[str]]]:
    """Grid functions to analyse: component → ([N, units], unit labels)."""
    names = [POST] if "neurons" in where else []
    attention = "attention" in where and model_kind(model) == "transformer"
    if attention:
        names.append(PATTERN)
    logits, acts = run_grid(model, task, names)
    units: dict[str, tuple[Tensor, list[str]]] = {}
    if "neurons" in where:
        post = acts[POST]
        post = post[:, -1] if post.ndim == 3 else post
        units["neurons"] = (post, [f"n{i}" for i in range(post.shape[1])])
    if attention:
        pattern = acts[PATTERN][:, :, -1, : task.k]             # N H k: last query → operands
        H = pattern.shape[1]
        labels = [f"head {h} → a{i + 1}" for h in range(H) for i in range(task.k)]
        units["attention"] = (pattern.flatten(1), labels)
    if "logits" in where:
        units["logits"] = (_centre_classes(logits), [f"c={c}" for c in range(logits.shape[1])])
    return units


def _parse_where(where: Sequence[str] | str | None, kind: str) -> set[str]:
    valid = {*WEIGHT_PARTS, *GRID_PARTS}
    default = valid - ({"neuron_in", "W_L", "attention"} if kind == "mlp" else set())
    if where is None:
        return default
    chosen = {where} if isinstance(where, str) else set(where)
    if not chosen or chosen - valid:
        raise MiMarginError(f"where must name some of {sorted(valid)}, got {where!r}")
    return chosen


def fourier_spectrum(model: Any, task: Any, where: Sequence[str] | str | None = None
                     ) -> FourierSpectrum:
    """Which frequencies each part of a modular-addition model carries.

    Weights (fraction of squared Fourier norm per frequency; Nanda et al. §4.1, Chughtai App. E):
      - ``"embed"``: transformer W_E rows 0..p−1 over the token axis; MLP each operand's effective
        input map W_in_eff[i] (``"embed[i]"``).
      - ``"neuron_in"`` (transformer): W_E[:p]·W_in, the direct path of a token's embedding into
        the neuron pre-activations. We chose this over the W_E·W_V·W_O path because it is what
        the neurons read from each token apart from the attention weights (which only rescale the
        token contributions, ≈ 1/2 each in Nanda's model), and it is W_in_eff's analogue.
      - ``"unembed"``: W_U (transformer) or W_out (MLP) over the output axis.
      - ``"W_L"`` (transformer): W_out·W_U over the output axis (for MLPs W_L = W_out = unembed).
    Grid functions (share of each unit's variance, centred over the grid, in each single-frequency
    block {const, cos f, sin f}^k minus the constant; Nanda's ``extract_freq_2d`` for k = 2):
      - ``"neurons"``: MLP activations (last position for transformers), and the pooled per-tuple
        spectrum ``neuron_tuples``;
      - ``"attention"`` (transformer): attention from the last position to each operand;
      - ``"logits"``: each output class's logit as a function of the inputs, after removing the
        per-input mean over classes (which softmax ignores).

    Args:
        model: a HookedOneLayerTransformer or HookedMLP whose outputs are the task's p classes.
        task: a :class:`~mi_margin.ModularAddition` with any k.
        where: the components to compute (default: all that apply to the model).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> spec = fourier_spectrum(model, task)
        >>> sorted(spec.weights), sorted(spec.grid)
        (['embed[0]', 'embed[1]', 'unembed'], ['logits', 'neurons'])
        >>> spec.top(1)["component"].tolist()
        ['embed[0]', 'embed[1]', 'logits', 'neurons', 'unembed']
    """
    p, k = check_modular(task, "fourier_spectrum")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    chosen = _parse_where(where, model_kind(model))
    weights, ginis = _weight_spectra(model, p, chosen)
    grid: dict[str, Tensor] = {}
    variance: dict[str, Tensor] = {}
    labels: dict[str, list[str]] = {}
    tuples = None
    for name, (values, unit_labels) in _grid_units(model, task, chosen).items():
        power = grid_power(values, p, k)
        grid[name], labels[name] = block_fractions(power, k), unit_labels
        variance[name] = power.flatten(0, k - 1).sum(0) / p**k
        if name == "neurons":
            total = power.sum()
            tuples = power.sum(-1) / total if total > 0 else power.sum(-1)
    return FourierSpectrum(p=p, k=k, model_kind=model_kind(model), weights=weights, gini=ginis,
                           grid=grid, grid_variance=variance, unit_labels=labels,
                           neuron_tuples=tuples)


# -- logit similarity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogitSimilarity(AnalysisResult):
    """Cosine similarity of the centred logits with cos(ω_f(a_1+…+a_k − c)), per frequency.

    Attributes:
        p, k: modulus and operand count.
        similarity: [p//2] similarity for f = 1..p//2 (Chughtai et al. App. E; Nanda §4.2).
        fve: Σ_f similarity_f², the share of centred-logit variance these directions explain
            (they are mutually orthogonal, so fve ≤ 1).
    """

    _score = "fve_share"
    _plot = "mi_margin.viz.fourier:plot_logit_similarity"

    p: int
    k: int
    similarity: Float[Tensor, " F"] = field(repr=False)

    @property
    def fve(self) -> float:
        return float(self.similarity.square().sum())

    def key(self, threshold: float = 0.5) -> list[int]:
        """Frequencies f with similarity_f² ≥ threshold / (p//2) (see :func:`key_frequencies`)."""
        _check_threshold(threshold, self.p)
        share = self.similarity.square()
        return [f + 1 for f in range(len(share)) if share[f] >= threshold / len(share)]

    def _table(self) -> pd.DataFrame:
        sim = self.similarity.tolist()
        return pd.DataFrame({"frequency": range(1, len(sim) + 1), "similarity": sim,
                             "fve_share": [s * s for s in sim]})


def _sum_waves(p: int, k: int) -> tuple[Tensor, Tensor]:
    """cos and sin of ω_f(a_1+…+a_k) over the grid, [N, p//2] each."""
    s = torch.zeros(1, dtype=torch.float64)
    for _ in range(k):
        s = (s[:, None] + torch.arange(p, dtype=torch.float64)).flatten()
    angle = 2 * math.pi * s[:, None] * torch.arange(1, p // 2 + 1, dtype=torch.float64) / p
    return angle.cos(), angle.sin()


def similarity_to_waves(logits: Float[Tensor, "N p"], p: int, k: int) -> Float[Tensor, " F"]:
    """Cosine similarity of output-centred logits with cos(ω_f(Σa_i − c)) for f = 1..p//2.

    Uses cos(ω(s−c)) = cos ωs cos ωc + sin ωs sin ωc, so no [N, p, F] tensor is built.

    Example:
        >>> s = torch.arange(25) // 5 + torch.arange(25) % 5                    # a + b, p = 5
        >>> c = torch.arange(5)
        >>> L = torch.cos(2 * math.pi * 2 * (s[:, None] - c) / 5)
        >>> sim = similarity_to_waves(L, 5, 2)
        >>> abs(float(sim[0])) < 1e-6, round(float(sim[1]), 6)
        (True, 1.0)
    """
    L = logits.double()
    L = L - L.mean(dim=1, keepdim=True)
    cs, ss = _sum_waves(p, k)
    cc, sc = _sum_waves(p, 1)
    dot = torch.einsum("nf,nc,cf->f", cs, L, cc) + torch.einsum("nf,nc,cf->f", ss, L, sc)
    sq = lambda x: x.square().sum(0)                                          # noqa: E731
    norm2 = sq(cs) * sq(cc) + sq(ss) * sq(sc) + 2 * (cs * ss).sum(0) * (cc * sc).sum(0)
    denom = L.norm() * norm2.sqrt()
    return dot / denom if float(L.norm()) > 0 else torch.zeros_like(dot)


def logit_similarity(model: Any, task: Any) -> LogitSimilarity:
    """Similarity of the model's logits with cos(ω_f(a_1+…+a_k − c)) for every frequency f.

    Logits over the whole grid are centred over the output axis (Chughtai et al. p23-1) and
    compared with the "clock" wave of each frequency; Nanda's logits are ≈ Σ_f α_f cos(ω_f(a+b−c))
    for the key frequencies, and a max-margin network (Morwani Thm 7) has equal similarity
    1/sqrt(p//2) at every frequency.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, k=3)
        >>> sim = logit_similarity(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> sim.similarity.shape, sim.fve <= 1
        (torch.Size([3]), True)
    """
    p, k = check_modular(task, "logit_similarity")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    logits, _ = run_grid(model, task)
    return LogitSimilarity(p=p, k=k, similarity=similarity_to_waves(logits, p, k))


# -- key frequencies -----------------------------------------------------------------------------
def _check_threshold(threshold: float, p: int) -> None:
    if not 0 < threshold <= n_frequencies(p):
        raise MiMarginError(f"threshold must be in (0, {p // 2}] (a multiple of the uniform share "
                            f"1/{p // 2}), got threshold={threshold!r}")


def _logit_block_shares(model: Any, task: Any, p: int, k: int) -> Tensor:
    """Share of the double-centred logits' variance (summed over classes) in each block f."""
    logits, _ = run_grid(model, task)
    power = grid_power(_centre_classes(logits), p, k)
    variance = power.flatten(0, k - 1).sum(0)
    total = variance.sum()
    return (variance @ block_fractions(power, k)) / total if total > 0 else \
        variance.new_zeros(p // 2)


def _centre_classes(logits: Tensor) -> Tensor:
    """Logits minus their mean over the classes (softmax ignores a per-input constant)."""
    return logits - logits.mean(dim=1, keepdim=True)


def frequency_shares(model: Any, task: Any, method: str = "logits") -> Float[Tensor, " F"]:
    """Share of frequency f = 1..p//2 in the model by ``method`` (see :func:`key_frequencies`).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> frequency_shares(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task).shape
        torch.Size([3])
    """
    p, k = check_modular(task, "frequency_shares")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    if method == "logits":
        return _logit_block_shares(model, task, p, k)
    if method == "similarity":
        return logit_similarity(model, task).similarity.square()
    if method not in KEY_METHODS:
        raise MiMarginError(f"method must be one of {KEY_METHODS}, got method={method!r}")
    weight, dim = (_input_maps(model, p), 0) if method == "embedding" else \
        (neuron_logit_map(model), 1)
    pooled = pool_frequencies(_frequency_power(weight, p, dim), dims=(0,))[1:]
    return pooled / pooled.sum() if float(pooled.sum()) > 0 else pooled


def key_frequencies(model: Any, task: Any, method: str = "logits", threshold: float = 0.5
                    ) -> list[int]:
    """The frequencies the model uses, sorted.

    Rule: frequency f is key when its share is at least ``threshold`` times the share it would
    have if all F = p//2 frequencies shared equally, i.e. share_f ≥ threshold / F. The default
    ``threshold=0.5`` accepts every frequency of a max-margin network (equal shares, Morwani et al.
    Thm 7) and rejects frequencies carrying less than half an equal share. Shares by ``method``:

    - ``"logits"`` (default; Nanda et al.'s logit spectrum, docs/mathematics.md §4.2): the share of the
      logits' variance over the input grid (centred over classes, then over inputs; summed over
      classes) that lies in the single-frequency block of f ({const, cos f, sin f}^k minus the
      constant). A random function puts (3^k − 1)/(p^k − 1) of its variance in each block in
      expectation, below the threshold when p > 7 (k = 2), so an untrained model has (almost)
      no key frequency.
    - ``"similarity"``: similarity_f², the share of the output-centred logit variance explained by
      the clock wave cos(ω_f(Σa_i − c)) (Chughtai et al.'s logit similarity). Stricter: the wave
      lies in block f, so similarity_f² ≤ the "logits" share and its key set is a subset.
    - ``"embedding"``: the share of the non-constant squared Fourier norm of the embeddings (W_E,
      or all W_in_eff[i]) at f (Nanda's "W_E is sparse in the Fourier basis").
    - ``"W_L"``: the same for the neuron-to-logit map over the output axis.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> all(1 <= f <= 3 for f in key_frequencies(model, task, method="embedding"))
        True
    """
    p, _ = check_modular(task, "key_frequencies")
    check_fits(model, task, finite=True)
    _check_threshold(threshold, p)
    share = frequency_shares(model, task, method)
    return [f + 1 for f in range(len(share)) if share[f] >= threshold / len(share)]


# -- neurons -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NeuronClusters(AnalysisResult):
    """Each neuron's dominant frequency (see :func:`neuron_clusters`).

    Attributes:
        p, k, model_kind, min_fraction: task, model kind and the dominance threshold used.
        frequency: int64 [d_mlp], the dominant frequency, 0 where no block explains at least
            ``min_fraction`` of the neuron's variance (or the neuron is constant on the grid).
        fraction: [d_mlp], the share of variance of the best single-frequency block.
        block_fraction: [d_mlp, p//2], the share of every block.
        variance: [d_mlp], each neuron's variance over the grid.
        phases: [d_mlp, k+1] for MLPs: θ_1..θ_k of the input maps u, v, ... and θ_w of the output
            map at the dominant frequency (x ↦ A cos(ω_f x + θ)); NaN where frequency is 0.
            None for transformers.
        phase_error: [d_mlp] |wrap(θ_1+…+θ_k − θ_w)| ∈ [0, π] (0 for the max-margin neurons of
            Morwani Thm 7 / Li Thm 4.1 and Gromov's construction); None for transformers.
    """

    _score = "fraction"
    _plot = "mi_margin.viz.fourier:plot_neuron_clusters"

    p: int
    k: int
    model_kind: str
    min_fraction: float
    frequency: Int[Tensor, " d_mlp"] = field(repr=False)
    fraction: Float[Tensor, " d_mlp"] = field(repr=False)
    block_fraction: Float[Tensor, "d_mlp F"] = field(repr=False)
    variance: Float[Tensor, " d_mlp"] = field(repr=False)
    phases: Float[Tensor, "d_mlp kp1"] | None = field(default=None, repr=False)
    phase_error: Float[Tensor, " d_mlp"] | None = field(default=None, repr=False)

    @property
    def clusters(self) -> dict[int, list[int]]:
        """Frequency → indices of the neurons it dominates (frequency 0: none dominates)."""
        out: dict[int, list[int]] = {}
        for i, f in enumerate(self.frequency.tolist()):
            out.setdefault(f, []).append(i)
        return dict(sorted(out.items()))

    @property
    def counts(self) -> dict[int, int]:
        """Frequency → number of neurons it dominates (frequency 0 included)."""
        return {f: len(idx) for f, idx in self.clusters.items()}

    def _table(self) -> pd.DataFrame:
        table = pd.DataFrame({"neuron": range(len(self.frequency)),
                              "frequency": self.frequency.tolist(),
                              "fraction": self.fraction.tolist(),
                              "variance": self.variance.tolist()})
        if self.phases is not None and self.phase_error is not None:
            names = [f"theta_{i + 1}" for i in range(self.k)] + ["theta_w"]
            for j, name in enumerate(names):
                table[name] = self.phases[:, j].tolist()
            table["phase_error"] = self.phase_error.tolist()
        return table


def wrap(angle: Tensor) -> Tensor:
    """Angles wrapped to (−π, π].

    Example:
        >>> w = wrap(torch.tensor([3 * math.pi / 2, -math.pi], dtype=torch.float64))
        >>> bool(torch.allclose(w, torch.tensor([-math.pi / 2, math.pi], dtype=torch.float64)))
        True
    """
    out = torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
    return torch.where(out == -math.pi, torch.full_like(out, math.pi), out)


def phases_at(weight: Float[Tensor, "p m"], frequency: Int[Tensor, " m"]) -> Float[Tensor, " m"]:
    """Phase θ of each column x ↦ A cos(ω_f x + θ) at its frequency f (NaN where f = 0).

    From the real Fourier coefficients: A cos(ωx + θ) = A cos θ cos ωx − A sin θ sin ωx, so
    θ = atan2(−c_sin, c_cos).

    Example:
        >>> x = torch.arange(11.0)
        >>> w = torch.stack([torch.cos(2 * math.pi * 3 * x / 11 + 0.7)], dim=1)
        >>> round(float(phases_at(w, torch.tensor([3]))[0]), 6)
        0.7
    """
    p = weight.shape[0]
    coef = to_fourier(weight, dims=(0,))
    coef = torch.cat([coef, coef.new_zeros((1, coef.shape[1]))])      # sin slot of Nyquist
    cols = torch.arange(coef.shape[1])
    f = frequency.clamp(min=1, max=p // 2)
    theta = torch.atan2(-coef[2 * f, cols], coef[2 * f - 1, cols])
    return torch.where(frequency > 0, theta, torch.full_like(theta, float("nan")))


def _mlp_phases(model: Any, frequency: Tensor) -> tuple[Tensor, Tensor]:
    maps = model.W_in_eff.detach()
    theta = [phases_at(maps[i], frequency) for i in range(maps.shape[0])]
    theta.append(phases_at(model.W_out.detach().T, frequency))
    phases = torch.stack(theta, dim=1)
    return phases, wrap(phases[:, :-1].sum(1) - phases[:, -1]).abs()


def neuron_clusters(model: Any, task: Any, min_fraction: float = 0.5) -> NeuronClusters:
    """Each neuron's dominant frequency, the variance it explains, clusters and (MLP) phases.

    A neuron's activation over the input grid (``blocks.0.mlp.hook_post``, last position for
    transformers) is centred and split into single-frequency blocks {const, cos f, sin f}^k minus
    the constant — Nanda et al.'s "degree-2 polynomial in one frequency" for k = 2, the degree-k
    analogue for k inputs (docs/mathematics.md §4.2). The block with the largest share dominates when its
    share is ≥ ``min_fraction``. Default 0.5: a majority of the variance, so at most one frequency
    can qualify; Nanda et al. report neurons at 0.85.

    For MLPs the phases of every operand's input map W_in_eff[i][:, j] and of the output map
    W_out[j] at the dominant frequency are measured (x ↦ A cos(ω_f x + θ)), with the relation
    error |wrap(θ_1+…+θ_k − θ_w)| that the max-margin neurons satisfy exactly (Morwani et al.
    Thm 7, Li et al. Thm 4.1, Gromov eq. 12).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> res = neuron_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> res.frequency.shape, res.phases.shape
        (torch.Size([8]), torch.Size([8, 3]))
    """
    p, k = check_modular(task, "neuron_clusters")
    check_fits(model, task, finite=True)
    if not 0 < min_fraction <= 1:
        raise MiMarginError(f"min_fraction must be in (0, 1], got min_fraction={min_fraction!r}")
    kind = model_kind(model)
    _, acts = run_grid(model, task, [POST])
    post = acts[POST][:, -1] if acts[POST].ndim == 3 else acts[POST]
    power = grid_power(post, p, k)
    blocks = block_fractions(power, k)
    fraction, best = blocks.max(dim=1)
    frequency = torch.where(fraction >= min_fraction, best + 1, torch.zeros_like(best))
    phases = error = None
    if kind == "mlp":
        phases, error = _mlp_phases(model, frequency)
    return NeuronClusters(p=p, k=k, model_kind=kind, min_fraction=min_fraction,
                          frequency=frequency.long(), fraction=fraction, block_fraction=blocks,
                          variance=power.flatten(0, k - 1).sum(0) / p**k, phases=phases,
                          phase_error=error)


def neuron_frequencies(model: Any, task: Any, min_fraction: float = 0.5) -> Int[Tensor, " d_mlp"]:
    """Dominant frequency of every neuron, int64 [d_mlp], 0 where none dominates.

    Shortcut for ``neuron_clusters(model, task, min_fraction).frequency``.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> neuron_frequencies(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task).dtype
        torch.int64
    """
    check_fits(model, task, finite=True)
    return neuron_clusters(model, task, min_fraction).frequency


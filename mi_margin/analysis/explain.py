"""Runnable explanations of one-hidden-layer MLPs and one-layer transformers, and how faithful
they are.

:func:`explain` turns what :func:`~mi_margin.analysis.neurons.neuron_clusters` found into a network
of the same shape (docs/mathematics.md §6.4): every live neuron keeps only the part of its input
maps (per operand) and of its output map that lies in its own label's block {trivial, ρ} of the
task's harmonic basis (frequency f for modular addition, irrep ρ for group composition); for
sparse parity a neuron labelled by the subset S keeps its input weights on the bits of S.
Unassigned and dead neurons are zeroed. The labels come from the activations or, for MLPs of group
tasks, from the weights alone (:func:`weight_clusters`). :func:`fidelity` measures the
explanation several ways at once (its own loss, the model with one component replaced, and
resampling tests in the causal-scrubbing sense of Chan et al. 2022, the first of which scrubs what
the explanation leaves out). :mod:`mi_margin.analysis.certify` turns it into a
sound lower bound on the model's accuracy.

One-layer transformers are explained through the same labels
(:mod:`mi_margin.analysis.explain_transformer`); they are scored by :func:`fidelity` but not
certified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mi_margin.analysis.core import POST, cached, subject
from mi_margin.analysis.explain_transformer import hybrids as transformer_hybrids
from mi_margin.analysis.explain_transformer import resampler as transformer_resampler
from mi_margin.analysis.explain_transformer import transformer_circuit
from mi_margin.analysis.neurons import NeuronClusters, neuron_clusters
from mi_margin.analysis.results import AnalysisResult
from mi_margin.checks import check_float, check_int
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation
from mi_margin.models.compat import is_bridge
from mi_margin.models.evaluation import cross_entropy64
from mi_margin.models.mlp import HookedMLP
from mi_margin.models.protocol import HookedModel
from mi_margin.models.transformer import HookedOneLayerTransformer, native

ALGORITHM = {
    "frequency": "each neuron reads cos/sin(ω_f a_i) of every operand at its frequency f and "
                 "writes cos/sin(ω_f c), so the logits add up cos(ω_f(a_1+…+a_k−c)) over the "
                 "key frequencies, largest at c = the sum (Nanda et al. 2023; Morwani et al. "
                 "2024, Thm 7)",
    "irrep": "each neuron reads one real irrep ρ of every operand and writes ρ of the answer, so "
             "the logits add up χ_ρ(a_1⋯a_k c⁻¹) over the key irreps, largest at c = the "
             "product (Chughtai et al. 2023; Morwani et al. 2024, Thm 9)",
    "subset": "each neuron reads the bits of one subset S and the logits follow the parity "
              "χ_S(x) = Π_{j∈S} x_j (Barak et al. 2022; Morwani et al. 2024, Thm 8)",
}


#: the algorithm when neurons keep several labels each (``explain(..., labels_per_neuron=m)``)
SET_ALGORITHM = {
    "frequency": "each neuron keeps a set of up to {m} frequencies (printed f+g): it reads "
                 "cos/sin(ω_f a_i) of every operand and writes cos/sin(ω_f c) for each f of its "
                 "set, so the logits add up cos(ω_f(a_1+…+a_k−c)) over the key frequencies, "
                 "largest at c = the sum (Nanda et al. 2023; Morwani et al. 2024, Thm 7)",
    "irrep": "each neuron keeps a set of up to {m} real irreps (printed ρ+σ): it reads each "
             "irrep of its set of every operand and writes it of the answer, so the logits add "
             "up χ_ρ(a_1⋯a_k c⁻¹) over the key irreps, largest at c = the product (Chughtai et "
             "al. 2023; Morwani et al. 2024, Thm 9)",
}


class LabelSet(tuple):
    """The labels one neuron keeps when an explanation keeps several per neuron
    (``explain(..., labels_per_neuron=m)``), in the basis's order; printed ``ρ+σ``."""

    def __str__(self) -> str:
        return "+".join(str(lab) for lab in self)


@dataclass(frozen=True)
class Explanation(AnalysisResult):
    """An idealized circuit of the same shape as ``original`` (see :func:`explain`).

    Attributes:
        model: the explanation, a model of the original's class with the original's config
            (for a ``TransformerBridge``, a bridge too).
        original, task: what was explained, as passed in. clusters: the labels it came from.
        label: per neuron the label kept (None: zeroed; a :class:`LabelSet` when several are
            kept per neuron). kept: per neuron the share of the
            squared norm of its input and output maps that the explanation keeps, [d_mlp].
        key: transformers only, the key labels the embedding and unembedding keep.
    """

    _score = "kept"

    model: Any = field(repr=False)
    original: Any = field(repr=False)
    task: Any = field(repr=False)
    clusters: NeuronClusters = field(repr=False)
    label: tuple[Any, ...] = field(repr=False)
    kept: Tensor = field(repr=False)
    key: tuple[Any, ...] = ()

    @property
    def counts(self) -> dict[Any, int]:
        """Label → number of neurons kept in it (None: zeroed neurons)."""
        out: dict[Any, int] = {}
        for lab in self.label:
            out[lab] = out.get(lab, 0) + 1
        return out

    @cached_property
    def written(self) -> Tensor:
        """Per neuron of the original, how much it writes to the logits over the task's inputs:
        ‖a_i‖·‖w_i‖, the Frobenius norm of its rank-one term a_i w_iᵀ in the logits (a_i its
        activations on every input, w_i its row of W_out, times W_U in a transformer, centred
        over the classes since softmax ignores a constant), [d_mlp] float64. Computed on first
        use (one pass over the grid, also for ``source="weights"``)."""
        c = cached(native(self.original), self.task)
        out = c.subject.neuron_logit_map().double()
        out = out - out.mean(1, keepdim=True)
        return c[POST].double().norm(dim=0) * out.norm(dim=1)

    def written_share(self, label: Any) -> float:
        """The share of :attr:`written`, summed over all neurons, that the neurons kept in
        ``label`` hold (None: the zeroed neurons). Norms of the neurons' terms, not of their sum:
        shares add up to 1 over the labels and the zeroed neurons."""
        total = float(self.written.sum())
        mine = [w for lab, w in zip(self.label, self.written.tolist()) if lab == label]
        return sum(mine) / total if total > 0 else math.nan

    def summary(self) -> str:
        """Which labels (most neurons first), how many neurons each with the share of what the
        neurons write to the logits (:attr:`written`), and the algorithm in one sentence."""
        kind = self.clusters.label_kind
        live = dict(sorted(((lab, n) for lab, n in self.counts.items() if lab is not None),
                           key=lambda item: -item[1]))
        parts = "; ".join(f"{kind} {lab}: {n}{' neurons' if i == 0 else ''}, "
                          f"{_percent(self.written_share(lab))}"
                          f"{' of what the neurons write to the logits' if i == 0 else ''}"
                          for i, (lab, n) in enumerate(live.items()))
        zeroed = self.counts.get(None, 0)
        path = (f" The embedding and unembedding keep the key {kind} labels {list(self.key)}; "
                f"attention is kept and carries them to the last position." if self.key else "")
        sets = any(isinstance(lab, LabelSet) for lab in live)
        return (f"{type(self.task).__name__}: {len(live)} {kind} label{' set' if sets else ''}(s) "
                f"carry {sum(live.values())} of {len(self.label)} neurons ({parts}); {zeroed} "
                f"zeroed (dead or unassigned, {_percent(self.written_share(None))}).{path} "
                f"Algorithm: {self._algorithm(live)}.")

    def _algorithm(self, live: dict[Any, int]) -> str:
        """The algorithm the kept labels implement, in one sentence."""
        kind = self.clusters.label_kind
        sizes = [len(lab) for lab in live if isinstance(lab, LabelSet)]
        return SET_ALGORITHM[kind].format(m=max(sizes)) if sizes else ALGORITHM[kind]

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame({"neuron": range(len(self.label)),
                             self.clusters.label_kind: list(self.label),
                             "purity": self.clusters.purity.tolist(),
                             "dead": self.clusters.dead.tolist(), "kept": self.kept.tolist(),
                             "written": self.written.tolist()})


def _percent(share: float) -> str:
    """A share as a percentage: one decimal from 10%, two significant digits below (a neuron that
    writes 0.02% must not read as 0%), "<0.001%" below that; ">99.9%" for what is not all."""
    if math.isnan(share):
        return "n/a"
    if 0 < share < 1e-5:
        return "<0.001%"
    if 0.999 <= share < 1:
        return ">99.9%"
    return f"{100 * share:.1f}%" if share >= 0.1 or share == 0 else f"{100 * share:.2g}%"


def operand_tables(model: HookedMLP) -> Tensor:
    """T [k, values, d_mlp] with pre(x) = Σ_j T[j, x_j] + b_in (float64).

    Index inputs: T = W_in_eff. Sparse parity's ±1 vector: operand j is bit j, T[j] = (−W_in[0, j],
    +W_in[0, j]) at the values (−1, +1).
    """
    if model.cfg.input_kind == "vector":
        W = model.W_in[0].detach().double()
        return torch.stack([-W, W], dim=1)
    return model.W_in_eff.detach().double()


def table_index(model: HookedMLP, inputs: Tensor) -> Tensor:
    """Each input's row into :func:`operand_tables`, [N, k] (±1 bits → 0/1)."""
    return (inputs > 0).long() if model.cfg.input_kind == "vector" else inputs.long()


def build(model: HookedMLP, tables: Tensor, W_out: Tensor) -> HookedMLP:
    """A HookedMLP with ``model``'s config and biases whose effective input maps are ``tables``
    (as :func:`operand_tables`) and whose output map is ``W_out``.

    Embed style: W_E' = [I, 0] and W_in' = [tables; 0] when d_embed ≥ d_vocab (an exact
    same-shape factorization); otherwise a :class:`MiMarginError`.
    """
    cfg, state = model.cfg, {k: v.detach().clone() for k, v in model.state_dict().items()}
    dtype = model.W_out.dtype
    if cfg.input_kind == "vector":
        W_in = ((tables[:, 1] - tables[:, 0]) / 2)[None]
    elif cfg.input_style == "embed":
        k, n, m = tables.shape
        if cfg.d_embed < n:
            raise MiMarginError(
                f"an embed-style explanation of the same shape needs d_embed >= d_vocab to hold "
                f"per-neuron input maps exactly (W_E' = [I, 0]); got d_embed={cfg.d_embed} < "
                f"d_vocab={n}")
        state["embed.W_E"] = torch.eye(n, cfg.d_embed, dtype=dtype).expand(k, n, cfg.d_embed)
        W_in = torch.cat([tables, tables.new_zeros((k, cfg.d_embed - n, m))], dim=1)
    else:
        W_in = tables
    state["blocks.0.mlp.W_in"] = W_in.to(dtype)
    state["blocks.0.mlp.W_out"] = W_out.to(dtype)
    out = HookedMLP(cfg)
    out.load_state_dict(state)
    return out


def _projector(basis: Any, label: Any) -> Tensor:
    """Orthogonal projector [n, n] onto the label's block {trivial, ρ} of one operand (of a
    :class:`LabelSet`, onto {trivial, ρ, σ, ...}: the blocks are orthogonal)."""
    labels = label if isinstance(label, LabelSet) else (label,)
    P = torch.cat([basis.operand_basis(basis.labels[0]),
                   *(basis.operand_basis(lab) for lab in labels)], dim=1)
    return P @ P.T


def _label_sets(clusters: NeuronClusters, m: int, min_purity: float
                ) -> tuple[LabelSet | None, ...]:
    """Per neuron its m largest labels (those with energy; in the basis's order, so that one set
    is one label however its members rank), when together they hold at least ``min_purity`` of
    its energy and it is not dead; None otherwise."""
    check_int("labels_per_neuron", m, low=1, high=len(clusters.labels) - 1)
    if clusters.label_kind == "subset":
        raise MiMarginError(
            f"labels_per_neuron={m} explains MLPs of modular addition and group composition; a "
            f"sparse-parity MLP keeps one subset per neuron (labels_per_neuron=1)")
    energy = clusters.energy[:, 1:]
    top, index = energy.topk(m, dim=1)
    share = top.sum(1) / clusters.total.clamp_min(1e-300)
    names = clusters.labels[1:]
    return tuple(LabelSet(names[int(j)] for j in sorted(int(j) for j, e in zip(idx, t) if e > 0))
                 if bool(q >= min_purity) and not bool(d) and bool(t[0] > 0) else None
                 for idx, t, q, d in zip(index, top, share, clusters.dead))


def _keep(keep: Any, basis: Any, task: Any) -> set[Any] | None:
    """The labels ``keep`` names, resolved as every analyzer resolves a user's labels
    (:meth:`~mi_margin.analysis.basis.HarmonicBasis.user_labels`); for sparse parity only the
    subsets of the task's order k, the only ones a neuron is labelled with."""
    if keep is None:
        return None
    chosen = basis.user_labels(keep, "keep")
    if basis.label_kind == "subset":
        k = task.k_support
        other = [lab for lab in chosen if len(lab) != k]
        if other:
            raise MiMarginError(f"keep={keep!r} names the subset {other[0]} of order "
                                f"{len(other[0])}: an explanation labels sparse-parity neurons "
                                f"by subsets of the task's order k={k} (its support "
                                f"{tuple(task.support)} is one), so it would zero every neuron")
    return set(chosen)


def _restrict(label: tuple[Any, ...], keep: set[Any] | None) -> tuple[Any, ...]:
    """``label`` with every label outside ``keep`` replaced by None (all kept when None)."""
    if keep is None:
        return label

    def kept(lab: Any) -> Any:
        if isinstance(lab, LabelSet):
            return LabelSet(x for x in lab if x in keep) or None
        return lab if lab in keep else None

    return tuple(kept(lab) for lab in label)


#: where :func:`explain` reads the neurons' labels from
SOURCES = ("activations", "weights")


def weight_clusters(model: HookedMLP, task: Any, min_purity: float = 0.5) -> NeuronClusters:
    """Every neuron's dominant label from its weights alone, without running the model: the
    energy of its input map of each operand (T[j, :, i]) and of its output map (W_out[i]), each
    centred, in every label's block of the task's basis (O((k+1) n² d_mlp) operations); dead
    means all those maps are constant. For group tasks read as operands (not sparse parity).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> weight_clusters(mm.theory.certificate(task), task).label[:3]
        (1, 1, 1)
    """
    if model.cfg.input_kind == "vector":
        raise MiMarginError("labels from the weights need maps over group elements; sparse "
                            "parity's ±1 inputs have none (use source='activations')")
    s = subject(model, task)
    b = s.basis
    maps = [*operand_tables(model).unbind(0), b.by_element(model.W_out.detach().double().T)]
    energy = torch.stack([b.weight_energy(X - X.mean(0)) for X in maps]).sum(0).T
    energy[:, 0] = 0.0
    total = energy.sum(1)
    best, index = energy[:, 1:].max(1)
    purity = torch.where(total > 0, best / total.clamp_min(1e-300), torch.nan)
    dead = total == 0
    label = tuple(b.nontrivial[int(j)] if bool(q >= min_purity) and not bool(d) else None
                  for j, q, d in zip(index, purity, dead))
    return NeuronClusters(label_kind=b.label_kind, labels=b.labels, model_kind=s.kind,
                          source="weights", min_purity=min_purity, energy=energy, total=total,
                          purity=purity, label=label, dead=dead,
                          read_from=("W_in_eff", "W_out"))


def explain(model: HookedModel, task: Any, min_purity: float = 0.5,
            keep: Iterable[Any] | None = None, source: str = "activations",
            labels_per_neuron: int = 1) -> Explanation:
    """The idealized circuit of a one-hidden-layer MLP or one-layer transformer: a runnable
    network of the same shape.

    MLP: each neuron with a dominant label ρ (``neuron_clusters`` from the activations, purity ≥
    ``min_purity``) keeps its input maps per operand and its output map projected onto {trivial, ρ};
    for sparse parity it keeps its input weights on the bits of its subset S (and its output
    map). Unassigned and dead neurons are zeroed; biases are kept (docs/mathematics.md §6.4).
    ``keep`` restricts the explanation to some labels (a narrower hypothesis, e.g. "only
    frequencies 14 and 35 matter"): neurons of every other label are zeroed too. Its labels are
    read as :func:`~mi_margin.restricted_loss` reads them (one label or a list; irrep aliases
    such as ``"standard"``; a parity subset in any order, of the task's order k; numpy and
    torch integers); an empty, unknown or repeated label is refused.
    ``source="weights"`` (MLPs of group tasks) labels the neurons from their weights alone
    (:func:`weight_clusters`), so that explaining and certifying (``bound="harmonic"``) never
    run the model on every input; for x² networks on groups it is also the more accurate source
    (an activation (A + B)² spreads A²'s energy over other irreps: on S5's certificate network
    the activation labels miss 336 of 1,190 neurons, docs/mathematics.md §6.4).
    ``labels_per_neuron=m`` (MLPs of modular addition and group composition) lets each neuron
    keep its m largest labels (a :class:`LabelSet`; assigned when together they hold
    ``min_purity`` of its energy): neurons that read two irreps, such as the A5 MLP's pairs
    (4,1)+(3,2) and (3,1,1)[a]+(3,1,1)[b], are then explained instead of cut to one
    (docs/mathematics.md §6.4). Transformer
    (Nanda et al. 2023): the embedding and unembedding projected onto the key labels, attention
    kept, each labelled neuron keeping its weights and unassigned and dead neurons writing
    nothing, so that what a neuron writes reaches the logits only in the key labels
    (:func:`~mi_margin.analysis.explain_transformer.transformer_circuit`).

    A transformer's TransformerLens ``TransformerBridge`` (``model.to_bridge()``, or a bridge
    that :meth:`~mi_margin.HookedOneLayerTransformer.from_bridge` converts) is explained through
    its native twin, converted once with the same weights, so the labels, counts, kept shares
    and weights are those of explaining the native model. The explanation stays in the bridge's
    world: ``original`` is the bridge passed in, ``model`` the explanation as a bridge
    (``HookedOneLayerTransformer.from_bridge(expl.model)`` is the native one), and
    :func:`fidelity` scores the native twins.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> expl = mm.explain(mm.theory.certificate(task), task)
        >>> expl.counts
        {1: 8, 2: 8, 3: 8}
        >>> run = mm.zoo.load("zhong_p59_clock_transformer")
        >>> bridged = mm.explain(run.model.to_bridge(), run.task)
        >>> bridged.counts == mm.explain(run.model, run.task).counts
        True
        >>> from transformer_lens import TransformerBridge
        >>> isinstance(bridged.model, TransformerBridge), isinstance(bridged.original, TransformerBridge)
        (True, True)
    """
    expl = _explain(native(model), task, min_purity, keep, source, labels_per_neuron)
    if not is_bridge(model):
        return expl
    return replace(expl, model=expl.model.to_bridge(), original=model)


def _explain(model: HookedMLP | HookedOneLayerTransformer, task: Any, min_purity: float,
             keep: Iterable[Any] | None, source: str, labels_per_neuron: int = 1) -> Explanation:
    """:func:`explain` of a native model."""
    if not isinstance(model, (HookedMLP, HookedOneLayerTransformer)):
        raise MiMarginError(f"explain handles HookedMLP and HookedOneLayerTransformer models "
                            f"and the transformer's TransformerBridge, got {type(model).__name__}")
    if source not in SOURCES:
        raise MiMarginError(f"source must be one of {SOURCES}, got source={source!r}")
    if source == "weights" and not isinstance(model, HookedMLP):
        raise MiMarginError("source='weights' labels MLP neurons; a transformer's neurons are "
                            "labelled from their activations (source='activations')")
    if labels_per_neuron != 1 and not isinstance(model, HookedMLP):
        raise MiMarginError(f"labels_per_neuron={labels_per_neuron!r} explains MLPs; a "
                            f"transformer keeps one label per neuron (labels_per_neuron=1)")
    min_purity = check_float("min_purity", min_purity, low=0, high=1, low_open=True)
    check_int("labels_per_neuron", labels_per_neuron, low=1)
    s = subject(model, task)
    kept_labels = _keep(keep, s.basis, task)
    clusters = (weight_clusters(model, task, min_purity)
                if source == "weights" and isinstance(model, HookedMLP) else
                neuron_clusters(model, task, min_purity=min_purity))
    label, parity = clusters.label, clusters.label_kind == "subset"
    if labels_per_neuron != 1:
        label = _label_sets(clusters, labels_per_neuron, min_purity)
    label = _restrict(label, kept_labels)
    if isinstance(model, HookedOneLayerTransformer):
        net, key, kept = transformer_circuit(model, task, label, kept_labels)
        return Explanation(model=net, original=model, task=task, clusters=clusters, label=label,
                           kept=kept, key=tuple(key))
    T, W = operand_tables(model), model.W_out.detach().double()
    T_hat, W_hat = torch.zeros_like(T), torch.zeros_like(W)
    for lab in dict.fromkeys(lab for lab in label if lab is not None):
        idx = [i for i, other in enumerate(label) if other == lab]
        if parity:
            bits = list(lab)
            for i in idx:
                T_hat[bits, :, i], W_hat[i] = T[bits, :, i], W[i]
        else:
            Pi = _projector(s.basis, lab)                    # one projector per label
            T_hat[:, :, idx] = torch.einsum("uv,jvi->jui", Pi, T[:, :, idx])
            W_hat[idx] = W[idx] @ Pi.T
    norm2 = T.square().sum((0, 1)) + W.square().sum(1)
    kept = (T_hat.square().sum((0, 1)) + W_hat.square().sum(1)) / norm2.clamp_min(1e-300)
    return Explanation(model=build(model, T_hat, W_hat), original=model, task=task,
                       clusters=clusters, label=label, kept=kept)


# -- fidelity -------------------------------------------------------------------------------------
#: the resampling rows of :func:`fidelity`, the first is the causal-scrubbing test
RESAMPLED = ("scrub: rest from any input", "scrub: key from any input", "resample same answer",
             "resample any (baseline)")


@dataclass(frozen=True)
class Fidelity(AnalysisResult):
    """Loss and accuracy on every input of the model, its explanation, the model with one
    component replaced, and the resampling tests (see :func:`fidelity`).

    Attributes:
        rows: ``(measure, loss, accuracy, recovered)`` per measured network (recovered: NaN
            except for the resampling rows).
        recovered: the causal-scrubbing test's loss recovered (row ``"scrub: rest from any
            input"``): 1 when what the explanation leaves out does not matter, clearly lower
            when it does.
    """

    _score = "accuracy"

    rows: tuple[tuple[str, float, float, float], ...]
    recovered: float

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=["measure", "loss", "accuracy", "recovered"])


def _scores(logits: Tensor, labels: Tensor) -> tuple[float, float]:
    loss = float(cross_entropy64(logits, labels))
    return loss, float((logits.argmax(1) == labels).double().mean())


def table_sum(tables: Tensor, idx: Tensor) -> Tensor:
    """Σ_j tables[j, idx[:, j]] per row, [N, d_mlp] (``idx`` from :func:`table_index`)."""
    out = torch.zeros((len(idx), tables.shape[2]), dtype=tables.dtype)
    for j in range(tables.shape[0]):
        out += tables[j, idx[:, j]]
    return out


def _donors(groups: Tensor, gen: torch.Generator) -> Tensor:
    """Per input a random input of its group (its own included)."""
    source = torch.empty(len(groups), dtype=torch.long)
    for g in groups.unique():
        rows = (groups == g).nonzero()[:, 0]
        source[rows] = rows[torch.randint(len(rows), (len(rows),), generator=gen)]
    return source


def _resampler(explanation: Explanation) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """Each resampling row's logits, float64, as a function of one draw's donors
    (docs/mathematics.md §6.4); what does not depend on the draw is computed once, here.

    With key parts K(x) = Σ_j T̂[j, x_j], the rest R(x) = Σ_j (T − T̂)[j, x_j], the model's hidden
    activations h(x) = σ(b + K(x) + R(x)), a random input x' and δW = W_out − Ŵ_out:
    scrub rest: σ(b + K(x) + R(x')) Ŵ + h(x') δW; scrub key: σ(b + K(x') + R(x)) Ŵ + h(x) δW;
    same answer: h(x'') W_out with x'' of the same answer; baseline: h(x') W_out.
    """
    model, task, expl = explanation.original, explanation.task, explanation.model
    act = activation(model.cfg.act_fn, model.cfg.degree)
    T, T_hat = operand_tables(model), operand_tables(expl)
    W, W_hat = model.W_out.detach().double(), expl.W_out.detach().double()
    b_in, b_out = model.b_in.detach().double(), model.b_out.detach().double()
    idx = table_index(model, task.inputs)
    key, rest = table_sum(T_hat, idx), table_sum(T - T_hat, idx)
    h = act(b_in + key + rest)
    logits = h @ W + b_out

    def draw(donors: dict[str, Tensor]) -> dict[str, Tensor]:
        other, same = donors["any"], donors["same"]
        return {RESAMPLED[0]: act(b_in + key + rest[other]) @ W_hat + h[other] @ (W - W_hat) + b_out,
                RESAMPLED[1]: act(b_in + key[other] + rest) @ W_hat + h @ (W - W_hat) + b_out,
                RESAMPLED[2]: logits[same], RESAMPLED[3]: logits[other], "model": logits}

    return draw


def check_explanation(value: Any, what: str) -> None:
    """Refuse anything but an :class:`Explanation` for ``what`` (``certify``, ``fidelity``), saying
    how to make one: a model, a run or a path is the natural mistake, as every analyzer takes
    ``(model, task)``."""
    if not isinstance(value, Explanation):
        raise MiMarginError(f"{what} takes an explanation, got {type(value).__name__}: pass "
                            f"mm.explain(model, task)")


def fidelity(explanation: Explanation, draws: int = 4, seed: int = 0) -> Fidelity:
    """How faithful an explanation is, measured several ways over every input (Chan et al. 2022).

    Rows: the model; the explanation; the model with its input maps (for embed style the
    embedding and W_in) replaced by the explanation's; the model with its output map replaced;
    then resampling tests, each averaged over ``draws`` random draws, with the loss recovered
    (L_base − L)/(L_base − L_model):

    - ``scrub: rest from any input``, the causal-scrubbing test of the explanation: every neuron's
      pre-activation takes the part the explanation keeps (T̂) from the input itself and the part
      it leaves out (T − T̂) from a random input, and the output map's left-out part (W_out − Ŵ)
      reads the hidden activations of that random input. The explanation claims what it leaves
      out does not matter: recovered ≈ 1 when that is true, clearly lower when a needed part of
      the mechanism was left out (a label not kept, an off-label component that carries signal);
    - ``scrub: key from any input``, the control: the kept part from a random input, the rest
      from the input itself (recovered ≈ 0 when the kept part is what computes the answer);
    - ``resample same answer``: all hidden activations from a random input with the same
      answer, a weak check (any model that is right everywhere recovers 1);
    - ``resample any (baseline)``: all hidden activations from a random input.

    The resampled networks are computed in float64 from the weight tables (as is the model's
    loss in the ratio, so that an exact explanation recovers exactly 1). For a one-layer
    transformer the component rows are the embedding, the MLP (W_in, W_out) and the unembedding
    replaced, and the scrub also takes the embedding's and the unembedding's left-out parts from
    the random input (:func:`~mi_margin.analysis.explain_transformer.resampler`). The
    explanation of a ``TransformerBridge`` is scored on the native twins of its original and
    its model (:func:`native`), so its rows are those of explaining the native model.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> fid = mm.analysis.fidelity(mm.explain(mm.theory.certificate(task), task))
        >>> fid.to_dataframe()["accuracy"].tolist()[:4]
        [1.0, 1.0, 1.0, 1.0]
        >>> round(fid.recovered, 6)
        1.0
    """
    check_explanation(explanation, "fidelity")
    draws = check_int("draws", draws, low=1)
    seed = check_int("seed", seed, low=0)
    model, expl = native(explanation.original), native(explanation.model)
    task = explanation.task
    labels, nan = task.labels, math.nan
    transformer = isinstance(model, HookedOneLayerTransformer)
    nets = {"explanation": expl, **(transformer_hybrids(model, expl) if transformer else
                                    _mlp_hybrids(model, expl))}
    rows = [("model", *_scores(subject(model, task).run()[0], labels), nan)]
    rows += [(name, *_scores(subject(net, task).run()[0], labels), nan)
             for name, net in nets.items()]
    resampled = (transformer_resampler(model, expl, task, RESAMPLED) if transformer
                 else _resampler(explanation))
    gen = torch.Generator().manual_seed(seed)
    draws_ = []
    for _ in range(draws):
        donors = {"any": _donors(torch.zeros_like(labels), gen), "same": _donors(labels, gen)}
        draws_.append({name: _scores(value, labels) for name, value in resampled(donors).items()})
    mean = {name: tuple(sum(d[name][i] for d in draws_) / draws for i in range(2))
            for name in draws_[0]}
    gap = mean[RESAMPLED[3]][0] - mean["model"][0]
    share = {name: (mean[RESAMPLED[3]][0] - mean[name][0]) / gap if gap != 0 else nan
             for name in RESAMPLED}
    rows += [(name, mean[name][0], mean[name][1], share[name]) for name in RESAMPLED]
    return Fidelity(rows=tuple(rows), recovered=share[RESAMPLED[0]])


def _mlp_hybrids(model: HookedMLP, expl: HookedMLP) -> dict[str, HookedMLP]:
    """The MLP with its input maps or its output map replaced by the explanation's."""
    T, W = operand_tables(model), model.W_out.detach().double()
    return {"input maps replaced": build(model, operand_tables(expl), W),
            "output map replaced": build(model, T, expl.W_out.detach().double())}

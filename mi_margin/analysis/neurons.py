"""Each neuron's dominant frequency or irrep, its purity, clusters and (frequencies) phases.

One implementation through the task's harmonic basis (docs/mathematics.md §4.2, §6.3). A neuron's
energy per label comes from one of three sources:

- ``"activations"`` — its centred activation over the grid (``blocks.0.mlp.hook_post``) in each
  single-label block {trivial, ρ}^{⊗k} minus the constant: Nanda et al.'s "degree-k polynomial in
  one frequency", Chughtai et al.'s clustering by irrep.
- ``"weights"`` — the vectors over the group a neuron reads and writes, each centred: for MLPs
  every W_in_eff[i][:, j] and W_out[j], for transformers W_E[:n]·W_in[:, j] and W_L[j]; energy_ρ =
  Σ ||Q_ρᵀ x||² (Morwani et al. Thm 9: a max-margin neuron lives in one irrep).
- ``"maps"`` — what the margin theory speaks about (docs/mathematics.md §6.3): the input maps read
  from the pre-activations (``blocks.0.mlp.hook_pre``) over the grid, each single-label block divided
  by n^(k−1) (for a theory-style MLP exactly Σ_i ||Q_ρᵀ u_i||²; for a transformer whatever computes
  the pre-activation, attention included), plus the output map's energy. What mixes labels in the
  pre-activations counts against purity. ``compare_to_theory`` reads this source.

purity = best label's energy / the neuron's total centred energy (what no single label explains,
products of labels included, counts against it); the dominant label is assigned when
purity ≥ ``min_purity``. For frequencies the phases θ_1..θ_k of the neuron's input marginals and θ_w
of its output map are measured, with the relation error |wrap(θ_1+…+θ_k − θ_w)| that max-margin
neurons satisfy exactly (Morwani et al. Thm 7, Li et al. Thm 4.1, Gromov eq. 12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from mi_margin.analysis.basis import require_labels, sum_by
from mi_margin.analysis.core import POST, PRE, Analyzable, Subject, cached
from mi_margin.analysis.results import AnalysisResult
from mi_margin.analysis.spectrum import component_sources
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import to_fourier
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task

SOURCES = ("activations", "weights", "maps")


@dataclass(frozen=True)
class NeuronClusters(AnalysisResult):
    """Every neuron's dominant label and purity (see :func:`neuron_clusters`).

    Attributes:
        label_kind, labels: "frequency" / "irrep" / "subset" and all labels, trivial first.
        model_kind, source, min_purity: what was measured and the dominance threshold.
        energy: [d_mlp, L] each neuron's energy per label (trivial: 0, the mean is removed);
            total: [d_mlp] its centred energy (labels' blocks plus what mixes labels).
        purity: [d_mlp] max energy / total (NaN where total is 0); for sparse parity the
            largest energy of a subset of the task's order over their sum, the only candidates.
        label: per neuron the dominant label, None where purity < ``min_purity`` or dead.
        dead: [d_mlp] activation constant over the whole grid ("always off", Chughtai et al.)
            at the model's precision (:func:`constant_neurons`).
        phases: frequencies only, [d_mlp, k+1]: θ_1..θ_k of the input marginals and θ_w of the
            output map at the neuron's dominant frequency (x ↦ A cos(ω_f x + θ)); NaN unassigned.
        phase_error: frequencies only, [d_mlp] |wrap(θ_1+…+θ_k − θ_w)| ∈ [0, π].
        read_from: the hooks and weights the energies (and phases) were computed from, e.g.
            ``("blocks.0.mlp.hook_post", "blocks.0.mlp.hook_pre", "W_out @ W_U")``; also the
            ``read_from`` column of :meth:`to_dataframe`.
    """

    _score = "purity"

    label_kind: str
    labels: tuple[Any, ...]
    model_kind: str
    source: str
    min_purity: float
    energy: Float[Tensor, "d_mlp L"] = field(repr=False)
    total: Float[Tensor, " d_mlp"] = field(repr=False)
    purity: Float[Tensor, " d_mlp"] = field(repr=False)
    label: tuple[Any, ...] = field(repr=False)
    dead: Tensor = field(repr=False)
    phases: Float[Tensor, "d_mlp kp1"] | None = field(default=None, repr=False)
    phase_error: Float[Tensor, " d_mlp"] | None = field(default=None, repr=False)
    read_from: tuple[str, ...] = ()

    @property
    def frequency(self) -> Int[Tensor, " d_mlp"]:
        """Frequencies: each neuron's dominant frequency, int64, 0 where none dominates."""
        return torch.tensor([0 if lab is None else int(lab) for lab in self.label])

    @property
    def irrep(self) -> tuple[Any, ...]:
        """Irreps: each neuron's dominant irrep name (None where none dominates)."""
        return self.label

    @property
    def shares(self) -> Float[Tensor, "d_mlp L"]:
        """Share of each neuron's centred energy in each label, [d_mlp, L]."""
        safe = torch.where(self.total > 0, self.total, torch.ones_like(self.total))
        return torch.where(self.total[:, None] > 0, self.energy / safe[:, None], 0.0)

    @property
    def clusters(self) -> dict[Any, list[int]]:
        """Label → indices of the neurons it dominates (basis order; None last)."""
        out = {lab: [i for i, x in enumerate(self.label) if x == lab]
               for lab in [*self.labels, None]}
        return {lab: idx for lab, idx in out.items() if idx}

    @property
    def counts(self) -> dict[Any, int]:
        """Label → number of neurons it dominates (None: unassigned or dead)."""
        return {lab: len(idx) for lab, idx in self.clusters.items()}

    def _table(self) -> pd.DataFrame:
        table = pd.DataFrame({"neuron": range(len(self.label)), self.label_kind: list(self.label),
                              "purity": self.purity.tolist(), "dead": self.dead.tolist()})
        share = self.shares
        for j, lab in enumerate(self.labels):
            table[f"share[{lab}]"] = share[:, j].tolist()
        if self.phases is not None and self.phase_error is not None:
            k = self.phases.shape[1] - 1
            for j, name in enumerate([f"theta_{i + 1}" for i in range(k)] + ["theta_w"]):
                table[name] = self.phases[:, j].tolist()
            table["phase_error"] = self.phase_error.tolist()
        table["read_from"] = ", ".join(self.read_from)
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

    A cos(ωx + θ) = A cos θ cos ωx − A sin θ sin ωx, so θ = atan2(−c_sin, c_cos) from the real
    Fourier coefficients.

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


def neuron_phases(pre: Tensor, inputs: Tensor, out: Tensor, frequency: Tensor, p: int
                  ) -> tuple[Tensor, Tensor]:
    """Phases [m, k+1] of the pre-activations' marginals on each operand and of the output map
    ``out`` [m, p], at each neuron's ``frequency``, and the relation error (module docstring).

    ``pre`` [N, m] holds the pre-activations at the grid ``inputs`` [N, k] (elements of Z_p). The
    marginal of an MLP's pre-activation on operand i is W_in_eff[i] plus a constant; for a
    transformer it includes what attention does.
    """
    marginals = [sum_by(inputs[:, i], pre, p) for i in range(inputs.shape[1])]
    theta = [phases_at(m, frequency) for m in marginals]
    theta.append(phases_at(out.double().T, frequency))
    phases = torch.stack(theta, dim=1)
    return phases, wrap(phases[:, :-1].sum(1) - phases[:, -1]).abs()


def _weight_energy(s: Subject) -> Tensor:
    """Σ over the neuron's vectors over the group of ||Q_ρᵀ(x − mean)||², [d_mlp, L]."""
    maps = [*s.neuron_input_maps(), s.neuron_logit_map().T]
    return torch.stack([s.basis.weight_energy(X.double() - X.double().mean(0))
                        for X in maps]).sum(0).T


def _read_from(s: Subject, source: str) -> tuple[str, ...]:
    """What :func:`neuron_clusters` reads for ``source``: activations, or each neuron's maps over
    the group; for frequencies also the pre-activations and output map of the phases."""
    names = component_sources(s)
    logit_map = names.get("W_L", names["unembed"])
    inputs = [names["neuron_in"]] if s.kind == "transformer" else \
        [v for k, v in names.items() if k.startswith("embed[")]
    reads = ([POST] if source == "activations" else [PRE, logit_map] if source == "maps"
             else [*inputs, logit_map])
    if s.basis.label_kind == "frequency":
        reads += [PRE, logit_map]
    return tuple(dict.fromkeys(reads))


def _map_energy(s: Subject, pre: Tensor) -> tuple[Tensor, Tensor]:
    """Energy [d_mlp, L] (trivial 0) and total [d_mlp] of the ``"maps"`` source (docstring)."""
    b = s.basis
    grid = b.grid_energy(pre)
    scale = b.n ** (b.k - 1)
    out = b.weight_energy(s.neuron_logit_map().T)[1:].T
    blocks = grid.blocks / scale + out
    return (torch.cat([blocks.new_zeros((len(blocks), 1)), blocks], 1),
            grid.total / scale + out.sum(1))


def neuron_clusters(model: Analyzable, task: Task, min_purity: float = 0.5, source: str = "activations"
                    ) -> NeuronClusters:
    """Every neuron's dominant label (frequency, irrep, subset), purity, clusters and phases.

    Default 0.5: a majority of the neuron's energy, so at most one label can qualify; Nanda et al.
    report neurons at 0.85, certificate neurons have purity 1. See the module docstring for the
    three sources.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> res = neuron_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> res.frequency.shape, res.phases.shape
        (torch.Size([8]), torch.Size([8, 3]))
    """
    if not 0 < min_purity <= 1:
        raise MiMarginError(f"min_purity must be in (0, 1], got min_purity={min_purity!r}")
    if source not in SOURCES:
        raise MiMarginError(f"source must be one of {SOURCES}, got source={source!r}")
    c = cached(model, task)
    s, b = c.subject, c.basis
    post = c.need([POST, PRE] if b.label_kind == "frequency" else [POST])[POST]
    dead = constant_neurons(post, torch.finfo(s.model.W_out.dtype).eps)
    if source == "weights":
        if task.algebra.inputs != "operands":
            raise MiMarginError("source='weights' needs maps over group elements; a task read as "
                                "vectors (sparse parity) has none (use source='activations')")
        energy = _weight_energy(s)
        energy[:, 0] = 0.0                                  # centred: only rounding is left
        total = energy.sum(1)
    elif source == "maps":
        energy, total = _map_energy(s, c.need([PRE])[PRE])
    else:
        grid = c.grid_energy("neurons")
        energy = torch.cat([grid.blocks.new_zeros((len(grid.total), 1)), grid.blocks], 1)
        total = grid.total
    candidates, within = energy, total
    if b.label_kind == "subset":
        candidates, within = _of_the_task_s_order(energy, b.labels, len(cast(Any, task).support))
    best, index = candidates[:, 1:].max(1)
    purity = torch.where(within > 0, best / within.clamp_min(1e-300), torch.nan)
    assigned = tuple(b.nontrivial[int(j)] if (bool(q >= min_purity) and not bool(d)) else None
                     for j, q, d in zip(index, purity, dead))
    phases = error = None
    if b.label_kind == "frequency":
        frequency = torch.tensor([0 if lab is None else lab for lab in assigned])
        out = b.by_element(s.neuron_logit_map().T).T          # classes as group elements
        phases, error = neuron_phases(c.need([PRE])[PRE], b.operand_elements(task), out, frequency,
                                      b.n)
    return NeuronClusters(label_kind=b.label_kind, labels=b.labels, model_kind=s.kind,
                          source=source, min_purity=min_purity, energy=energy, total=total,
                          purity=purity, label=assigned, dead=dead, phases=phases,
                          phase_error=error, read_from=_read_from(s, source))


def _of_the_task_s_order(energy: Tensor, labels: tuple[Any, ...], k: int) -> tuple[Tensor, Tensor]:
    """Sparse parity: the energies of the subsets of the task's order k only, and their sum as
    the total. A neuron of order k, (Σ_j w_j x_j + b)^k, also carries every lower-order product of
    its bits, which would dominate its purity over all subsets (docs/mathematics.md §6.4)."""
    of_order = torch.tensor([len(lab) == k for lab in labels])
    energy = torch.where(of_order, energy, 0.0)
    return energy, energy.sum(1)


def constant_neurons(post: Tensor, eps: float) -> Tensor:
    """Neurons whose activation is constant over the grid at the model's precision, [d_mlp].

    A neuron is dead when its activation's range over every input is at most ``eps`` (the machine
    epsilon of the model's dtype, twice its unit roundoff) times the largest activation of any
    neuron: its
    variation is then below what the model's own arithmetic resolves next to the live neurons.
    Weight decay leaves such neurons (weights around 1e-21 in the zoo's S5 MLP) that are not
    exactly constant, and a purity of rounding noise would otherwise give them a label.

    Example:
        >>> post = torch.tensor([[0.0, 1.0, 3e-21], [0.0, 2.0, 1e-21]])
        >>> constant_neurons(post, torch.finfo(torch.float32).eps).tolist()
        [True, False, True]
    """
    spread = post.amax(0) - post.amin(0)
    return spread <= eps * post.abs().max()


def neuron_irrep_clusters(model: HookedModel, task: Task, min_purity: float = 0.5,
                          source: str = "weights") -> NeuronClusters:
    """:func:`neuron_clusters` of a group-composition model; by default from the weights
    (docs/mathematics.md §6.3, Morwani et al. Thm 9).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> res = neuron_irrep_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> tuple(res.energy.shape), len(res.irrep)
        ((8, 3), 8)
    """
    require_labels(task, "irrep", "neuron_irrep_clusters")
    return neuron_clusters(model, task, min_purity, source)


def neuron_frequencies(model: HookedModel, task: Task, min_purity: float = 0.5) -> list[int | None]:
    """Dominant frequency of every neuron (None where none dominates), from the activations.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> len(neuron_frequencies(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task))
        8
    """
    require_labels(task, "frequency", "neuron_frequencies")
    return list(neuron_clusters(model, task, min_purity).label)


def neuron_irreps(model: HookedModel, task: Task, min_purity: float = 0.5) -> list[str | None]:
    """Dominant irrep of every neuron (None where none dominates or dead), from the weights.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> len(neuron_irreps(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task))
        8
    """
    return list(neuron_irrep_clusters(model, task, min_purity).label)

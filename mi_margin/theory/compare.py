"""Observed vs predicted: hold a trained model against margin-maximization theory, side by side.

:func:`compare_to_theory` measures what the theorems speak about (docs/mathematics.md §1.3–1.5, §6.3) and
puts it next to :func:`~mi_margin.theory.predictions.max_margin`:

- the normalized margin h(θ)/Σ||ω_i||^ν and its ratio to γ* (only when the model is the theorem's
  network family: same activation degree and homogeneity, no biases);
- per neuron, the energy of its input maps and output map in every frequency (Z_p) or irrep (groups),
  the trivial/constant part removed (§6.3). Input maps are read from the ``blocks.0.mlp.hook_pre``
  activations on the full input grid, projected with the k-fold tensor-product basis: a component
  whose non-trivial factors all carry one label belongs to that label, anything else is "mixed".
  For a theory-style MLP this is exactly ||Q^T u||² + ||Q^T v||² + ... ; for a transformer it measures
  the same thing for whatever computes the pre-activation. Output map: ``W_out`` (MLP) or
  ``W_out W_U`` (transformer). Sparse parity is read the same way in the Walsh basis of Z_2^n:
  the one label "support" holds the characters χ_T with T ⊆ S (and w along (1, −1)), anything
  else is "mixed" (Theorem 8, §1.4);
- purity (best label / all non-trivial energy), the fraction of live neurons that are pure, which
  labels are used, neurons per label and budget share per label vs the certificate's, and for
  cyclic tasks the phase-relation error Σ_i arg û_i(ζ) − arg ŵ(ζ) (0 at the max margin).

It works for any model with the hook names (ReLU transformers with weight decay included) and then
shows how far the model is from the theory's structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float64
from torch import Tensor

from mi_margin.analysis.core import PRE, subject
from mi_margin.analysis.margin import MarginResult, margin, neuron_norms64
from mi_margin.analysis.neurons import neuron_clusters
from mi_margin.analysis.results import AnalysisResult
from mi_margin.models.compat import check_fits
from mi_margin.models.protocol import HookedModel
from mi_margin.models.transformer import native
from mi_margin.tasks import Cube, SparseParity, Task
from mi_margin.theory.predictions import Prediction, prediction_for

#: a neuron is live when its weight is at least this fraction of the largest neuron weight
LIVE_FRACTION = 1e-2


@dataclass(frozen=True)
class NeuronStructure:
    """Per-neuron structure measured on a model (see the module docstring)."""

    labels: tuple[str, ...]
    energy: Float64[Tensor, "m L"]
    mixed: Float64[Tensor, " m"]
    weight: Float64[Tensor, " m"]
    phase_error: Float64[Tensor, " m"] | None
    checks: dict[str, float]
    reason: str

    @property
    def purity(self) -> Float64[Tensor, " m"]:
        total = self.energy.sum(1) + self.mixed
        return self.energy.max(1).values / total.clamp_min(1e-300)

    @property
    def live(self) -> Bool[Tensor, " m"]:
        if self.weight.numel() == 0:
            return torch.zeros(0, dtype=torch.bool)
        return self.weight >= LIVE_FRACTION * self.weight.max().clamp_min(1e-300)


@dataclass(frozen=True)
class TheoryComparison(AnalysisResult):
    """Result of :func:`compare_to_theory`.

    Attributes:
        prediction: the :class:`Prediction` for the model's network family on the task.
        margins: the model's :class:`MarginResult` on all examples (the theory's dataset).
        ratio: normalized margin / γ* (≤ 1 for every network of the theorem's family), or None.
        ratio_reason: why ``ratio`` is None, or what it compares.
        structure: per-neuron energies, weights and phase errors.
        pure_threshold: purity above which a neuron counts as pure.

    ``to_dataframe()`` has one row per frequency/irrep (observed vs predicted); ``scalars()``
    the scalar comparisons; ``neurons()`` one row per neuron; ``plot()`` the side-by-side figure.
    """

    prediction: Prediction
    margins: MarginResult
    ratio: float | None
    ratio_reason: str
    structure: NeuronStructure = field(repr=False)
    pure_threshold: float

    _score: ClassVar[str] = "share_observed"

    # -- per neuron ------------------------------------------------------------------------------
    @property
    def dominant(self) -> list[str | None]:
        """The label with most energy for every neuron (None for dead neurons)."""
        s = self.structure
        best = s.energy.argmax(1).tolist()
        return [s.labels[b] if live else None for b, live in zip(best, s.live.tolist())]

    @property
    def fraction_pure(self) -> float:
        """Fraction of live neurons whose purity is at least ``pure_threshold``."""
        s = self.structure
        live = s.live
        return float((s.purity[live] >= self.pure_threshold).double().mean()) if live.any() else 0.0

    def neurons(self) -> pd.DataFrame:
        """One row per neuron: weight, budget share, live, dominant label, purity, phase error."""
        s = self.structure
        df = pd.DataFrame({"neuron": np.arange(len(s.weight)), "weight": s.weight.numpy(),
                           "budget_share": (s.weight / s.weight.sum().clamp_min(1e-300)).numpy(),
                           "live": s.live.numpy(), "dominant": self.dominant,
                           "purity": s.purity.numpy()})
        if s.phase_error is not None:
            df["phase_error"] = s.phase_error.numpy()
        return df

    # -- per label -------------------------------------------------------------------------------
    def _table(self) -> pd.DataFrame:
        pred, s = self.prediction, self.structure
        dom = self.dominant
        share = s.weight / s.weight.sum().clamp_min(1e-300)
        used = pred.used_labels
        rows = []
        for lab in s.labels:
            mine = torch.tensor([d == lab for d in dom], dtype=torch.bool)
            rows.append({
                "label": lab, "used_predicted": lab in used if pred.gamma is not None else None,
                "used_observed": bool(mine.any()), "neurons_observed": int(mine.sum()),
                "neurons_certificate": (pred.neurons_per_irrep or {}).get(lab),
                "share_observed": float(share[mine].sum()),
                "share_predicted": (pred.budget_share or {}).get(lab)})
        return pd.DataFrame(rows)

    def scalars(self) -> pd.DataFrame:
        """The scalar comparisons: metric, observed, predicted, note."""
        pred, s, m = self.prediction, self.structure, self.margins
        table = self._table()
        live = s.live
        rows: list[dict[str, Any]] = [
            {"metric": "normalized_margin", "observed": m.normalized, "predicted": pred.gamma,
             "note": m.reason},
            {"metric": "ratio_to_gamma", "observed": self.ratio, "predicted": 1.0 if pred.gamma
             else None, "note": self.ratio_reason},
            {"metric": "fraction_pure", "observed": self.fraction_pure, "predicted": 1.0,
             "note": f"live neurons with purity >= {self.pure_threshold}; {s.reason}"},
            {"metric": "mean_purity", "observed": float(s.purity[live].mean()) if live.any()
             else None, "predicted": 1.0, "note": "over live neurons"},
            {"metric": "labels_used", "observed": int(table["used_observed"].sum()),
             "predicted": len(pred.used_labels) if pred.gamma else None,
             "note": "frequencies/irreps that dominate at least one live neuron"},
            {"metric": "live_neurons", "observed": int(live.sum()),
             "predicted": pred.width_bound, "note": "certificate width"},
            {"metric": "max_wrong_spread", "observed": float(m.wrong_spread.max()),
             "predicted": 0.0 if pred.gamma and not pred.extension else None,
             "note": "largest minus smallest wrong logit (0: all wrong logits equal)"},
        ]
        if s.phase_error is not None:
            err = s.phase_error[live].abs()
            err = err[~err.isnan()]                    # neurons without a dominant frequency
            rows.append({"metric": "phase_error", "observed": float(err.mean()) if len(err)
                         else None, "predicted": 0.0, "note": pred.phase_relation})
        rows += [{"metric": k, "observed": v, "predicted": 1.0, "note": "sparse parity (Thm 8)"}
                 for k, v in s.checks.items()]
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """The scalar comparisons as a flat dict metric -> observed."""
        return dict(zip(self.scalars()["metric"], self.scalars()["observed"]))


# -- ratio -----------------------------------------------------------------------------------
def margin_ratio(model: HookedModel, pred: Prediction, res: MarginResult) -> tuple[float | None, str]:
    """Normalized margin / γ* and what it compares, or None and why not.

    Only defined when the model is the theorem's network family: the same homogeneity ν and
    activation degree ν − 1 (a ReLU MLP's normalized margin is not on the theorem's scale).
    """
    if pred.gamma is None:
        return None, "no γ* for this task: " + "; ".join(pred.reasons)
    if res.normalized is None:
        return None, res.reason
    degree = getattr(getattr(model, "cfg", None), "degree", None)
    if res.nu != pred.nu or degree != (pred.nu or 0) - 1:
        return None, (f"the model's normalization (ν={res.nu}, activation degree {degree}) is not "
                      f"the theorem's (ν={pred.nu}, x^{(pred.nu or 0) - 1}), so the normalized "
                      "margins are not comparable")
    note = "" if pred.applies else " (theorem does not apply: " + "; ".join(pred.reasons) + ")"
    return res.normalized / pred.gamma, "normalized margin / γ*" + note


# -- structure -------------------------------------------------------------------------------
def _weights(model: HookedModel, in_energy: Tensor, out: Tensor) -> Tensor:
    """Neuron weight: ||ω_i||^ν for a homogeneous MLP, else ||input map|| · ||output map||."""
    if hasattr(model, "homogeneity") and model.homogeneity()[0] is not None:
        return neuron_norms64(model) ** model.homogeneity()[0]
    centered = out - out.mean(1, keepdim=True)
    return in_energy.sqrt() * centered.norm(dim=1)


def group_structure(model: HookedModel, task: Task, pred: Prediction) -> NeuronStructure:
    """Per-neuron label energies of a composition task, read from :func:`neuron_clusters` with
    the ``"maps"`` source (module docstring): input maps from the pre-activations, output map, phases
    at each neuron's dominant frequency. Labels are named as the prediction names them (``freq_f``
    for frequencies, irrep names for irreps)."""
    res = neuron_clusters(model, task, source="maps")
    out = subject(model, task).neuron_logit_map().double()
    centred_out = (out - out.mean(1, keepdim=True)).square().sum(1)
    energy = res.energy[:, 1:]
    names = tuple(f"freq_{f}" if res.label_kind == "frequency" else str(f) for f in
                  res.labels[1:])
    return NeuronStructure(labels=names, energy=energy,
                           mixed=(res.total - energy.sum(1)).clamp_min(0.0),
                           weight=_weights(model, res.total - centred_out, out),
                           phase_error=res.phase_error, checks={},
                           reason="energy of input maps (from hook_pre) and output map per label")


def _no_structure(reason: str) -> NeuronStructure:
    """An empty parity structure that says why it was not measured."""
    empty = torch.zeros(0, dtype=torch.float64)
    return NeuronStructure(labels=("support",), energy=empty[:, None], mixed=empty, weight=empty,
                           phase_error=None, checks={}, reason=reason)


def parity_structure(model: HookedModel, task: SparseParity, pred: Prediction | None = None
                     ) -> NeuronStructure:
    """Theorem 8's structure read through the parity basis (Morwani et al. 2024, Thm 8;
    docs/mathematics.md §1.4): spt(u) = S, w ∈ span((1, −1)), |u_j| = ||w|| on S, sign condition.

    The pre-activations on the whole cube are expanded in the characters χ_T of
    :class:`~mi_margin.analysis.basis.ParityBasis` (the core's Walsh basis): a linear input map u
    has coefficient u_j on χ_{j}, so the energy on the characters with T ⊆ S is ||u_S||² and
    the rest is ||u||² − ||u_S||². The output map w is read in the class characters (1, 1) and
    (1, −1) (``basis.characters()``): its part along (1, −1) is on the support, the rest is not.
    """
    if getattr(model, "model_kind", "") != "mlp" or model.cfg.input_kind != "vector":
        return _no_structure("parity structure needs the MLP's linear input map u")
    if not task.whole_grid:
        return _no_structure(f"parity structure is read on the whole cube {{±1}}^{task.n}; the "
                             f"task holds {len(task.inputs)} points drawn at random")
    s = subject(model, task)
    pre = s.run([PRE])[1][PRE].double()
    coef = s.basis.coefficients(pre - pre.mean(0)).T / math.sqrt(s.basis.n)    # m L: u_T
    support = sum(1 << j for j in task.support)
    inside = torch.tensor([0 < mask and mask & ~support == 0 for mask in range(len(coef.T))])
    w = s.neuron_logit_map().double()                                         # m 2
    const, sign = (chi / chi.norm() for chi in s.basis.characters().double())
    on = coef[:, inside].square().sum(1) + (w @ sign) ** 2
    off = coef[:, ~inside].square().sum(1) + (w @ const) ** 2
    u_S = coef[:, [1 << j for j in task.support]]                             # m k: u_j, j ∈ S
    total_in = coef.square().sum(1)
    weight = _weights(model, total_in, w)
    live = weight >= LIVE_FRACTION * weight.max().clamp_min(1e-300)
    sign_ok = u_S.prod(1) * (w @ sign) >= 0
    balance = (u_S.abs() - w.norm(dim=1, keepdim=True)).abs().max(1).values
    scale = (total_in + w.square().sum(1)).sqrt().clamp_min(1e-300)
    checks = {"fraction_sign_condition": float(sign_ok[live].double().mean()),
              "fraction_balanced": float((balance / scale < 1e-2)[live].double().mean())}
    return NeuronStructure(labels=("support",), energy=on[:, None], mixed=off, weight=weight,
                           phase_error=None, checks=checks,
                           reason="energy of u on the support S plus w along (1, −1)")


#: how per-neuron structure is read, per kind of domain (tasks/algebra.py); groups by default
STRUCTURES: dict[type, Callable[[Any, Any, Prediction], NeuronStructure]] = {Cube: parity_structure}


def compare_to_theory(model: HookedModel, task: Task, pure_threshold: float = 0.95) -> TheoryComparison:
    """Observed structure and margin of ``model`` next to the max-margin prediction for ``task``.

    Args:
        model: a HookedMLP or HookedOneLayerTransformer (any model with ``blocks.0.mlp.hook_pre``,
            ``W_out`` and, for transformers, ``W_U``), or the transformer's ``TransformerBridge``
            (compared as its native twin, the same weights).
        task: ModularAddition, GroupComposition or SparseParity.
        pure_threshold: purity above which a neuron counts as pure.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.certificates import certificate
        >>> from mi_margin.theory.compare import compare_to_theory
        >>> task = mm.ModularAddition(p=5)
        >>> report = compare_to_theory(certificate(task), task)
        >>> round(report.ratio, 9), report.fraction_pure
        (1.0, 1.0)
    """
    model = native(model)
    check_fits(model, task, finite=True)
    pred = prediction_for(model, task)
    res = margin(model, task, "all")
    ratio, why = margin_ratio(model, pred, res)
    measure = STRUCTURES.get(type(task.algebra.domain), group_structure)
    structure = measure(model, task, pred)
    return TheoryComparison(prediction=pred, margins=res, ratio=ratio, ratio_reason=why,
                            structure=structure, pure_threshold=pure_threshold)

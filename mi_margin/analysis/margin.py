"""Margins of a trained model: per example, dataset margin and the normalized margin of the theory.

Morwani et al. (2024, §1.1 of docs/mathematics.md): the margin of an example is the correct logit minus the
largest wrong logit, ``g(θ, x, y) = f(θ, x)[y] − max_{y'≠y} f(θ, x)[y']``; the dataset margin is
``h(θ) = min g``; for a ν-homogeneous network with separable neurons ω_i the normalized margin is
``h(θ / ||θ||_{2,ν}) = h(θ) / Σ_i ||ω_i||_2^ν``, the quantity the max-margin theorems bound by γ*.
It is reported only when that identity holds (a theory-style MLP without biases and a positively
homogeneous activation); otherwise ``normalized`` is None and ``reason`` says why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import torch
from jaxtyping import Float64, Int64
from torch import Tensor

from mi_margin.analysis.results import AnalysisResult
from mi_margin.checks import check_memory
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import model_inputs
from mi_margin.models.protocol import HookedModel
from mi_margin.models.transformer import native
from mi_margin.tasks import Task
from mi_margin.tasks.base import subset_indices

#: examples whose margin is within this relative distance of the dataset margin are "on the margin"
ON_MARGIN_RTOL = 1e-6


@dataclass(frozen=True)
class MarginResult(AnalysisResult):
    """Margins of ``model`` on a subset of ``task`` (see :func:`margin`).

    ``to_dataframe()`` has one row per example; ``top(n)`` gives the n examples with the
    *smallest* margin (the ones that set h(θ)); ``plot()`` a histogram with h(θ) marked.

    Attributes:
        per_example: float64 [N], correct logit minus the best wrong logit.
        idx: int64 [N], the examples (indices into the task's full grid).
        labels: int64 [N], the correct classes; runner_up: int64 [N], the best wrong class.
        wrong_spread: float64 [N], largest minus smallest wrong logit (0 when all wrong logits are
            equal, as in a Theorem-7/9 certificate).
        value: the dataset margin h(θ) = min of ``per_example``.
        normalized: h(θ) / Σ_i ||ω_i||_2^ν, or None where that is not the normalized margin.
        nu: the homogeneity degree ν used, or None.
        norm_power_sum: Σ_i ||ω_i||_2^ν (= ||θ||_{2,ν}^ν), or None.
        reason: how ``normalized`` was obtained, or why it is None.
        subset: "all", "train" or "test"; inputs: the task inputs of the examples.
    """

    per_example: Float64[Tensor, " N"] = field(repr=False)
    idx: Int64[Tensor, " N"] = field(repr=False)
    labels: Int64[Tensor, " N"] = field(repr=False)
    runner_up: Int64[Tensor, " N"] = field(repr=False)
    wrong_spread: Float64[Tensor, " N"] = field(repr=False)
    value: float
    normalized: float | None
    nu: int | None
    norm_power_sum: float | None
    reason: str
    subset: str
    inputs: Tensor = field(repr=False)

    @property
    def on_margin(self) -> Tensor:
        """bool [N]: examples attaining the dataset margin (the support of q* in Lemma 6)."""
        tol = ON_MARGIN_RTOL * max(abs(self.value), 1e-300)
        return self.per_example <= self.value + tol

    _score: ClassVar[str] = "margin"

    def _table(self) -> pd.DataFrame:
        """One row per example: index, inputs, label, runner-up, margin, wrong-logit spread."""
        df = pd.DataFrame({"example": self.idx.numpy()})
        x = self.inputs.numpy()
        for j in range(x.shape[1]):
            df[f"x{j}"] = x[:, j]
        df["label"] = self.labels.numpy()
        df["runner_up"] = self.runner_up.numpy()
        df["margin"] = self.per_example.numpy()
        df["wrong_spread"] = self.wrong_spread.numpy()
        df["on_margin"] = self.on_margin.numpy()
        return df

    def top(self, n: int = 10, group: Any = None) -> pd.DataFrame:
        """The ``n`` examples with the smallest margin (the ones that set h(θ)); margins have no
        groups, so ``group`` must be None."""
        if group is not None:
            raise MiMarginError(f"{type(self).__name__} has no groups; call top(n)")
        return self.to_dataframe().nsmallest(n, "margin").reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """The scalar results as a flat dict."""
        return {"subset": self.subset, "n_examples": len(self.idx), "margin": self.value,
                "normalized_margin": self.normalized, "nu": self.nu,
                "norm_power_sum": self.norm_power_sum,
                "fraction_on_margin": float(self.on_margin.double().mean()),
                "max_wrong_spread": float(self.wrong_spread.max()), "reason": self.reason}



@torch.no_grad()
def logits64(model: HookedModel, task: Task, idx: Tensor, chunk: int = 8192) -> Float64[Tensor, "N C"]:
    """Logits of ``model`` on examples ``idx`` computed in float64 arithmetic.

    A float32 model is evaluated on a float64 copy of its weights, so the difference of two large
    logits (a margin near γ*) is not lost to float32 rounding; a ``TransformerBridge`` on its
    native twin's.
    """
    model = native(model)
    n_classes = model.cfg.d_vocab_out
    check_memory(f"the float64 logits [{len(idx):,}, {n_classes}] of {task!r} (in chunks, then "
                 "joined)", 2 * len(idx) * n_classes * 8)
    if any(p.dtype != torch.float64 for p in model.parameters()):
        model = copy.deepcopy(model).double()
    x = model_inputs(model, task)
    parts = [model.last_logits(x[part]).double() for part in idx.split(chunk)]
    return torch.cat(parts)


def _margins(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(margin, runner-up class, wrong-logit spread) per row."""
    correct = logits.gather(1, labels[:, None])[:, 0]
    wrong = logits.scatter(1, labels[:, None], float("-inf"))
    best, runner = wrong.max(dim=1)
    lowest = logits.scatter(1, labels[:, None], float("inf")).min(dim=1).values
    return correct - best, runner, best - lowest


def neuron_norms64(model: HookedModel) -> Float64[Tensor, " d_mlp"]:
    """||ω_i||_2 of every neuron computed in float64 (also for a float32 model)."""
    with torch.no_grad():
        return model.neuron_vectors().double().norm(dim=1)


def normalization(model: HookedModel) -> tuple[int | None, float | None, str]:
    """(ν, Σ_i ||ω_i||_2^ν, reason) for the normalized margin h(θ)/Σ||ω_i||^ν, or Nones + reason.

    Defined only for a model that reports its homogeneity (theory-style :class:`HookedMLP`) with
    a degree ν; then f(λθ) = λ^ν f(θ) neuron-wise and h(θ/||θ||_{2,ν}) = h(θ)/Σ||ω_i||^ν
    (Morwani et al. §1.1).
    """
    if not hasattr(model, "homogeneity"):
        kind = getattr(model, "model_kind", type(model).__name__)
        return None, None, (f"a {kind} is not a one-hidden-layer network with separable neurons "
                            "(softmax attention and shared embeddings are not homogeneous in "
                            "per-neuron parameters), so h(θ)/Σ||ω_i||^ν is undefined")
    nu, why = model.homogeneity()
    if nu is None:
        return None, None, f"normalized margin undefined: {why}"
    total = float(neuron_norms64(model).pow(nu).sum())
    if total == 0.0:
        return nu, total, "all neurons are zero, so the normalized margin is undefined"
    return nu, total, f"h(θ)/Σ_i||ω_i||_2^{nu} (L_(2,{nu}) normalization; {why})"


def margin(model: HookedModel, task: Task, subset: str = "all") -> MarginResult:
    """Per-example margins, the dataset margin h(θ) and the normalized margin of ``model``.

    Args:
        model: a HookedMLP, HookedOneLayerTransformer or its ``TransformerBridge`` (scored as
            its native twin, :meth:`~mi_margin.HookedOneLayerTransformer.from_bridge`: the same
            weights, evaluated in float64).
        task: the task whose examples are scored.
        subset: "all" (the theory's dataset: the full table), "train" or "test".

    Returns:
        :class:`MarginResult`; ``normalized`` is h(θ)/Σ_i||ω_i||_2^ν for a homogeneous
        theory-style MLP (no biases, activation x^d or ReLU) and None otherwise, with ``reason``.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.analysis.margin import margin
        >>> task = mm.ModularAddition(p=5)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, dtype="float64"))
        >>> res = margin(model, task)
        >>> res.nu, res.per_example.shape
        (3, torch.Size([25]))
    """
    model = native(model)
    check_fits(model, task, finite=True)
    idx = subset_indices(task, subset)
    labels = task.labels[idx]
    logits = logits64(model, task, idx)
    if logits.shape[1] < 2:
        raise MiMarginError(f"a margin needs at least 2 classes, got {logits.shape[1]}")
    per, runner, spread = _margins(logits, labels)
    value = float(per.min())
    nu, total, reason = normalization(model)
    normalized = value / total if (nu is not None and total) else None
    return MarginResult(per_example=per, idx=idx, labels=labels, runner_up=runner,
                        wrong_spread=spread, value=value, normalized=normalized, nu=nu,
                        norm_power_sum=total if normalized is not None else None, reason=reason,
                        subset=subset, inputs=task.inputs[idx])

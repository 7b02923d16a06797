"""The analyses a sweep runs on each finished model, by name, with their errors caught per run.

Each analysis maps ``(model, task)`` to a flat dict of JSON-able values that becomes columns of
the sweep table; an analysis that raises is recorded in that run's row (``<name>_error``) instead
of failing the sweep.

- ``"fourier"``: ``key_frequencies`` and per-frequency logit similarity (modular addition; Nanda
  et al. 2023, Chughtai et al. 2023).
- ``"irreps"``: ``key_irreps`` and per-irrep logit similarity (group composition; Chughtai et
  al. 2023's key irreps, docs/mathematics.md §3.4).
- ``"margin"``: the dataset margin h(θ), the normalized margin h(θ)/Σ||ω_i||^ν and its ratio to
  the max-margin prediction γ* for the model's network family (Morwani et al. 2024, §1), with
  ``compare_to_theory``'s comparability check (None when the model is not the theorem's family).
"""

from __future__ import annotations

import inspect
import json
import traceback
from collections.abc import Callable
from typing import Any

from mi_margin.analysis.margin import margin as margin_of
from mi_margin.analysis.spectrum import key_frequencies, key_irreps, logit_similarity
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task
from mi_margin.theory.compare import margin_ratio
from mi_margin.theory.predictions import prediction_for

Analysis = Callable[..., dict[str, Any]]


def _keys_and_similarity(keys: list[Any], model: HookedModel, task: Task, word: str, label: str
                         ) -> dict[str, Any]:
    """Key labels and every label's logit similarity, so the table can be re-thresholded
    without retraining."""
    sim = logit_similarity(model, task)
    values = {str(lab): float(x) for lab, x in zip(sim.labels, sim.similarity.tolist())}
    return {f"key_{word}": keys, f"n_key_{word}": len(keys),
            f"{label}_similarity": json.dumps(values), "logit_fve": sim.fve()}


def fourier(model: HookedModel, task: Task, **options: Any) -> dict[str, Any]:
    """Key frequencies (``options``: ``method``, ``min_share`` of ``key_frequencies``) and each
    frequency's logit similarity."""
    keys = [int(f) for f in key_frequencies(model, task, **options)]
    return _keys_and_similarity(keys, model, task, "frequencies", "frequency")


def irreps(model: HookedModel, task: Task, **options: Any) -> dict[str, Any]:
    """Key irreps (``options``: ``min_similarity`` of ``key_irreps``) and every irrep's logit
    similarity with χ_ρ(abc⁻¹) (Chughtai et al. 2023, docs/mathematics.md §3.4)."""
    keys = [str(name) for name in key_irreps(model, task, **options)]
    return _keys_and_similarity(keys, model, task, "irreps", "irrep")


def margin(model: HookedModel, task: Task, **options: Any) -> dict[str, Any]:
    """h(θ), h(θ)/Σ||ω_i||^ν and its ratio to γ* of ``prediction_for(model, task)``
    (``options``: ``subset`` of ``margin``, default all examples: the theory's dataset)."""
    res = margin_of(model, task, **options)
    pred = prediction_for(model, task)
    ratio, why = margin_ratio(model, pred, res)
    return {"margin": res.value, "normalized_margin": res.normalized,
            "margin_reason": res.reason, "gamma_predicted": pred.gamma,
            "margin_ratio": ratio, "margin_ratio_reason": why, "theory_applies": pred.applies,
            "theory_reasons": "; ".join(pred.reasons)}


REGISTRY: dict[str, Analysis] = {"fourier": fourier, "irreps": irreps, "margin": margin}
#: the analysis names a sweep spec may ask for
ANALYSES = tuple(REGISTRY)


def _keywords(fn: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(n for n in inspect.signature(fn).parameters if n not in ("model", "task"))


#: the options each analysis takes: the keyword arguments of the function it passes them to
OPTIONS: dict[str, tuple[str, ...]] = {"fourier": _keywords(key_frequencies),
                                       "irreps": _keywords(key_irreps),
                                       "margin": _keywords(margin_of)}


def run_analyses(names: tuple[str, ...], model: HookedModel, task: Task,
                 options: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: results}`` or ``{name: {"error": message, "traceback": text}}`` per analysis;
    ``options[name]`` are keyword arguments of that analysis (kept under ``"options"``).

    Example:
        >>> out = run_analyses(("margin",), model, task)          # doctest: +SKIP
        >>> out["margin"]["normalized_margin"]                     # doctest: +SKIP
    """
    out: dict[str, dict[str, Any]] = {}
    options = options or {}
    for name in names:
        kwargs = dict(options.get(name, {}))
        try:
            out[name] = {**REGISTRY[name](model, task, **kwargs), "options": kwargs}
        except Exception as err:  # a broken or missing analysis must not fail the sweep
            out[name] = {"error": f"{type(err).__name__}: {err}",
                         "traceback": traceback.format_exc(), "options": kwargs}
    return out

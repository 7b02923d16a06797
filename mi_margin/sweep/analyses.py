"""The analyses a sweep runs on each finished model, by name, with their errors caught per run.

Each analysis maps ``(model, task)`` to a flat dict of JSON-able values that becomes columns of
the sweep table. The analysis modules are imported only when an analysis runs, so a sweep does not
depend on them at import time, and an analysis that is missing or raises is recorded in that run's
row (``<name>_error``) instead of failing the sweep.

- ``"fourier"``: ``key_frequencies`` and per-frequency logit similarity (modular addition; Nanda
  et al. 2023, Chughtai et al. 2023).
- ``"irreps"``: ``key_irreps`` and per-irrep logit similarity (group composition; Chughtai et
  al. 2023's key irreps, docs/mathematics.md §3.4).
- ``"margin"``: the dataset margin h(θ), the normalized margin h(θ)/Σ||ω_i||^ν and its ratio to
  the max-margin prediction γ* for the model's network family (Morwani et al. 2024, §1).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from typing import Any

Analysis = Callable[..., dict[str, Any]]


def fourier(model: Any, task: Any, **options: Any) -> dict[str, Any]:
    """Key frequencies (``options``: ``method``, ``threshold`` of ``key_frequencies``) and each
    frequency's logit similarity, so the table can be re-thresholded without retraining."""
    from mi_margin.analysis.fourier import key_frequencies, logit_similarity

    keys = [int(f) for f in key_frequencies(model, task, **options)]
    sim = logit_similarity(model, task)
    values = {str(f + 1): float(s) for f, s in enumerate(sim.similarity.tolist())}
    return {"key_frequencies": keys, "n_key_frequencies": len(keys),
            "frequency_similarity": json.dumps(values), "logit_fve": sim.fve}


def irreps(model: Any, task: Any, **options: Any) -> dict[str, Any]:
    """Key irreps (``options``: ``threshold`` of ``key_irreps``) and every irrep's logit
    similarity with χ_ρ(abc⁻¹) (Chughtai et al. 2023, docs/mathematics.md §3.4)."""
    from mi_margin.analysis.irreps import irrep_logit_similarity, key_irreps

    keys = [str(name) for name in key_irreps(model, task, **options)]
    sim = irrep_logit_similarity(model, task)
    values = {name: float(s) for name, s in zip(sim.irreps, sim.similarity.tolist())}
    return {"key_irreps": keys, "n_key_irreps": len(keys),
            "irrep_similarity": json.dumps(values), "logit_fve": sim.fve()}


def margin(model: Any, task: Any, **options: Any) -> dict[str, Any]:
    """h(θ), h(θ)/Σ||ω_i||^ν and its ratio to γ* of ``prediction_for(model, task)``
    (``options``: ``subset`` of ``margin``, default all examples: the theory's dataset)."""
    from mi_margin.analysis.margin import margin as margin_of
    from mi_margin.theory.predictions import prediction_for

    res = margin_of(model, task, **options)
    pred = prediction_for(model, task)
    ratio = (res.normalized / pred.gamma
             if res.normalized is not None and pred.gamma else None)
    return {"margin": res.value, "normalized_margin": res.normalized,
            "margin_reason": res.reason, "gamma_predicted": pred.gamma,
            "margin_ratio": ratio, "theory_applies": pred.applies,
            "theory_reasons": "; ".join(pred.reasons)}


REGISTRY: dict[str, Analysis] = {"fourier": fourier, "irreps": irreps, "margin": margin}
#: the analysis names a sweep spec may ask for
ANALYSES = tuple(REGISTRY)
#: the options each analysis takes (keyword arguments of ``key_frequencies``, ``key_irreps`` and
#: ``margin``; tests/sweep/test_sweep.py checks them against those signatures)
OPTIONS: dict[str, tuple[str, ...]] = {"fourier": ("method", "threshold"),
                                       "irreps": ("threshold",), "margin": ("subset",)}


def run_analyses(names: tuple[str, ...], model: Any, task: Any,
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

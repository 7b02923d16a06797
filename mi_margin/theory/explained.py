"""A model's runnable explanation, its fidelity and its certificates, beside the max-margin theory.

:func:`explanation_check` computes once what the zoo's cards (:mod:`mi_margin.zoo.cards`) and the
run report (:mod:`mi_margin.viz.report`) show about an explanation: its summary
(:func:`~mi_margin.analysis.explain.explain`), its fidelity table
(:func:`~mi_margin.analysis.explain.fidelity`), every certificate bound
(:func:`~mi_margin.analysis.certify.certify`) with the reason of each bound that does not apply to
the model, and the certified margin over γ* next to the trained margin over γ* where a theorem
applies (docs/mathematics.md §6.4).

Example:
    >>> import mi_margin as mm
    >>> task = mm.ModularAddition(p=7)
    >>> check = explanation_check(mm.theory.certificate(task), task, draws=1)
    >>> check.certificate_table()["certified accuracy"].tolist()
    ['1.0000', '1.0000', '1.0000', '1.0000']
    >>> round(check.certified_ratio, 3) <= round(check.trained_ratio, 3)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mi_margin.analysis.certify import BOUNDS, Certificate, certify
from mi_margin.analysis.explain import Explanation, Fidelity, explain, fidelity
from mi_margin.analysis.margin import margin
from mi_margin.errors import MiMarginError
from mi_margin.models.mlp import HookedMLP
from mi_margin.models.protocol import HookedModel
from mi_margin.models.transformer import HookedOneLayerTransformer
from mi_margin.tasks import Task
from mi_margin.theory.compare import margin_ratio as margin_ratio_of
from mi_margin.theory.predictions import prediction_for


def margin_ratio(model: HookedModel, task: Task) -> float | None:
    """Normalized margin / γ* when the model is of the theorem's family, else None."""
    return margin_ratios(model, task)[0]


def margin_ratios(model: HookedModel, task: Task, certified: float | None = None
                  ) -> tuple[float | None, float | None]:
    """(trained margin / γ*, certified margin / γ*) from one margin computation: the normalized
    margin over γ* (:func:`~mi_margin.theory.compare.margin_ratio`, which also checks that the
    model is of the theorem's family), and a certified lower bound ``certified`` on the margin
    h(θ) normalized the same way (None where the theorem does not apply to the model, or no
    bound is given)."""
    pred = prediction_for(model, task)
    if not pred.applies or not pred.gamma:
        return None, None
    res = margin(model, task)
    trained = margin_ratio_of(model, pred, res)[0]
    bound = None if trained is None or certified is None or res.norm_power_sum is None else \
        float(certified / res.norm_power_sum / pred.gamma)
    return trained, bound


@dataclass(frozen=True)
class ExplanationCheck:
    """An explanation with its fidelity, its certificates and the margins beside γ*.

    Attributes:
        explanation: what :func:`~mi_margin.analysis.explain.explain` returned.
        fidelity: its fidelity over ``draws`` resampling draws.
        draws: the number of resampling draws.
        certificates: bound name → certificate, for every bound that applies (in
            :data:`~mi_margin.analysis.certify.BOUNDS` order).
        refused: bound name → why :func:`~mi_margin.analysis.certify.certify` refused it.
        best: the bound with the largest certified margin.
        certified_ratio: its certified margin normalized and over γ* (None when no theorem
            applies). trained_ratio: the trained margin over γ*.
        two_labels: the per-input bound of the explanation that keeps two labels per neuron
            (``explain(..., labels_per_neuron=2)``), for an MLP of modular addition or group
            composition whose one-label per-input bound certifies less than its accuracy; else
            None.
    """

    explanation: Explanation
    fidelity: Fidelity
    draws: int
    certificates: dict[str, Certificate]
    refused: dict[str, str]
    best: str
    certified_ratio: float | None
    trained_ratio: float | None
    two_labels: Certificate | None = None

    @property
    def accuracy(self) -> float:
        """The model's brute-force accuracy on every input."""
        return next(iter(self.certificates.values())).accuracy

    def fidelity_table(self) -> pd.DataFrame:
        """The fidelity rows, recovered fractions to 3 decimals (their rounding noise, ~1e-8, is
        not printed)."""
        table = self.fidelity.to_dataframe()
        table["recovered"] = ["" if v != v else f"{abs(v) if abs(v) < 5e-4 else v:.3f}"
                              for v in table["recovered"]]
        return table

    def certificate_table(self) -> pd.DataFrame:
        """One row per bound: certified accuracy and min margin with the cost beside brute
        force's, or "not applicable" with certify's reason."""
        rows = []
        for bound in BOUNDS:
            if bound in self.refused:
                rows.append({"bound": bound, "certified accuracy": "—",
                             "certified min margin": "—",
                             "FLOPs / brute force": f"not applicable: {self.refused[bound]}"})
                continue
            cert = self.certificates[bound]
            rows.append(_row(bound, cert))
        if self.two_labels is not None:
            rows.append(_row("per_input, two labels per neuron", self.two_labels))
        return pd.DataFrame(rows)


def _row(bound: str, cert: Certificate) -> dict[str, str]:
    return {"bound": bound, "certified accuracy": f"{cert.certified_accuracy:.4f}",
            "certified min margin": f"{cert.min_certified_margin:.4g}",
            "FLOPs / brute force": f"{cert.flops:.3g} / {cert.brute_force_flops:.3g}"}


def explanation_check(model: HookedMLP | HookedOneLayerTransformer, task: Task, draws: int = 2
                      ) -> ExplanationCheck:
    """Explain ``model``, measure the explanation's fidelity and certify it with every bound.

    A bound that does not apply (certify raises :class:`~mi_margin.MiMarginError`: the uniform
    and harmonic bounds of a transformer, the harmonic bound on a ReLU or GELU network) is
    recorded in ``refused``
    with certify's reason, without its "(use ...)" advice; the brute-force accuracy is computed
    once, beside the first bound that applies.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="relu"))
        >>> explanation_check(model, task, draws=1).refused["harmonic"][:46]
        'the harmonic certificate expands x^d neurons i'
    """
    expl = explain(model, task)
    certs: dict[str, Certificate] = {}
    refused: dict[str, str] = {}
    for bound in BOUNDS:
        try:
            certs[bound] = certify(expl, bound, compare=not certs)
        except MiMarginError as err:
            refused[bound] = str(err).split(" (use")[0]
    if not certs:
        raise MiMarginError(f"no certificate bound applies: {refused}")
    best = max(certs, key=lambda b: certs[b].min_certified_margin)
    trained, certified = margin_ratios(
        model, task, certs[best].min_certified_margin)
    accuracy = next(iter(certs.values())).accuracy
    two = None
    if (isinstance(model, HookedMLP) and expl.clusters.label_kind in ("frequency", "irrep")
            and certs["per_input"].certified_accuracy < accuracy):
        two = certify(explain(model, task, labels_per_neuron=2), "per_input", compare=False)
    return ExplanationCheck(
        explanation=expl, fidelity=fidelity(expl, draws=draws), draws=draws, certificates=certs,
        refused=refused, best=best, certified_ratio=certified, trained_ratio=trained,
        two_labels=two)

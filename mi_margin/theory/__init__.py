"""Margin-maximization theory: predicted max margins and structures, certificate networks, and the
side-by-side comparison of a trained model with the prediction (docs/mathematics.md §1, §2).

- :func:`max_margin` (:class:`Prediction`): γ*, width bound, neuron form, used frequencies/irreps
  for k-input modular addition (Morwani et al. Thm 7, Li et al. Thm 4.1), sparse parity (Thm 8)
  and finite groups (Thm 9, plus our LP extension where its sign condition fails).
- :func:`certificate`: a real HookedMLP attaining the prediction.
- :func:`compare_to_theory` (:class:`TheoryComparison`): observed vs predicted.
- :func:`explanation_check` (:class:`ExplanationCheck`): a model's explanation, its fidelity and
  certificates, with the certified margin beside γ* (what the zoo's cards and the report show).
- :func:`max_margin_recipe`, :func:`train_to_max_margin`, :func:`reweight_neurons`: training
  recipe that drives small instances to γ*.
- :func:`single_neuron_optimum`: ψ*, the best single neuron (numerical check of γ*).
- :func:`lp_max_margin`: the group LP.

Example:
    >>> import mi_margin as mm
    >>> from mi_margin import theory
    >>> pred = theory.max_margin(mm.GroupComposition("A5"))
    >>> pred.extension, pred.hypotheses["sign_condition"]
    (True, False)
"""

from mi_margin.theory.certificates import certificate
from mi_margin.theory.compare import TheoryComparison, compare_to_theory
from mi_margin.theory.explained import ExplanationCheck, explanation_check
from mi_margin.theory.group_theory import LPSolution, lp_max_margin
from mi_margin.theory.predictions import Prediction, max_margin, prediction_for
from mi_margin.theory.recipe import max_margin_recipe, reweight_neurons, train_to_max_margin
from mi_margin.theory.single_neuron import SingleNeuronOptimum, single_neuron_optimum

__all__ = ["ExplanationCheck", "LPSolution", "Prediction", "SingleNeuronOptimum", "TheoryComparison",
           "certificate", "compare_to_theory", "explanation_check", "lp_max_margin", "max_margin",
           "max_margin_recipe", "prediction_for", "reweight_neurons", "single_neuron_optimum",
           "train_to_max_margin"]

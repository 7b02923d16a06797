"""Which figure shows which result: the one place that maps analysis result types to figures.

Importing this module registers one figure per result type with
:func:`mi_margin.analysis.results.figure` (so ``result.plot()`` works); :func:`plot` is the same
dispatch as a function. A harmonic result's figure (:mod:`mi_margin.viz.harmonic`) is the same for
every basis, labelled from the result's labels. A new result type gets its figure by adding one
registration here.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from mi_margin.analysis.certify import Certificate
from mi_margin.analysis.clock_pizza import ClockPizza
from mi_margin.analysis.explain import Explanation, Fidelity
from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.margin import MarginResult
from mi_margin.analysis.neurons import NeuronClusters
from mi_margin.analysis.nfa import NFAResult
from mi_margin.analysis.nfa_training import NFATrajectory
from mi_margin.analysis.progress import ProgressMeasures
from mi_margin.analysis.restricted import RestrictedLoss
from mi_margin.analysis.results import figure
from mi_margin.analysis.spectrum import LogitSimilarity, Spectrum
from mi_margin.studies.grid import KeyCountBySetting
from mi_margin.studies.views import GrokkingDistribution, KeyCountDistribution, LabelFrequency
from mi_margin.theory.compare import TheoryComparison
from mi_margin.viz import explanation, feature_alignment, harmonic, population, theory
from mi_margin.viz.ablation import plot_ablation_losses


def plot(result: Any, **kwargs: Any) -> go.Figure:
    """The figure of any analysis result (the same as ``result.plot(**kwargs)``).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> res = mm.neuron_clusters(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> plot(res).data[0].type
        'bar'
    """
    return figure(result, **kwargs)


figure.register(Spectrum, harmonic.spectrum_figure)
figure.register(LogitSimilarity, harmonic.similarity_figure)
figure.register(NeuronClusters, harmonic.clusters_figure)
figure.register(ProgressMeasures, harmonic.progress_figure)
figure.register(RestrictedLoss, plot_ablation_losses)
figure.register(ClockPizza, harmonic.clock_pizza_figure)
figure.register(MarginResult, theory.margin_figure)
figure.register(TheoryComparison, theory.comparison_figure)
figure.register(FeatureMatrix, feature_alignment.feature_matrix_heatmap)
figure.register(LabelFrequency, population.label_frequency_figure)
figure.register(GrokkingDistribution, population.grokking_figure)
figure.register(KeyCountDistribution, population.key_count_figure)
figure.register(KeyCountBySetting, population.key_count_by_setting_figure)
figure.register(NFAResult, feature_alignment.nfa_heatmaps)
figure.register(NFATrajectory, feature_alignment.nfa_training_figure)
figure.register(Explanation, explanation.explanation_figure)
figure.register(Fidelity, explanation.fidelity_figure)
figure.register(Certificate, explanation.certificate_figure)

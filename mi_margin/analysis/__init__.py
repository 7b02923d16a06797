"""Hook-based analyzers: spectra, key components, neuron clusters, ablations, margins, progress
measures, NFM/AGOP, and runnable explanations with their fidelity and accuracy certificates.

Every structural analyzer goes through the task's harmonic basis (:mod:`mi_margin.analysis.basis`)
and works on every task and model family; the field's names (``key_frequencies``, ``key_irreps``,
``fourier_spectrum``, ...) are views of it. Every analyzer returns a frozen result with
``.top(k)``, ``.to_dataframe()`` and ``.plot()`` (:class:`~mi_margin.analysis.results.AnalysisResult`).
See docs/architecture.md for the public surface and why.
"""

from mi_margin.analysis.ablation import ablation_hook, grid_projection_hook
from mi_margin.analysis.agop import AGOPAndKernel, agop, agop_and_kernel
from mi_margin.analysis.basis import basis_for
from mi_margin.analysis.certify import Certificate, certify
from mi_margin.analysis.clock_pizza import ClockPizza, clock_pizza
from mi_margin.analysis.core import GridCache, grid_cache
from mi_margin.analysis.explain import Explanation, Fidelity, LabelSet, explain, fidelity
from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.margin import MarginResult, margin
from mi_margin.analysis.neurons import (
    NeuronClusters,
    neuron_clusters,
    neuron_frequencies,
    neuron_irrep_clusters,
    neuron_irreps,
)
from mi_margin.analysis.nfa import NFAResult, nfa_correlation
from mi_margin.analysis.nfa_training import NFATrajectory, nfa_over_training
from mi_margin.analysis.nfm import nfm
from mi_margin.analysis.progress import ProgressMeasures, irrep_progress, progress_measures
from mi_margin.analysis.restricted import RestrictedLoss, irrep_restricted_loss, restricted_loss
from mi_margin.analysis.results import AnalysisResult
from mi_margin.analysis.spectrum import (
    LogitSimilarity,
    Spectrum,
    fourier_gini,
    fourier_spectrum,
    irrep_logit_similarity,
    irrep_spectrum,
    key_components,
    key_frequencies,
    key_irreps,
    logit_similarity,
    spectrum,
)

__all__ = [
    "AGOPAndKernel",
    "AnalysisResult",
    "Certificate",
    "ClockPizza",
    "Explanation",
    "FeatureMatrix",
    "Fidelity",
    "GridCache",
    "LabelSet",
    "LogitSimilarity",
    "MarginResult",
    "NFAResult",
    "NFATrajectory",
    "NeuronClusters",
    "ProgressMeasures",
    "RestrictedLoss",
    "Spectrum",
    "ablation_hook",
    "agop",
    "agop_and_kernel",
    "basis_for",
    "certify",
    "clock_pizza",
    "explain",
    "fidelity",
    "fourier_gini",
    "fourier_spectrum",
    "grid_cache",
    "grid_projection_hook",
    "irrep_logit_similarity",
    "irrep_progress",
    "irrep_restricted_loss",
    "irrep_spectrum",
    "key_components",
    "key_frequencies",
    "key_irreps",
    "logit_similarity",
    "margin",
    "neuron_clusters",
    "neuron_frequencies",
    "neuron_irrep_clusters",
    "neuron_irreps",
    "nfa_correlation",
    "nfa_over_training",
    "nfm",
    "progress_measures",
    "restricted_loss",
    "spectrum",
]

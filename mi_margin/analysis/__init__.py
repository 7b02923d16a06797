"""Hook-based analyzers: Fourier and irrep spectra, ablations, margins, progress measures, NFM/AGOP.

Every analyzer is one call returning a frozen result with ``.top(k)``, ``.to_dataframe()`` and
``.plot()`` (see :class:`~mi_margin.analysis.results.AnalysisResult`).
"""

from mi_margin.analysis.ablation import frequency_ablation_hook, grid_projection_hook
from mi_margin.analysis.agop import AGOPAndKernel, agop, agop_and_kernel
from mi_margin.analysis.clock_pizza import ClockPizza, clock_pizza, distance_irrelevance
from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.fourier import (
    FourierSpectrum,
    LogitSimilarity,
    NeuronClusters,
    fourier_gini,
    fourier_spectrum,
    frequency_shares,
    gini,
    key_frequencies,
    logit_similarity,
    neuron_clusters,
    neuron_frequencies,
)
from mi_margin.analysis.irrep_ablation import (
    IrrepRestrictedLoss,
    irrep_ablated_logits,
    irrep_ablation_hook,
    irrep_restricted_loss,
)
from mi_margin.analysis.irrep_progress import IrrepProgress, irrep_progress
from mi_margin.analysis.irreps import (
    IrrepLogitSimilarity,
    IrrepSpectrum,
    NeuronIrreps,
    character_similarity,
    irrep_grid_basis,
    irrep_logit_similarity,
    irrep_spectrum,
    key_irreps,
    neuron_irrep_clusters,
    neuron_irreps,
)
from mi_margin.analysis.margin import MarginResult, margin
from mi_margin.analysis.nfa import (
    NFAResult,
    circulant_deviation,
    matrix_correlation,
    nfa_correlation,
    psd_power,
)
from mi_margin.analysis.nfa_training import NFATrajectory, nfa_over_training
from mi_margin.analysis.nfm import nfm
from mi_margin.analysis.progress import ProgressMeasures, progress_measures
from mi_margin.analysis.restricted import RestrictedLoss, restricted_loss
from mi_margin.analysis.results import AnalysisResult

__all__ = [
    "AGOPAndKernel",
    "AnalysisResult",
    "ClockPizza",
    "FeatureMatrix",
    "FourierSpectrum",
    "IrrepLogitSimilarity",
    "IrrepProgress",
    "IrrepRestrictedLoss",
    "IrrepSpectrum",
    "LogitSimilarity",
    "MarginResult",
    "NFAResult",
    "NFATrajectory",
    "NeuronClusters",
    "NeuronIrreps",
    "ProgressMeasures",
    "RestrictedLoss",
    "agop",
    "agop_and_kernel",
    "character_similarity",
    "circulant_deviation",
    "clock_pizza",
    "distance_irrelevance",
    "fourier_gini",
    "fourier_spectrum",
    "frequency_ablation_hook",
    "frequency_shares",
    "gini",
    "grid_projection_hook",
    "irrep_ablated_logits",
    "irrep_ablation_hook",
    "irrep_grid_basis",
    "irrep_logit_similarity",
    "irrep_progress",
    "irrep_restricted_loss",
    "irrep_spectrum",
    "key_frequencies",
    "key_irreps",
    "logit_similarity",
    "margin",
    "matrix_correlation",
    "neuron_clusters",
    "neuron_frequencies",
    "neuron_irrep_clusters",
    "neuron_irreps",
    "nfa_correlation",
    "nfa_over_training",
    "nfm",
    "progress_measures",
    "psd_power",
    "restricted_loss",
]

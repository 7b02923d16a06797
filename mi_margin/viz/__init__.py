"""Pictures: plotly figures for every result, circuitsvis attention views and the HTML run report.

Every figure works offline (no CDN at render time) and in Jupyter. Result objects' ``.plot()``
methods call the functions here.
"""

from mi_margin.viz.ablation import plot_ablation_losses
from mi_margin.viz.attention import AttentionView, attention_heatmap, attention_view, operand_attention
from mi_margin.viz.feature_alignment import feature_matrix_heatmap, nfa_heatmaps, nfa_training_figure
from mi_margin.viz.fourier import (
    neuron_heatmaps,
    plot_clock_pizza,
    plot_logit_similarity,
    plot_neuron_clusters,
    plot_progress,
    plot_spectrum,
)
from mi_margin.viz.irreps import (
    cayley_table_figure,
    character_table_figure,
    neuron_purity_heatmap,
    plot_irrep_logit_similarity,
    plot_irrep_progress,
    plot_irrep_spectrum,
    plot_neuron_irreps,
)
from mi_margin.viz.report import write_report
from mi_margin.viz.theory import comparison_figure, margin_figure
from mi_margin.viz.training import progress_curves, training_curves

__all__ = [
    "AttentionView",
    "attention_heatmap",
    "attention_view",
    "cayley_table_figure",
    "character_table_figure",
    "comparison_figure",
    "feature_matrix_heatmap",
    "margin_figure",
    "neuron_heatmaps",
    "neuron_purity_heatmap",
    "nfa_heatmaps",
    "nfa_training_figure",
    "operand_attention",
    "plot_ablation_losses",
    "plot_clock_pizza",
    "plot_irrep_logit_similarity",
    "plot_irrep_progress",
    "plot_irrep_spectrum",
    "plot_logit_similarity",
    "plot_neuron_clusters",
    "plot_neuron_irreps",
    "plot_progress",
    "plot_spectrum",
    "progress_curves",
    "training_curves",
    "write_report",
]

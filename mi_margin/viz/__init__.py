"""Pictures: plotly figures for every result, circuitsvis attention views and the HTML run report.

Every figure works offline (no CDN at render time) and in Jupyter. Importing this package registers
one figure per analysis result type (:mod:`mi_margin.viz.figures`), so ``result.plot()`` and
:func:`plot` draw any result; the functions below draw what is not a single result.
"""

from mi_margin.viz.attention import AttentionView, attention_heatmap, attention_view, operand_attention
from mi_margin.viz.figures import plot
from mi_margin.viz.harmonic import neuron_heatmaps, neuron_purity_heatmap
from mi_margin.viz.irreps import cayley_table_figure, character_table_figure
from mi_margin.viz.report import write_report
from mi_margin.viz.training import progress_curves, training_curves

__all__ = [
    "AttentionView",
    "attention_heatmap",
    "attention_view",
    "cayley_table_figure",
    "character_table_figure",
    "neuron_heatmaps",
    "neuron_purity_heatmap",
    "operand_attention",
    "plot",
    "progress_curves",
    "training_curves",
    "write_report",
]

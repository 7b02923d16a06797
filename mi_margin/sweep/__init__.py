"""Sweeps: many runs from one spec, on Ray (a laptop's cores or a cluster), with a results table.

Example:
    >>> from mi_margin.sweep import SweepSpec, run_sweep, universality
    >>> spec = SweepSpec(task={"kind": "group_composition", "group": "S3", "train_fraction": 0.5},
    ...                  model={"kind": "mlp", "d_mlp": 16}, train={"steps": 50},
    ...                  axes={"seed": [0, 1, 2]}, analyses=("irreps",))
    >>> result = run_sweep(spec, "sweeps/s3")           # doctest: +SKIP
    >>> universality(result.table)                       # doctest: +SKIP
"""

from mi_margin.sweep.execute import SweepResult, run_sweep
from mi_margin.sweep.plots import heatmap_figure, universality_figure
from mi_margin.sweep.spec import RunSpec, SweepSpec
from mi_margin.sweep.summary import grid_metric, key_sets, universality
from mi_margin.sweep.table import collect, grokking_step, read_table, write_table

__all__ = ["RunSpec", "SweepResult", "SweepSpec", "collect", "grid_metric", "grokking_step",
           "heatmap_figure", "key_sets", "read_table", "run_sweep", "universality",
           "universality_figure", "write_table"]

"""Summaries of a sweep table: the universality table and metrics over a grid of two axes.

The universality table counts, across the runs of a sweep (usually seeds), how often each irrep
(group composition) or frequency (modular addition) is key — Chughtai et al. (2023) Fig. 7 over 50
S5 seeds (docs/mathematics.md §3.5): which representations are learned, how often, and how many per run.
Every possible label is listed, so a representation that is never learned shows as 0 (the 6-dim
irrep of S5 in Chughtai et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from mi_margin.errors import MiMarginError
from mi_margin.groups import get
from mi_margin.sweep.table import LIST_COLUMNS

#: statuses whose models are analysed
DONE = ("finished", "stopped_early")
AGGREGATIONS = ("median", "mean", "min", "max", "count")


def _key_column(table: pd.DataFrame, column: str | None) -> str:
    if column is not None:
        if column not in table:
            raise MiMarginError(f"column {column!r} is not in the sweep table; it has "
                                f"{[c for c in LIST_COLUMNS if c in table]}")
        return column
    present = [c for c in LIST_COLUMNS if c in table and table[c].map(_is_list).any()]
    if not present:
        raise MiMarginError("the sweep table has no key_irreps/key_frequencies results; "
                            "run the sweep with analyses 'irreps' or 'fourier'")
    return present[-1]  # key_irreps when both exist (a group task)


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple))


def analysed(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Runs that finished and whose ``column`` analysis succeeded."""
    ok = table["status"].isin(DONE) & table[column].map(_is_list)
    return table.loc[ok]


def possible_labels(table: pd.DataFrame, column: str) -> list[str]:
    """Every label that could be key: all irreps of the sweep's group (``G.irreps()`` order) or all
    frequencies 1..p//2, when the table holds one group / one modulus; else the observed ones."""
    if column == "key_irreps" and "task.group" in table and table["task.group"].nunique() == 1:
        return [irrep.name for irrep in get(str(table["task.group"].iloc[0])).irreps()]
    if column == "key_frequencies" and "task.p" in table and table["task.p"].nunique() == 1:
        return [str(f) for f in range(1, int(table["task.p"].iloc[0]) // 2 + 1)]
    seen = sorted({str(v) for keys in table[column] if _is_list(keys) for v in keys})
    return seen


def universality(table: pd.DataFrame, column: str | None = None,
                 by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """How often each irrep / frequency is key across the analysed runs.

    Args:
        table: a sweep table (:func:`~mi_margin.sweep.collect` or ``run_sweep(...).table``).
        column: ``"key_irreps"`` or ``"key_frequencies"`` (default: whichever the table has).
        by: optional column(s) to split by, e.g. ``"model.act_fn"`` (one count per value).

    Returns:
        One row per (group of ``by``,) label: ``label``, ``n_key`` (runs where it is key),
        ``n_runs`` (analysed runs), ``fraction`` = n_key / n_runs.

    Example:
        >>> t = pd.DataFrame({"status": ["finished"] * 2,
        ...                   "key_irreps": [["sign"], ["sign", "std"]]})
        >>> universality(t)[["label", "n_key"]].values.tolist()
        [['sign', 2], ['std', 1]]
    """
    column = _key_column(table, column)
    labels = possible_labels(table, column)
    keys = [by] if isinstance(by, str) else list(by or [])
    runs = analysed(table, column)
    groups = runs.groupby(keys, dropna=False) if keys else [((), runs)]
    rows = []
    for group, part in groups:
        values = group if isinstance(group, tuple) else (group,)
        sets = [{str(v) for v in k} for k in part[column]]
        for label in labels:
            n_key = sum(label in s for s in sets)
            rows.append({**dict(zip(keys, values)), "label": label, "n_key": n_key,
                         "n_runs": len(sets), "fraction": n_key / len(sets) if sets else 0.0})
    return pd.DataFrame(rows, columns=[*keys, "label", "n_key", "n_runs", "fraction"])


def key_sets(table: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """How many runs learned each exact set of key labels, and the number of keys per run.

    Example:
        >>> t = pd.DataFrame({"status": ["finished"] * 3,
        ...                   "key_irreps": [["sign", "std"], ["std", "sign"], ["sign"]]})
        >>> key_sets(t)[["key_set", "size", "n_runs"]].values.tolist()
        [['sign + std', 2, 2], ['sign', 1, 1]]
    """
    column = _key_column(table, column)
    runs = analysed(table, column)
    sets = [" + ".join(sorted(str(v) for v in k)) or "(none)" for k in runs[column]]
    sizes = [len(k) for k in runs[column]]
    df = pd.DataFrame({"key_set": sets, "size": sizes})
    out = df.groupby(["key_set", "size"]).size().rename("n_runs").reset_index()
    out["fraction"] = out["n_runs"] / max(len(df), 1)
    return out.sort_values(["n_runs", "key_set"], ascending=[False, True]).reset_index(drop=True)


def grid_metric(table: pd.DataFrame, x: str, y: str, metric: str, agg: str = "median"
                ) -> pd.DataFrame:
    """``metric`` aggregated over the runs at each (y, x) grid point: rows y values, columns x.

    NaN (e.g. ``grokking_step`` of a run that never reached the accuracy) is skipped by the
    aggregation; ``agg="count"`` counts the runs with a value.

    Example:
        >>> t = pd.DataFrame({"wd": [0.1, 0.1, 1.0], "frac": [0.3, 0.3, 0.3],
        ...                   "grokking_step": [400.0, 600.0, 200.0]})
        >>> grid_metric(t, "wd", "frac", "grokking_step").values.tolist()
        [[500.0, 200.0]]
    """
    for name in (x, y, metric):
        if name not in table:
            raise MiMarginError(f"column {name!r} is not in the sweep table; columns: "
                                f"{list(table.columns)}")
    if agg not in AGGREGATIONS:
        raise MiMarginError(f"agg must be one of {list(AGGREGATIONS)}, got agg={agg!r}")
    values = pd.to_numeric(table[metric], errors="coerce")
    frame = pd.DataFrame({x: table[x], y: table[y], metric: values})
    return frame.pivot_table(index=y, columns=x, values=metric, aggfunc=agg, dropna=False)

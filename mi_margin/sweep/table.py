"""The sweep results table: one row per run, rebuilt from the run folders at any time.

Columns:

- ``run_id``, ``index``, ``status`` (``finished``, ``stopped_early``, ``diverged``, ``failed``,
  ``running`` = interrupted, will resume; ``pending`` = not started), ``error`` (the exception's
  last line; the traceback is in the folder's ``error.txt``), ``seconds`` (worker time), ``path``;
- the axis values under their dotted names (``seed``, ``train.weight_decay``, ...);
- the configuration, flattened as ``task.*``, ``model.*``, ``train.*`` (the resolved configs from
  ``run.json`` once a run trained, else the spec's values);
- the final metrics: ``step``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
  ``weight_norm_sq`` (last history row);
- ``grokking_step``: the first evaluated step with test accuracy ≥ :data:`GROKKING_ACC` (0.99),
  NaN if never reached or without a test set (a property of the ``eval_every`` grid, so it is
  known only to within ``eval_every`` steps);
- the analyses' columns (``key_frequencies``, ``key_irreps`` as lists, ``normalized_margin``,
  ``gamma_predicted``, ``margin_ratio``, ...) and ``<analysis>_error`` where one failed.

Parquet keeps the list columns as lists; CSV stores them as JSON text, and :func:`read_table`
turns them back into lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mi_margin.errors import MiMarginError
from mi_margin.sweep.spec import SECTIONS, RunSpec
from mi_margin.sweep.worker import ANALYSIS_FILE, ERROR_FILE, SPEC_FILE, read_json
from mi_margin.training.run_folder import published_history, read_status

#: test accuracy that counts as "grokked" (Nanda et al. 2023 use near-perfect test accuracy)
GROKKING_ACC = 0.99
FINAL_METRICS = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "weight_norm_sq")
LIST_COLUMNS = ("key_frequencies", "key_irreps")
FORMATS = ("parquet", "csv")
#: config entries left out of the table (a custom group's Cayley table is not a column)
SKIP_CONFIG = ("cayley_table",)


def grokking_step(history: pd.DataFrame, threshold: float = GROKKING_ACC) -> float:
    """First ``step`` of ``history`` whose ``test_acc`` is ≥ ``threshold`` (NaN if none).

    Example:
        >>> grokking_step(pd.DataFrame({"step": [0, 100, 200], "test_acc": [0.1, 0.995, 1.0]}))
        100.0
    """
    if "test_acc" not in history or not len(history):
        return math.nan
    hit = history.loc[history["test_acc"] >= threshold, "step"]
    return float(hit.iloc[0]) if len(hit) else math.nan


def _flat(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    """``{prefix.key: value}``; lists become JSON text so every config column is a scalar."""
    return {f"{prefix}.{k}": json.dumps(v) if isinstance(v, (list, tuple, dict)) else v
            for k, v in d.items() if k not in SKIP_CONFIG}


def _config_columns(root: Path, spec: RunSpec) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for section in SECTIONS:
        row.update(_flat(section, getattr(spec, section)))
    meta = read_json(root / "run.json") if read_status(root) else {}
    for section in SECTIONS:
        if section in meta:
            row.update(_flat(section, meta[section]))
    return row


def _analysis_columns(root: Path, names: Sequence[str]) -> dict[str, Any]:
    done = read_json(root / ANALYSIS_FILE)
    row: dict[str, Any] = {}
    for name in names:
        result = done.get(name, {})
        if "error" in result:
            row[f"{name}_error"] = result["error"]
        else:
            row.update({k: v for k, v in result.items() if k != "options"})
    return row


def _status(root: Path) -> tuple[str, str | None]:
    status = read_status(root)
    error_path = root / ERROR_FILE
    error = None
    if error_path.is_file():
        lines = error_path.read_text().strip().splitlines()
        error = lines[-1] if lines else "unknown error"
    if status is None:
        status = "failed" if error else "pending"
    elif status == "running" and error:
        status = "failed"
    return status, error


def run_row(root: Path, spec: RunSpec | None = None) -> dict[str, Any]:
    """The table row of the run folder ``root`` (``spec``: the run's spec, else read from the
    folder's ``sweep_run.json``)."""
    saved = read_json(root / SPEC_FILE)
    if spec is None:
        if "spec" not in saved:
            raise MiMarginError(f"{root} is not a sweep run folder (no {SPEC_FILE})")
        spec = RunSpec.from_dict(saved["spec"])
    status, error = _status(root)
    row: dict[str, Any] = {"run_id": root.name, "index": spec.index, "status": status,
                           "error": error, "seconds": saved.get("seconds", math.nan),
                           "path": str(root)}
    row.update(spec.point)
    row.update(_config_columns(root, spec))
    history = published_history(root)
    last = history.iloc[-1].to_dict() if len(history) else {}
    row.update({m: last.get(m, math.nan) for m in FINAL_METRICS})
    row["grokking_step"] = grokking_step(history)
    row.update(_analysis_columns(root, spec.analyses))
    return row


def collect(out_dir: str | Path, runs: Sequence[tuple[RunSpec, Path]] | None = None
            ) -> pd.DataFrame:
    """The sweep table rebuilt from run folders.

    Args:
        out_dir: the sweep's output folder.
        runs: (spec, folder) of the runs to include (a sweep passes its own grid, so runs of an
            earlier, different spec in the same folder are left out); None: every run folder.

    Example:
        >>> table = collect("sweeps/s4")          # doctest: +SKIP
        >>> table.groupby("status").size()         # doctest: +SKIP
    """
    out = Path(out_dir)
    if runs is None:
        folders = sorted(p.parent for p in out.glob(f"*/{SPEC_FILE}"))
        rows = [run_row(p) for p in folders]
    else:
        rows = [run_row(root, spec) for spec, root in runs]
    table = pd.DataFrame(rows)
    return table.sort_values("index", kind="stable").reset_index(drop=True) if len(table) else table


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as Parquet (``.parquet``) or CSV (``.csv``; list columns as JSON text)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise MiMarginError(f"table file must end in .parquet or .csv, got {path.name}")
    from mi_margin.models.io import atomic_write

    if fmt == "csv":
        text = table.copy()
        for col in LIST_COLUMNS:
            if col in text:
                text[col] = [json.dumps(v) if isinstance(v, list) else v for v in text[col]]
        atomic_write(path, lambda tmp: text.to_csv(tmp, index=False))
        return path
    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise MiMarginError("writing Parquet needs pyarrow: pip install 'mi_margin[sweep]' "
                            "(or use table_format='csv')") from err
    atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (CSV list columns become lists again).

    Example:
        >>> table = read_table("sweeps/s4/table.parquet")   # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        for col in LIST_COLUMNS:
            if col in table:
                table[col] = [list(v) if v is not None and not _is_nan(v) else v
                              for v in table[col]]
        return table
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        for col in LIST_COLUMNS:
            if col in table:
                table[col] = [json.loads(v) if isinstance(v, str) else v for v in table[col]]
        return table
    raise MiMarginError(f"table file must end in .parquet or .csv, got {path.name}")


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)

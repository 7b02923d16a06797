"""``import mi_margin`` leaves the heavy optional parts unloaded, and they load on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_import_loads_no_heavy_optional_module():
    out = fresh("import sys, mi_margin; print(sorted(m for m in ('plotly', 'circuitsvis', 'ray', "
                "'scipy', 'mi_margin.viz', 'mi_margin.sweep') if m in sys.modules))")
    assert out == "[]"


def test_lazy_subpackages_load_on_attribute_access():
    out = fresh("import mi_margin as mm; print(mm.viz.write_report.__module__, "
                "mm.sweep.run_sweep.__module__)")
    assert out == "mi_margin.viz.report mi_margin.sweep.execute"


def test_unknown_attribute_is_an_attribute_error():
    import mi_margin as mm

    with pytest.raises(AttributeError, match="no attribute 'vizz'"):
        _ = mm.vizz
    assert "viz" in dir(mm)


def test_progress_bar_is_plain_tqdm_without_ipywidgets(monkeypatch):
    import importlib.util

    from tqdm import tqdm

    from mi_margin._progress import progress_bar

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    bar = progress_bar(range(2), disable=True)
    assert type(bar) is tqdm

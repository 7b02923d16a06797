"""Fixtures of the analysis tests: the slow reference implementations (reference_analysis.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    """tests/analysis/reference_analysis.py, the oracle of the one-pass analyses."""
    spec = importlib.util.spec_from_file_location(
        "reference_analysis", Path(__file__).with_name("reference_analysis.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

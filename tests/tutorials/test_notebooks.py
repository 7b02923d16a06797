"""Every tutorial notebook runs in fast mode (MI_MARGIN_FAST=1) and prints a RESULT line whose
values we check against the maths (ranges of frequencies and irreps, the margin theorem's bound
γ ≤ γ*, the certificate attaining γ*, the bridge reproducing the model), not only that it ran.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import mi_margin as mm
from mi_margin import theory

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
RESULT = re.compile(r"^RESULT (\{.*\})$", re.MULTILINE)
#: a ratio to γ* above 1 + this would contradict the max-margin theorem
RATIO_TOL = 1e-6


@pytest.fixture(autouse=True)
def fast_mode(monkeypatch):
    """The kernels inherit the environment: run every notebook in its fast mode."""
    monkeypatch.setenv("MI_MARGIN_FAST", "1")


def run_notebook(name: str) -> dict[str, Any]:
    """Execute tutorials/``name`` in fast mode and parse its ``RESULT {json}`` line."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{name} is committed with outputs; rebuild it with tutorials/_build.py"
    NotebookClient(nb, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(TUTORIALS)}}).execute()
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.get("output_type") == "stream")
    found = RESULT.findall(text)
    assert len(found) == 1, f"{name} printed {len(found)} RESULT lines"
    return json.loads(found[0])


def _frequencies_in_range(freqs: Any, p: int) -> None:
    assert isinstance(freqs, list) and freqs, f"no key frequencies: {freqs!r}"
    assert all(isinstance(f, int) and 1 <= f <= p // 2 for f in freqs), (freqs, p)


def test_01_grokking():
    res = run_notebook("01_grokking_modular_addition.ipynb")
    _frequencies_in_range(res["key_frequencies"], res["p"])
    assert res["train_acc"] == 1.0
    assert res["restricted"] > 0 and res["excluded"] > 0


def test_02_margins_and_theory():
    res = run_notebook("02_margins_and_theory.ipynb")
    task = mm.ModularAddition(p=res["p"])
    assert res["gamma"] == pytest.approx(theory.max_margin(task, act_fn="quadratic").gamma,
                                         rel=1e-9)
    assert res["certificate_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert 0 < res["trained_ratio"] <= 1 + RATIO_TOL
    assert res["relu_applies"] is False


def test_03_group_composition():
    res = run_notebook("03_group_composition.ipynb")
    G = mm.groups.get(res["group"])
    names = {rho.name for rho in G.irreps()}
    assert res["key_irreps"] and set(res["key_irreps"]) <= names - {"trivial"}, res["key_irreps"]
    a5 = theory.max_margin(mm.GroupComposition(mm.groups.alternating(5)), act_fn="quadratic")
    assert res["a5_extension"] is True
    assert res["a5_gamma"] == pytest.approx(a5.gamma, rel=1e-9)
    assert set(res["a5_irreps"]) == set(a5.irreps or ())


def test_04_k_input_and_parity():
    res = run_notebook("04_k_input_and_parity.ipynb")
    _frequencies_in_range(res["k3_key_frequencies"], res["p"])
    assert 0 < res["k3_ratio"] <= 1 + RATIO_TOL
    assert res["parity_certificate_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert 0 < res["parity_ratio"] <= 1 + RATIO_TOL


def test_05_ablation_studies():
    res = run_notebook("05_ablation_studies.ipynb")
    _frequencies_in_range(res["key_frequencies"], res["p"])
    assert res["bridge_diff"] < 1e-4
    assert res["remove_key"] > res["keep_key"]
    assert res["bridge_remove_key"] == pytest.approx(res["remove_key"], rel=1e-4)

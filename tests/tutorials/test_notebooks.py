"""Every tutorial notebook runs in fast mode (MI_MARGIN_FAST=1) and prints a RESULT line whose
values we check against the maths (closed forms of γ* computed here from the theorems, the
certificate attaining γ*, homogeneity, the product and polarization identities, which irreps make
the GCR algorithm exact, TransformerLens patching identities), not only that it ran. Where a
notebook used a shipped zoo model (``from_zoo``), the checks include what the zoo promises
(the p = 71 model within 1% of γ*, the S4 max-margin model using every non-trivial irrep).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
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


def theorem7_gamma(p: int) -> float:
    """Theorem 7 (Morwani et al.): γ* = √(2/27) / (√p (p − 1))."""
    return math.sqrt(2 / 27) / (math.sqrt(p) * (p - 1))


def theorem41_gamma(p: int, k: int) -> float:
    """Theorem 4.1 (Li et al.): γ* = 2·k! / ((2k + 2)^{(k+1)/2} (p − 1) p^{(k−1)/2})."""
    return 2 * math.factorial(k) / ((2 * k + 2) ** ((k + 1) / 2) * (p - 1) * p ** ((k - 1) / 2))


def theorem8_gamma(k: int) -> float:
    """Theorem 8 (Morwani et al.): γ* = k! √(2 (k + 1)^{−(k+1)})."""
    return math.factorial(k) * math.sqrt(2 * (k + 1) ** (-(k + 1)))


def theorem9_gamma(G: Any) -> float:
    """Theorem 9 (Morwani et al.): γ* = 2 / (3 √(3|G|) Σ_{ρ≠1} d_ρ^{2.5})."""
    dims = [rho.dim for rho in G.irreps() if rho.name != "trivial"]
    return 2 / (3 * math.sqrt(3 * G.order) * sum(d ** 2.5 for d in dims))


def test_01_grokking():
    res = run_notebook("01_grokking_modular_addition.ipynb")
    p, key = res["p"], res["key_frequencies"]
    _frequencies_in_range(key, p)
    assert res["train_acc"] == 1.0
    assert res["identity_error"] < 1e-12                   # cos ω(a+b) = cos cos − sin sin
    assert res["best_wrong_wave"] < 1 - 1e-9               # the key waves peak only at c = a + b
    # the circuit alone solves the task; without it the model cannot fit its own training data
    assert res["restricted"] < res["excluded"]
    assert res["excluded"] > 10 * res["train_loss"]
    # the embedding concentrates on the key frequencies (more than their uniform share)
    assert res["embed_key_share"] > len(key) / (p // 2)
    # progress measures on dense checkpoints, several of them inside the grokking window
    steps, bounds = res["checkpoint_steps"], res["bounds"]
    assert len(steps) >= 20
    end = bounds["grokked"] or bounds["end"]
    assert sum(bounds["memorized"] < s < end for s in steps) >= 5, (steps, bounds)
    at_memorized = next(i for i, s in enumerate(steps) if s >= bounds["memorized"])
    assert res["progress_excluded"][-1] > res["progress_excluded"][at_memorized]
    assert res["progress_restricted"][-1] < res["progress_restricted"][0]


def test_02_margins_and_theory():
    res = run_notebook("02_margins_and_theory.ipynb")
    p = res["p"]
    assert res["gamma"] == pytest.approx(theorem7_gamma(p), rel=1e-9)
    assert res["nu"] == 3
    assert res["homogeneity_ratio"] == pytest.approx(res["lambda"] ** 3, rel=1e-9)
    assert res["normalized_unchanged"] < 1e-9
    assert res["certificate_ratio"] == pytest.approx(1.0, abs=1e-9)
    # the certificate's logits are κ(p·1[c = a+b] − 1)/2: every wrong answer equal, correct/wrong = −(p−1)
    correct, (lowest, highest) = res["certificate_correct"], res["certificate_wrong"]
    assert highest - lowest < 1e-9 * abs(correct)
    assert correct / highest == pytest.approx(-(p - 1), rel=1e-9)
    assert 0 < res["trained_ratio"] <= 1 + RATIO_TOL
    if res["from_zoo"]:
        assert res["trained_ratio"] >= 0.99
        assert res["labels_used"] == (p - 1) // 2            # Theorem 7: every frequency
    assert res["relu_applies"] is False


def test_03_group_composition():
    res = run_notebook("03_group_composition.ipynb")
    G = mm.groups.get(res["group"])
    nontrivial = {rho.name for rho in G.irreps()} - {"trivial"}
    for name, keys in res["seed_key_irreps"].items():
        assert keys and set(keys) <= nontrivial, (name, keys)
        assert res["seed_test_acc"][name] >= 0.99
        assert res["seed_restricted"][name] < res["seed_excluded"][name]
    # GCR with one irrep answers the whole table exactly when the irrep is faithful
    for rho in G.irreps():
        faithful = int(np.isclose(rho.character, rho.dim).sum()) == 1
        assert (res["gcr_correct"][rho.name] == 1.0) == faithful, rho.name
    S4 = mm.groups.symmetric(4)
    assert res["quad_gamma"] == pytest.approx(theorem9_gamma(S4), rel=1e-9)
    assert 0 < res["quad_ratio"] <= 1 + RATIO_TOL
    if res["quad_from_zoo"]:                                 # Theorem 9: every non-trivial irrep
        assert res["quad_ratio"] >= 0.99
        assert set(res["quad_key_irreps"]) == {r.name for r in S4.irreps()} - {"trivial"}
        assert res["quad_labels_used"] == len(S4.irreps()) - 1
    a5 = theory.max_margin(mm.GroupComposition(mm.groups.alternating(5)), act_fn="quadratic")
    assert res["a5_extension"] is True
    assert res["a5_gamma"] == pytest.approx(a5.gamma, rel=1e-9)
    assert set(res["a5_irreps"]) == set(a5.irreps or ())


def test_04_k_input_and_parity():
    res = run_notebook("04_k_input_and_parity.ipynb")
    p, k = res["p"], res["k"]
    assert k == 3
    _frequencies_in_range(res["k3_key_frequencies"], p)
    assert res["polarization_error"] < 1e-10
    assert res["k3_gamma"] == pytest.approx(theorem41_gamma(p, k), rel=1e-9)
    assert res["k3_certificate_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert res["k3_ratio"] <= 1 + RATIO_TOL
    assert res["parity_gamma"] == pytest.approx(theorem8_gamma(res["parity_k"]), rel=1e-9)
    assert res["parity_certificate_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert 0 < res["parity_ratio"] <= 1 + RATIO_TOL
    assert res["support_share"] > res["parity_k"] / res["parity_n"]   # above a uniform spread
    if res["parity_from_zoo"]:
        assert res["support_share"] > 0.9


def test_05_ablation_studies():
    res = run_notebook("05_ablation_studies.ipynb")
    _frequencies_in_range(res["key_frequencies"], res["p"])
    assert res["bridge_diff"] < 1e-4
    # patching resid_pre: the 'a' position carries all that differs, 'b' and '=' nothing
    clean, corrupted = res["clean"], res["corrupted"]
    assert clean > corrupted
    assert res["resid_patch"][0] == pytest.approx(clean, rel=1e-5, abs=1e-5)
    assert res["resid_patch"][1] == pytest.approx(corrupted, rel=1e-5, abs=1e-5)
    assert res["resid_patch"][2] == pytest.approx(corrupted, rel=1e-5, abs=1e-5)
    assert res["fourier"]["remove key"] > res["fourier"]["keep key"]
    for table in (res["heads"], res["clusters"]):
        for losses in table.values():
            assert set(losses) == {"zero", "mean", "resample"}
            assert all(math.isfinite(v) and v >= 0 for v in losses.values())


RENDERED = ROOT / "docs" / "tutorials"
#: the rendered pages and their figures stay small (the repository ships them)
RENDERED_BUDGET_BYTES = 4_000_000


@pytest.mark.parametrize("path", sorted(TUTORIALS.glob("[0-9]*.ipynb")), ids=lambda p: p.stem)
def test_rendered_page_matches_the_notebook(path):
    """docs/tutorials/<name>.md was rendered from the current notebook: same code, same text
    (rerun tutorials/_render.py after editing tutorials/_build.py)."""
    page = RENDERED / f"{path.stem}.md"
    assert page.is_file(), f"{page} missing: run python tutorials/_render.py {path.stem[:2]}"
    text = page.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert re.findall(r"^```python\n(.*?)\n```$", text, flags=re.M | re.S) == code
    assert all(c.source in text for c in nb.cells if c.cell_type == "markdown")
    for image in re.findall(r"!\[figure\]\((.*?)\)", text):
        assert (RENDERED / image).is_file(), image


def test_rendered_pages_stay_small():
    size = sum(f.stat().st_size for f in RENDERED.rglob("*") if f.is_file())
    assert 0 < size <= RENDERED_BUDGET_BYTES, size

"""Every tutorial notebook runs in fast mode (MI_MARGIN_FAST=1) and prints a RESULT line whose
values we check against the maths (closed forms of γ* computed here from the theorems, the
certificate attaining γ*, homogeneity, the product and polarization identities, which irreps make
the GCR algorithm exact, TransformerLens patching identities), not only that it ran. Where a
notebook used a shipped zoo model (``from_zoo``), the checks include what the zoo promises
(the p = 71 model within 1% of γ*, and certified so by the harmonic bound at less cost than brute
force; the S4 max-margin model using every non-trivial irrep; Nanda's transformer explained with a
scrub recovering over 99% of the loss, and refused a certificate; the S5 MLP certified on every
input by both bounds, every certificate below the brute-force margins).
Tutorial 7's population views must equal its hand counts, Theorem 9's shares ∝ d^2.5, and a
seed's weights must give its row back.
Tutorial 6 runs with its exercises' solutions filled in; its check cells must pass, and each check
must fail on a wrong answer.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import einops
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

import mi_margin as mm
from mi_margin import theory
from mi_margin.fourier.cyclic import fourier_basis, pool_frequencies

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
RESULT = re.compile(r"^RESULT (\{.*\})$", re.MULTILINE)
#: a ratio to γ* above 1 + this would contradict the max-margin theorem
RATIO_TOL = 1e-6


@pytest.fixture(autouse=True)
def fast_mode(monkeypatch):
    """The kernels inherit the environment: run every notebook in its fast mode."""
    monkeypatch.setenv("MI_MARGIN_FAST", "1")


def read_notebook(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{name} is committed with outputs; rebuild it with tutorials/_build.py"
    return nb


def run_notebook(name: str, nb: nbformat.NotebookNode | None = None) -> dict[str, Any]:
    """Execute tutorials/``name`` (or ``nb``, a modified copy of it) in fast mode and parse its
    ``RESULT {json}`` line."""
    nb = read_notebook(name) if nb is None else nb
    NotebookClient(nb, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(TUTORIALS)}}).execute()
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.get("output_type") == "stream"
                   and out.get("name") == "stdout")     # stderr holds progress bars (no newline)
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
    # the runnable explanation: its labels are among its key frequencies, the scrub (left-out
    # parts from a random input) recovers more of the loss than the control (kept parts from one)
    _frequencies_in_range(res["explanation_key"], p)
    assert set(res["explanation_labels"]) <= set(res["explanation_key"])
    fid = dict(zip(res["fidelity"]["measure"], res["fidelity"]["recovered"]))
    assert fid["scrub: key from any input"] < res["scrub_recovered"]
    assert fid["resample any (baseline)"] == 0.0
    # the transformer is certified per input: sound, the allowance subtracted; the other bounds
    # refuse it, saying which one applies
    assert res["certified_accuracy"] <= res["accuracy"]
    assert res["min_certified_margin"] < res["min_margin"]
    assert "bound='per_input'" in res["certify_refusal"]
    assert 0 < res["low_rank_min_margin"] <= res["min_certified_margin"] or \
        res["low_rank_certified"] < 1          # its margin is the first certifying rank's
    if res["from_zoo"]:
        accuracy = dict(zip(res["fidelity"]["measure"], res["fidelity"]["accuracy"]))
        assert accuracy["explanation"] > 0.99 and res["scrub_recovered"] > 0.99
        assert res["certified_accuracy"] == res["accuracy"] == 1.0 and res["min_certified_margin"] > 0
        # the low-rank readout certifies every input too, at under half brute force's cost
        assert res["low_rank_certified"] == 1.0 and res["low_rank_flops_ratio"] < 0.5
        assert fid["scrub: key from any input"] < 0.1
        # as the page says: the scrub keeps the loss but tips some answers
        assert accuracy["scrub: rest from any input"] < accuracy["explanation"]


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
    # the harmonic certificate is sound: one margin bound for every input, never above the true
    # margin (so its ratio to γ* never above the trained one), certifying all inputs iff positive
    assert res["certified_margin"] <= res["margin"]
    assert res["certified_ratio"] <= res["trained_ratio"] * (1 + 1e-12)
    assert res["certified_accuracy"] == float(res["certified_margin"] > 0)
    if res["from_zoo"]:
        assert res["explanation_accuracy"] == 1.0 and res["scrub_recovered"] > 0.99
        assert res["same_labels"] is True
        assert res["certified_accuracy"] == 1.0 and res["certified_ratio"] >= 0.99
        assert res["certificate_flops"] < res["brute_force_flops"]


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
    # the S5 MLP's explanation, fidelity and certificates: every certificate is sound (each
    # input's certified margin never above its true margin, the certified accuracy never above the
    # brute-force one), the per-input bound at least as tight as the uniform one, and the
    # harmonic bound refused on a ReLU network
    assert res["s5_group"] == "S5"
    S5 = mm.groups.symmetric(5)
    assert set(res["s5_labels"]) - {None} <= {rho.name for rho in S5.irreps()} - {"trivial"}
    certs = res["s5_certificates"]
    for cert in certs.values():
        assert cert["min_slack"] >= 0
        assert cert["min_certified_margin"] <= res["s5_margin"]
        assert cert["certified_accuracy"] <= cert["accuracy"]
    uniform, per_input = certs["uniform"], certs["per_input"]
    assert per_input["certified_accuracy"] >= uniform["certified_accuracy"]
    assert per_input["min_certified_margin"] >= uniform["min_certified_margin"]
    assert "act_fn='relu'" in res["s5_harmonic_refusal"]
    # the A5 MLP: two labels per neuron certify more than one, as the page says (sound either way)
    for certified in res["a5_certified"].values():
        assert certified <= res["a5_accuracy"]
    if res["a5_from_zoo"]:
        assert res["a5_certified"]["1"] < 0.5 < 0.99 < res["a5_certified"]["2"]
    # the quadratic S4 network's harmonic bound: sound, cheaper than brute force, and on the zoo
    # model (trained towards the max margin) it certifies every input
    for cert in res["quad_certificates"].values():
        assert cert["min_certified_margin"] <= res["quad_margin"]
    assert res["quad_certificates"]["harmonic"]["flops_ratio"] < 1
    if res["quad_from_zoo"]:
        assert res["quad_certificates"]["harmonic"]["certified_accuracy"] == 1.0
    fid = dict(zip(res["s5_fidelity"]["measure"], res["s5_fidelity"]["recovered"]))
    assert fid["scrub: key from any input"] < res["s5_recovered"]
    if res["s5_from_zoo"]:                                   # what the entry's card promises
        assert res["s5_recovered"] > 0.99 and uniform["accuracy"] == 1.0
        assert uniform["certified_accuracy"] == per_input["certified_accuracy"] == 1.0


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



def _irrep_keys(row: Any) -> list[str]:
    """A group row's key irreps recomputed from its stored similarities with the threshold
    max(0.005, 4|G|^{-3/2}) (|G| = 1 + the stored block dimensions: Σ d² over the irreps)."""
    order = 1 + sum(json.loads(row.block_dims).values())
    cut = max(0.005, 4 * order ** -1.5)
    return sorted(lab for lab, v in json.loads(row.similarity).items() if v > cut)


def test_07_populations_of_seeds():
    res = run_notebook("07_populations_of_seeds.ipynb")
    s4 = mm.zoo.population("chughtai_S4_mlp")
    assert res["s4_seeds"] == len(s4)
    assert res["s4_generalized"] == int((s4.test_acc >= 0.99).sum())
    assert res["threshold"] == pytest.approx(max(0.005, 4 * 24 ** -1.5), rel=1e-12)
    # the view counts what a hand count finds, and its Theorem 9 shares are ∝ d^2.5
    assert res["key_view"] == res["key_by_hand"]
    assert res["theorem9_view"].keys() == res["theorem9_by_hand"].keys()
    for label, share in res["theorem9_by_hand"].items():
        assert res["theorem9_view"][label] == pytest.approx(share, rel=1e-9)
    assert res["n_delta_by_hand"] == res["n_delta_row"]
    for name, other in res["other"].items():
        table = mm.zoo.population(name)
        assert other["seeds"] == len(table) and other["grokked"] == int(table.grokked.sum())
        done = table[table.test_acc >= 0.99]
        if name.startswith("chughtai"):
            assert other["keys"] == [_irrep_keys(row) for _, row in done.iterrows()]
        else:
            assert all(keys and all(1 <= int(f) <= 56 for f in keys) for keys in other["keys"])
    # one seed's weights give its row's similarities back (float32 logits: a few ulps apart on
    # another CPU)
    check = res["seed_check"]
    assert check["available"] == (ROOT / "populations" / "chughtai_S4_mlp" / "seed_0").is_dir()
    if check["available"]:
        assert check["recomputed_keys"] == check["row_keys"]
        assert check["max_similarity_diff"] < 1e-5
    # three seeds, then one more: only the new one trains, each to its 300-step budget
    assert res["study_seeds"] == [100, 101, 102, 103]
    assert res["retrained"] == [103]
    assert res["study_steps"] == [300] * 4

RENDERED = ROOT / "docs" / "tutorials"
#: the rendered pages and their figures stay small (the repository ships them)
RENDERED_BUDGET_BYTES = 4_000_000


@pytest.mark.parametrize("path", sorted(TUTORIALS.glob("[0-9]*.ipynb")), ids=lambda p: p.stem)
def test_rendered_page_matches_the_notebook(path):
    """docs/tutorials/<name>.md was rendered from the current notebook: same code (but the test
    plumbing: the cell printing ``RESULT {json}``), same text, no path of the machine that built
    it (rerun tutorials/_render.py after editing tutorials/_build.py)."""
    page = RENDERED / f"{path.stem}.md"
    assert page.is_file(), f"{page} missing: run python tutorials/_render.py {path.stem[:2]}"
    text = page.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert sum('print("RESULT ' in c for c in code) <= 1        # the tests read that line
    shown = [c for c in code if 'print("RESULT ' not in c]
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert all(source in text for source in markdown)
    for source in markdown:             # code blocks inside markdown (solutions) are not cells
        text = text.replace(source, "")
    assert re.findall(r"^```python\n(.*?)\n```$", text, flags=re.M | re.S) == shown
    assert "RESULT" not in text
    assert not re.search(r"site-packages|\.py:\d+: \w*Warning|/(?:home|work|tmp|usr|opt)/", text)
    for image in re.findall(r"!\[figure\]\((.*?)\)", text):
        assert (RENDERED / image).is_file(), image


def test_rendered_pages_stay_small():
    size = sum(f.stat().st_size for f in RENDERED.rglob("*") if f.is_file())
    assert 0 < size <= RENDERED_BUDGET_BYTES, size


# -- tutorial 6: the TransformerLens walkthrough and its exercises -----------------------------------
WALKTHROUGH = "06_transformerlens_walkthrough.ipynb"
#: appended to tutorial 6 by the test (the page carries no test plumbing): what the checks below read
WALKTHROUGH_REPORT = """
import json
print("RESULT " + json.dumps({
    "p": P, "from_zoo": FROM_ZOO, "key": KEY, "key_by_hand": KEY_BY_HAND, "fft_error": FFT_ERROR,
    "dla_error": DLA_ERROR, "dla_scale": DLA_SCALE, "neuron_error": NEURON_ERROR,
    "neuron_scale": float(neuron_attr[:64].abs().max()), "lens_final_error": LENS_FINAL_ERROR,
    "logit_scale": float(final.abs().max()), "lens_loss": lens["loss"].tolist(),
    "model_loss": float(F_nn.cross_entropy(final.double(), labels)), "agree": AGREE,
    "agreement": AGREEMENT, "tol": TOL, "sources": spec.sources,
    "restricted": restricted.restricted, "excluded": restricted.excluded,
    "restricted_by_hand": restricted_loss_by_hand(cache, model, task, KEY),
    "explanation_accuracy": EXPL_ACCURACY}))
"""
#: float32 results compared by different routes (see tutorials/walkthrough_checks.py)
FLOAT32_TOL = math.sqrt(2.0**-24)


def tutorial_module(name: str) -> Any:
    """A module of the tutorials folder (not a package), imported from its file."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TUTORIALS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_06_exercises_are_stubs_with_solutions():
    nb = read_notebook(WALKTHROUGH)
    exercises, solutions = tutorial_module("_exercises"), tutorial_module("walkthrough_solutions")
    names = exercises.exercise_names(nb)
    assert len(names) == 5
    stubs = [c for c in nb.cells if "exercise" in c.metadata]
    for name, cell in zip(names, stubs):
        assert f"def {name}(" in cell.source and "raise NotImplementedError" in cell.source
        assert callable(getattr(solutions, name))
    filled = exercises.with_solutions(nb)
    assert [c.source for c in filled.cells if "exercise" in c.metadata] == \
        [f"from walkthrough_solutions import {name}" for name in names]
    assert [c.source for c in filled.cells if "exercise" not in c.metadata] == \
        [c.source for c in nb.cells if "exercise" not in c.metadata]


def test_06_transformerlens_walkthrough():
    filled = tutorial_module("_exercises").with_solutions(read_notebook(WALKTHROUGH))
    filled.cells.append(new_code_cell(WALKTHROUGH_REPORT.strip()))
    res = run_notebook(WALKTHROUGH, filled)
    p = res["p"]
    _frequencies_in_range(res["key"], p)
    assert res["key_by_hand"] == res["key"]
    assert res["fft_error"] < 1e-12                         # the real basis is the FFT's, pooled
    # the residual stream is a sum: the attributions add up to the correct logit (float32 sums)
    assert res["dla_error"] <= FLOAT32_TOL * res["dla_scale"]
    assert res["neuron_error"] <= FLOAT32_TOL * res["neuron_scale"]
    # the logit lens' last stage is the model's own output
    assert res["lens_final_error"] <= FLOAT32_TOL * res["logit_scale"]
    assert res["lens_loss"][-1] == pytest.approx(res["model_loss"], rel=FLOAT32_TOL)
    assert all(v <= res["tol"] for v in res["agreement"].values()), res["agreement"]
    assert res["sources"]["neurons"] == "blocks.0.mlp.hook_post"
    assert res["sources"]["W_L"] == "W_out @ W_U" and res["sources"]["embed"] == f"W_E[:{p}]"
    assert res["restricted_by_hand"] == pytest.approx(res["restricted"], rel=FLOAT32_TOL)
    assert res["restricted"] < res["excluded"]
    assert 0.0 <= res["explanation_accuracy"] <= 1.0
    if res["from_zoo"]:                                     # Nanda et al.'s trained model
        assert res["agree"] >= 0.9                          # neurons write their own frequency
        assert res["explanation_accuracy"] > 0.99           # mm.explain of its bridge runs
        assert res["lens_loss"][-1] < 1e-3 < math.log(p) < res["lens_loss"][0]


@pytest.fixture(scope="module")
def small():
    """A small untrained transformer on p = 13 and its cache: the checks hold on any model."""
    task = mm.ModularAddition(p=13, train_fraction=0.5, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=32, n_heads=2, d_head=16, d_mlp=48, seed=3)).eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(task.tokens)
    return model, task, cache


def _check_cases(model, task, cache):
    """check name → (arguments after the function, the solution, wrong answers)."""
    sol = tutorial_module("walkthrough_solutions")
    grids = sol.neuron_grids(cache, task.p)

    def transposed(cache, p):
        return einops.rearrange(cache["post", 0][:, -1], "(a b) n -> n b a", a=p, b=p)

    def first_position(cache, p):
        return einops.rearrange(cache["post", 0][:, 0], "(a b) n -> n a b", a=p, b=p)

    def power(grids, centre):
        B = fourier_basis(grids.shape[-1])
        coef = B @ grids.double() @ B.T
        if centre:
            coef[:, 0, 0] = 0.0
        return pool_frequencies(coef.square(), (-2, -1))

    def uncentred(grids):
        pw = power(grids, centre=False)
        blocks = pw[:, 0, 1:] + pw[:, 1:, 0] + pw[:, 1:, 1:].diagonal(dim1=-2, dim2=-1)
        return blocks / pw.sum((-2, -1))[:, None]

    def products_only(grids):
        pw = power(grids, centre=True)
        return pw[:, 1:, 1:].diagonal(dim1=-2, dim2=-1) / pw.sum((-2, -1))[:, None]

    def unembed_only(model, p):
        pw = pool_frequencies((model.W_U.detach().double() @ fourier_basis(p).T).square().sum(0))
        return pw / pw.sum()

    def at_position_a(cache, labels):
        return cache.logit_attrs(cache.stack_head_results(layer=1, pos_slice=0), tokens=labels,
                                 pos_slice=0)

    def kept_bypass(cache, model, task, frequencies):
        mid, W_U = cache["resid_mid", 0][:, -1].double(), model.W_U.detach().double()
        logits = mid @ W_U + cache["post", 0][:, -1].double() @ (
            model.W_out[0].detach().double() @ W_U)
        return float(F.cross_entropy(logits, task.labels))

    restricted = mm.restricted_loss(model, task, [1, 4])
    return {
        "check_neuron_grids": ((model, task, cache), sol.neuron_grids,
                               [transposed, first_position]),
        "check_frequency_shares": ((grids,), sol.frequency_shares, [uncentred, products_only]),
        "check_logit_map_shares": ((model, task), sol.logit_map_shares, [unembed_only]),
        "check_head_logit_attribution": ((model, task, cache), sol.head_logit_attribution,
                                         [at_position_a]),
        "check_restricted_loss": ((cache, model, task, restricted), sol.restricted_loss_by_hand,
                                  [kept_bypass]),
    }


def test_06_checks_pass_the_solutions_and_fail_wrong_answers(small, capsys):
    checks = tutorial_module("walkthrough_checks")
    cases = _check_cases(*small)
    assert sorted(cases) == sorted(n for n in dir(checks) if n.startswith("check_"))
    for name, (args, solution, wrong_answers) in cases.items():
        check = getattr(checks, name)
        check(solution, *args)
        assert "passed" in capsys.readouterr().out
        for wrong in wrong_answers:
            with pytest.raises(AssertionError):
                check(wrong, *args)

        def stub(*args):
            raise NotImplementedError("exercise")

        with pytest.raises(NotImplementedError):
            check(stub, *args)


def test_06_page_has_no_test_plumbing_and_no_machine_paths():
    """The walkthrough's page shows the exercise stubs (not the filled-in imports), no RESULT dump,
    no warnings and no file paths of the machine that rendered it."""
    text = (RENDERED / "06_transformerlens_walkthrough.md").read_text(encoding="utf-8")
    assert "RESULT" not in text and "from walkthrough_solutions import" not in text
    assert len(re.findall(r"^    raise NotImplementedError", text, flags=re.M)) == 5
    assert "Warning:" not in text
    assert not re.search(r"(?<![\w.])/(?:work|home|tmp|root|usr|opt|var)/", text)

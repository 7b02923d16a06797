"""The report's interactive sections in a real browser, and the ways to ask for a report.

In headless Chromium (conftest.py) we move the checkpoint slider and pick neurons and clusters,
and check that the figures' data and drawings change, that the page made no request outside the
file, and that no script error occurred. Then: ``mm.viz.write_report`` from a fresh interpreter,
and ``mi-margin report NAME`` on a run folder, on an entry of the shipped zoo
(its smallest), on a name that is neither, and with no zoo entries installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mi_margin as mm
from mi_margin.cli import main
from mi_margin.models.activations import activation
from mi_margin.viz import _html
from mi_margin.viz.inspector import IDS as INSPECTOR
from mi_margin.viz.inspector import decode_factors, inspector, preactivations
from mi_margin.viz.report import write_report
from mi_margin.viz.timeline import IDS as TIMELINE

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def run():
    task = mm.ModularAddition(p=11, train_fraction=0.6, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, n_heads=2, d_head=4, d_model=16, d_mlp=32, seed=0))
    return mm.train(model, task, mm.TrainConfig(steps=60, lr=1e-2, eval_every=10,
                                                n_checkpoints=5, progress=False))


def _state(browser, div: str) -> dict:
    """A figure's trace data (y or z) and its drawn SVG, as the page has them now."""
    return browser.evaluate(
        f"(() => {{ const gd = document.getElementById('{div}');"
        f" return {{data: JSON.stringify(gd.data.map(t => t.z || t.y)),"
        f" svg: gd.querySelector('.main-svg').innerHTML,"
        f" shapes: JSON.stringify((gd.layout.shapes || []).map(s => s.x0))}}; }})()")


def _set(browser, element: str, value: str, event: str) -> None:
    browser.evaluate(f"(() => {{ const e = document.getElementById('{element}');"
                     f" e.value = '{value}'; e.dispatchEvent(new Event('{event}')); }})()")
    browser.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")


@pytest.mark.browser
def test_slider_and_inspector_change_the_figures_offline(browser, run, tmp_path):
    path = write_report(run, tmp_path / "report.html")
    html = _html.unpacked(path.read_text())
    n_figures = html.count('class="mm-figure"')
    browser.events.clear()
    browser.open(path)
    drawn = ("[...document.querySelectorAll('.mm-figure .js-plotly-plot')]"
             ".filter(d => d.querySelector('svg.main-svg')).length")
    assert browser.wait_until(f"{drawn} === {n_figures}")
    moved = [TIMELINE["spectra"], TIMELINE["clusters"], TIMELINE["curves"]]
    last = {div: _state(browser, div) for div in moved}
    _set(browser, TIMELINE["slider"], "0", "input")
    first = {div: _state(browser, div) for div in moved}
    for div in (TIMELINE["spectra"], TIMELINE["clusters"]):
        assert first[div]["data"] != last[div]["data"], div
        assert first[div]["svg"] != last[div]["svg"], div
    steps = sorted(run.checkpoints)
    assert first[TIMELINE["curves"]]["shapes"] == f"[{steps[0]}]"
    assert last[TIMELINE["curves"]]["shapes"] == f"[{steps[-1]}]"
    assert browser.evaluate(f"document.getElementById('{TIMELINE['label']}').textContent") == \
        f"step {steps[0]} (checkpoint 1 of {len(steps)})"

    shown = {div: _state(browser, div) for div in ("heatmap", "spectrum", "weights")
             for div in [INSPECTOR[div]]}
    options = browser.evaluate(f"[...document.getElementById('{INSPECTOR['pick']}').options]"
                               ".map(o => o.value)")
    selected = browser.evaluate(f"document.getElementById('{INSPECTOR['pick']}').value")
    other = next(v for v in options if v.startswith("n") and v != selected)
    _set(browser, INSPECTOR["pick"], other, "change")
    for div, before in shown.items():
        assert _state(browser, div)["data"] != before["data"], div
    # the page computes the picked neuron's heatmap from its factors as the Python mirror does
    ins = inspector(run.model, run.task)
    data = json.loads(re.search(rf'id="{INSPECTOR["data"]}">(.*?)</script>', html).group(1))
    mirror = activation(*ins.activation)(torch.from_numpy(
        preactivations(decode_factors(data["grid"]))))[int(other[1:])].numpy()
    drawn_z = np.array(json.loads(_state(browser, INSPECTOR["heatmap"])["data"])[0])
    np.testing.assert_allclose(drawn_z, mirror, atol=1e-9 * np.abs(mirror).max() + 1e-12)
    assert browser.evaluate(f"document.getElementById('{INSPECTOR['info']}').textContent"
                            ).startswith(f"n{other[1:]}:")
    _set(browser, INSPECTOR["pick"], "c0", "change")
    assert "neurons" in browser.evaluate(
        f"document.getElementById('{INSPECTOR['info']}').textContent")

    assert browser.errors() == [], browser.errors()
    remote = [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
    assert remote == [], remote
    browser.screenshot(ARTIFACTS / "report_interactive.png")


def test_mm_viz_is_there_after_import_mi_margin(tmp_path):
    code = ("import sys, mi_margin as mm; assert 'mi_margin.viz' not in sys.modules; "
            "print(mm.viz.write_report.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "mi_margin.viz.report"
    with pytest.raises(AttributeError, match="no attribute 'vizz'"):
        mm.vizz  # noqa: B018


def test_report_command_on_a_zoo_entry_and_a_run_folder(run, tmp_path, monkeypatch, capsys):
    name = min(mm.zoo.list(), key=lambda n: len(mm.zoo.load(n).task.inputs))  # fastest report
    monkeypatch.chdir(tmp_path)
    assert main(["report", name]) == 0
    assert (tmp_path / f"{name}.html").is_file()
    assert f"{name}.html" in capsys.readouterr().out
    folder = mm.save(run, tmp_path / name)            # a folder by that name wins over the zoo
    assert main(["report", name]) == 0
    assert (folder / "report.html").is_file()


def test_report_command_on_an_unknown_name_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope'" in err
    assert f"zoo entries: {', '.join(mm.zoo.list())}" in err


def test_report_command_without_a_zoo_names_the_missing_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mm.zoo, "DATA", tmp_path / "no-zoo")    # an install without entries
    monkeypatch.chdir(tmp_path)
    assert main(["report", "runs/p113"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run folder 'runs/p113'" in err and "no model zoo" in err


def test_the_nanda_zoo_entry_report_is_at_most_3_mb_with_every_neuron_and_checkpoint(tmp_path):
    """Issue-level size limit on the real entry (opening time is measured by bench/bench_report.py
    --zoo nanda_p113_transformer, not asserted here): every neuron's heatmap is in the page."""
    run = mm.zoo.load("nanda_p113_transformer")
    packed = write_report(run, tmp_path / "nanda.html").read_text()
    assert len(packed.encode()) <= 3 * 10**6
    html = _html.unpacked(packed)
    data = json.loads(re.search(rf'id="{INSPECTOR["data"]}">(.*?)</script>', html).group(1))
    assert len(decode_factors(data["grid"])["W_in"]) == len(data["info"]) == run.model.cfg.d_mlp
    n = len(run.checkpoints)
    assert f'id="{TIMELINE["slider"]}" min="0" max="{n - 1}"' in html


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_parity_inspector_draws_every_neuron_over_the_cube(browser, kind, tmp_path):
    """Sparse parity: the page computes a picked neuron's heatmap over the cube from the two
    half-cube maps (MLP) or the table of pre-activations (transformer), as the Python mirror."""
    task = mm.SparseParity(6, 2, train_fraction=0.5, seed=0)
    model = (mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, act_fn="quadratic"))
             if kind == "mlp" else mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
                 task, n_heads=2, d_head=4, d_model=8, d_mlp=8, seed=0)))
    run = mm.train(model, task, mm.TrainConfig(steps=20, lr=1e-2, eval_every=10,
                                               n_checkpoints=2, progress=False))
    path = write_report(run, tmp_path / "report.html")
    html = _html.unpacked(path.read_text())
    browser.events.clear()
    browser.open(path)
    assert browser.wait_until(f"!!document.querySelector('#{INSPECTOR['heatmap']} svg.main-svg')")
    data = json.loads(re.search(rf'id="{INSPECTOR["data"]}">(.*?)</script>', html).group(1))
    assert data["grid"]["kind"] == ("mlp" if kind == "mlp" else "table")
    ins = inspector(run.model, run.task)
    for j in (3, 6):
        _set(browser, INSPECTOR["pick"], f"n{j}", "change")
        mirror = activation(*ins.activation)(torch.from_numpy(
            preactivations(decode_factors(data["grid"]))))[j].numpy()
        drawn = np.array(json.loads(_state(browser, INSPECTOR["heatmap"])["data"])[0])
        assert drawn.shape == (8, 8)
        np.testing.assert_allclose(drawn, mirror, atol=1e-9 * np.abs(mirror).max() + 1e-12)
    assert browser.errors() == [], browser.errors()

"""The run report: one offline HTML file with the applicable sections; failures stay local.

The browser test opens the report in headless Chromium (DevTools protocol over a pipe, see
conftest.py), and checks that it renders without JavaScript errors or network requests,
that every figure div holds a drawn plotly SVG and every circuitsvis view rendered, and that the
section headings are the expected ones. A screenshot is kept at tests/artifacts/report.png.
"""

from __future__ import annotations

import re
from collections import Counter
from html import unescape
from pathlib import Path

import pytest

import mi_margin as mm
from mi_margin import groups
from mi_margin.analysis import restricted
from mi_margin.analysis.certify import BOUNDS
from mi_margin.analysis.progress import checkpoint_caches
from mi_margin.theory.explained import margin_ratios
from mi_margin.viz import _html, report
from mi_margin.viz import timeline as viz_timeline
from mi_margin.viz.report import write_report
from mi_margin.viz.timeline import MAX_CHECKPOINTS, select_steps

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")
HEADINGS = re.compile(r'<section id="[^"]+"><h2>([^<]*)</h2>')


def _train(model, task, steps: int = 30):
    return mm.train(model, task, mm.TrainConfig(steps=steps, lr=3e-3, eval_every=10,
                                                n_checkpoints=3, progress=False))


@pytest.fixture(scope="module")
def transformer_run():
    task = mm.ModularAddition(p=7, train_fraction=0.6, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, n_heads=2, d_head=4, d_model=8, d_mlp=16, seed=0))
    return _train(model, task)


@pytest.fixture(scope="module")
def mlp_run():
    task = mm.ModularAddition(p=7, train_fraction=0.6, seed=0)
    return _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="quadratic")), task)


@pytest.fixture(scope="module")
def group_run():
    task = mm.GroupComposition(groups.symmetric(3), train_fraction=0.7, seed=0)
    return _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="quadratic")), task)


@pytest.fixture(scope="module")
def parity_run():
    task = mm.SparseParity(6, 2, train_fraction=0.5, seed=0)
    return _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="quadratic")), task)


def _boxes(html: str, kind: str) -> list[str]:
    return re.findall(rf'class="mm-{kind}">(.*?)</div>', html, re.DOTALL)


def _check_offline_page(html: str, circuitsvis: bool) -> None:
    """Bundles inlined once; outside them (plotly.js's own defaults name its CDN), no URL."""
    assert len(PLOTLY_BANNER.findall(html)) == 1
    assert html.count("var CircuitsVis") == (1 if circuitsvis else 0)
    rest = html.replace(_html.plotly_script(), "").replace(_html.circuitsvis_script(), "")
    assert "http://" not in rest and "https://" not in rest


EXPLAINED = "Explanation and certificate"
EXPECTED = {
    "transformer": ["Configuration", "Training", "Fourier analysis", "Training timeline",
                    "Neuron inspector", "Attention", EXPLAINED, "Feature alignment (NFA)"],
    "mlp": ["Configuration", "Training", "Fourier analysis", "Training timeline",
            "Neuron inspector", "Margins and theory", EXPLAINED, "Feature alignment (NFA)"],
    "group": ["Configuration", "Training", "Irreducible representations", "Training timeline",
              "Neuron inspector", "Margins and theory", EXPLAINED, "Feature alignment (NFA)"],
    "parity": ["Configuration", "Training", "Walsh analysis", "Training timeline",
               "Neuron inspector", "Margins and theory", EXPLAINED, "Feature alignment (NFA)"],
}


@pytest.mark.parametrize("which", ["transformer", "mlp", "group", "parity"])
def test_report_sections_figures_and_no_failures(which, request, tmp_path):
    run = request.getfixturevalue(f"{which}_run")
    out = write_report(run, tmp_path / "r.html")
    html = _html.unpacked(out.read_text())
    assert HEADINGS.findall(html) == EXPECTED[which]
    assert _boxes(html, "error") == []
    assert _boxes(html, "note") == []
    _check_offline_page(html, circuitsvis=which == "transformer")
    assert html.count('class="mm-figure"') >= 8


@pytest.fixture(scope="module")
def relu_run():
    task = mm.ModularAddition(p=7, train_fraction=0.6, seed=0)
    return _train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="relu")), task)


def _section(html: str, title: str) -> str:
    """The body of the report's section ``title``."""
    return html.split(f'<section id="{_html.anchor(title)}">', 1)[1].split("</section>", 1)[0]


def _table_rows(fragment: str) -> dict[str, list[str]]:
    """First cell -> the other cells (unescaped text) of every table row in ``fragment``."""
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", fragment, re.DOTALL):
        cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


def _item(section: str, title: str) -> str:
    """The HTML of one item (after its <h3>) of a section."""
    return section.split(f"<h3>{_html.escape(title)}</h3>", 1)[1].split("<h3>", 1)[0]


@pytest.mark.parametrize("which", ["mlp", "relu", "transformer"])
def test_explanation_section_is_what_the_api_computes(which, request, tmp_path):
    """The section shows mm.explain's summary, mm.analysis.fidelity's table and every bound of
    mm.analysis.certify, and where certify refuses (a ReLU network's harmonic bound, a
    transformer's uniform and harmonic bounds) its own reason instead of an error."""
    run = request.getfixturevalue(f"{which}_run")
    html = _html.unpacked(write_report(run, tmp_path / "r.html").read_text())
    section = _section(html, EXPLAINED)
    assert _boxes(section, "error") == []
    expl = mm.explain(run.model, run.task)
    assert _html.escape(expl.summary()) in _item(section, "Explanation")
    fid = mm.analysis.fidelity(expl, draws=report.FIDELITY_DRAWS).to_dataframe()
    rows = _table_rows(_item(section, "Fidelity"))
    assert list(rows) == fid["measure"].tolist()
    for measure, loss, accuracy in zip(fid["measure"], fid["loss"], fid["accuracy"]):
        assert float(rows[measure][0]) == pytest.approx(loss, rel=1e-5)
        assert float(rows[measure][1]) == pytest.approx(accuracy, rel=1e-5)
    certificates = _item(section, "Certificates")
    rows, refused = _table_rows(certificates), []
    for bound in BOUNDS:
        try:
            cert = mm.analysis.certify(expl, bound)
        except mm.MiMarginError as err:
            refused.append(str(err).split(" (use")[0])
            assert rows[bound][2] == f"not applicable: {refused[-1]}"
            continue
        assert float(rows[bound][0]) == pytest.approx(cert.certified_accuracy, abs=5e-5)
        assert float(rows[bound][1]) == pytest.approx(cert.min_certified_margin, rel=1e-3)
    assert bool(refused) == (which != "mlp")            # quadratic: every bound applies
    if which == "transformer":                          # per input and by its low-rank readout
        assert len(refused) == len(BOUNDS) - 2
        assert float(rows["per_input"][0]) >= 0 and float(rows["low_rank"][0]) >= 0
    assert "Certified margin / γ*" not in certificates   # none of these is of a theorem's family


def test_certified_margin_of_a_theorem_network_is_shown_beside_the_trained_one():
    """The max-margin certificate network of mm.theory (a step of training keeps it in the
    theorem's family): the report shows the best bound's certified margin / γ*, never above the
    trained margin / γ*, which is 1 up to that step."""
    task = mm.ModularAddition(p=7)
    run = mm.train(mm.theory.certificate(task), task, mm.TrainConfig(
        steps=1, lr=1e-6, eval_every=1, n_checkpoints=2, progress=False))
    certificates = "".join(report._explanation(report.Context(run))["Certificates"]())
    expl = mm.explain(run.model, run.task)
    certs = {bound: mm.analysis.certify(expl, bound) for bound in BOUNDS}
    best = max(certs, key=lambda b: certs[b].min_certified_margin)
    trained, certified = margin_ratios(run.model, task, certs[best].min_certified_margin)
    assert f"Certified margin / γ*: {certified:.4f} by the {best} bound (trained weights: " \
           f"{trained:.4f})" in unescape(certificates)
    assert 0 < certified <= trained <= 1 + 1e-9


def test_a_model_explain_refuses_gets_its_reason_not_an_error(mlp_run, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise mm.MiMarginError("planted refusal")

    monkeypatch.setattr(report, "explanation_check", refuse)
    html = _html.unpacked(write_report(mlp_run, tmp_path / "r.html").read_text())
    assert _boxes(html, "error") == []
    assert "<p>Not explained: planted refusal</p>" in _section(html, EXPLAINED)
    assert HEADINGS.findall(html) == EXPECTED["mlp"]


def test_report_of_a_saved_run_folder_defaults_into_it(mlp_run, tmp_path):
    folder = mm.save(mlp_run, tmp_path / "run")
    out = write_report(folder)
    assert out == Path(folder) / "report.html" and out.is_file()
    assert not out.with_name("report.html.tmp").exists()


def test_a_failing_analysis_becomes_an_error_box(transformer_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(report, "spectrum", broken)
    html = _html.unpacked(write_report(transformer_run, tmp_path / "r.html").read_text())
    errors = _boxes(html, "error")
    assert len(errors) == 1 and "Fourier spectrum" in errors[0] and "planted failure" in errors[0]
    assert HEADINGS.findall(html) == EXPECTED["transformer"]       # the rest still rendered


def test_progress_measures_use_the_sliders_checkpoints(mlp_run, monkeypatch):
    """A densely checkpointed run: the progress item evaluates the timeline's selection only."""
    state = mlp_run.checkpoints[max(mlp_run.checkpoints)]
    dense = mm.Run(model=mlp_run.model, task=mlp_run.task, config=mlp_run.config,
                   history=mlp_run.history, checkpoints={s: state for s in range(3 * MAX_CHECKPOINTS)})
    seen = []

    def spy(run, steps, *args, **kwargs):
        seen.append(list(steps))
        return checkpoint_caches(run, steps, *args, **kwargs)

    monkeypatch.setattr(viz_timeline, "checkpoint_caches", spy)
    items = report._harmonic(report.Context(dense))
    parts = items["Progress measures over checkpoints"]()
    assert seen == [select_steps(dense.checkpoints)] and len(seen[0]) == MAX_CHECKPOINTS
    assert seen[0][0] == 0 and seen[0][-1] == 3 * MAX_CHECKPOINTS - 1 and len(parts) == 1


def _weights_key(model) -> bytes:
    return b"".join(v.detach().cpu().numpy().tobytes() for _, v in sorted(model.state_dict().items()))


def test_report_computes_each_checkpoints_restricted_loss_once(mlp_run, tmp_path, monkeypatch):
    """The progress item and the slider share one restricted/excluded-loss computation per
    checkpoint. Every such computation goes through restricted._ablated (both losses of one
    model in one call); we count the calls by the weights they ran on. The run's final model is
    not one of its checkpoints here, so its own item (and the verdict) are counted apart."""
    final = mm.HookedMLP(mm.MLPConfig.for_task(mlp_run.task, d_mlp=24, act_fn="quadratic", seed=7))
    run = mm.Run(model=final, task=mlp_run.task, config=mlp_run.config, history=mlp_run.history,
                 checkpoints=mlp_run.checkpoints)
    calls: Counter[bytes] = Counter()
    ablated = restricted._ablated

    def counting(s, *args, **kwargs):
        calls[_weights_key(s.model)] += 1
        return ablated(s, *args, **kwargs)

    monkeypatch.setattr(restricted, "_ablated", counting)
    html = _html.unpacked(write_report(run, tmp_path / "r.html").read_text())
    assert _boxes(html, "error") == []
    steps = select_steps(run.checkpoints)
    per_checkpoint = {step: calls[_weights_key(run.model_at(step))] for step in steps}
    assert len(steps) == len(run.checkpoints) > 1
    assert per_checkpoint == {step: 1 for step in steps}
    assert sum(calls.values()) == len(steps) + calls[_weights_key(final)]


def test_report_rejects_other_objects(tmp_path):
    with pytest.raises(mm.MiMarginError, match="Run or a run folder"):
        write_report(42, tmp_path / "r.html")


# -- in a real browser ----------------------------------------------------------------------------
@pytest.mark.browser
def test_report_renders_in_headless_chromium(browser, transformer_run, mlp_run, group_run,
                                             tmp_path):
    figures_drawn = ("[...document.querySelectorAll('.mm-figure .js-plotly-plot')]"
                     ".filter(d => d.querySelector('svg.main-svg')).length")
    views_drawn = ("[...document.querySelectorAll('.mm-attention div[id^=\"circuits-vis-\"]')]"
                   ".filter(d => d.childElementCount > 0).length")
    for name, run in [("transformer", transformer_run), ("mlp", mlp_run), ("group", group_run)]:
        path = write_report(run, tmp_path / f"{name}.html")
        html = _html.unpacked(path.read_text())
        n_figures = html.count('class="mm-figure"')
        n_views = html.count("CircuitsVis.render(")
        browser.events.clear()
        browser.open(path)
        assert browser.wait_until(f"{figures_drawn} === {n_figures}"), \
            f"{name}: {browser.evaluate(figures_drawn)} of {n_figures} figures drawn"
        assert browser.wait_until(f"{views_drawn} === {n_views}")
        assert n_views == (3 if name == "transformer" else 0)
        headings = browser.evaluate(
            "[...document.querySelectorAll('section > h2')].map(h => h.textContent)")
        assert headings == EXPECTED[name]
        assert browser.errors() == [], browser.errors()
        remote = [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
        assert remote == [], remote
        if name == "transformer":
            browser.screenshot(ARTIFACTS / "report.png")
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_each_warning_of_the_analyses_is_given_once_naming_the_run(mlp_run, tmp_path):
    """The run has not generalized (30 steps): every section that reads key labels warns so; the
    report passes each distinct warning on once, naming the run (it printed 3-6 copies)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(mlp_run, tmp_path / "r.html")
    texts = [str(w.message) for w in caught if issubclass(w.category, mm.NotGeneralizedWarning)]
    assert texts and len(texts) == len(set(texts))
    assert all(t.startswith(f"report of {mlp_run.path or 'the run'}: ") for t in texts)


def test_another_librarys_warnings_pass_through_as_they_were(mlp_run, tmp_path, monkeypatch):
    """A warning another library raises while the report is built (torch warns that
    torch.jit.script is deprecated the first time forward-mode AD loads) keeps its own text and
    origin: named for the run, it was taken for the package's own and failed the suite."""
    import warnings

    import mi_margin.viz.report as report

    build = report.build_html

    def warning_build(run):
        for _ in range(2):
            warnings.warn_explicit("old API", DeprecationWarning, "/elsewhere/lib.py", 7)
        return build(run)

    monkeypatch.setattr(report, "build_html", warning_build)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(mlp_run, tmp_path / "r.html")
    theirs = [w for w in caught if w.category is DeprecationWarning]
    assert [(str(w.message), w.filename, w.lineno) for w in theirs] == [
        ("old API", "/elsewhere/lib.py", 7)]
    assert any(str(w.message).startswith("report of ") for w in caught
               if issubclass(w.category, mm.NotGeneralizedWarning))

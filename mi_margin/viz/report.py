"""The run report: one self-contained, offline HTML file with everything we can say about a run.

It opens with a computed one-paragraph verdict (what the model learned, how far it is from the
max-margin theory), then holds the run's configuration, its training curves, and every analysis
that applies: Fourier spectra, key frequencies and restricted/excluded loss for modular addition
(Nanda et al. 2023), irrep spectra for group composition (Chughtai et al. 2023), margins against
the max-margin theory for MLPs (Morwani et al. 2024), attention for transformers, the runnable
explanation with its fidelity and accuracy certificates (docs/mathematics.md §6.4), and NFM/AGOP
alignment (Beaglehole et al. 2024) where it is cheap. plotly.js and the circuitsvis bundle are
inlined once, and they and the sections are gzip-compressed into the page
(:func:`~mi_margin.viz._html.packed_page`), so the file is small and opens from disk with no
network. Every item is built in its own ``try``:
a failing analysis shows an error box, an analysis this installation lacks shows a "not
available" note, and the rest still renders.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from mi_margin.analysis.basis import HarmonicBasis, basis_for
from mi_margin.analysis.clock_pizza import clock_pizza
from mi_margin.analysis.core import GridCache, grid_cache
from mi_margin.analysis.margin import margin
from mi_margin.analysis.neurons import neuron_clusters
from mi_margin.analysis.nfa import nfa_correlation
from mi_margin.analysis.restricted import default_components, restricted_loss
from mi_margin.analysis.results import AnalysisResult
from mi_margin.analysis.spectrum import logit_similarity, spectrum
from mi_margin.checks import check_output_file
from mi_margin.errors import MiMarginError
from mi_margin.theory.compare import compare_to_theory
from mi_margin.theory.explained import ExplanationCheck, explanation_check
from mi_margin.theory.predictions import prediction_for
from mi_margin.theory.verdict import verdict
from mi_margin.training.run_folder import as_run
from mi_margin.viz import _html
from mi_margin.viz.attention import AttentionView, attention_heatmap, attention_view
from mi_margin.viz.figures import plot
from mi_margin.viz.inspector import inspector, inspector_html
from mi_margin.viz.irreps import cayley_table_figure, character_table_figure
from mi_margin.viz.timeline import Timeline, timeline, timeline_html
from mi_margin.viz.training import progress_columns, progress_curves, training_curves

#: the package's folder: warnings raised from inside it are the analyses' own
PACKAGE = Path(__file__).resolve().parents[1]

#: NFA is computed only when (training examples) × (input dim) × (hidden width) is at most this.
NFA_BUDGET = 5e8
Part = Any  # an HTML string, a plotly Figure or an AttentionView
Item = Callable[[], list[Part]]


@dataclass
class Context:
    """What the sections read: the run, and the parts (figures, views) emitted so far."""

    run: Any
    n_figures: int = 0
    needs_circuitsvis: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> Any:
        return self.run.model

    @property
    def task(self) -> Any:
        return self.run.task

    @property
    def grid(self) -> GridCache:
        """The final model's grid cache: one pass over the grid that every analysis reads."""
        return self.memo("grid", lambda: grid_cache(self.model, self.task))

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute once per report (several items share e.g. the key frequencies)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


def _render(ctx: Context, part: Part) -> str:
    if isinstance(part, go.Figure):
        ctx.n_figures += 1
        return _html.figure_div(part, div_id=f"mm-fig-{ctx.n_figures}")
    if isinstance(part, AttentionView):
        ctx.needs_circuitsvis = True
        return part.fragment()
    return str(part)


def _run_item(ctx: Context, title: str, item: Item) -> str:
    try:
        return "\n".join(_render(ctx, part) for part in item())
    except Exception as err:
        return _html.error_box(title, err)


# -- sections ---------------------------------------------------------------------------------------
def _configuration(ctx: Context) -> dict[str, Item]:
    run = ctx.run

    def overview() -> list[Part]:
        info = {"task": repr(run.task), "model": type(run.model).__name__, "status": run.status,
                "steps": run.step, "run folder": str(run.path) if run.path else "(not saved)"}
        last = run.history.iloc[-1].to_dict() if len(run.history) else {}
        return [_html.row([_html.table(info), "<b>Final metrics</b>" + _html.table(last)])]

    def configs() -> list[Part]:
        return [_html.row([f"<b>{name}</b>" + _html.table(cfg) for name, cfg in [
            ("Task", run.task.to_dict()), ("Model", run.model.cfg.to_dict()),
            ("Training", run.config.to_dict())]])]

    return {"Run": overview, "Settings": configs}


def _training(ctx: Context) -> dict[str, Item]:
    items: dict[str, Item] = {"Training curves": lambda: [training_curves(ctx.run)]}
    if len(ctx.run.history) and progress_columns(ctx.run.history):
        items["Recorded metrics"] = lambda: [progress_curves(ctx.run)]
    return items


def show(result: Callable[[], AnalysisResult], table: bool = False) -> Item:
    """The item of one analysis result: its figure, after its table when ``table``."""
    def item() -> list[Part]:
        res = result()
        return [*([_html.table(res.to_dataframe())] if table else []), plot(res)]
    return item


#: the harmonic section's title, the spectrum's name and the key labels' name, by the words of
#: the field for the basis's labels (its ``label_kind``)
HARMONIC = {"frequency": ("Fourier analysis", "Fourier spectrum", "Key frequencies"),
            "irrep": ("Irreducible representations", "Irrep spectrum", "Key irreps"),
            "subset": ("Walsh analysis", "Walsh spectrum", "Key subsets")}


def harmonic_titles(basis: HarmonicBasis) -> tuple[str, str, str]:
    """The section, spectrum and key-label titles of a basis (generic words for a new kind)."""
    kind = basis.label_kind
    return HARMONIC.get(kind, (f"Harmonic analysis ({kind})", f"Spectrum by {kind}",
                               f"Key {kind} labels"))


def _harmonic(ctx: Context) -> dict[str, Item]:
    """Spectra, key labels, logit similarity, neuron clusters, ablations and progress: the same
    results for every task, through its harmonic basis, all read from the final model's grid
    cache (one pass over the grid)."""
    c, t, run = ctx.grid, ctx.task, ctx.run
    kind = c.basis.label_kind
    _, spectrum_title, keys_title = harmonic_titles(c.basis)
    items: dict[str, Item] = {}
    if kind == "irrep":
        items["Cayley and character tables"] = lambda: [cayley_table_figure(t.group),
                                                        character_table_figure(t.group)]
    items[keys_title] = lambda: [_html.paragraph(f"{keys_title}: {_keys(ctx)}")]
    source = "weights" if kind == "irrep" else "activations"
    results: dict[str, Callable[[], AnalysisResult]] = {
        spectrum_title: lambda: spectrum(c, t),
        "Logit similarity": lambda: logit_similarity(c, t),
        "Neuron clusters": lambda: neuron_clusters(c, t, source=source),
    }
    items.update({title: show(fn) for title, fn in results.items()})
    items["Restricted and excluded loss"] = show(
        lambda: restricted_loss(c, t, _keys(ctx) or None), table=True)
    if kind == "frequency" and t.k == 2:
        items["Clock or pizza"] = show(lambda: clock_pizza(c, t), table=True)
    if len(run.checkpoints) > 1:
        items["Progress measures over checkpoints"] = show(lambda: _timeline_data(ctx).measures)
    return items


def _keys(ctx: Context) -> list[Any]:
    """The final model's key frequencies/irreps/subsets, computed once per report."""
    return ctx.memo("keys", lambda: default_components(ctx.grid, ctx.task))


def _timeline_data(ctx: Context) -> Timeline:
    """The slider's data and the progress measures at its checkpoints (bounded however densely
    the run was checkpointed), from one streamed pass over the checkpoints, computed once."""
    return ctx.memo("timeline", lambda: timeline(ctx.run, keys=_keys(ctx)))


def _timeline(ctx: Context) -> dict[str, Item]:
    return {"Checkpoint slider": lambda: [timeline_html(_timeline_data(ctx))]}


def _inspector(ctx: Context) -> dict[str, Item]:
    return {"Pick a neuron or a cluster": lambda: [inspector_html(inspector(ctx.grid, ctx.task))]}


def _theory(ctx: Context) -> dict[str, Item]:
    m, t = ctx.model, ctx.task

    def margins() -> list[Part]:
        res = margin(m, t)
        return [_html.table(res.summary()), plot(res)]

    def prediction() -> list[Part]:
        pred = prediction_for(m, t)
        return [_html.table(pred.summary()), _html.table(pred.to_dataframe())]

    def compare() -> list[Part]:
        res = compare_to_theory(m, t)
        return [_html.table(res.scalars()), _html.table(res.to_dataframe()), plot(res)]

    return {"Margins": margins, "Max-margin prediction": prediction,
            "Observed vs predicted": compare}


def _attention(ctx: Context) -> dict[str, Item]:
    return {"Attention over the input grid": lambda: [attention_heatmap(ctx.model, ctx.task)],
            "Attention patterns of single inputs": lambda: [attention_view(ctx.model, ctx.task)]}


#: resampling draws of the fidelity table (as on the zoo's cards)
FIDELITY_DRAWS = 2


def _explanation(ctx: Context) -> dict[str, Item]:
    """The runnable explanation, its fidelity and every certificate that applies, as the zoo's
    cards show them (:func:`~mi_margin.theory.explained.explanation_check`, docs/mathematics.md
    §6.4). A model that ``mm.explain`` refuses gets its reason in place of the section's items;
    a bound that ``certify`` refuses gets its reason in the certificates' table."""
    try:
        check = ctx.memo("explanation", lambda: explanation_check(ctx.model, ctx.task,
                                                                  draws=FIDELITY_DRAWS))
    except MiMarginError as err:
        reason = f"Not explained: {err}"
        return {"Explanation": lambda: [_html.paragraph(reason)]}
    return {"Explanation": lambda: [_html.paragraph(f"mm.explain: {check.explanation.summary()}")],
            "Fidelity": lambda: [_html.paragraph(
                f"mm.analysis.fidelity over every input ({check.draws} resampling draws; "
                "recovered = (L_base − L) / (L_base − L_model); the scrub is the "
                "causal-scrubbing test of what the explanation leaves out)"),
                _html.table(check.fidelity_table())],
            "Certificates": lambda: _certificates(check)}


def _certificates(check: ExplanationCheck) -> list[Part]:
    """The certificates' table with the brute-force accuracy, and the certified margin / γ*
    beside the trained one."""
    parts: list[Part] = [
        _html.paragraph("mm.analysis.certify: lower bounds on the accuracy and the margin over "
                        "every input that are always sound (brute-force accuracy "
                        f"{check.accuracy:.4f})"),
        _html.table(check.certificate_table())]
    if check.certified_ratio is not None:
        parts.append(_html.paragraph(f"Certified margin / γ*: {check.certified_ratio:.4f} by the "
                                     f"{check.best} bound (trained weights: "
                                     f"{check.trained_ratio:.4f})"))
    return parts


def nfa_cost(model: Any, task: Any) -> float:
    """Rough cost (train examples × input dim × hidden width) of the NFA on this model."""
    cfg = model.cfg
    width = cfg.d_mlp or cfg.d_model
    d_in = cfg.d_model if model.model_kind == "transformer" else task.k * task.d_vocab
    return float(len(task.train_idx) * d_in * width)


def _nfa(ctx: Context) -> dict[str, Item]:
    def nfa() -> list[Part]:
        res = nfa_correlation(ctx.model, ctx.task, init_state=ctx.run.checkpoints.get(0),
                              method="factored")        # the AGOP without per-class Jacobians
        return [_html.table(res.summary()), plot(res)]

    return {"NFM and AGOP": nfa}


def _basis(task: Any) -> HarmonicBasis | None:
    """The task's harmonic basis, or None where it has none (e.g. a sampled parity cube)."""
    try:
        return basis_for(task)
    except MiMarginError:
        return None


def sections(run: Any) -> list[tuple[str, Callable[[Context], dict[str, Item]]]]:
    """The report's sections that apply to ``run``, in order (title, item builder): the harmonic
    analysis, the timeline and the inspector wherever the task has a harmonic basis."""
    model_kind, basis = run.model.model_kind, _basis(run.task)
    out: list[tuple[str, Callable[[Context], dict[str, Item]]]] = [
        ("Configuration", _configuration), ("Training", _training)]
    if basis is not None:
        out.append((harmonic_titles(basis)[0], _harmonic))
        if len(run.checkpoints) > 1:
            out.append(("Training timeline", _timeline))
        out.append(("Neuron inspector", _inspector))
    if model_kind == "mlp":
        out.append(("Margins and theory", _theory))
    if model_kind == "transformer":
        out.append(("Attention", _attention))
    if basis is not None:
        out.append(("Explanation and certificate", _explanation))
    if nfa_cost(run.model, run.task) <= NFA_BUDGET and len(run.task.train_idx):
        out.append(("Feature alignment (NFA)", _nfa))
    return out


def notices(run: Any) -> list[str]:
    """What a reader must know before trusting the report: non-finite losses (where the run has
    examples to compute them on), a diverged run, no history, no checkpoints."""
    history, out = run.history, []
    columns = ["train_loss"] + (["test_loss"] if len(run.task.test_idx) else [])
    for column in (c for c in columns if c in history):
        bad = history[~np.isfinite(history[column].to_numpy(dtype=float))]
        if len(bad):
            out.append(f"{len(bad)} of {len(history)} recorded {column} values are NaN or "
                       f"infinite (first at step {int(bad['step'].iloc[0])}): the figures of "
                       "those steps mean nothing")
    if run.status == "diverged":
        out.append(f"the run diverged: {run.error or 'its loss became NaN or infinite'}")
    if not len(history):
        out.append("the run has no history: there are no training curves")
    if not run.checkpoints:
        out.append("the run has no checkpoints: the training timeline and progress measures "
                   "are left out")
    return out


def verdict_html(run: Any) -> str:
    """The one-paragraph verdict at the top of the report (mi_margin.theory.verdict)."""
    return _run_item(Context(run), "Verdict", lambda: [_html.paragraph(
        "Verdict: " + verdict(run))])


def build_html(run: Any) -> str:
    """The report of ``run`` as one HTML string (see :func:`write_report`)."""
    ctx = Context(run)
    bodies = []
    for title, builder in sections(run):
        try:
            items = builder(ctx)
            body = "\n".join(f"<h3>{_html.escape(name)}</h3>\n{_run_item(ctx, name, item)}"
                             for name, item in items.items())
        except Exception as err:
            body = _html.error_box(title, err)
        bodies.append(_html.section(title, body))
    toc = " ".join(f'<a href="#{_html.anchor(t)}">{_html.escape(t)}</a>' for t, _ in sections(run))
    scripts = [_html.plotly_script()] + ([_html.circuitsvis_script()] if ctx.needs_circuitsvis else [])
    title = f"mi_margin report: {run.task!r}, {type(run.model).__name__}"
    warned = "".join(_html.note_box("Warning: " + text) for text in notices(run))
    top = f'<nav class="mm-toc">{toc}</nav>\n' + warned + verdict_html(run)
    return _html.packed_page(title, top, "\n".join(bodies), scripts)


def write_report(run_or_path: Any, path: str | Path | None = None) -> Path:
    """Write the run's self-contained HTML report and return its path.

    Args:
        run_or_path: a :class:`~mi_margin.Run` or a run folder.
        path: the HTML file to write (its folder must exist); default
            ``<run folder>/report.html``, or ``report.html`` in the working directory for a run
            that was never saved.

    What the reader must know first (NaN losses, a diverged run, no checkpoints:
    :func:`notices`) is shown at the top of the report and given as a warning; the warnings of
    the analyses (e.g. :class:`~mi_margin.errors.NotGeneralizedWarning`) are given once each,
    naming the run; other libraries' warnings are passed on once each, as they were.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.viz.report import write_report
        >>> run = mm.load("runs/p113")                              # doctest: +SKIP
        >>> write_report(run)                                       # doctest: +SKIP
        PosixPath('runs/p113/report.html')
    """
    run = as_run(run_or_path, "write_report reports a run")
    out = Path(path) if path is not None else (
        Path(run.path) / "report.html" if run.path is not None else Path("report.html"))
    check_output_file(out, "the report")
    for text in notices(run):
        warnings.warn(f"report of {run.path or 'the run'}: {text}", UserWarning, stacklevel=2)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings(record=True) as caught:       # each section may warn the same
        warnings.simplefilter("always")
        html = build_html(run)
    for text, category, filename, lineno in dict.fromkeys(
            (str(w.message), w.category, w.filename, w.lineno) for w in caught):
        if Path(filename).resolve().is_relative_to(PACKAGE):       # the analyses' own: name the run
            warnings.warn(f"report of {run.path or 'the run'}: {text}", category, stacklevel=2)
        else:                                              # another library's: as it was
            warnings.warn_explicit(text, category, filename, lineno)
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out

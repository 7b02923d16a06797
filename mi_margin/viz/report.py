"""The run report: one self-contained, offline HTML file with everything we can say about a run.

It holds the run's configuration, its training curves, and every analysis that applies: Fourier
spectra, key frequencies and restricted/excluded loss for modular addition (Nanda et al. 2023),
irrep spectra for group composition (Chughtai et al. 2023), margins against the max-margin theory for
MLPs (Morwani et al. 2024), attention for transformers, and NFM/AGOP alignment (Beaglehole et al.
2024) where it is cheap. plotly.js and the circuitsvis bundle are inlined once, so the file opens
from disk with no network. Every item is built in its own ``try``: a failing analysis shows an error
box, an analysis this installation lacks shows a "not available" note, and the rest still renders.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from mi_margin.errors import MiMarginError
from mi_margin.viz import _html
from mi_margin.viz.attention import AttentionView

#: NFA is computed only when (training examples) × (input dim) × (hidden width) is at most this.
NFA_BUDGET = 5e8
Part = Any  # an HTML string, a plotly Figure or an AttentionView
Item = Callable[[], list[Part]]


class Unavailable(Exception):
    """An analysis this installation of mi_margin does not provide (shown as a note, not an error)."""


def api(module: str, name: str) -> Any:
    """``module.name``, or :class:`Unavailable` when that module or name does not exist."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            raise Unavailable(f"{module} is not available in this version") from err
        raise
    if not hasattr(mod, name):
        raise Unavailable(f"{module}.{name} is not available in this version")
    return getattr(mod, name)


def plot(result: Any) -> go.Figure:
    """``result.plot()``, or :class:`Unavailable` when its plot function does not exist yet."""
    target = getattr(type(result), "_plot", None)
    if isinstance(target, str):
        api(*target.split(":"))
    return result.plot()


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
    except Unavailable as err:
        return _html.note_box(f"{title}: not available — {err}")
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
    from mi_margin.viz.training import progress_columns, progress_curves, training_curves

    items: dict[str, Item] = {"Training curves": lambda: [training_curves(ctx.run)]}
    if len(ctx.run.history) and progress_columns(ctx.run.history):
        items["Recorded metrics"] = lambda: [progress_curves(ctx.run)]
    return items


def _key_frequencies(ctx: Context) -> list[int]:
    fn = api("mi_margin.analysis.fourier", "key_frequencies")
    return ctx.memo("key_frequencies", lambda: fn(ctx.model, ctx.task))


def _fourier(ctx: Context) -> dict[str, Item]:
    m, t = ctx.model, ctx.task
    mod = "mi_margin.analysis.fourier"

    def keys() -> list[Part]:
        keys = _key_frequencies(ctx)
        return [_html.paragraph(f"Key frequencies (by share of the logits' variance): {keys}")]

    def restricted() -> list[Part]:
        fn = api("mi_margin.analysis.restricted", "restricted_loss")
        res = fn(m, t, frequencies=_key_frequencies(ctx) or None)
        return [_html.table(res.to_dataframe()), plot(res)]

    items: dict[str, Item] = {
        "Key frequencies": keys,
        "Fourier spectrum": lambda: [plot(api(mod, "fourier_spectrum")(m, t))],
        "Logit similarity": lambda: [plot(api(mod, "logit_similarity")(m, t))],
        "Neuron clusters": lambda: [plot(api(mod, "neuron_clusters")(m, t))],
        "Restricted and excluded loss": restricted,
    }
    if t.k == 2:
        def clock() -> list[Part]:
            res = api("mi_margin.analysis.clock_pizza", "clock_pizza")(m, t)
            return [_html.table(res.to_dataframe()), plot(res)]
        items["Clock or pizza"] = clock
    if len(ctx.run.checkpoints) > 1:
        items["Progress measures over checkpoints"] = lambda: _progress(ctx)
    return items


def _progress(ctx: Context) -> list[Part]:
    fn = api("mi_margin.analysis.progress", "progress_measures")
    res = fn(ctx.run)
    return [plot(res)] if hasattr(res, "plot") else [_html.table(res)]


def _irreps(ctx: Context) -> dict[str, Item]:
    m, t = ctx.model, ctx.task
    mod = "mi_margin.analysis.irreps"

    def keys() -> list[Part]:
        return [_html.paragraph(f"Key irreps: {api(mod, 'key_irreps')(m, t)}")]

    def group_tables() -> list[Part]:
        figs = "mi_margin.viz.irreps"
        return [api(figs, "cayley_table_figure")(t.group),
                api(figs, "character_table_figure")(t.group)]

    def restricted() -> list[Part]:
        res = api("mi_margin.analysis.irrep_ablation", "irrep_restricted_loss")(m, t)
        return [_html.table(res.to_dataframe()), plot(res)]

    items: dict[str, Item] = {
        "Cayley and character tables": group_tables,
        "Key irreps": keys,
        "Irrep spectrum": lambda: [plot(api(mod, "irrep_spectrum")(m, t))],
        "Logit similarity to characters": lambda: [plot(api(mod, "irrep_logit_similarity")(m, t))],
        "Neuron irreps": lambda: [plot(api(mod, "neuron_irrep_clusters")(m, t))],
        "Restricted and excluded loss": restricted,
    }
    if len(ctx.run.checkpoints) > 1:
        items["Progress measures over checkpoints"] = lambda: [
            plot(api("mi_margin.analysis.irrep_progress", "irrep_progress")(ctx.run))]
    return items


def _timeline(ctx: Context) -> dict[str, Item]:
    from mi_margin.viz.timeline import timeline, timeline_html

    return {"Checkpoint slider": lambda: [timeline_html(timeline(ctx.run))]}


def _inspector(ctx: Context) -> dict[str, Item]:
    from mi_margin.viz.inspector import inspector, inspector_html

    return {"Pick a neuron or a cluster": lambda: [inspector_html(inspector(ctx.model, ctx.task))]}


def _theory(ctx: Context) -> dict[str, Item]:
    m, t = ctx.model, ctx.task

    def margins() -> list[Part]:
        res = api("mi_margin.analysis.margin", "margin")(m, t)
        return [_html.table(res.summary()), plot(res)]

    def prediction() -> list[Part]:
        pred = api("mi_margin.theory.predictions", "prediction_for")(m, t)
        return [_html.table(pred.summary()), _html.table(pred.to_dataframe())]

    def compare() -> list[Part]:
        res = api("mi_margin.theory.compare", "compare_to_theory")(m, t)
        return [_html.table(res.scalars()), _html.table(res.to_dataframe()), plot(res)]

    return {"Margins": margins, "Max-margin prediction": prediction,
            "Observed vs predicted": compare}


def _attention(ctx: Context) -> dict[str, Item]:
    from mi_margin.viz.attention import attention_heatmap, attention_view

    return {"Attention over the input grid": lambda: [attention_heatmap(ctx.model, ctx.task)],
            "Attention patterns of single inputs": lambda: [attention_view(ctx.model, ctx.task)]}


def nfa_cost(model: Any, task: Any) -> float:
    """Rough cost (train examples × input dim × hidden width) of the NFA on this model."""
    cfg = model.cfg
    width = cfg.d_mlp or cfg.d_model
    d_in = cfg.d_model if model.model_kind == "transformer" else task.k * task.d_vocab
    return float(len(task.train_idx) * d_in * width)


def _nfa(ctx: Context) -> dict[str, Item]:
    def nfa() -> list[Part]:
        fn = api("mi_margin.analysis.nfa", "nfa_correlation")
        res = fn(ctx.model, ctx.task, init_state=ctx.run.checkpoints.get(0))
        return [_html.table(res.summary()), plot(res)]

    return {"NFM and AGOP": nfa}


def sections(run: Any) -> list[tuple[str, Callable[[Context], dict[str, Item]]]]:
    """The report's sections that apply to ``run``, in order (title, item builder)."""
    kind, model_kind = run.task.kind, run.model.model_kind
    out: list[tuple[str, Callable[[Context], dict[str, Item]]]] = [
        ("Configuration", _configuration), ("Training", _training)]
    if kind == "modular_addition":
        out.append(("Fourier analysis", _fourier))
    if kind == "group_composition":
        out.append(("Irreducible representations", _irreps))
    if kind in ("modular_addition", "group_composition"):
        if len(run.checkpoints) > 1:
            out.append(("Training timeline", _timeline))
        out.append(("Neuron inspector", _inspector))
    if model_kind == "mlp":
        out.append(("Margins and theory", _theory))
    if model_kind == "transformer":
        out.append(("Attention", _attention))
    if nfa_cost(run.model, run.task) <= NFA_BUDGET and len(run.task.train_idx):
        out.append(("Feature alignment (NFA)", _nfa))
    return out


def _load(run_or_path: Any) -> Any:
    if isinstance(run_or_path, str | Path):
        from mi_margin.training import load

        return load(run_or_path)
    if not hasattr(run_or_path, "model") or not hasattr(run_or_path, "history"):
        raise MiMarginError(f"write_report needs a Run or a run folder, got "
                            f"{type(run_or_path).__name__}")
    return run_or_path


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
    return _html.page(title, f'<nav class="mm-toc">{toc}</nav>\n' + "\n".join(bodies), scripts)


def write_report(run_or_path: Any, path: str | Path | None = None) -> Path:
    """Write the run's self-contained HTML report and return its path.

    Args:
        run_or_path: a :class:`~mi_margin.Run` or a run folder.
        path: the HTML file to write; default ``<run folder>/report.html``, or ``report.html`` in
            the working directory for a run that was never saved.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.viz.report import write_report
        >>> run = mm.load("runs/p113")                              # doctest: +SKIP
        >>> write_report(run)                                       # doctest: +SKIP
        PosixPath('runs/p113/report.html')
    """
    run = _load(run_or_path)
    out = Path(path) if path is not None else (
        Path(run.path) / "report.html" if run.path is not None else Path("report.html"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(build_html(run), encoding="utf-8")
    tmp.replace(out)
    return out

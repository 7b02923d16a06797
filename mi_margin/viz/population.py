"""Figures of the population views (:mod:`mi_margin.studies.views`) and a study's one-file report.

- :func:`label_frequency_figure`: per label, the fraction of seeds in which it is key beside the
  paper's and the max-margin network's (Morwani et al. 2024), and its mean share of the logit
  spectrum beside the max-margin network's; the x axis is categorical and ordered by dimension,
  as Chughtai et al.'s Fig. 7.
- :func:`grokking_figure`: each seed's memorization and stable grokking step (a strip per
  quantity); seeds that never grokked are listed in the title, not dropped.
- :func:`key_count_figure`: seeds per number of key labels and per N_δ, beside the paper's counts.
- :func:`key_count_by_setting_figure`: N_δ and the number of key labels of every seed against a
  grid's setting (e.g. the prime p), with their means.
- :func:`write_study_report`: the three figures and their tables in one HTML file that opens
  offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mi_margin.checks import check_output_file
from mi_margin.studies.grid import KeyCountBySetting
from mi_margin.studies.views import (
    GrokkingDistribution,
    KeyCountDistribution,
    LabelFrequency,
    grokking_distribution,
    key_count_distribution,
    label_frequency,
    none_generalized,
)
from mi_margin.viz import _html

#: bar and marker colours: ours, the paper's, the max-margin network's (plotly's defaults)
OURS, PAPER, THEORY = "#636efa", "#ef553b", "#00cc96"


def short_theory(theory: str | None) -> str:
    """A legend's name for the result the budget shares come from.

    Example:
        >>> short_theory("Morwani et al. 2024, Theorem 9"), short_theory("LP extension of Theorem 9 (ours)")
        ('Theorem 9', 'LP extension of Theorem 9')
    """
    return str(theory).split(", ")[-1].split(" (")[0]


def label_frequency_figure(view: LabelFrequency) -> go.Figure:
    """Two panels over the labels (in dimension order, as Chughtai et al.'s Fig. 7). Left: the
    fraction of seeds in which each label is key, ours and the paper's, beside the max-margin
    network's (1 where it uses the label, 0 where it does not). Right: the label's mean share of
    the seeds' logit spectrum beside its share in the max-margin network's logits; each panel
    compares like with like."""
    table = view.to_dataframe().sort_values(["dim", "label"], kind="stable")
    names = [f"{lab} ({al.split(', ')[0]})" if al else str(lab)
             for lab, al in zip(table["label"], table["aliases"])]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("key: fraction of seeds", "share of the logit spectrum"))
    fig.add_bar(x=names, y=table["fraction"], name=f"ours ({view.n_seeds} seeds that generalized)",
                marker_color=OURS, row=1, col=1)
    if table["paper"].notna().any() and view.paper_seeds:
        fig.add_bar(x=names, y=table["paper"] / view.paper_seeds, marker_color=PAPER,
                    name=f"paper ({view.paper_seeds} seeds)", row=1, col=1)
    theory = short_theory(view.theory)
    if table["theory_key"].notna().any():
        fig.add_scatter(x=names, y=table["theory_key"].astype(float), mode="markers",
                        marker=dict(symbol="diamond", size=11, color=THEORY),
                        name=f"max-margin network ({theory})", row=1, col=1)
    if table["logit_share"].notna().any():
        fig.add_bar(x=names, y=table["logit_share"], marker_color=OURS, showlegend=False,
                    name="ours (mean over seeds)", row=1, col=2)
    if table["theory_logit_share"].notna().any():
        fig.add_scatter(x=names, y=table["theory_logit_share"], mode="markers", showlegend=False,
                        marker=dict(symbol="diamond", size=11, color=THEORY),
                        name=f"max-margin network ({theory})", row=1, col=2)
    fig.update_layout(barmode="group", title=f"Which {view.label_kind}s are key, and how much of "
                      f"the logits they hold" + (f"<br><sup>{view.left_out} seeds that did not "
                                                 f"generalize left out</sup>" if view.left_out
                                                 else ""),
                      legend=dict(orientation="h", yanchor="top", y=-0.35, x=0), height=520,
                      margin=dict(t=110))
    fig.update_xaxes(type="category", title_text=f"{view.label_kind} (dimension order)")
    fig.update_yaxes(title_text="fraction of seeds", row=1, col=1)
    fig.update_yaxes(title_text="share", row=1, col=2)
    return fig


def grokking_figure(view: GrokkingDistribution) -> go.Figure:
    """Memorization and stable grokking steps of every seed (never-grokked seeds in the title)."""
    table = view.to_dataframe()
    fig = go.Figure()
    for col, name in [("memorized", "memorized (train acc ≥ 0.99)"),
                      ("stable", "grokked (test acc ≥ 0.99, stable)")]:
        seen = table[table[col].notna()]
        fig.add_box(x=seen[col], name=name, boxpoints="all", jitter=0.4, text=seen["seed"],
                    hovertemplate="seed %{text}: step %{x}<extra></extra>")
    missing = view.n_seeds - view.n_grokked
    fig.update_layout(title=f"Grokking steps: {view.n_grokked} of {view.n_seeds} seeds grokked"
                            + (f" ({missing} did not within their budget)" if missing else ""),
                      xaxis_title="optimizer step", showlegend=False)
    return fig


def key_count_figure(view: KeyCountDistribution) -> go.Figure:
    """Seeds per number of key labels (and per N_δ), beside the paper's counts."""
    table = view.to_dataframe()
    fig = go.Figure(go.Bar(x=table["n"], y=table["seeds"], name="key labels (ours)"))
    fig.add_bar(x=table["n"], y=table["seeds_n_delta"], name="N_δ, δ = 0.05 (ours)")
    if table["paper"].notna().any():
        fig.add_bar(x=table["n"], y=table["paper"], name=f"paper ({view.paper_seeds} seeds)")
    fig.update_layout(barmode="group", title=f"Number of key labels per seed ({view.n_seeds} seeds "
                      "that generalized)",
                      xaxis_title="labels", yaxis_title="seeds", xaxis_type="category")
    return fig


def key_count_by_setting_figure(view: KeyCountBySetting) -> go.Figure:
    """Each generalized seed's N_δ and number of key labels against the setting, with the means
    over seeds as lines."""
    points = pd.DataFrame(list(view.points), columns=["setting", "seed", "n_delta", "n_key"])
    rows = view.to_dataframe()
    fig = go.Figure()
    for col, name in [("n_delta", "N_δ, δ = 0.05"), ("n_key", "key labels")]:
        fig.add_scatter(x=points["setting"], y=points[col], mode="markers", text=points["seed"],
                        name=f"{name} (a seed)", hovertemplate="seed %{text}: %{y}<extra></extra>")
        fig.add_scatter(x=rows["setting"], y=rows[f"{col}_mean"], mode="lines",
                        name=f"{name} (mean)")
    seeds = ", ".join(f"{r.setting}: {r.generalized}/{r.seeds}" for r in rows.itertuples())
    fig.update_layout(title=f"Key labels per seed against the setting<br><sup>seeds that "
                            f"generalized / seeds run: {seeds}</sup>",
                      xaxis_title="setting", yaxis_title="labels per seed")
    return fig


def label_sections(table: Any, paper: tuple[Any, Any, Any]) -> list[str]:
    """The report's two label views, or why there are none (no seed generalized)."""
    why = none_generalized(table)
    if why:
        return [_html.section("Which labels are key", _html.paragraph(why))]
    labels = label_frequency(table, paper[0], paper[2])
    counts = key_count_distribution(table, paper[1], paper[2])
    return [_html.section("Which labels are key", _html.figure_div(label_frequency_figure(labels))
                          + _html.table(labels.to_dataframe())
                          + _html.table(labels.dimension_table())),
            _html.section("Number of key labels", _html.figure_div(key_count_figure(counts))
                          + _html.table(counts.to_dataframe()))]


def study_html(table: Any, title: str, population: Any | None = None) -> str:
    """The report page of a study table (``population``: its paper counts, if a zoo population)."""
    paper = (population.paper_key, population.paper_n_key, population.paper_seeds) \
        if population is not None else (None, None, None)
    grok = grokking_distribution(table)
    intro = _html.paragraph(population.paper if population is not None else
                            f"{len(grok.rows)} seeds.")
    body = "\n".join([intro, *label_sections(table, paper),
                      _html.section("Grokking", _html.figure_div(grokking_figure(grok))
                                    + _html.table(grok.describe().reset_index()))])
    return _html.page(title, body, [_html.plotly_script()])


def write_study_report(study_or_table: Any, path: str | Path, population: Any | None = None,
                       title: str | None = None) -> Path:
    """Write a study's report (one HTML file, offline) to ``path``; returns the path.

    Example:
        >>> import mi_margin as mm                                      # doctest: +SKIP
        >>> st = mm.study("chughtai_S4_mlp", seeds=10, out="s4")        # doctest: +SKIP
        >>> write_study_report(st, "s4/report.html")                    # doctest: +SKIP
    """
    table = getattr(study_or_table, "table", study_or_table)
    name = title or getattr(study_or_table, "source", "study")
    path = check_output_file(path, "the study's report")
    path.write_text(study_html(table, f"Study: {name}", population), encoding="utf-8")
    return path

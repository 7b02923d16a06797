"""Ship a study as a zoo population: its rows as ``NAME.csv`` and a card ``NAME.md`` that sets the
population views beside the paper's counts (read back by :mod:`mi_margin.zoo.populations`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from mi_margin.analysis.key_rules import GENERALIZED
from mi_margin.errors import MiMarginError
from mi_margin.studies.study import META, ROWS, read_meta, read_rows
from mi_margin.studies.views import (
    grokking_distribution,
    key_count_distribution,
    label_frequency,
    none_generalized,
)
from mi_margin.zoo.recipes import POPULATIONS, Population


def _md(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        rows.append("| " + " | ".join("" if pd.isna(v) else (f"{v:.3g}" if isinstance(v, float)
                                                               else str(v)) for v in r) + " |")
    return "\n".join(rows)


def counted(n_seeds: int, left_out: int) -> str:
    """Which seeds a label view counts (:func:`mi_margin.studies.views.generalized`)."""
    return (f"Counted over the {n_seeds} seeds that generalized (final test accuracy ≥ "
            f"{GENERALIZED})" + (f"; left out: {left_out} that did not (their key labels describe "
                                 "no algorithm; they stay in the grokking table)." if left_out
                                 else "."))


def budget_note(n_at_budget: int, which: str) -> str:
    """How many seeds stopped at their step budget (:func:`~mi_margin.studies.views.at_budget`).

    Example:
        >>> budget_note(6, "of these")[:60]
        ' 6 of these stopped at their step budget, their cleanup cut '
    """
    if not n_at_budget:
        return ""
    return (f" {n_at_budget} {which} stopped at their step budget, their cleanup cut short; "
            "key_at_budget counts them (their key labels may still have been changing).")


def label_sections(pop: Population, table: pd.DataFrame) -> list[str]:
    """The card's two label views, or why there are none (no seed generalized)."""
    why = none_generalized(table)
    if why:
        return [f"## Which labels are key\n\n{why}"]
    labels = label_frequency(table, pop.paper_key, pop.paper_seeds)
    counts = key_count_distribution(table, pop.paper_n_key, pop.paper_seeds)
    return [
        "## Which labels are key\n\n" + counted(labels.n_seeds, labels.left_out)
        + budget_note(labels.n_at_budget, "of these")
        + " Key rule as `mi_margin.studies.keys.default_rule` (the API's defaults); "
        + theory_note(labels.theory) + "\n\n"
        + _md(labels.to_dataframe()),
        "Pooled by dimension (key labels per seed):\n\n" + _md(labels.dimension_table()),
        "## Number of key labels per seed\n\n" + counted(counts.n_seeds, counts.left_out)
        + "\n\n" + _md(counts.to_dataframe()),
    ]


def theory_note(theory: str | None) -> str:
    """What the card's max-margin columns are, naming the result they come from.

    Example:
        >>> theory_note("Morwani et al. 2024, Theorem 9")[:72]
        'theory_key: the max-margin network (Morwani et al. 2024, Theorem 9) has '
    """
    if theory is None:
        return "no max-margin prediction is known for this task (the theory columns are empty)."
    return (f"theory_key: the max-margin network ({theory}) has the label key; "
            "theory_logit_share: its share of that network's logit spectrum, measured on its "
            "certificate as logit_share is on the seeds (their mean); theory_share: its budget "
            "share. The theorems are about homogeneous MLPs (x² neurons, no biases); for another "
            "network these columns are a reference, not a prediction.")


def seed_ranges(seeds: Iterable[int]) -> str:
    """Seeds as runs of consecutive numbers, e.g. "0, 25–27".

    Example:
        >>> seed_ranges([27, 0, 25, 26]), seed_ranges(range(100))
        ('0, 25–27', '0–99')
    """
    runs: list[list[int]] = []
    for seed in sorted(int(s) for s in seeds):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def card(pop: Population, table: pd.DataFrame, rule: dict) -> str:
    """The card of a population: what was trained, and each view beside the paper's counts."""
    grok = grokking_distribution(table)
    cpu = table["cpu_s"].dropna()
    return "\n\n".join([
        f"# Population {pop.name}",
        f"{pop.title}: {len(table)} of {pop.seeds} planned seeds (0–{pop.seeds - 1}; trained: "
        f"{seed_ranges(table['seed'])}) with the zoo recipe, each stopped by the rule "
        f"{json.dumps(rule)} (stable grokking at test accuracy ≥ "
        f"{rule['level']} for {rule['patience']} evaluations, then {rule['cleanup']:.0%} more steps "
        f"for cleanup, checked every {rule['chunk']} steps) or at its step budget.",
        f"**Paper:** {pop.paper}",
        f"**Grokked:** {grok.n_grokked} of {grok.n_seeds} seeds; median CPU time per seed "
        f"{cpu.median():.0f} s (one torch thread, niced, on a shared 2-core machine)."
        if len(cpu) else "",
        *label_sections(pop, table),
        "## Grokking steps\n\n" + _md(grok.describe().reset_index()) + "\n\nEach step's "
        f"count, quantiles and mean are over the seeds that reached it: the "
        f"{grok.n_seeds - grok.n_grokked} that never grokked stably are not in them, so they "
        f"are lower than the population's. {grok.n_at_budget} of the {grok.n_seeds} seeds "
        f"stopped at their step budget.",
        f"Regenerate: `mi-margin study {pop.name} --out populations/{pop.name} --ship "
        "mi_margin/zoo/data/populations` (seeds already in the study folder are not retrained).",
    ])


def check_source(name: str, study_dir: str | Path) -> dict[str, Any]:
    """The study folder's record, refused unless it is a study of the population ``name`` (its
    card would set another task's rows beside this paper's counts)."""
    meta = read_meta(Path(study_dir) / META)
    if meta["source"] != name:
        raise MiMarginError(f"{study_dir} holds a study of {meta['source']!r}, not of {name!r}")
    return meta


def build(name: str, study_dir: str | Path, dest: str | Path) -> Path:
    """Write ``dest/NAME.csv`` and ``dest/NAME.md`` from the study folder's rows."""
    if name not in POPULATIONS:
        raise MiMarginError(f"no population {name!r}; valid: {sorted(POPULATIONS)}")
    meta = check_source(name, study_dir)
    study_dir, dest = Path(study_dir), Path(dest)
    rows = read_rows(study_dir / ROWS)
    if not rows:
        raise MiMarginError(f"{study_dir} holds no finished seeds ({ROWS} is missing or empty)")
    table = pd.DataFrame([rows[s] for s in sorted(rows)])
    dest.mkdir(parents=True, exist_ok=True)
    table.to_csv(dest / f"{name}.csv", index=False)
    (dest / f"{name}.md").write_text(card(POPULATIONS[name], table, meta["rule"]) + "\n")
    return dest / f"{name}.csv"

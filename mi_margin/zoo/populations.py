"""Population summaries shipped with the zoo: one row per seed of a study, and a card.

A population is many seeds of one zoo setting (:data:`~mi_margin.zoo.recipes.POPULATIONS`),
trained with ``mi-margin study NAME --out populations/NAME`` (:mod:`mi_margin.studies`). The zoo
ships its summary table ``data/populations/NAME.csv`` (the study's rows, from which every
population view is recomputed) and a card ``NAME.md`` that sets the views beside the paper's
counts; the seeds' final weights stay in the study folder (``populations/NAME`` of the
repository), from which :func:`mi_margin.studies.ship.build` regenerates both.

Command line (after or instead of training: finished seeds are not trained again)::

    mi-margin study NAME --out populations/NAME --ship mi_margin/zoo/data/populations
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mi_margin.errors import MiMarginError

DATA = Path(__file__).parent / "data" / "populations"


def names() -> list[str]:
    """The populations whose summaries are installed."""
    return sorted(p.stem for p in DATA.glob("*.csv")) if DATA.is_dir() else []


def population(name: str) -> pd.DataFrame:
    """One row per seed of the shipped population ``name`` (see :mod:`mi_margin.studies.summary`).

    Example:
        >>> import mi_margin as mm
        >>> names = mm.zoo.populations.names()
        >>> all(len(mm.zoo.population(n)) > 0 for n in names)
        True
    """
    if name not in names():
        raise MiMarginError(f"no population {name!r} in the zoo; shipped: {names()}")
    return pd.read_csv(DATA / f"{name}.csv")


def population_card(name: str) -> str:
    """The markdown card of the shipped population ``name``."""
    population(name)
    return (DATA / f"{name}.md").read_text()

"""A grid of studies: the same seeds of one recipe over several settings, in one table.

Some questions are about how a population changes with a setting, not about one population: how
many key frequencies a network keeps as the modulus p grows is open (the max-margin solution of
Morwani et al. 2024 uses every frequency; trained networks keep a few, Nanda et al. 2023 five
at p = 113, and nobody has said how that count scales). :func:`study_grid` runs one
:func:`~mi_margin.studies.study.study` per setting in ``OUT/<setting>/`` (each resumable as a study
is) and returns their rows with a ``setting`` column; :func:`key_count_by_setting` is the view:
N_δ (labels holding a 1 − δ share of the logit spectrum, docs/mathematics.md §4.4) and the number
of key labels per seed that generalized, against the setting.

Example:
    >>> import mi_margin as mm
    >>> def tiny(p, seed):
    ...     task = mm.ModularAddition(p=p, train_fraction=0.6, seed=seed)
    ...     model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32, seed=seed))
    ...     return model, task, mm.TrainConfig(steps=40, lr=1e-2, eval_every=20, progress=False)
    >>> grid = study_grid(tiny, [5, 7], seeds=2, out=getfixture("tmp_path") / "g", progress=False)
    >>> grid.table[["setting", "seed"]].values.tolist()
    [[5, 0], [5, 1], [7, 0], [7, 1]]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.studies.keys import key_labels
from mi_margin.studies.seeds import SeedRecipe, recipe_name, stable_repr
from mi_margin.studies.study import Study, study
from mi_margin.studies.views import generalized

#: ``(setting, seed) -> (model, task, TrainConfig)``
GridRecipe = Callable[[Any, int], Any]


def setting_recipe(make: GridRecipe, setting: Any) -> SeedRecipe:
    """``make`` at one setting as a seed recipe, named ``make[setting]`` with ``make``'s
    :func:`~mi_margin.studies.seeds.recipe_name` (the name a study records, the same in every
    process, so that a resumed grid finds its own studies)."""
    def recipe(seed: int) -> Any:
        return make(setting, seed)

    recipe.__name__ = recipe.__qualname__ = f"{recipe_name(make)}[{stable_repr(setting)}]"
    return recipe


def folder_name(setting: Any) -> str:
    """A folder name for a setting: its text with anything but letters, digits, '.', '-', '_'
    replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(setting))


def study_grid(make: GridRecipe, settings: Iterable[Any], seeds: int | Iterable[int],
               out: str | Path, **kwargs: Any) -> Study:
    """Run (or finish) one study per setting and return all rows with a ``setting`` column.

    Args:
        make: ``(setting, seed) -> (model, task, TrainConfig)``.
        settings: the settings, e.g. primes; each one's study lives in ``out/<setting>``.
        seeds: as :func:`~mi_margin.studies.study.study` takes them, the same for every setting.
        kwargs: passed to every study (``rule``, ``address``, ``progress``, ...).
    """
    if isinstance(settings, (str, bytes)) or not isinstance(settings, Iterable):
        raise MiMarginError(f"settings must be a list of settings (e.g. primes [59, 61]), got "
                            f"{settings!r}")
    settings = list(settings)
    if not settings:
        raise MiMarginError("settings must hold at least one setting")
    names = [folder_name(s) for s in settings]
    if len(set(names)) != len(names):
        raise MiMarginError(f"settings must have distinct folder names, got {names}")
    out = Path(out)
    frames, studies = [], []
    for setting, name in zip(settings, names):
        st = study(setting_recipe(make, setting), seeds, out / name, **kwargs)
        studies.append(st)
        frames.append(st.table.assign(setting=[setting] * len(st.table)))
    table = pd.concat(frames, ignore_index=True)
    return Study(source=recipe_name(make), out=out, rule=studies[0].rule,
                 table=table[["setting", *[c for c in table if c != "setting"]]])


@dataclass(frozen=True)
class KeyCountBySetting(AnalysisResult):
    """Per setting: seeds, seeds that generalized, and over those N_δ and the number of key
    labels (mean, median, min, max); ``points`` holds each generalized seed's (setting, seed,
    n_delta, n_key) for the figure."""

    _score = "n_delta_mean"

    rows: tuple[dict[str, Any], ...] = field(repr=False)
    points: tuple[dict[str, Any], ...] = field(repr=False)

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))


def key_count_by_setting(study_or_table: Any) -> KeyCountBySetting:
    """N_δ and the number of key labels against the setting, over the seeds that generalized
    (:func:`~mi_margin.studies.views.generalized`; seeds that did not are counted in
    ``seeds`` and left out of the statistics)."""
    table = study_or_table if isinstance(study_or_table, pd.DataFrame) else study_or_table.table
    missing = [c for c in ("setting", "n_delta", "label_kind") if c not in table]
    if missing:
        raise MiMarginError(f"a grid table (study_grid) is needed; missing columns {missing}")
    rows, points = [], []
    for setting, part in table.groupby("setting", sort=True):
        kept = generalized(part)
        n_key = [len(key_labels(row)) for _, row in kept.iterrows()]
        n_delta = [int(v) for v in kept["n_delta"]]
        points += [{"setting": setting, "seed": int(s), "n_delta": d, "n_key": k}
                   for s, d, k in zip(kept["seed"], n_delta, n_key)]
        stats: dict[str, Any] = {"setting": setting, "seeds": len(part), "generalized": len(kept)}
        for name, values in (("n_delta", n_delta), ("n_key", n_key)):
            series = pd.Series(values, dtype=float)
            stats |= {f"{name}_mean": series.mean(), f"{name}_median": series.median(),
                      f"{name}_min": series.min(), f"{name}_max": series.max()}
        rows.append(stats)
    return KeyCountBySetting(rows=tuple(rows), points=tuple(points))

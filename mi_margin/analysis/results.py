"""The shared base of analyzer results: frozen dataclasses with ``.top()``, ``.to_dataframe()``,
``.plot()``.

Every analyzer (spectra, clusters, margins, ...) returns a frozen dataclass of tensors and labels
that subclasses :class:`AnalysisResult`. A subclass implements ``_table()`` (a tidy DataFrame, one
row per measured item) and names the column that ranks rows (``_score``) and optionally the column
that groups them (``_group``: ``top`` ranks within each group).

Analysis knows nothing of plotting: :func:`figure` is a single-dispatch function over result types
to which the plotting layer registers one figure per type when it is imported
(``@figure.register``); ``result.plot()`` calls it. The package root sets :data:`figure_loader`
to import the plotting layer on the first ``plot()`` (so ``import mi_margin`` stays light and
``result.plot()`` still works in a fresh process).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import singledispatch
from typing import Any, ClassVar

import pandas as pd

from mi_margin.errors import MiMarginError


@dataclass(frozen=True)
class AnalysisResult(ABC):
    """Base of frozen analyzer results (see the module docstring for the subclass contract).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Scores(AnalysisResult):
        ...     _score = "score"
        ...     values: tuple[float, ...]
        ...     def _table(self):
        ...         return pd.DataFrame({"item": range(len(self.values)), "score": self.values})
        >>> Scores((0.1, 0.7, 0.3)).top(2)["item"].tolist()
        [1, 2]
    """

    _score: ClassVar[str] = "value"
    _group: ClassVar[str | None] = None

    @abstractmethod
    def _table(self) -> pd.DataFrame:
        """One row per measured item; must contain the ``_score`` column."""

    def to_dataframe(self) -> pd.DataFrame:
        """The result as a tidy DataFrame (a fresh copy; safe to modify)."""
        return self._table().reset_index(drop=True)

    def top(self, n: int = 5, group: Any = None) -> pd.DataFrame:
        """The ``n`` rows with the largest ``_score``.

        A result whose rows fall in groups that are ranked separately (``_group``: a spectrum's
        ``component``, each with its own shares summing to 1) gives the ``n`` best rows *of each
        group*, so ``n`` × the number of groups rows; ``group=`` keeps one group's ``n`` rows
        (e.g. ``fourier_spectrum(model, task).top(5, "logits")``).
        """
        table = self.to_dataframe()
        if group is not None:
            if self._group is None:
                raise MiMarginError(f"{type(self).__name__} has no groups; call top(n)")
            if group not in set(table[self._group]):
                raise MiMarginError(f"no {self._group} {group!r}; have "
                                    f"{sorted(map(str, set(table[self._group])))}")
            table = table[table[self._group] == group]
        ordered = table.sort_values(self._score, ascending=False, kind="stable")
        if self._group is not None:
            ordered = ordered.groupby(self._group, sort=False).head(n)
            return ordered.sort_values([self._group, self._score], ascending=[True, False],
                                       kind="stable").reset_index(drop=True)
        return ordered.head(n).reset_index(drop=True)

    def plot(self, **kwargs: Any) -> Any:
        """The figure registered for this result's type (see :func:`figure`)."""
        if figure.dispatch(type(self)) is figure.dispatch(object) and figure_loader is not None:
            figure_loader()
        return figure(self, **kwargs)


#: called once by ``plot()`` when no figure is registered for a result type (set by the package
#: root to import the plotting layer, which registers its figures)
figure_loader: Callable[[], object] | None = None


@singledispatch
def figure(result: Any, **kwargs: Any) -> Any:
    """A figure of ``result``; the plotting layer registers one per result type on import."""
    raise MiMarginError(f"no figure is registered for {type(result).__name__}: mm.viz.plot "
                        "draws the results of the analyzers (what mm.spectrum, mm.restricted_loss, "
                        "mm.compare_to_theory, ... return); a run's curves are "
                        "mm.viz.training_curves(run)")


class KeyLabels:
    """Mixin for results about a set of basis labels (``labels``): ``frequencies`` and ``irreps``
    are the field's names for them (Nanda et al. speak of frequencies, Chughtai et al. of irreps)."""

    labels: tuple[Any, ...]

    @property
    def frequencies(self) -> tuple[Any, ...]:
        return self.labels

    @property
    def irreps(self) -> tuple[Any, ...]:
        return self.labels

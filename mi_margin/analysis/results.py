"""The shared base of analyzer results: frozen dataclasses with ``.top()``, ``.to_dataframe()``,
``.plot()``.

Every analyzer (Fourier, irreps, margins, ...) returns a frozen dataclass of tensors and labels
that subclasses :class:`AnalysisResult`. A subclass implements ``_table()`` (a tidy DataFrame, one
row per measured item) and names the column that ranks rows (``_score``), optionally the column that
groups them (``_group``: ``top`` ranks within each group) and the plot function as
``"module:function"`` (``_plot``), imported lazily so that analysis never imports plotly.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd


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
    _plot: ClassVar[str | None] = None

    @abstractmethod
    def _table(self) -> pd.DataFrame:
        """One row per measured item; must contain the ``_score`` column."""

    def to_dataframe(self) -> pd.DataFrame:
        """The result as a tidy DataFrame (a fresh copy; safe to modify)."""
        return self._table().reset_index(drop=True)

    def top(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` rows with the largest ``_score`` (within each ``_group`` if set)."""
        table = self.to_dataframe()
        ordered = table.sort_values(self._score, ascending=False, kind="stable")
        if self._group is not None:
            ordered = ordered.groupby(self._group, sort=False).head(n)
            return ordered.sort_values([self._group, self._score], ascending=[True, False],
                                       kind="stable").reset_index(drop=True)
        return ordered.head(n).reset_index(drop=True)

    def plot(self, **kwargs: Any) -> Any:
        """A plotly figure of this result (the function named by ``_plot``, imported lazily)."""
        if self._plot is None:
            raise NotImplementedError(f"{type(self).__name__} has no plot")
        module, name = self._plot.split(":")
        return getattr(importlib.import_module(module), name)(self, **kwargs)

"""``FeatureMatrix``: a labelled d×d feature matrix (an NFM, an AGOP or a tangent kernel).

Returned by :func:`~mi_margin.analysis.nfm.nfm` and :func:`~mi_margin.analysis.agop.agop` so that
notebooks can ``.plot()`` and ``.top()`` them (Beaglehole et al. 2024; Mallinar et al. 2024,
docs/mathematics.md §5); the maths lives in ``.matrix`` (float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError


@dataclass(frozen=True)
class FeatureMatrix(AnalysisResult):
    """A symmetric PSD feature matrix with axis labels.

    As an :class:`AnalysisResult` its table has one row per eigen-direction (``rank``,
    ``eigenvalue``, ``fraction_of_trace``, ``largest_entry``: the label of the eigenvector's
    largest coordinate), so ``.top(k)`` is the leading spectrum; ``.plot()`` is a heatmap.

    Attributes:
        matrix: float64 [d, d].
        name: what it is ("NFM", "AGOP", "K" for the pre-activation tangent kernel, ...).
        labels: one label per axis entry (e.g. ``"x0=3"`` for operand 0's one-hot coordinate 3).
        block_size: size of the per-operand blocks (d_vocab for a k-operand one-hot input), or
            ``None`` when the axis has no operand blocks.

    Example:
        >>> import torch
        >>> fm = FeatureMatrix(torch.eye(4, dtype=torch.float64), "NFM",
        ...                    ("x0=0", "x0=1", "x1=0", "x1=1"), block_size=2)
        >>> fm.block(1, 0).shape
        torch.Size([2, 2])
    """

    _score: ClassVar[str] = "eigenvalue"

    matrix: Float[Tensor, "d d"]
    name: str
    labels: tuple[str, ...]
    block_size: int | None = None

    def __post_init__(self) -> None:
        d = self.matrix.shape[0]
        if self.matrix.shape != (d, d) or len(self.labels) != d:
            raise MiMarginError(f"{self.name}: matrix {tuple(self.matrix.shape)} must be square "
                                f"with one label per row, got {len(self.labels)} labels")

    @property
    def n_blocks(self) -> int:
        """Number of operand blocks along each axis (1 without blocks)."""
        return 1 if self.block_size is None else self.matrix.shape[0] // self.block_size

    def block(self, i: int, j: int) -> Float[Tensor, "b b"]:
        """Block (i, j): rows of operand i, columns of operand j (Mallinar's C is block(1, 0))."""
        n = self.n_blocks
        if self.block_size is None or not (0 <= i < n and 0 <= j < n):
            raise MiMarginError(f"{self.name} has {n} operand block(s) per axis "
                                f"(block_size={self.block_size}); got block ({i}, {j})")
        b = self.block_size
        return self.matrix[i * b:(i + 1) * b, j * b:(j + 1) * b]

    def eigen(self) -> tuple[Float[Tensor, " d"], Float[Tensor, "d d"]]:
        """Eigenvalues (descending) and eigenvectors (columns) of the symmetric matrix."""
        vals, vecs = torch.linalg.eigh(self.matrix)
        return vals.flip(0), vecs.flip(1)

    def _table(self) -> pd.DataFrame:
        vals, vecs = self.eigen()
        trace = float(vals.sum())
        return pd.DataFrame({
            "rank": range(len(vals)), "eigenvalue": vals.tolist(),
            "fraction_of_trace": (vals / trace).tolist() if trace else [float("nan")] * len(vals),
            "largest_entry": [self.labels[int(i)] for i in vecs.abs().argmax(0)]})

"""Neural feature ansatz (NFA): how well the NFM W^T W matches a power of the AGOP.

Beaglehole et al. 2024 (docs/mathematics.md §5.1): NFA correlation ρ(W^T W, W^T K W) and the centered NFA
ρ(ΔW^T ΔW, ΔW^T K ΔW) with ΔW = W − W_0 (W_0 the initialization, K at the current weights).
Mallinar et al. 2024 (§5.2, App. C eq. 15): W^T W ∝ G^s with s = 1/2, and the circulant deviation
D(A) of the feature matrix's cross-operand block for modular addition. Here both are one function:
the NFM is compared with (W^T K W)^s = G^s (s = ``power``; s = 1 is Beaglehole's form).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis.agop import agop
from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.nfm import axis_labels, layer_weight, nfm
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task

InitState = Any   # a Run (its checkpoints[0] is used) or a state dict of the initial weights


def psd_power(A: Float[Tensor, "d d"], power: float) -> Float[Tensor, "d d"]:
    """A^s for a symmetric PSD matrix, by eigendecomposition (rounding-negative eigenvalues → 0).

    Example:
        >>> import torch
        >>> A = torch.tensor([[4.0, 0.0], [0.0, 9.0]], dtype=torch.float64)
        >>> psd_power(A, 0.5)
        tensor([[2., 0.],
                [0., 3.]], dtype=torch.float64)
    """
    if not (isinstance(power, (int, float)) and power > 0):
        raise MiMarginError(f"power must be a number > 0 (Mallinar et al. use 1/2), "
                            f"got power={power!r}")
    vals, vecs = torch.linalg.eigh(A.double())
    return (vecs * vals.clamp(min=0) ** power) @ vecs.T


def matrix_correlation(A: Tensor, B: Tensor, off_diagonal: bool = False) -> tuple[float, float]:
    """(Pearson correlation, cosine similarity) of the flattened entries of A and B.

    Pearson subtracts each matrix's mean entry (Beaglehole's ``mat_cov``); cosine does not
    (Mallinar's alignment). NaN where a matrix is constant (Pearson) or zero (cosine).
    ``off_diagonal=True`` uses only the entries off the main diagonal: for one-hot inputs the
    diagonal (each token's squared input weight norm) dominates both matrices and makes even
    unrelated-looking feature matrices correlate.

    Example:
        >>> import torch
        >>> A = torch.eye(3, dtype=torch.float64)
        >>> [round(v, 6) for v in matrix_correlation(A, 2 * A + 1)]
        [1.0, 0.904534]
    """
    if A.shape != B.shape:
        raise MiMarginError(f"matrices must have the same shape, got {tuple(A.shape)} and "
                            f"{tuple(B.shape)}")
    keep = ~torch.eye(A.shape[0], dtype=torch.bool) if off_diagonal else torch.ones_like(
        A, dtype=torch.bool)
    a, b = A.double()[keep], B.double()[keep]

    def cos(u: Tensor, v: Tensor) -> float:
        den = u.norm() * v.norm()
        return float(u @ v / den) if den > 0 else float("nan")

    return cos(a - a.mean(), b - b.mean()), cos(a, b)


def circulant_deviation(matrix: Tensor | FeatureMatrix, block: tuple[int, int] = (1, 0)) -> float:
    """Mallinar et al.'s circulant deviation D(A) (docs/mathematics.md §5.2); 0 iff A is circulant.

    ``D(A) = Σ_j Var(S(A)[:, j]) / ||A||_F²`` with Var(v) = Σ_i (v_i − mean v)² and S(A) the
    matrix whose row ℓ is row ℓ of A cyclically shifted by ℓ, ``S(A)[ℓ, j] = A[ℓ, (j + ℓ) mod p]``:
    the direction that lines up the rows of a circulant ``A[ℓ, m] = c[(m − ℓ) mod p]`` (the form of
    the cross-operand block for addition), so its columns become constant.

    Args:
        matrix: a p×p matrix A, or a :class:`FeatureMatrix` over k one-hot operands, whose
            ``block`` (rows of operand i, columns of operand j) is used. Mallinar et al. define
            D for k = 2 on the bottom-left block, the default (1, 0); for k > 2 pick the pair
            (``nfa_over_training`` reports the mean over all pairs i > j).

    Example:
        >>> import torch
        >>> c = torch.arange(5.0, dtype=torch.float64)
        >>> A = torch.stack([c.roll(l) for l in range(5)])   # A[l, m] = c[m - l]
        >>> circulant_deviation(A)
        0.0
    """
    A = matrix.block(*block) if isinstance(matrix, FeatureMatrix) else matrix.double()
    p = A.shape[0]
    if A.ndim != 2 or A.shape != (p, p):
        raise MiMarginError(f"circulant_deviation needs a square matrix, got {tuple(A.shape)}")
    norm_sq = float((A**2).sum())
    if norm_sq == 0:
        raise MiMarginError("circulant_deviation of the zero matrix is undefined (||A||_F = 0)")
    rows = torch.arange(p)
    S = A.gather(1, (rows[None, :] + rows[:, None]) % p)
    return float(((S - S.mean(0, keepdim=True)) ** 2).sum()) / norm_sq


@dataclass(frozen=True)
class NFAResult(AnalysisResult):
    """NFA correlation between the NFM and the AGOP raised to ``power``.

    Attributes:
        pearson, cosine: ρ over the matrices' entries (Pearson centres them, cosine does not).
        off_diagonal_pearson, off_diagonal_cosine: the same over the off-diagonal entries.
        nfm: W^T W (or ΔW^T ΔW when centered); agop_power: (W^T K W)^s (or (ΔW^T K ΔW)^s).
        power: s; centered: whether W − W_0 was used; subset: inputs the AGOP averaged over.
        relative_change: ||W − W_0||_F / ||W||_F when an initialization was given, else None.

    The table (``to_dataframe``/``top``) compares the spectra: per rank, both eigenvalues and
    the |cosine| between the two eigenvectors of that rank. ``.plot()``: side-by-side heatmaps.
    """

    _score: ClassVar[str] = "nfm_eigenvalue"

    pearson: float
    cosine: float
    off_diagonal_pearson: float
    off_diagonal_cosine: float
    nfm: FeatureMatrix
    agop_power: FeatureMatrix
    power: float
    centered: bool
    subset: str
    relative_change: float | None = None

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a dict."""
        return {"pearson": self.pearson, "cosine": self.cosine,
                "off_diagonal_pearson": self.off_diagonal_pearson,
                "off_diagonal_cosine": self.off_diagonal_cosine, "power": self.power,
                "centered": self.centered, "subset": self.subset,
                "relative_change": self.relative_change}

    def _table(self) -> pd.DataFrame:
        (va, ua), (vb, ub) = self.nfm.eigen(), self.agop_power.eigen()
        return pd.DataFrame({"rank": range(len(va)), "nfm_eigenvalue": va.tolist(),
                             "agop_power_eigenvalue": vb.tolist(),
                             "eigenvector_overlap": (ua * ub).sum(0).abs().tolist()})


def initial_weight(model: HookedModel, init_state: InitState, layer: int = 0) -> Tensor:
    """W_0: the layer matrix of ``model``'s architecture with the initial weights loaded."""
    state = getattr(init_state, "initial_state", init_state)
    if not isinstance(state, dict):
        raise MiMarginError(f"init_state must be a Run or a state dict of the initial weights, "
                            f"got {type(init_state).__name__}")
    init = copy.deepcopy(model)
    try:
        init.load_state_dict(state)
    except RuntimeError as err:
        raise MiMarginError(f"init_state does not fit this model: {err}") from err
    return layer_weight(init, layer)


def alignment(nfm_matrix: Tensor, gop: Tensor, power: float) -> dict[str, Any]:
    """NFA numbers of one pair: correlations of ``nfm_matrix`` with ``gop``^power (all and
    off-diagonal entries) and the power itself (key ``target``)."""
    target = psd_power(gop, power)
    full, off = matrix_correlation(nfm_matrix, target), matrix_correlation(nfm_matrix, target, True)
    return {"pearson": full[0], "cosine": full[1], "off_diagonal_pearson": off[0],
            "off_diagonal_cosine": off[1], "target": target}


def nfa_correlation(model: HookedModel, task: Task, layer: int = 0, power: float = 0.5,
                    centered: bool = False, init_state: InitState | None = None,
                    subset: str = "train", method: str = "jacrev") -> NFAResult:
    """NFA correlation ρ(W^T W, G^s), or the centered NFA ρ(ΔW^T ΔW, (ΔW^T K ΔW)^s).

    G is the input AGOP (:func:`~mi_margin.analysis.agop.agop`, = W^T K W), K the
    pre-activation tangent kernel at the current weights, ΔW = W − W_0 (Beaglehole et al. 2024;
    Mallinar et al. 2024 use s = 1/2, Beaglehole s = 1).

    Args:
        model, task, layer, subset, method: as for :func:`~mi_margin.analysis.agop.agop`.
        power: s > 0.
        centered: use ΔW; needs ``init_state``.
        init_state: a :class:`~mi_margin.Run` (its step-0 checkpoint) or the initial state dict;
            with ``centered=False`` it only fills ``relative_change``.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, train_fraction=0.6)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
        >>> -1 <= nfa_correlation(mlp, task).pearson <= 1
        True
    """
    check_fits(model, task, finite=True)
    if centered and init_state is None:
        raise MiMarginError("centered=True needs init_state: a Run or the initial state dict")
    psd_power(torch.eye(1, dtype=torch.float64), power)          # validates power early
    W = layer_weight(model, layer)
    W0 = initial_weight(model, init_state, layer) if init_state is not None else None
    change = None if W0 is None else float((W - W0).norm() / W.norm())
    if centered:
        assert W0 is not None
        K = agop(model, task, layer, "preactivation", subset, method=method).matrix
        dW = W - W0
        nfm_matrix, out = dW.T @ dW, alignment(dW.T @ dW, dW.T @ K @ dW, power)
    else:
        G = agop(model, task, layer, "input", subset, method=method).matrix
        nfm_matrix = nfm(model, layer).matrix
        out = alignment(nfm_matrix, G, power)
    labels, block = axis_labels(model)
    target = FeatureMatrix(out.pop("target"), f"AGOP^{power:g}", labels, block)
    return NFAResult(**out, nfm=FeatureMatrix(nfm_matrix, "NFM", labels, block),
                     agop_power=target, power=power, centered=centered, subset=subset,
                     relative_change=change)

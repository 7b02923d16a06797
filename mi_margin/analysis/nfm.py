"""Neural feature matrix (NFM) ``W^T W`` of a model's first weight layer (Beaglehole et al. 2024).

Orientation follows the theory (docs/mathematics.md §5.1): layer input x ∈ R^d, pre-activation h = W x + b,
W ∈ R^{d_mlp × d}, NFM = W^T W ∈ R^{d × d}.

- :class:`HookedMLP`: x is the concatenation of the k one-hot operands (k·d_vocab entries; the ±1
  vector for sparse parity), so ``W = concat_i W_in_eff[i]`` along the input axis, transposed,
  and the NFM's (i, j) block is ``W_in_eff[i] @ W_in_eff[j].T``.
- :class:`HookedOneLayerTransformer`: x is the MLP input (``resid_mid``), ``W = W_in.T`` and the
  NFM is d_model × d_model (``space="residual"``); ``space="token"`` composes the embedding,
  ``W = (W_E @ W_in).T``, giving a token × token NFM (the direct path of each token's embedding
  into the MLP; attention and positional embeddings are left out).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import model_kind

SPACES = {"mlp": ("input",), "transformer": ("residual", "token")}



def check_layer(model: Any, layer: int) -> None:
    """Only the first weight layer (the MLP's input map) is analysed: layer must be 0."""
    model_kind(model)
    if layer != 0:
        raise MiMarginError(f"layer must be 0 (the MLP input map of the single hidden layer), "
                            f"got layer={layer!r}")


def default_space(model: Any, space: str | None) -> str:
    """The input space of the layer: validates ``space`` against the model kind."""
    kind = model_kind(model)
    space = space or SPACES[kind][0]
    if space not in SPACES[kind]:
        raise MiMarginError(f"space must be one of {list(SPACES[kind])} for a {kind}, "
                            f"got space={space!r}")
    return space


def layer_weight(model: Any, layer: int = 0, space: str | None = None
                 ) -> Float[Tensor, "d_mlp d_in"]:
    """The layer matrix W (pre-activation h = W x + b) in float64, theory orientation.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(layer_weight(mlp).shape)
        (8, 10)
    """
    check_layer(model, layer)
    space = default_space(model, space)
    with torch.no_grad():
        if space == "input":
            W_eff = model.W_in_eff.detach().double()                      # k d_vocab d_mlp
            return W_eff.reshape(-1, W_eff.shape[-1]).T.contiguous()
        W_in = model.blocks[0].mlp.W_in.detach().double()                 # d_model d_mlp
        if space == "token":
            return (model.W_E.detach().double() @ W_in).T.contiguous()
        return W_in.T.contiguous()


def axis_labels(model: Any, space: str | None = None) -> tuple[tuple[str, ...], int | None]:
    """Labels of the layer-input coordinates and the operand block size (None without blocks)."""
    space = default_space(model, space)
    cfg = model.cfg
    if space == "input":
        if cfg.input_kind == "vector":
            return tuple(f"x[{j}]" for j in range(cfg.d_vocab)), None
        labels = tuple(f"x{i}={v}" for i in range(cfg.k) for v in range(cfg.d_vocab))
        return labels, cfg.d_vocab
    if space == "token":
        return (*(str(t) for t in range(cfg.d_vocab - 1)), "="), None
    return tuple(f"resid[{j}]" for j in range(cfg.d_model)), None


def symmetric_gram(W: Tensor) -> Tensor:
    """W^T W, exactly symmetric on every CPU: (G + G^T) / 2 of the product G = W^T W.

    A matrix product need not be symmetric bit for bit (the BLAS may sum entries (i, j) and (j, i)
    of W^T W in different orders, and does with some CPUs' kernels); averaging the two, which is
    commutative, makes it so. Each entry stays within γ_n Σ_k |W_ki| |W_kj| of the exact
    one (n = rows of W, γ_n = n·u/(1 − n·u): the dot product's rounding bound, Higham 2002, Thm 3.5),
    as the product's own entries are.

    Example:
        >>> import torch
        >>> G = symmetric_gram(torch.randn(7, 3, dtype=torch.float64))
        >>> torch.equal(G, G.T)
        True
    """
    G = W.T @ W
    return (G + G.T) / 2


def nfm(model: Any, layer: int = 0, operand: int | None = None, space: str | None = None
        ) -> FeatureMatrix:
    """Neural feature matrix W^T W of the first layer (Beaglehole et al. 2024, docs/mathematics.md §5.1).

    Args:
        model: a :class:`HookedMLP` or :class:`HookedOneLayerTransformer`.
        layer: 0 (the only weight layer with a nonlinearity after it).
        operand: MLP only: ``None`` for the full [k·d_vocab, k·d_vocab] matrix over the
            concatenated one-hot input, or i for operand i's diagonal block
            ``W_in_eff[i] @ W_in_eff[i].T`` [d_vocab, d_vocab].
        space: MLP: ``"input"``; transformer: ``"residual"`` (default, d_model × d_model) or
            ``"token"`` (W = (W_E W_in)^T, tokens × tokens).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(nfm(mlp).matrix.shape), tuple(nfm(mlp, operand=1).matrix.shape)
        ((10, 10), (5, 5))
    """
    W = layer_weight(model, layer, space)
    full = FeatureMatrix(symmetric_gram(W), "NFM", *axis_labels(model, space))
    if operand is None:
        return full
    n = full.n_blocks if full.block_size is not None else 0
    if not (isinstance(operand, int) and 0 <= operand < n):
        raise MiMarginError(f"operand must be None or an operand index in [0, {n}) for this "
                            f"model, got operand={operand!r}")
    b = full.block_size
    assert b is not None
    labels = full.labels[operand * b:(operand + 1) * b]
    return FeatureMatrix(full.block(operand, operand), f"NFM (operand {operand})", labels, None)

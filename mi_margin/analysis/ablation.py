"""Ablation-hook factories: keep or remove chosen frequencies (or any grid subspace) at a hook.

The hooks act on activations over the task's **whole input grid** (batch = all N inputs in
``task.inputs`` order): each unit's activation is a function on the grid, and the hook replaces it
by its per-unit mean plus the projection of the centred function onto a subspace ("keep"), or
removes that projection ("remove"). This is how Nanda et al. (2023, §4.3 / docs/mathematics.md §4.3) and
Chughtai et al. (2023, App. E.1) build the restricted and excluded losses, and it is usable in a
user's own experiment:

    >>> import mi_margin as mm
    >>> task = mm.ModularAddition(p=7)
    >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
    >>> hook = frequency_ablation_hook(task, [1, 2], mode="remove")
    >>> logits = model.run_with_hooks(task.inputs, fwd_hooks=[("blocks.0.mlp.hook_post", hook)])
    >>> tuple(logits.shape)
    (49, 7)

Any orthonormal basis over the grid works (:func:`grid_projection_hook`), e.g. an irrep's isotypic
basis over G × G for group composition. For transformers the hook edits one position (the last by
default) of [N, pos, d] activations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis._grid import check_modular
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import filter_grid, frequency_mask, sum_frequency_directions

HookFn = Callable[[Tensor, Any], Tensor]
MODES = ("keep", "remove")
KINDS = ("sum", "block")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise MiMarginError(f"mode must be one of {MODES}, got mode={mode!r}")


def _edit(act: Tensor, position: int, n_rows: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` (float64 [N, d] → [N, d]) to the activations at ``position``."""
    if act.shape[0] != n_rows:
        raise MiMarginError(f"the ablation hook needs the whole input grid as one batch "
                            f"({n_rows} rows), got a batch of {act.shape[0]}")
    if act.ndim == 2:
        return fn(act.double()).to(act.dtype)
    out = act.clone()
    out[:, position] = fn(act[:, position].double()).to(act.dtype)
    return out


def _subspace_edit(mode: str, project: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Per-unit mean + projection of the centred activations ("keep"), or minus it ("remove")."""
    def edit(h: Tensor) -> Tensor:
        mean = h.mean(dim=0, keepdim=True)
        part = project(h - mean)
        return mean + part if mode == "keep" else h - part
    return edit


def grid_projection_hook(basis: Float[Tensor, "N r"], mode: str = "keep", position: int = -1
                         ) -> HookFn:
    """A hook that keeps (or removes) the span of ``basis`` in each unit's function on the grid.

    Args:
        basis: orthonormal columns over the N grid inputs (``task.inputs`` order), e.g.
            :func:`mi_margin.fourier.cyclic.sum_frequency_directions` or an irrep basis.
        mode: ``"keep"``: activation → per-unit mean + Q Qᵀ(centred activation);
            ``"remove"``: activation → activation − Q Qᵀ(centred activation).
        position: the sequence position edited when activations are [N, pos, d].

    Example:
        >>> Q = sum_frequency_directions(5, 2, [1])
        >>> hook = grid_projection_hook(Q, "keep")
        >>> h = torch.randn(25, 3)
        >>> bool(torch.allclose(hook(hook(h, None), None), hook(h, None), atol=1e-5))
        True
    """
    _check_mode(mode)
    Q = basis.detach().to(torch.float64)
    if Q.ndim != 2:
        raise MiMarginError(f"basis must be [N, r], got shape {tuple(basis.shape)}")
    gram_err = (Q.T @ Q - torch.eye(Q.shape[1], dtype=torch.float64)).abs().max().item() \
        if Q.shape[1] else 0.0
    if gram_err > 1e-6:
        raise MiMarginError(f"basis columns must be orthonormal; max |QᵀQ − I| = {gram_err:.2e}")
    edit = _subspace_edit(mode, lambda h: Q @ (Q.T @ h))

    def hook(act: Tensor, hook: Any) -> Tensor:
        return _edit(act, position, Q.shape[0], edit)

    return hook


def frequency_ablation_hook(task: Any, frequencies: Sequence[int], mode: str = "keep",
                            kind: str = "sum", position: int = -1) -> HookFn:
    """A hook keeping (or removing) chosen frequencies of each unit's function on Z_p^k.

    Args:
        task: a :class:`~mi_margin.ModularAddition` (fixes p, k and the grid order).
        frequencies: frequencies f in 1..p//2.
        mode: ``"keep"`` or ``"remove"`` (see :func:`grid_projection_hook`).
        kind: ``"sum"`` — the directions cos/sin(ω_f(a_1+…+a_k)) only (Nanda et al.'s restricted
            loss; 2 per frequency); ``"block"`` — the whole single-frequency block
            {const, cos f, sin f}^k minus the constant (3^k − 1 terms per frequency, applied with
            the FFT), i.e. everything a degree-k polynomial in one frequency can express.
        position: the sequence position edited when activations are [N, pos, d].

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, k=3)
        >>> a = task.inputs.double()
        >>> h = torch.cos(2 * torch.pi * a[:, :1] / 5) * torch.sin(2 * torch.pi * a[:, 2:] / 5)
        >>> keep = frequency_ablation_hook(task, [1], "keep", kind="block")
        >>> bool(torch.allclose(keep(h, None), h))     # a degree-2 term in frequency 1
        True
        >>> drop = frequency_ablation_hook(task, [1], "remove", kind="sum")
        >>> bool(torch.allclose(drop(h, None), h))     # orthogonal to cos/sin(ω(a+b+c))
        True
    """
    p, k = check_modular(task, "frequency_ablation_hook")
    _check_mode(mode)
    if kind == "sum":
        return grid_projection_hook(sum_frequency_directions(p, k, list(frequencies)), mode,
                                    position)
    if kind != "block":
        raise MiMarginError(f"kind must be one of {KINDS}, got kind={kind!r}")
    mask = frequency_mask(p, k, list(frequencies))
    edit = _subspace_edit(mode, lambda h: filter_grid(h, p, k, mask))

    def hook(act: Tensor, hook: Any) -> Tensor:
        return _edit(act, position, p**k, edit)

    return hook

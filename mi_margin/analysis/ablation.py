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
    >>> hook = ablation_hook(task, [1, 2], mode="remove")
    >>> logits = model.run_with_hooks(task.inputs, fwd_hooks=[("blocks.0.mlp.hook_post", hook)])
    >>> tuple(logits.shape)
    (49, 7)

:func:`ablation_hook` does this for the labels of any task's harmonic basis (frequencies, irreps,
parity subsets); any orthonormal basis over the grid works with :func:`grid_projection_hook`. For
transformers the hook edits one position (the last by default) of [N, pos, d] activations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis.basis import HarmonicBasis, basis_for
from mi_margin.errors import MiMarginError
from mi_margin.tasks import Task

HookFn = Callable[[Tensor, Any], Tensor]
MODES = ("keep", "remove")


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
            ``basis_for(task).term_directions(task, labels)``.
        mode: ``"keep"``: activation → per-unit mean + Q Qᵀ(centred activation);
            ``"remove"``: activation → activation − Q Qᵀ(centred activation).
        position: the sequence position edited when activations are [N, pos, d].

    Example:
        >>> from mi_margin.fourier.cyclic import sum_frequency_directions
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


def _subspace(basis: HarmonicBasis, subspace: str) -> str:
    valid = ("product", "block", *basis.terms())
    if subspace not in valid:
        raise MiMarginError(f"subspace must be one of {valid}, got subspace={subspace!r}")
    return basis.terms()[-1] if subspace == "product" else subspace


def ablation_edit(task: Task, labels: Sequence[Any], mode: str = "keep",
                  subspace: str = "product") -> Callable[[Tensor], Tensor]:
    """The edit of float64 [N, d] grid activations that keeps or removes ``labels``' subspace.

    ``subspace``: ``"product"`` (default) — the functions of the product g_1⋯g_k only:
    cos/sin(ω_f(a_1+…+a_k)) for a frequency (Nanda et al.'s restricted loss), ρ(ab) for an irrep
    (Chughtai et al.'s), χ_S for a parity subset; ``"block"`` — the whole single-label block
    {trivial, ρ}^{⊗k} minus the constant (everything one label can express; FFT for Z_p^k);
    or one operand's term (``"a"``, ``"b"``, ...).
    """
    _check_mode(mode)
    basis = basis_for(task)
    term = _subspace(basis, subspace)
    if subspace == "block":
        chosen = basis.resolve(labels)
        return _subspace_edit(mode, lambda h: basis.block_projection(h, chosen))
    Q = basis.term_directions(task, labels, term)
    return _subspace_edit(mode, lambda h: Q @ (Q.T @ h))


def ablation_hook(task: Task, labels: Sequence[Any], mode: str = "keep",
                  subspace: str = "product", position: int = -1) -> HookFn:
    """A hook keeping (or removing) the labels' subspace of each unit's function on the grid.

    Labels are frequencies, irrep names (aliases allowed) or parity subsets; ``mode`` and
    ``position`` as in :func:`grid_projection_hook`, ``subspace`` as in :func:`ablation_edit`.
    The batch must be the whole grid in ``task.inputs`` order.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, k=3)
        >>> a = task.inputs.double()
        >>> h = torch.cos(2 * torch.pi * a[:, :1] / 5) * torch.sin(2 * torch.pi * a[:, 2:] / 5)
        >>> keep = ablation_hook(task, [1], "keep", subspace="block")
        >>> bool(torch.allclose(keep(h, None), h))     # a degree-2 term in frequency 1
        True
        >>> drop = ablation_hook(task, [1], "remove")
        >>> bool(torch.allclose(drop(h, None), h))     # orthogonal to cos/sin(ω(a+b+c))
        True
    """
    labels = basis_for(task).user_labels(labels)          # empty or repeated labels are refused
    edit = ablation_edit(task, labels, mode, subspace)
    n_rows = len(task.labels)

    def hook(act: Tensor, hook: Any) -> Tensor:
        return _edit(act, position, n_rows, edit)

    return hook

"""Irrep restricted and excluded loss (Chughtai et al. 2023, App. E.1), via ablation hooks.

Chughtai et al.'s test that a group-composition model computes through ρ(ab) for its key irreps:
MLP activations at the last position over the whole grid (``blocks.0.mlp.hook_post``) are
projected onto ("restricted") or off ("excluded") the span of the functions
(a, b) ↦ ρ(ab)_ij of the key irreps (:func:`~mi_margin.analysis.irreps.irrep_grid_basis`; 17
directions for sign + standard of S5), and mapped to logits as usual. The hooks are the generic
grid-subspace hooks of :mod:`mi_margin.analysis.ablation`, so this is the irrep counterpart of
:func:`~mi_margin.analysis.restricted.restricted_loss` with the same conventions:

- each neuron keeps its mean over the grid (Nanda et al.'s convention; Chughtai project the raw
  activations, which for non-trivial irreps differs only by that input-independent mean);
- for transformers the MLP-bypassing residual is replaced by its grid mean (``direct_path="mean"``)
  so that logits come from the projected neurons through W_out·W_U;
- restricted loss on all pairs (or the test pairs), excluded loss on the training pairs
  (docs/mathematics.md §3.4, §7.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mi_margin.analysis._grid import check_outputs
from mi_margin.analysis.ablation import HookFn, grid_projection_hook
from mi_margin.analysis.irreps import check_group, irrep_grid_basis, key_irreps
from mi_margin.analysis.restricted import AblationLosses, ablation_losses, projected_logits
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits


def canonical_irreps(task: Any, irreps: Sequence[str]) -> tuple[str, ...]:
    """Irrep names (aliases allowed) as in ``G.irreps()``, in that order, without repeats.

    Example:
        >>> import mi_margin as mm
        >>> canonical_irreps(mm.GroupComposition("S3"), ["standard", "sign", "(2,1)"])
        ('(1,1,1)', '(2,1)')
    """
    G, _ = check_group(task, "canonical_irreps")
    chosen = {G.irrep(name).name for name in irreps}
    return tuple(r.name for r in G.irreps() if r.name in chosen)


def irrep_ablation_hook(task: Any, irreps: Sequence[str], mode: str = "keep",
                        term: str | None = None, position: int = -1) -> HookFn:
    """A hook keeping (or removing) the ρ(term) subspace of chosen irreps in each unit's function.

    Args:
        task: a :class:`~mi_margin.GroupComposition` (fixes G, k and the grid order).
        irreps: irrep names or aliases.
        mode: ``"keep"`` (per-unit mean + projection) or ``"remove"`` (minus the projection).
        term: ``"ab"`` (the product, default), or one operand ``"a"``, ``"b"``, ...
        position: the sequence position edited when activations are [N, pos, d].

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> hook = irrep_ablation_hook(task, ["standard"], "remove")
        >>> out = model.run_with_hooks(task.inputs, fwd_hooks=[("blocks.0.mlp.hook_post", hook)])
        >>> tuple(out.shape)
        (36, 6)
    """
    return grid_projection_hook(irrep_grid_basis(task, canonical_irreps(task, irreps), term),
                                mode, position)


@dataclass(frozen=True)
class IrrepRestrictedLoss(AblationLosses):
    """Restricted/excluded loss for irreps (see :func:`irrep_restricted_loss`).

    Attributes:
        irreps: the irreps whose ρ(ab) subspace is kept (restricted) or removed (excluded).
        n_directions: dimension of that subspace over the grid (Σ d_ρ²/e_ρ).
        (the losses: see :class:`~mi_margin.analysis.restricted.AblationLosses`)
    """

    _plot = "mi_margin.viz.ablation:plot_ablation_losses"

    irreps: tuple[str, ...]
    n_directions: int

    def subject(self) -> str:
        return f"irreps {list(self.irreps)}"


def irrep_ablated_logits(model: Any, task: Any, irreps: Sequence[str], mode: str,
                         direct_path: str = "mean") -> Tensor:
    """Logits over the whole grid with the ρ(ab) projection of ``irreps`` at the MLP output.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(irrep_ablated_logits(mlp, task, ["sign"], "keep").shape)
        (36, 6)
    """
    check_fits(model, task, finite=True)
    return projected_logits(model, task, irrep_ablation_hook(task, irreps, mode), direct_path)


def irrep_restricted_loss(model: Any, task: Any, irreps: Sequence[str] | None = None,
                          restricted_on: str = "all", direct_path: str = "mean"
                          ) -> IrrepRestrictedLoss:
    """Restricted loss (only the key irreps' ρ(ab)) and excluded loss (those removed).

    Args:
        model: HookedOneLayerTransformer or HookedMLP on a GroupComposition task (k ≥ 2).
        task: the task (its train split defines the excluded-loss data).
        irreps: the irreps to keep/remove; default :func:`~mi_margin.analysis.irreps.key_irreps`.
        restricted_on: "all" (Chughtai) or "test" data for the restricted loss.
        direct_path: transformers only — "mean" (default, logits through W_out·W_U only) or "keep".

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3", train_fraction=0.5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> res = irrep_restricted_loss(mlp, task, irreps=["standard"])
        >>> res.n_directions, list(res.to_dataframe()["measure"])
        (4, ['full', 'restricted', 'full', 'excluded'])
    """
    check_group(task, "irrep_restricted_loss")
    check_fits(model, task, finite=True)
    check_outputs(model, task)
    if restricted_on not in ("all", "test"):
        raise MiMarginError(f"restricted_on must be 'all' or 'test', got {restricted_on!r}")
    names = canonical_irreps(task, key_irreps(model, task) if irreps is None else irreps)

    def make_hook(mode: str) -> HookFn:
        return irrep_ablation_hook(task, names, mode)

    return IrrepRestrictedLoss(irreps=names, n_directions=irrep_grid_basis(task, names).shape[1],
                               **ablation_losses(model, task, make_hook, restricted_on, direct_path))

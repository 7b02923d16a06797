"""Shared plumbing of the modular-addition analyzers: task checks, grid runs through hooks, weights.

Every analyzer runs the model once over the task's full input grid (``task.inputs`` order, so a
per-example quantity reshapes to a function on Z_p^k) and reads activations through TransformerLens
hooks; transformers are run with ``final_pos_only=True`` since only the last position is analysed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import model_inputs

POST = "blocks.0.mlp.hook_post"
PATTERN = "blocks.0.attn.hook_pattern"
Hook = Callable[[Tensor, Any], Tensor | None]


def check_modular(task: Any, what: str, k: int | None = None) -> tuple[int, int]:
    """(p, k) of a modular-addition task; a clear error for any other task (or other k)."""
    if getattr(task, "kind", None) != "modular_addition":
        raise MiMarginError(f"{what} needs a ModularAddition task, got "
                            f"{type(task).__name__} (kind={getattr(task, 'kind', None)!r})")
    if k is not None and task.k != k:
        raise MiMarginError(f"{what} is defined for k={k} operands, got k={task.k}")
    return task.p, task.k


def model_kind(model: Any) -> str:
    """``"transformer"`` or ``"mlp"`` (the models' ``model_kind`` attribute)."""
    kind = getattr(model, "model_kind", None)
    if kind not in ("transformer", "mlp"):
        raise MiMarginError(f"expected a HookedOneLayerTransformer or HookedMLP, got "
                            f"{type(model).__name__} (model_kind={kind!r})")
    return kind


def check_outputs(model: Any, task: Any) -> None:
    """The model must output exactly the task's p classes (logits over Z_p)."""
    out = model.cfg.d_vocab_out
    if out != task.d_vocab_out:
        raise MiMarginError(f"model has d_vocab_out={out} but the task has "
                            f"{task.d_vocab_out} classes")


def _forward_kwargs(model: Any) -> dict[str, Any]:
    return {"final_pos_only": True} if model_kind(model) == "transformer" else {}


def last_logits(out: Tensor) -> Tensor:
    """Logits [N, V] from a forward output ([N, V] for MLPs, [N, pos, V] for transformers)."""
    return out[:, -1] if out.ndim == 3 else out


@torch.no_grad()
def run_grid(model: Any, task: Any, names: Sequence[str] = (),
             hooks: Sequence[tuple[str, Hook]] = ()) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits [N, V] over the whole grid and the activations at ``names``, with extra ``hooks``.

    Activations are stored after the extra hooks ran (hooks are applied in order, stores last).
    """
    store: dict[str, Tensor] = {}

    def saver(name: str) -> Hook:
        def save(act: Tensor, hook: Any) -> None:
            store[name] = act.detach()
        return save

    fwd = [*hooks, *[(name, saver(name)) for name in names]]
    out = model.run_with_hooks(model_inputs(model, task), fwd_hooks=fwd, **_forward_kwargs(model))
    return last_logits(out), store


def neuron_activations(model: Any, task: Any) -> Tensor:
    """MLP activations (``blocks.0.mlp.hook_post``; last position for transformers), [N, d_mlp]."""
    _, acts = run_grid(model, task, [POST])
    return last_logits(acts[POST])


def embed_maps(model: Any, p: int) -> dict[str, Tensor]:
    """Token-indexed input maps [p, width] (documented in ``fourier_spectrum``)."""
    if model_kind(model) == "transformer":
        W_E = model.W_E[:p].detach()
        return {"embed": W_E, "neuron_in": W_E @ model.W_in[0].detach()}
    W = model.W_in_eff.detach()
    return {f"embed[{i}]": W[i] for i in range(W.shape[0])}


def neuron_logit_map(model: Any) -> Tensor:
    """W_L [d_mlp, V]: each neuron's direct effect on the logits (W_out·W_U, or W_out for MLPs)."""
    if model_kind(model) == "transformer":
        return (model.W_out[0] @ model.W_U).detach()
    return model.W_out.detach()


def unembed_map(model: Any) -> Tensor:
    """The unembedding [width, V] (W_U for transformers, W_out for MLPs)."""
    return (model.W_U if model_kind(model) == "transformer" else model.W_out).detach()

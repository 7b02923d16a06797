"""Where a model and a task meet: the one entry point of every structural analyzer.

:func:`subject` checks once that the model fits the task (:func:`~mi_margin.models.compat.check_fits`
with finite weights), finds the task's harmonic basis (:func:`~mi_margin.analysis.basis.basis_for`)
and returns a :class:`Subject` that runs the model over the task's whole input grid (``task.inputs``
order, so a per-example quantity reshapes to a function on the group) in chunks of rows, reading
activations through TransformerLens hook names. It accepts a :class:`~mi_margin.HookedMLP`, a
:class:`~mi_margin.HookedOneLayerTransformer` and that transformer's ``TransformerBridge``
(``model.to_bridge()``); only the last position of a transformer is analysed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.basis import HarmonicBasis, basis_for
from mi_margin.checks import check_memory
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits, model_kind

POST, PRE = "blocks.0.mlp.hook_post", "blocks.0.mlp.hook_pre"
PATTERN = "blocks.0.attn.hook_pattern"
RESID_MID, RESID_POST = "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"
#: grid rows per forward pass (bounds the activations held at once on large grids)
ROWS = 2**15
Hook = Callable[[Tensor, Any], Tensor | None]
#: hooks for the rows ``slice`` of the grid
HookMaker = Callable[[slice], Sequence[tuple[str, Hook]]]


def last(act: Tensor) -> Tensor:
    """The last position of [N, pos, ...] transformer activations; MLP activations as they are."""
    return act[:, -1] if act.ndim >= 3 and act.shape[1] > 0 else act


def centre_classes(rows: slice, logits: Tensor) -> Tensor:
    """Logits minus their mean over the classes (softmax ignores a per-input constant)."""
    return logits - logits.mean(1, keepdim=True)


def require(task: Any, kind: str, what: str) -> None:
    """Raise unless ``task.kind == kind`` (the field views: frequencies need Z_p, irreps a group)."""
    names = {"modular_addition": "ModularAddition", "group_composition": "GroupComposition",
             "sparse_parity": "SparseParity"}
    if getattr(task, "kind", None) != kind:
        raise MiMarginError(f"{what} needs a {names[kind]} task, got {type(task).__name__} "
                            f"(kind={getattr(task, 'kind', None)!r}); the task-independent "
                            "analyzers (spectrum, key_components, ...) take every task")


@dataclass(frozen=True)
class Subject:
    """A model checked against a task, with the task's basis and grid runs (see :func:`subject`)."""

    model: Any
    task: Any
    kind: str
    basis: HarmonicBasis

    @property
    def inputs(self) -> Tensor:
        x = self.task.model_inputs(self.kind)
        return x.to(self.model.W_out.dtype) if x.is_floating_point() else x

    @torch.no_grad()
    def run(self, names: Sequence[str] = (), hooks: HookMaker | None = None,
            logits_fn: Callable[[slice, Tensor], Tensor] | None = None
            ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits [N, V] over the grid and last-position activations [N, ...] at ``names``
        (for ``PATTERN``, [N, heads, key positions]: the last query's attention).

        The grid goes through the model ``ROWS`` rows at a time; ``hooks(rows)`` gives extra hooks
        for each chunk (they run before the activations are stored), and ``logits_fn(rows,
        logits)`` replaces each chunk's logits by what is kept of them (e.g. per-row losses).
        """
        x = self.inputs
        kwargs = {"final_pos_only": True} if getattr(self.model, "model_kind", "") == \
            "transformer" else {}
        store: dict[str, Tensor] = {}

        def put(name: str, rows: slice, value: Tensor) -> None:
            """Write a chunk into the [N, ...] result (allocated once: no copy of the whole grid;
            its size estimated first, with what is already held)."""
            if name not in store:
                held = sum(t.numel() * t.element_size() for t in store.values())
                need = len(x) * value[:1].numel() * value.element_size()
                check_memory(f"the {name or 'logits'} [{len(x):,}, "
                             f"{', '.join(map(str, value.shape[1:]))}] of {self.task!r}'s grid",
                             held + need)
                store[name] = value.new_empty((len(x), *value.shape[1:]))
            store[name][rows] = value

        def saver(name: str, rows: slice) -> Hook:
            def save(act: Tensor, hook: Any) -> None:     # attention: the last query's row
                put(name, rows, (act[:, :, -1] if name == PATTERN else last(act)).detach())
            return save

        for start in range(0, len(x), ROWS):
            rows = slice(start, min(start + ROWS, len(x)))
            fwd = [*(hooks(rows) if hooks else ()), *[(n, saver(n, rows)) for n in names]]
            out = last(self.model.run_with_hooks(x[rows], fwd_hooks=fwd, **kwargs))
            put("", rows, out if logits_fn is None else logits_fn(rows, out))
        logits = store.pop("")
        return logits, store

    def neurons(self) -> Tensor:
        """MLP activations over the grid (``blocks.0.mlp.hook_post``, last position), [N, d_mlp]."""
        return self.run([POST])[1][POST]

    # -- weights as maps over the group ----------------------------------------------------------
    def input_maps(self) -> dict[str, Tensor]:
        """Token-indexed input maps [n, width]: transformer ``embed`` (W_E[:n]) and ``neuron_in``
        (W_E[:n]·W_in); MLP ``embed[i]`` = W_in_eff[i] for every operand i."""
        n = self.task.d_vocab
        if self.kind == "transformer":
            W_E = self.model.W_E[:n].detach()
            return {"embed": W_E, "neuron_in": W_E @ self.model.W_in[0].detach()}
        W = self.model.W_in_eff.detach()
        return {f"embed[{i}]": W[i] for i in range(W.shape[0])}

    def neuron_input_maps(self) -> list[Tensor]:
        """What each neuron reads from a token: W_E[:n]·W_in (transformer), or every W_in_eff[i]."""
        maps = self.input_maps()
        return [maps["neuron_in"]] if "neuron_in" in maps else list(maps.values())

    def neuron_logit_map(self) -> Tensor:
        """W_L [d_mlp, V]: each neuron's direct effect on the logits (W_out·W_U, or W_out)."""
        if self.kind == "transformer":
            return (self.model.W_out[0] @ self.model.W_U).detach()
        return self.model.W_out.detach()

    def unembed(self) -> Tensor:
        """The unembedding [width, V] (W_U for transformers, W_out for MLPs)."""
        return (self.model.W_U if self.kind == "transformer" else self.model.W_out).detach()


def subject(model: Any, task: Any) -> Subject:
    """Bring ``model`` and ``task`` together: the fit check, the basis and the grid runner.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> s = subject(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> s.kind, s.basis.label_kind, tuple(s.neurons().shape)
        ('mlp', 'frequency', (49, 8))
    """
    basis = basis_for(task)
    check_fits(model, task, finite=True)
    return Subject(model=model, task=task, kind=model_kind(model), basis=basis)

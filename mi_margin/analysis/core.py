"""Where a model and a task meet: the one entry point of every structural analyzer, and the grid
cache that is the unit of analysis.

:func:`subject` checks once that the model fits the task (:func:`~mi_margin.models.compat.check_fits`
with finite weights), finds the task's harmonic basis (:func:`~mi_margin.analysis.basis.basis_for`)
and returns a :class:`Subject` that runs the model over the task's whole input grid (``task.inputs``
order, so a per-example quantity reshapes to a function on the group) in chunks of rows, reading
activations through TransformerLens hook names. It accepts a :class:`~mi_margin.HookedMLP`, a
:class:`~mi_margin.HookedOneLayerTransformer` and that transformer's ``TransformerBridge``
(``model.to_bridge()``); only the last position of a transformer is analysed.

:func:`grid_cache` is what TransformerLens's ``run_with_cache`` is for one input: one forward pass
over the whole grid that returns the logits, the activations by hook name and the basis
(:class:`GridCache`). Every harmonic analyzer accepts a model or a cache in place of the model;
given a model it builds a cache of what it reads, given a cache it reads it (and runs the grid once
more only for hooks the cache lacks, counted in :attr:`GridCache.passes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.basis import GridEnergy, HarmonicBasis, basis_for
from mi_margin.checks import check_memory
from mi_margin.errors import MiMarginError
from mi_margin.models.compat import check_fits, model_kind
from mi_margin.models.protocol import HookedModel

POST, PRE = "blocks.0.mlp.hook_post", "blocks.0.mlp.hook_pre"
PATTERN = "blocks.0.attn.hook_pattern"
RESID_MID, RESID_POST = "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"
#: grid rows per forward pass (bounds the activations held at once on large grids)
ROWS = 2**15
#: grid values per transform in :meth:`GridCache.grid_energy` (a transform's complex
#: intermediates take several times this many float64 numbers)
ENERGY_CHUNK = 2**20
Hook = Callable[[Tensor, Any], Tensor | None]
#: hooks for the rows ``slice`` of the grid
HookMaker = Callable[[slice], Sequence[tuple[str, Hook]]]


def last(act: Tensor) -> Tensor:
    """The last position of [N, pos, ...] transformer activations; MLP activations as they are."""
    return act[:, -1] if act.ndim >= 3 and act.shape[1] > 0 else act


def centre_classes(rows: slice, logits: Tensor) -> Tensor:
    """Logits minus their mean over the classes (softmax ignores a per-input constant)."""
    return logits - logits.mean(1, keepdim=True)


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
        self._needs_mlp()
        return self.run([POST])[1][POST]

    def _needs_mlp(self) -> None:
        """Refuse, by name, an attention-only transformer where neurons are read."""
        if self.kind == "transformer" and self.model.cfg.attn_only:
            raise MiMarginError("this analysis reads the MLP's neurons; an attention-only "
                                "transformer (cfg.attn_only) has none")

    # -- weights as maps over the group ----------------------------------------------------------
    def input_maps(self) -> dict[str, Tensor]:
        """Token-indexed input maps [n, width]: transformer ``embed`` (W_E[:n]) and ``neuron_in``
        (W_E[:n]·W_in); MLP ``embed[i]`` = W_in_eff[i] for every operand i."""
        n = self.task.d_vocab
        self._needs_mlp()
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
        self._needs_mlp()
        if self.kind == "transformer":
            return (self.model.W_out[0] @ self.model.W_U).detach()
        return self.model.W_out.detach()

    def unembed(self) -> Tensor:
        """The unembedding [width, V] (W_U for transformers, W_out for MLPs)."""
        return (self.model.W_U if self.kind == "transformer" else self.model.W_out).detach()


class GridCache:
    """Logits and last-position activations of one model over its task's whole input grid.

    Built by :func:`grid_cache` (or lazily by an analyzer given a model): ``cache.logits`` [N, V]
    and ``cache[hook_name]`` [N, ...] (for ``PATTERN``, [N, heads, key positions], the last
    query's attention) in ``task.inputs`` order, ``cache.basis`` the task's harmonic basis,
    ``cache.subject`` the model's weights as maps over the group. A hook that is not cached yet
    is read in one more pass over the grid, together with any others asked for at once
    (:meth:`need`); :attr:`passes` counts the passes made.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> cache = mm.grid_cache(model, task)       # the same as mm.analysis.core.grid_cache
        >>> tuple(cache[POST].shape), tuple(cache.logits.shape), cache.passes
        ((49, 8), (49, 7), 1)
        >>> mm.key_frequencies(cache, task) == mm.key_frequencies(model, task), cache.passes
        (True, 1)
    """

    def __init__(self, subject: Subject):
        self.subject = subject
        self.passes = 0
        self._logits: Tensor | None = None
        self._acts: dict[str, Tensor] = {}
        self._energy: dict[str, GridEnergy] = {}

    @property
    def model(self) -> Any:
        return self.subject.model

    @property
    def task(self) -> Any:
        return self.subject.task

    @property
    def kind(self) -> str:
        """The model's kind, "transformer" or "mlp"."""
        return self.subject.kind

    @property
    def basis(self) -> HarmonicBasis:
        return self.subject.basis

    @property
    def names(self) -> list[str]:
        """The hook names cached so far."""
        return list(self._acts)

    def need(self, names: Iterable[str] = ()) -> GridCache:
        """Make sure the logits and ``names`` are cached: one pass over the grid for all that is
        missing, none if nothing is."""
        missing = [n for n in dict.fromkeys(names) if n not in self._acts]
        if PRE in missing or POST in missing:
            self.subject._needs_mlp()
        if missing or self._logits is None:
            logits, acts = self.subject.run(missing)
            self.passes += 1
            self._logits = logits if self._logits is None else self._logits
            self._acts.update(acts)
        return self

    @property
    def logits(self) -> Tensor:
        """Last-position logits over the grid, [N, V], in the model's dtype."""
        self.need()
        assert self._logits is not None
        return self._logits

    def __getitem__(self, name: str) -> Tensor:
        return self.need([name])._acts[name]

    def grid_function(self, part: str) -> Tensor:
        """Functions on the grid as [N, units]: ``"neurons"`` (``hook_post``), ``"attention"``
        (the last query's attention to each operand, heads × operands) or ``"logits"`` (minus
        their mean over the classes, which softmax ignores)."""
        if part == "neurons":
            return self[POST]
        if part == "attention":
            return self[PATTERN][:, :, : self.task.k].flatten(1)
        if part == "logits":
            return self.logits - self.logits.mean(1, keepdim=True)
        raise MiMarginError(f"part must be 'neurons', 'attention' or 'logits', got {part!r}")

    def grid_energy(self, part: str) -> GridEnergy:
        """``basis.grid_energy`` of :meth:`grid_function` ``part``, computed once per cache (the
        spectrum, the neuron clusters and the key components read the same transform)."""
        if part not in self._energy:
            values = self.grid_function(part)
            width = max(1, ENERGY_CHUNK // len(values))
            parts = [self.basis.grid_energy(values[:, i:i + width])
                     for i in range(0, values.shape[1], width)]
            tuples = [e.tuples for e in parts if e.tuples is not None]
            self._energy[part] = GridEnergy(torch.cat([e.blocks for e in parts]),
                                            torch.cat([e.total for e in parts]),
                                            sum(tuples[1:], tuples[0]) if tuples else None)
        return self._energy[part]

    def __contains__(self, name: object) -> bool:
        return name in self._acts

    def __repr__(self) -> str:
        return (f"GridCache({type(self.model).__name__} on {self.task!r}: logits and "
                f"{self.names}, {self.passes} pass{'es' if self.passes != 1 else ''})")


#: what an analyzer takes in the model's place: a model, or its grid cache (read, not run again)
Analyzable = HookedModel | GridCache


def default_hooks(kind: str) -> list[str]:
    """The hooks the analyzers read: MLP pre- and post-activations, and for transformers the
    residual stream after attention and the last query's attention pattern."""
    return [POST, PRE, *([RESID_MID, PATTERN] if kind == "transformer" else [])]


def grid_cache(model: Any, task: Any, names: Sequence[str] | None = None) -> GridCache:
    """One forward pass over ``task``'s whole grid: logits, activations at ``names`` (default
    :func:`default_hooks`) and the basis, for every analyzer to read (``spectrum(cache, task)``).

    Memory: N × (width of each hook) in the model's dtype; on very large grids cache only what
    the analyses at hand read.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, train_fraction=0.6)
        >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=8))
        >>> cache = mm.grid_cache(model, task)
        >>> sorted(cache.names) == sorted(default_hooks("transformer")), tuple(cache[PATTERN].shape)
        (True, (25, 4, 3))
        >>> res = mm.restricted_loss(cache, task, [1])
        >>> cache.passes                                  # computed from the cache alone
        1
    """
    c = GridCache(subject(model, task))
    return c.need(default_hooks(c.kind) if names is None else names)


def cached(model: Any, task: Any) -> GridCache:
    """``model`` itself if it is a :class:`GridCache` of ``task`` (a clear error if it is another
    task's), else a new, empty cache of ``model`` on ``task`` (filled as it is read)."""
    if not isinstance(model, GridCache):
        return GridCache(subject(model, task))
    if task is not model.task and (type(task) is not type(model.task) or
                                   task.to_dict() != model.task.to_dict()):
        raise MiMarginError(f"the grid cache was made on {model.task!r}, not on {task!r}")
    return model


def subject(model: Any, task: Any) -> Subject:
    """Bring ``model`` and ``task`` together: the fit check, the basis and the grid runner.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> s = subject(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> s.kind, s.basis.label_kind, tuple(s.neurons().shape)
        ('mlp', 'frequency', (49, 8))

    A :class:`GridCache` in place of the model gives that cache's subject.
    """
    if isinstance(model, GridCache):
        return cached(model, task).subject
    basis = basis_for(task)
    check_fits(model, task, finite=True)
    return Subject(model=model, task=task, kind=model_kind(model), basis=basis)

"""The model type the analyzers and the theory accept: :class:`HookedModel`.

A ``HookedMLP``, a ``HookedOneLayerTransformer`` and that transformer's TransformerLens
``TransformerBridge`` (``model.to_bridge()``) all satisfy it: they have a config, run on a batch of
inputs and run with TransformerLens hooks. The weights an analyzer reads (``W_in``, ``W_out``,
``W_E``, ``W_U``, ...) differ by family and are reached as attributes; ``models.compat.model_kind``
tells the family.

Example:
    >>> import mi_margin as mm
    >>> def width(model: HookedModel) -> int:
    ...     return model.cfg.d_mlp
    >>> width(mm.HookedMLP(mm.MLPConfig(d_vocab=5, d_vocab_out=5, k=2, d_mlp=8)))
    8
"""

from __future__ import annotations

from typing import Any, Protocol


class HookedModel(Protocol):
    """A network of this package or its bridge, as the analyzers use it (module docstring)."""

    cfg: Any

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any: ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def __getattr__(self, name: str) -> Any: ...

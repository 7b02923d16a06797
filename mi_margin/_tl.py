"""The one module that imports TransformerLens.

TransformerLens 4 removed ``HookedTransformer``, ``HookedTransformerConfig``, ``transformer_lens.utils``
and ``transformer_lens.components``; what remains and what we use is re-exported here so that the rest
of the package never imports ``transformer_lens`` directly.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

from transformer_lens import ActivationCache, FactoredMatrix, HookedRootModule
from transformer_lens.hook_points import HookPoint

__all__ = ["ActivationCache", "CachingRoot", "FactoredMatrix", "HookPoint", "HookedRootModule"]

#: what ``import transformer_lens.utils`` says under TransformerLens 4 once mi_margin is imported
NO_UTILS = ("TransformerLens 4 has no transformer_lens.utils (older notebooks, e.g. Nanda's grokking "
            "demo and ARENA's, start with `import transformer_lens.utils as utils`): its helpers "
            "are in transformer_lens.utilities, e.g. `import transformer_lens.utilities as utils` "
            "or `from transformer_lens.utilities import get_act_name, to_numpy` (mi_margin's "
            "README, section 'Coming from TransformerLens 2/3')")


class MissingUtilsFinder(importlib.abc.MetaPathFinder):
    """The last import finder: asked only when no other finds a module, it turns the bare
    ``ModuleNotFoundError`` of ``transformer_lens.utils`` into one saying where its helpers are."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "transformer_lens.utils" or fullname.startswith("transformer_lens.utils."):
            raise ModuleNotFoundError(NO_UTILS, name=fullname)


if not any(isinstance(finder, MissingUtilsFinder) for finder in sys.meta_path):
    sys.meta_path.append(MissingUtilsFinder())


class CachingRoot(HookedRootModule):
    """``HookedRootModule`` whose ``run_with_cache`` returns an :class:`ActivationCache`.

    In TransformerLens 4, ``HookedRootModule.run_with_cache`` returns a plain dict; legacy code and the
    cache helpers (``cache["pattern", 0]``, ``decompose_resid``...) expect an ``ActivationCache``.
    A subclass may name its own ``cache_class`` (an ``ActivationCache`` subclass).
    """

    cache_class: type = ActivationCache

    def run_with_cache(self, *args: Any, return_cache_object: bool = True, **kwargs: Any):  # type: ignore[override]
        out, cache = super().run_with_cache(*args, **kwargs)
        if not return_cache_object:
            return out, cache
        has_batch = not kwargs.get("remove_batch_dim", False)
        return out, self.cache_class(cache, self, has_batch_dim=has_batch)


def transformer_bridge() -> Any:
    """Import and return ``transformer_lens.TransformerBridge`` (slow import, so done lazily)."""
    from transformer_lens import TransformerBridge

    return TransformerBridge


def bridge_config(**kwargs: Any) -> Any:
    """Build a ``TransformerBridgeConfig`` (its constructor rejects unknown keywords)."""
    from transformer_lens import TransformerBridgeConfig

    return TransformerBridgeConfig(**kwargs)


def convert_tl_checkpoint(state_dict: dict, cfg: Any) -> dict:
    """TransformerLens's own legacy-layout → bridge-layout state-dict conversion."""
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint as conv

    return conv(state_dict, cfg)

"""Tasks: full input grids with labels, seeded train/test splits, transformer tokens, MLP inputs."""

from __future__ import annotations

from typing import Any

from mi_margin import groups
from mi_margin.errors import MiMarginError
from mi_margin.tasks.base import MAX_EXAMPLES, Task, grid
from mi_margin.tasks.group import GroupComposition
from mi_margin.tasks.modular import ModularAddition, NonPrimeModulusWarning, is_prime
from mi_margin.tasks.parity import SparseParity

__all__ = ["MAX_EXAMPLES", "GroupComposition", "ModularAddition", "NonPrimeModulusWarning",
           "SparseParity", "Task", "from_dict", "grid", "is_prime"]


def from_dict(d: dict[str, Any]) -> Task:
    """Rebuild a task from :meth:`Task.to_dict` output."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind == ModularAddition.kind:
        return ModularAddition(**d)
    if kind == SparseParity.kind:
        return SparseParity(**d)
    if kind == GroupComposition.kind:
        table = d.pop("cayley_table", None)
        name = d.pop("group")
        G = groups.from_cayley_table(table, name=name) if table is not None else groups.get(name)
        return GroupComposition(G, **d)
    raise MiMarginError(f"unknown task kind {kind!r}; expected one of "
                        f"{[ModularAddition.kind, GroupComposition.kind, SparseParity.kind]}")

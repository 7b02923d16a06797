"""Tasks: full input grids with labels, seeded train/test splits, transformer tokens, MLP inputs."""

from __future__ import annotations

from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.tasks.base import MAX_EXAMPLES, Task, grid
from mi_margin.tasks.group import GroupComposition
from mi_margin.tasks.modular import ModularAddition, NonPrimeModulusWarning, is_prime
from mi_margin.tasks.parity import SparseParity

__all__ = ["MAX_EXAMPLES", "GroupComposition", "ModularAddition", "NonPrimeModulusWarning",
           "SparseParity", "Task", "from_dict", "grid", "is_prime"]


def from_dict(d: dict[str, Any]) -> Task:
    """Rebuild a task from :meth:`Task.to_dict` output (unknown or missing keys are an error)."""
    if not isinstance(d, dict):
        raise MiMarginError(f"a task dict is needed, got {d!r}")
    d = dict(d)
    kind = d.pop("kind", None)
    classes: dict[str, Any] = {c.kind: c for c in (ModularAddition, GroupComposition, SparseParity)}
    if kind not in classes:
        raise MiMarginError(f"unknown task kind {kind!r}; expected one of {list(classes)}")
    if kind == GroupComposition.kind:
        from mi_margin import groups

        table = d.pop("cayley_table", None)
        name = d.pop("group", None)
        if not isinstance(name, str):
            raise MiMarginError(f"a group_composition task needs a group name, got group={name!r}")
        d["G"] = groups.from_cayley_table(table, name=name) if table is not None else groups.get(name)
    try:
        return classes[kind](**d)  # type: ignore[no-any-return]
    except TypeError as err:  # unknown or missing constructor arguments
        raise MiMarginError(f"bad {kind} task arguments {sorted(d)}: {err}") from err

"""Tasks: full input grids with labels, seeded train/test splits, transformer tokens, MLP inputs."""

from __future__ import annotations

from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.tasks.algebra import Algebra, Cube, Cyclic, Encoding, Group
from mi_margin.tasks.base import MAX_EXAMPLES, Task, grid
from mi_margin.tasks.group import GroupComposition
from mi_margin.tasks.modular import ModularAddition, NonPrimeModulusWarning, is_prime
from mi_margin.tasks.operations import ModularOperation
from mi_margin.tasks.parity import SparseParity

__all__ = [
    "MAX_EXAMPLES",
    "TASKS",
    "Algebra",
    "Cube",
    "Cyclic",
    "Encoding",
    "Group",
    "GroupComposition",
    "ModularAddition",
    "ModularOperation",
    "NonPrimeModulusWarning",
    "SparseParity",
    "Task",
    "from_dict",
    "grid",
    "is_prime",
]

#: every task class by its ``kind`` (what ``to_dict`` writes and :func:`from_dict` reads)
TASKS: dict[str, type[Task]] = {c.kind: c for c in (ModularAddition, ModularOperation,
                                                     GroupComposition, SparseParity)}


def from_dict(d: dict[str, Any]) -> Task:
    """Rebuild a task from :meth:`Task.to_dict` output (unknown or missing keys are an error)."""
    if not isinstance(d, dict):
        raise MiMarginError(f"a task dict is needed, got {d!r}")
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in TASKS:
        raise MiMarginError(f"unknown task kind {kind!r}; expected one of {list(TASKS)}")
    try:
        return TASKS[kind].from_args(d)
    except TypeError as err:  # unknown or missing constructor arguments
        raise MiMarginError(f"bad {kind} task arguments {sorted(d)}: {err}") from err

"""Finite-group composition: g1 · g2 · ... · gk for any finite group (Chughtai et al. 2023)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from mi_margin.checks import check_int
from mi_margin.errors import MiMarginError
from mi_margin.groups import FiniteGroup, from_cayley_table, get
from mi_margin.tasks.algebra import Algebra, Group
from mi_margin.tasks.base import Task, check_grid_size, grid


class GroupComposition(Task):
    """Every k-tuple of elements of ``G`` labelled with their product g1·g2·...·gk (left to right).

    ``G`` is a :class:`~mi_margin.groups.FiniteGroup` or a name understood by
    :func:`mi_margin.groups.get` (``"S5"``, ``"D7"``, ``"C113"`` ...). Elements are the integers
    0..|G|-1 of ``G.table``; '=' is token |G|.

    Example:
        >>> task = GroupComposition("S3", k=2, train_fraction=0.5)
        >>> len(task), task.d_vocab
        (36, 6)
    """

    kind: ClassVar[str] = "group_composition"
    ARGS: ClassVar[tuple[str, ...]] = ("group", "k")

    def __init__(self, G: FiniteGroup | str, k: int = 2, train_fraction: float = 1.0,
                 seed: int = 0):
        if isinstance(G, str):
            G = get(G)
        if not isinstance(G, FiniteGroup):
            raise MiMarginError(f"G must be a FiniteGroup or a group name such as 'S5', got "
                                f"G={G!r}")
        k = check_int("k", k, low=1)
        registered = _is_registered(G)
        if not registered:  # a custom table: check it is a group (raises naming what fails)
            from_cayley_table(G.table, name=G.name)
        n = int(G.order)
        check_grid_size(f"GroupComposition({G.name}, k={k})", n**k, 8 * (k + 1))
        self.group, self.k_operands = G, k
        self._registered = registered
        inputs = grid([n] * k)
        table = torch.as_tensor(G.table.copy(), dtype=torch.long)
        labels = inputs[:, 0]
        for i in range(1, k):
            labels = table[labels, inputs[:, i]]
        self._finish(inputs, labels, train_fraction, seed)

    @property
    def algebra(self) -> Algebra:
        return Algebra(Group(self.group), self.k)

    @property
    def k(self) -> int:
        return self.k_operands

    @property
    def d_vocab(self) -> int:
        return int(self.group.order)

    @property
    def d_vocab_out(self) -> int:
        return int(self.group.order)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> GroupComposition:
        """The group by name, or from its saved Cayley table (a custom group)."""
        args = dict(args)
        table, name = args.pop("cayley_table", None), args.pop("group", None)
        if not isinstance(name, str):
            raise MiMarginError(f"a GroupComposition task needs a group name, got group={name!r}")
        return cls(from_cayley_table(table, name=name) if table is not None else get(name), **args)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "group": self.group.name, "k": self.k,
                             "train_fraction": self.train_fraction, "seed": self.seed}
        if not self._registered:  # a custom group: keep its table so the task can be rebuilt
            d["cayley_table"] = self.group.table.tolist()
        return d


def _is_registered(G: FiniteGroup) -> bool:
    """Whether ``groups.get(G.name)`` rebuilds exactly ``G``, its table and the way its irreps
    are built and named (then its name is enough to save; a table given under a registered name
    is saved as a table, so that its irreps keep their names when it is loaded again)."""
    try:
        known = get(G.name)
    except MiMarginError:
        return False
    return bool(np.array_equal(known.table, G.table)) and (
        known.closed_form_irreps == G.closed_form_irreps)

"""Shared test set-up: one torch thread per test process, and the group builder of the group tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mi_margin.groups import FiniteGroup, from_cayley_table, from_permutations, get

torch.set_num_threads(1)


def build_group(name: str) -> FiniteGroup:
    """A group by name, or one of two without closed forms: "perm D4" (from permutations) and
    "relabeled X" (X's table with its elements renumbered, so that the identity is not 0)."""
    if name == "perm D4":
        return from_permutations([[1, 2, 3, 0], [3, 2, 1, 0]])
    if name.startswith("relabeled "):
        G = get(name.split()[1])
        pi = np.random.default_rng(0).permutation(G.order)
        table = np.empty_like(G.table)
        table[np.ix_(pi, pi)] = pi[G.table]
        return from_cayley_table(table, name=name)
    return get(name)


@pytest.fixture
def group_named():
    """:func:`build_group`, for the group tests."""
    return build_group

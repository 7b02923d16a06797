"""Constructors and get(): validation, clear errors naming the culprit, limits, caching."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mi_margin.errors import MiMarginError
from mi_margin.groups import (
    MAX_ORDER,
    alternating,
    cyclic,
    dihedral,
    direct_product,
    from_cayley_table,
    from_permutations,
    get,
    quaternion,
    symmetric,
)


def test_from_cayley_table_accepts_relabeled_group():
    S3 = symmetric(3)
    pi = np.array([3, 5, 0, 1, 4, 2])
    table = np.empty_like(S3.table)
    table[np.ix_(pi, pi)] = pi[S3.table]
    G = from_cayley_table(table.tolist(), name="S3'")
    assert G.identity == pi[S3.identity] and G.name == "S3'"
    assert sorted(G.class_sizes.tolist()) == sorted(S3.class_sizes.tolist())
    assert np.array_equal(G.element_orders[pi], S3.element_orders)
    assert from_cayley_table(np.array([[0.0]])).order == 1


def test_from_cayley_table_rejects_bad_shapes_and_types():
    with pytest.raises(MiMarginError, match="square"):
        from_cayley_table([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(MiMarginError, match="square"):
        from_cayley_table(np.zeros((0, 0), dtype=int))
    with pytest.raises(MiMarginError, match="integers"):
        from_cayley_table([[0.0, 1.5], [1.5, 0.0]])


def test_from_cayley_table_names_non_closed_entry():
    with pytest.raises(MiMarginError, match=r"not closed: table\[0, 1\] = 5"):
        from_cayley_table([[0, 5], [1, 0]])
    with pytest.raises(MiMarginError, match=r"table\[1, 0\] = -1"):
        from_cayley_table([[0, 1], [-1, 0]])


def test_from_cayley_table_no_identity():
    with pytest.raises(MiMarginError, match="no identity"):
        from_cayley_table([[1, 1], [1, 1]])


def test_from_cayley_table_names_element_without_inverse():
    with pytest.raises(MiMarginError, match="element 1 has no inverse"):
        from_cayley_table([[0, 1], [1, 1]])


def test_from_cayley_table_names_non_associative_triple():
    # a loop of order 5 (Latin square with identity 0, every x·x = 0): not a group, since a
    # group of odd order cannot have all non-identity elements of order 2
    loop = np.array([[0, 1, 2, 3, 4],
                     [1, 0, 3, 4, 2],
                     [2, 4, 0, 1, 3],
                     [3, 2, 4, 0, 1],
                     [4, 3, 1, 2, 0]])
    with pytest.raises(MiMarginError, match=r"not associative: \((\d)·(\d)\)·(\d)") as info:
        from_cayley_table(loop, name="loop5")
    found = re.search(r"\((\d)·(\d)\)·(\d)", str(info.value))
    assert found is not None
    a, s, c = (int(t) for t in found.groups())
    assert loop[loop[a, s], c] != loop[a, loop[s, c]]
    assert "loop5" in str(info.value)


def test_from_permutations_validation():
    with pytest.raises(MiMarginError, match="at least one generator"):
        from_permutations([])
    with pytest.raises(MiMarginError, match="same number of points"):
        from_permutations([[1, 0], [1, 2, 0]])
    with pytest.raises(MiMarginError, match=r"generator 1 = \[0, 0, 1\] is not a permutation"):
        from_permutations([[1, 0, 2], [0, 0, 1]])
    with pytest.raises(MiMarginError, match=f"limit of {MAX_ORDER}"):
        from_permutations([[1, 0, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 0]])
    assert from_permutations([[0, 1, 2]]).order == 1


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "5"])
def test_constructor_arguments_validated(bad):
    for ctor in (cyclic, dihedral, symmetric, alternating):
        with pytest.raises(MiMarginError, match="must be an integer >= 1"):
            ctor(bad)


def test_size_limits_say_order_and_limit():
    with pytest.raises(MiMarginError, match=f"order {math.factorial(8)}.*limit of {MAX_ORDER}"):
        symmetric(8)
    with pytest.raises(MiMarginError, match=f"order {math.factorial(9)}.*limit of {MAX_ORDER}"):
        get("S9")
    with pytest.raises(MiMarginError, match=f"order {MAX_ORDER + 1}"):
        cyclic(MAX_ORDER + 1)
    with pytest.raises(MiMarginError, match=f"order {2 * 3000}"):
        get("D3000")
    with pytest.raises(MiMarginError, match=f"order {100 * 100}"):
        get("C100xC100")
    with pytest.raises(MiMarginError, match="far above"):
        get("S30")


def test_direct_product_arguments():
    with pytest.raises(MiMarginError, match="at least two"):
        direct_product(cyclic(2))
    with pytest.raises(MiMarginError, match="at least two FiniteGroup"):
        direct_product(cyclic(2), "C3")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "order"), [
    ("S5", math.factorial(5)), ("A5", math.factorial(5) // 2), ("D7", 14), ("C113", 113),
    ("Z113", 113), ("Q8", 8), ("C2xC3", 6), ("s4", math.factorial(4)), ("c2 × c2", 4),
    ("D5xC50", 500),
])
def test_get_parses_names(name, order):
    assert get(name).order == order


def test_get_caches_and_names():
    assert get("S5") is get("S5") and get("s5") is get("S5")
    assert get("S5").irreps()[1] is get("S5").irreps()[1]
    assert get("Z113").name == "Z113" and get("C113").name == "C113"
    assert get("C2xC3").name == "C2xC3"
    assert np.array_equal(get("Q8").table, quaternion().table)
    assert np.array_equal(get("C2xC3").table, direct_product(cyclic(2), cyclic(3)).table)


@pytest.mark.parametrize("name", ["X5", "Foo", "", "C", "S-1", "D0", "Q16", "C2x", 5])
def test_get_rejects_unknown_names(name):
    with pytest.raises(MiMarginError):
        get(name)  # type: ignore[arg-type]

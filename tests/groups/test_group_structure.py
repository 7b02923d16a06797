"""Group axioms, conventions and derived structure (orders, classes, generators, labels)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mi_margin.groups import (
    FiniteGroup,
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

NAMES = ["C1", "C2", "C7", "C12", "D1", "D2", "D3", "D4", "D5", "D6", "S1", "S2", "S3", "S4", "S5",
         "A3", "A4", "A5", "Q8", "C2xC3", "C3xC3", "D3xC2", "Q8xC3", "C2xC2xC2"]


def relabeled(G: FiniteGroup, seed: int = 0) -> FiniteGroup:
    """G's table under a random renumbering of its elements (so the identity is not 0)."""
    pi = np.random.default_rng(seed).permutation(G.order)
    table = np.empty_like(G.table)
    table[np.ix_(pi, pi)] = pi[G.table]
    return from_cayley_table(table, name=f"relabeled {G.name}")


def build(name: str) -> FiniteGroup:
    if name == "perm D4":
        return from_permutations([[1, 2, 3, 0], [3, 2, 1, 0]])
    if name.startswith("relabeled "):
        return relabeled(get(name.split()[1]))
    return get(name)


ALL = [*NAMES, "perm D4", "relabeled A4", "relabeled S3"]


def partition_count(m: int, largest: int | None = None) -> int:
    largest = m if largest is None else largest
    if m == 0:
        return 1
    return sum(partition_count(m - k, k) for k in range(1, min(m, largest) + 1))


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_orders_match_definitions(n):
    assert cyclic(n).order == n
    assert dihedral(n).order == 2 * n
    if n <= 5:
        assert symmetric(n).order == math.factorial(n)
        assert alternating(n).order == max(1, math.factorial(n) // 2)


@pytest.mark.parametrize("name", ALL)
def test_group_axioms(name):
    G = build(name)
    T, n = G.table, G.order
    x = np.arange(n)
    assert T.shape == (n, n) and T.dtype == np.int64
    assert ((T >= 0) & (T < n)).all()
    e = G.identity
    assert (T[e] == x).all() and (T[:, e] == x).all()
    assert (T[x, G.inverse] == e).all() and (T[G.inverse, x] == e).all()
    # exhaustive associativity by broadcasting: (a·b)·c == a·(b·c) for all triples
    assert (T[T[:, :, None], x[None, None, :]] == T[x[:, None, None], T[None, :, :]]).all()
    # Latin square (each row and column a permutation)
    assert (np.sort(T, axis=0) == x[:, None]).all() and (np.sort(T, axis=1) == x).all()
    assert G.is_abelian == bool((T == T.T).all())
    assert len(G) == n and repr(G).startswith("FiniteGroup(")


@pytest.mark.parametrize("name", ALL)
def test_element_orders(name):
    G = build(name)
    power = np.arange(G.order)
    for k in range(1, int(G.element_orders.max()) + 1):
        reached = power == G.identity
        assert (reached == (G.element_orders <= k) & (k % G.element_orders == 0)).all()
        power = G.table[power, np.arange(G.order)]
    assert (G.order % G.element_orders == 0).all()  # Lagrange


@pytest.mark.parametrize("name", ALL)
def test_conjugacy_classes(name):
    G = build(name)
    n = G.order
    g, a = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    conj = G.table[G.table[g, a], G.inverse[g]]  # [g, a] = g a g⁻¹
    classes = G.conjugacy_classes
    assert sorted(np.concatenate(classes).tolist()) == list(range(n))
    for k, cls in enumerate(classes):
        orbit = np.unique(conj[:, cls[0]])
        assert np.array_equal(orbit, cls)
        assert (G.class_of[cls] == k).all()
        assert len(set(G.element_orders[cls].tolist())) == 1
    assert classes[0].tolist() == [G.identity]
    keys = [(int(G.element_orders[c[0]]), c.size) for c in classes]
    assert keys == sorted(keys)
    assert (n % G.class_sizes == 0).all() and G.class_sizes.sum() == n
    assert [c[0] for c in classes] == G.class_representatives.tolist()
    if G.is_abelian:
        assert G.num_classes == n


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_symmetric_classes_are_cycle_types(m):
    assert symmetric(m).num_classes == partition_count(m)


@pytest.mark.parametrize("name", ALL)
def test_generators_generate(name):
    G = build(name)
    assert G.subgroup_generated(G.generators).tolist() == list(range(G.order))


@pytest.mark.parametrize("name", ALL)
def test_mul_and_compose_vectorized(name):
    G = build(name)
    rng = np.random.default_rng(0)
    a, b, c = rng.integers(0, G.order, size=(3, 50))
    assert np.array_equal(G.mul(a, b), G.table[a, b])
    assert np.array_equal(G.compose(a, b, c), G.table[G.table[a, b], c])
    assert int(G.compose()) == G.identity
    assert np.array_equal(G.mul(a[:, None], b[None, :]), G.table[a[:, None], b[None, :]])


@pytest.mark.parametrize("name", ALL)
def test_labels_unique(name):
    G = build(name)
    assert len(set(G.labels)) == G.order
    assert G.element(G.labels[-1]) == G.order - 1


def _parse_cycles(label: str, m: int) -> np.ndarray:
    p = np.arange(m)
    if label == "e":
        return p
    for cyc in label[1:-1].split(")("):
        pts = [int(t) for t in cyc.split()]
        for u, v in zip(pts, pts[1:] + pts[:1]):
            p[u] = v
    return p


@pytest.mark.parametrize("m", [3, 4, 5])
def test_permutation_conventions(m):
    for G in (symmetric(m), alternating(m)):
        P = G.permutations
        assert G.identity == 0 and np.array_equal(P[0], np.arange(m))
        # lexicographic order of image arrays
        assert all(tuple(P[i]) < tuple(P[i + 1]) for i in range(G.order - 1))
        # (a·b)[x] = a[b[x]]
        for a in range(G.order):
            assert np.array_equal(P[G.table[a]], P[a][P])
        for lab, p in zip(G.labels, P):
            assert np.array_equal(_parse_cycles(lab, m), p)


def test_alternating_is_even_permutations():
    for m in (3, 4, 5):
        A = alternating(m)
        signs = [np.linalg.det(np.eye(m)[p]) for p in A.permutations]
        assert np.allclose(signs, 1)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7])
def test_dihedral_convention(n):
    G = dihedral(n)
    r = G.element("r") if n > 1 else G.identity
    s = G.element("s")
    assert G.element_orders[s] == 2
    assert G.element_orders[r] == n
    assert int(G.compose(s, r, s)) == G.inverse[r]
    for i in range(n):
        for j in range(2):
            word = [r] * i + [s] * j
            assert int(G.compose(*word)) == i + n * j


def test_quaternion_relations():
    Q = quaternion()
    i, j, k, m1 = (Q.element(x) for x in ("i", "j", "k", "-1"))
    for q in (i, j, k):
        assert int(Q.mul(q, q)) == m1
    assert int(Q.compose(i, j, k)) == m1
    assert int(Q.mul(i, j)) == k and int(Q.mul(j, i)) == Q.element("-k")
    assert Q.labels[Q.identity] == "1"


def test_direct_product_mixed_radix():
    G, H, K = dihedral(3), cyclic(4), cyclic(2)
    P = direct_product(G, H, K)
    assert P.name == "D3xC4xC2" and P.order == G.order * H.order * K.order
    x = np.arange(P.order)
    g, h, k = x // 8, (x // 2) % 4, x % 2
    expect = (G.table[g[:, None], g] * 8 + H.table[h[:, None], h] * 2 + K.table[k[:, None], k])
    assert np.array_equal(P.table, expect)
    assert P.labels[13] == f"({G.labels[1]}, {H.labels[2]}, {K.labels[1]})"


def test_from_permutations_square():
    G = from_permutations([[1, 2, 3, 0], [3, 2, 1, 0]])
    D4 = dihedral(4)
    assert G.order == D4.order
    assert sorted(G.class_sizes.tolist()) == sorted(D4.class_sizes.tolist())
    assert sorted(G.element_orders.tolist()) == sorted(D4.element_orders.tolist())
    assert G.identity == 0 and G.labels[0] == "e"


def test_from_permutations_symmetric():
    m = 4
    G = from_permutations([[1, 0, 2, 3], [1, 2, 3, 0]], name="S4 again")
    assert G.order == math.factorial(m) and G.name == "S4 again"
    assert G.num_classes == partition_count(m)

"""Tasks: sizes, labels, splits, tokens and every documented bad-input error."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

import mi_margin as mm
from mi_margin.tasks import MAX_EXAMPLES, NonPrimeModulusWarning, from_dict


@pytest.mark.parametrize(("p", "k"), [(2, 1), (5, 2), (7, 3), (3, 4), (11, 2)])
def test_modular_addition_grid_and_labels(p, k):
    task = mm.ModularAddition(p=p, k=k) if p != 2 or True else None
    assert task.inputs.shape == (p**k, k)
    expected = [sum(t) % p for t in itertools.product(range(p), repeat=k)]
    assert task.labels.tolist() == expected
    assert task.labels.reshape([p] * k)[tuple([1] * k)] == k % p
    assert task.tokens.shape == (p**k, k + 1)
    assert (task.tokens[:, -1] == p).all()
    assert task.one_hot().shape == (p**k, k, p)
    assert torch.equal(task.one_hot().argmax(-1), task.inputs)


def test_split_is_seeded_disjoint_and_complete():
    a = mm.ModularAddition(p=13, train_fraction=0.3, seed=1)
    b = mm.ModularAddition(p=13, train_fraction=0.3, seed=1)
    c = mm.ModularAddition(p=13, train_fraction=0.3, seed=2)
    assert torch.equal(a.train_idx, b.train_idx)
    assert not torch.equal(a.train_idx, c.train_idx)
    assert len(a.train_idx) == round(0.3 * 169)
    both = torch.cat([a.train_idx, a.test_idx]).sort().values
    assert torch.equal(both, torch.arange(169))


def test_full_train_fraction_leaves_no_test():
    task = mm.ModularAddition(p=5, train_fraction=1.0)
    assert len(task.train_idx) == 25 and len(task.test_idx) == 0


@pytest.mark.parametrize("frac", [0, -0.1, 1.5, float("nan")])
def test_bad_fraction(frac):
    with pytest.raises(mm.MiMarginError, match="train_fraction"):
        mm.ModularAddition(p=5, train_fraction=frac)


@pytest.mark.parametrize("p", [1, 0, -3, 2.5])
def test_bad_modulus(p):
    with pytest.raises(mm.MiMarginError, match="p must be"):
        mm.ModularAddition(p=p)


@pytest.mark.parametrize("k", [0, -1])
def test_bad_k(k):
    with pytest.raises(mm.MiMarginError, match="k"):
        mm.ModularAddition(p=5, k=k)


def test_grid_too_large_says_how_large():
    p = 113
    k = math.ceil(math.log(MAX_EXAMPLES + 1, p)) + 1
    with pytest.raises(mm.MiMarginError, match=r"inputs \(about .* GiB"):
        mm.ModularAddition(p=p, k=k)


def test_non_prime_warns():
    with pytest.warns(NonPrimeModulusWarning, match="not prime"):
        mm.ModularAddition(p=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mm.ModularAddition(p=13)


@pytest.mark.parametrize(("n", "k", "support"), [(4, 2, None), (6, 3, (1, 3, 5)), (10, 4, None)])
def test_sparse_parity_full_cube(n, k, support):
    task = mm.SparseParity(n=n, k=k, support=support)
    assert task.inputs.shape == (2**n, n)
    assert set(task.inputs.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(r) for r in task.inputs.tolist()}) == 2**n
    sup = list(task.support)
    y = task.inputs[:, sup].prod(dim=1)
    assert torch.equal(task.labels, (y < 0).long())
    assert task.d_vocab_out == 2


def test_sparse_parity_samples_large_cube():
    task = mm.SparseParity(n=40, k=3, n_samples=1000, seed=3)
    assert task.inputs.shape == (1000, 40)
    again = mm.SparseParity(n=40, k=3, n_samples=1000, seed=3)
    assert torch.equal(task.inputs, again.inputs)


@pytest.mark.parametrize(("n", "k", "support", "match"), [
    (0, 1, None, "n "), (4, 5, None, "k must"), (4, 0, None, "k must"),
    (4, 2, (0, 4), r"support indices must be in \[0, 3\]"), (4, 2, (1, 1), "distinct"),
    (4, 2, (0,), "distinct"),
])
def test_sparse_parity_bad_input(n, k, support, match):
    with pytest.raises(mm.MiMarginError, match=match):
        mm.SparseParity(n=n, k=k, support=support)


def test_group_composition_from_cayley_table_of_cyclic_group():
    n = 6
    table = (torch.arange(n)[:, None] + torch.arange(n)[None]) % n
    G = mm.groups.from_cayley_table(table.numpy())
    task = mm.GroupComposition(G, k=3)
    assert task.inputs.shape == (n**3, 3)
    assert torch.equal(task.labels, task.inputs.sum(1) % n)


@pytest.mark.parametrize("name", ["S3", "D5", "S4"])
def test_group_composition_labels(name):
    G = mm.groups.get(name)
    task = mm.GroupComposition(name, k=2, train_fraction=0.5)
    table = torch.as_tensor(G.table.copy())
    assert torch.equal(task.labels, table[task.inputs[:, 0], task.inputs[:, 1]])
    assert task.d_vocab == G.order and task.tokens[0, -1] == G.order


@pytest.mark.parametrize("task", [
    mm.ModularAddition(p=7, k=3, train_fraction=0.4, seed=5),
    mm.SparseParity(n=6, k=2, support=(2, 4), train_fraction=0.5),
])
def test_round_trip_through_dict(task):
    again = from_dict(task.to_dict())
    assert torch.equal(again.inputs, task.inputs) and torch.equal(again.train_idx, task.train_idx)


def test_group_task_round_trip():
    task = mm.GroupComposition("D5", train_fraction=0.3, seed=4)
    again = from_dict(task.to_dict())
    assert torch.equal(again.labels, task.labels) and torch.equal(again.test_idx, task.test_idx)


def test_custom_group_task_keeps_its_table():
    G = mm.groups.get("S3")
    pi = torch.randperm(G.order, generator=torch.Generator().manual_seed(0)).numpy()
    table = G.table.copy()
    table[pi[:, None], pi[None, :]] = pi[G.table]
    custom = mm.groups.from_cayley_table(table, name="S3")   # same name, other numbering
    task = mm.GroupComposition(custom, train_fraction=0.5)
    assert "cayley_table" in task.to_dict()
    assert "cayley_table" not in mm.GroupComposition("S3").to_dict()
    again = from_dict(task.to_dict())
    assert torch.equal(again.labels, task.labels)


def test_a_support_given_as_an_array_is_the_same_support():
    """numpy and torch integer arrays name a support as a list does (numpy's k was taken, its
    support refused); float entries stay refused."""
    import numpy as np

    assert mm.SparseParity(n=6, k=3, support=np.array([4, 0, 1])).support == (4, 0, 1)
    assert mm.SparseParity(n=6, k=3, support=torch.tensor([4, 0, 1])).support == (4, 0, 1)
    with pytest.raises(mm.MiMarginError, match="list of integers"):
        mm.SparseParity(n=6, k=3, support=np.array([0.5, 1, 2]))


def test_a_registered_group_s_table_under_its_name_keeps_its_irrep_names_when_reloaded():
    """S4's table given by hand has numerical irreps (dim1, dim2, dim3_a, ...); saved by name it
    came back as the registered S4 with Young's irreps ((2,2), (3,1), ...), and every result
    keyed by irrep name stopped matching. It is saved as a table now."""
    from mi_margin import groups
    from mi_margin.tasks import from_dict

    G = groups.from_cayley_table(groups.get("S4").table, name="S4")
    again = from_dict(mm.GroupComposition(G).to_dict()).group
    assert [r.name for r in again.irreps()] == [r.name for r in G.irreps()]
    assert "cayley_table" not in mm.GroupComposition("S4").to_dict()     # registered: by name

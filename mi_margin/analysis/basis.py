"""The harmonic basis of a task: the one object every structural analysis goes through.

Each task's inputs live in a finite abelian or non-abelian group, and "which frequencies / irreps a
model uses" is the same question asked in that group's isotypic decomposition
(docs/mathematics.md §0, §3; docs/architecture.md "The basis object"):

- :class:`CyclicBasis` — Z_p^k (modular addition): the isotypic subspaces of Z_p are the real
  frequencies f = 0..p//2 (Nanda et al. 2023 speak of "frequency f"); grid functions are
  transformed with the FFT (:mod:`mi_margin.fourier.cyclic`).
- :class:`IrrepBasis` — G^k for a finite group (group composition): the isotypic subspaces of the
  real irreps, labelled with their names (trivial, sign, standard, ... as Chughtai et al. 2023).
- :class:`ParityBasis` — sparse parity on {±1}^n = Z_2^n: the characters χ_S(x) = Π_{j∈S} x_j,
  labelled by the subset S (a tuple of bit indices), computed with the fast Walsh–Hadamard transform.

A basis answers, for functions given as rows over the task's input grid (``task.inputs`` order)
or as matrices over one operand's elements: how much energy lies in each label's block, in each
label's "term" subspace (a function of one operand, or of the product), and what the characters
are. Labels come trivial first; ``basis.labels[1:]`` are the non-trivial ones.
"""

from __future__ import annotations

import math
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from mi_margin.checks import as_python
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import (
    basis_labels,
    check_frequencies,
    filter_grid,
    fourier_basis,
    frequency_mask,
    frequency_of_index,
    grid_power,
    to_fourier,
)
from mi_margin.fourier.group import isotypic_basis
from mi_margin.tasks.algebra import Algebra, Cube, Cyclic, Group

#: float64 entries per column chunk of the grid transforms (bounds memory on large grids)
CHUNK = 2**23


#: the plural of each label kind, for messages and titles ("key frequencies [1, 8]")
PLURAL = {"frequency": "frequencies", "irrep": "irreps", "subset": "subsets"}

class GridEnergy(NamedTuple):
    """Energy of m grid functions (centred over the grid) per non-trivial label block."""

    blocks: Tensor          # [m, L-1]
    total: Tensor           # [m] centred sum of squares
    tuples: Tensor | None   # cyclic only: power per frequency tuple summed over units, [F+1]*k


def term_labels(k: int) -> tuple[str, ...]:
    """Names of the grid terms for k operands: ``("a", "b", "ab")`` for k = 2, then "abc", ...

    Example:
        >>> term_labels(3)
        ('a', 'b', 'c', 'abc')
    """
    if not 1 <= k <= len(string.ascii_lowercase):
        raise MiMarginError(f"terms are defined for 1 <= k <= 26 operands, got k={k}")
    letters = string.ascii_lowercase[:k]
    return (*letters, letters) if k > 1 else (letters,)


def columns(values: Tensor) -> Iterator[Tensor]:
    """float64 chunks of the columns of [N, m] values, about ``CHUNK`` entries each, one at a time
    (a large grid is never copied whole; every grid transform acts column by column)."""
    width = max(1, CHUNK // max(1, len(values)))
    for i in range(0, values.shape[1], width):
        yield values[:, i:i + width].double()


def sum_by(elements: Tensor, values: Tensor, n: int) -> Tensor:
    """Σ of the rows of [N, m] ``values`` per element (``elements`` [N] in 0..n−1), float64 [n, m],
    converting a chunk of rows at a time."""
    out = torch.zeros((n, values.shape[1]), dtype=torch.float64)
    for rows, part in zip(elements.split(2**16), values.split(2**16)):
        out.index_add_(0, rows, part.double())
    return out


class HarmonicBasis(ABC):
    """Isotypic basis of one operand's group, used on the grid of k operands.

    Attributes:
        label_kind: "frequency", "irrep" or "subset" (the word the literature uses).
        labels: every label, trivial first. dims: the dimension of each label's subspace of
            functions on one operand (d²/e for an irrep; 1 or 2 for a frequency).
        n, k: elements per operand and number of operands.
    """

    label_kind: str
    labels: tuple[Any, ...]
    dims: tuple[int, ...]
    n: int
    k: int

    @property
    def nontrivial(self) -> tuple[Any, ...]:
        return self.labels[1:]

    def resolve(self, labels: Sequence[Any] | Any, trivial: bool = False) -> tuple[Any, ...]:
        """Canonical labels (aliases allowed; a single label too), in basis order, no repeats.

        The trivial label is refused unless ``trivial`` (it carries only the mean). For the
        package's own label lists, which may be empty; what a user passes goes through
        :meth:`user_labels`.
        """
        chosen = {self.labels[0] if trivial and self._is_trivial(lab) else self._canonical(lab)
                  for lab in self._given(labels, "labels")}
        return tuple(lab for lab in self.labels if lab in chosen)

    def user_labels(self, labels: Sequence[Any] | Any, what: str = "labels") -> tuple[Any, ...]:
        """The task's labels for the labels a user names in argument ``what``, in basis order:
        what every analyzer that takes labels (``restricted_loss``, ``progress_measures``,
        ``explain(keep=...)``) reads them with.

        Taken: one label or a list of them, aliases (``"standard"``), a parity subset in any
        order, numpy and torch integers and integer arrays. Refused, naming ``what``: an empty
        list, an unknown label (the trivial one included) and a label named twice.

        Example:
            >>> import numpy as np
            >>> from mi_margin.groups import symmetric
            >>> IrrepBasis(symmetric(3), 2).user_labels(["standard"])
            ('(2,1)',)
            >>> CyclicBasis(7, 2).user_labels(np.array([3, 1]))
            (1, 3)
            >>> ParityBasis(4).user_labels([(2, 0)]), ParityBasis(4).user_labels((3, 1))
            (((0, 2),), ((1, 3),))
        """
        given = self._given(labels, what)
        if not given:
            raise MiMarginError(f"{what}={labels!r} is empty: name at least one "
                                f"{self.label_kind} ({self._describe()})")
        chosen = self._known(given, what, labels)
        twice = [lab for lab in dict.fromkeys(chosen) if chosen.count(lab) > 1]
        if twice:
            same = {"irrep": " (an alias names the same irrep)",
                    "subset": " (a subset in any order is the same subset)"}
            raise MiMarginError(f"{what}={labels!r} names the {self.label_kind} {twice[0]!r} "
                                f"more than once{same.get(self.label_kind, '')}; name each once")
        return tuple(lab for lab in self.labels if lab in set(chosen))

    def _given(self, labels: Any, what: str) -> list[Any]:
        """A user's labels as a list of Python values: numpy and torch values as the numbers
        they hold, one label as a list of one (for parity a flat list of bit indices is one
        subset)."""
        labels = as_python(labels)
        one = isinstance(labels, (str, int)) or (
            self.label_kind == "subset" and isinstance(labels, (list, tuple)) and bool(labels)
            and all(isinstance(j, int) for j in labels))
        if one:
            return [labels]
        if not isinstance(labels, Iterable):
            raise MiMarginError(f"{what} must be a {self.label_kind} or a list of "
                                f"{PLURAL[self.label_kind]} ({self._describe()}), got "
                                f"{what}={labels!r}")
        return [as_python(lab) for lab in labels]

    def _known(self, given: list[Any], what: str, labels: Any) -> list[Any]:
        """:meth:`_canonical` of every label given, refusing those the task does not have
        all at once, naming the argument."""
        chosen, unknown, why = [], [], []
        for lab in given:
            try:
                chosen.append(self._canonical(lab))
            except MiMarginError as err:
                unknown.append(lab)
                why.append(str(err))
        if unknown:
            raise MiMarginError(f"{what} names {PLURAL[self.label_kind]} the task does not have: "
                                f"{unknown} ({why[0]}); got {what}={labels!r}")
        return chosen

    def _describe(self) -> str:
        """The task's non-trivial labels, for messages."""
        return f"the task's {PLURAL[self.label_kind]} are {list(self.nontrivial)}"

    def _is_trivial(self, label: Any) -> bool:
        return label == self.labels[0]

    def _canonical(self, label: Any) -> Any:
        if label not in self.nontrivial:
            raise MiMarginError(f"unknown {self.label_kind} {label!r}; have {list(self.nontrivial)}")
        return label

    # -- functions on one operand ----------------------------------------------------------------
    @abstractmethod
    def operand_basis(self, label: Any) -> Tensor:
        """Orthonormal columns [n, r] spanning the label's functions on one operand."""

    def coefficients(self, W: Tensor) -> Tensor:
        """Coefficients [n, m] of W's columns ([n, m], axis 0 = group elements) in the
        orthonormal basis of all labels' subspaces, label by label (see ``index_labels``)."""
        W = W.detach().double()
        return torch.cat([self.operand_basis(lab).T @ W for lab in self.labels])

    def coefficient_names(self) -> list[str]:
        """A name for every coefficient of :meth:`coefficients`, in its order: the label, with
        ``[i]`` for the i-th basis vector of a label whose subspace has several.

        Example:
            >>> from mi_margin.groups import symmetric
            >>> IrrepBasis(symmetric(3), 2).coefficient_names()
            ['trivial', '(1,1,1)', '(2,1)[0]', '(2,1)[1]', '(2,1)[2]', '(2,1)[3]']
        """
        return [str(lab) if d == 1 else f"{lab}[{i}]" for lab, d in zip(self.labels, self.dims)
                for i in range(d)]

    @property
    def index_labels(self) -> Tensor:
        """The label index (into ``labels``) of every coefficient of :meth:`coefficients`."""
        return torch.repeat_interleave(torch.arange(len(self.labels)), torch.tensor(self.dims))

    def weight_energy(self, W: Tensor) -> Tensor:
        """Squared norm of each column of W ([n, m]) in every label's subspace, [L, m]."""
        coef = self.coefficients(W)
        return coef.new_zeros((len(self.labels), coef.shape[1])).index_add_(
            0, self.index_labels, coef.square())

    def by_element(self, W: Tensor) -> Tensor:
        """Rows of W over the task's tokens (or classes) reordered to group-element order."""
        return W

    def grid_order(self, values: Tensor) -> Tensor:
        """Rows of grid values in the task's order reordered to the group's grid (element tuples in
        lexicographic order, last operand fastest), so that they reshape to [n] * k."""
        return values

    # -- functions on the grid -------------------------------------------------------------------
    def operand_elements(self, task: Any) -> Tensor:
        """The group element of every operand of every grid input, [N, k]."""
        return task.inputs.long()

    @abstractmethod
    def term_elements(self, task: Any, term: str) -> Tensor:
        """The element each grid input feeds to ``term`` (one operand, or the product), [N]."""

    def terms(self) -> tuple[str, ...]:
        return term_labels(self.k)

    def term_energy(self, task: Any, values: Tensor, term: str) -> Tensor:
        """Energy of each column, centred over the grid, in every label's ρ(term) subspace, [L, m].

        Every element appears n^{k−1} times in a term column, so the grid basis is
        Q_ρ[column]/sqrt(n^{k−1}) and Qᵀ H = Q_ρᵀ (rows of H summed per element)/sqrt(n^{k−1});
        centring subtracts the mean n^{k−1} times from every element's sum.
        """
        summed = sum_by(self.term_elements(task, term), values, self.n)
        summed -= summed.mean(0)
        return self.weight_energy(summed) / self.n ** (self.k - 1)

    def term_directions(self, task: Any, labels: Sequence[Any], term: str | None = None
                        ) -> Tensor:
        """Orthonormal [N, r] basis over the grid of x ↦ ρ(g_term(x))_ij for ``labels``.

        ``term`` defaults to the product of all operands (what a logit reads: Nanda et al.'s
        cos/sin(ω_f(a+b)), Chughtai et al.'s ρ(ab)).
        """
        term = self.terms()[-1] if term is None else term
        column = self.term_elements(task, term)
        blocks = [self.operand_basis(lab)[column] for lab in self.resolve(labels, trivial=True)]
        if not blocks:
            return torch.zeros((len(column), 0), dtype=torch.float64)
        return torch.cat(blocks, dim=1) / math.sqrt(self.n ** (self.k - 1))

    def grid_energy(self, values: Tensor) -> GridEnergy:
        """Energy of each centred column in each single-label block {trivial, ρ}^{⊗k} − trivial^k.

        Nanda et al.'s "degree-k polynomial in one frequency" for Z_p^k; for a group, everything a
        neuron can compute from one irrep of every operand. Blocks of different labels are
        orthogonal, so a row of ``blocks`` sums to at most ``total``.
        """
        blocks, totals = [], []
        for chunk in columns(values):
            chunk = chunk - chunk.mean(0)
            grid = chunk.reshape([self.n] * self.k + [chunk.shape[1]])
            per_label = []
            for lab in self.nontrivial:
                P = torch.cat([self.operand_basis(self.labels[0]), self.operand_basis(lab)], 1)
                coef = grid
                for _ in range(self.k):           # project every operand axis; it moves to the end
                    coef = torch.tensordot(coef, P, dims=([0], [0]))
                per_label.append(coef.square().flatten(1).sum(1))
            blocks.append(torch.stack(per_label, 1))
            totals.append(chunk.square().sum(0))
        return GridEnergy(torch.cat(blocks), torch.cat(totals), None)

    def block_projection(self, values: Tensor, labels: Sequence[Any]) -> Tensor:
        """Projection of [N, m] grid functions onto the union of the labels' blocks."""
        T = self.operand_basis(self.labels[0])
        out = values.new_zeros(values.shape, dtype=torch.float64)
        for lab in self.resolve(labels):
            P = torch.cat([T, self.operand_basis(lab)], 1)
            for proj, sign in ((P, 1.0), (T, -1.0)):
                grid = values.double().reshape([self.n] * self.k + [values.shape[1]])
                for _ in range(self.k):           # each projected axis moves to the end
                    grid = torch.tensordot(grid, proj @ proj.T, dims=([0], [0]))
                out += sign * grid.reshape(values.shape[1], -1).T
        return out

    # -- characters (logit similarity) -----------------------------------------------------------
    @abstractmethod
    def characters(self) -> Tensor:
        """χ_ρ(g) for every label and element, [L, n]."""

    @abstractmethod
    def quotient(self) -> Tensor:
        """[s, c] ↦ s c⁻¹, the element whose character scores class c when the product is s."""

    def logit_similarity(self, task: Any, logits: Tensor) -> Tensor:
        """Cosine similarity of class-centred logits with χ_ρ(g_1⋯g_k c⁻¹), per label, [L].

        Logits are summed per product s into M[s, c]; ⟨ℓ̃, χ⟩ = Σ_{s,c} M[s, c] χ(s c⁻¹) and the
        character cube has squared norm n^k Σ_g χ(g)² (c ↦ s c⁻¹ is a bijection), so no
        [N, n, L] tensor is built (Chughtai et al. 2023, App. E; Nanda et al. 2023, §4.2).
        """
        M = torch.zeros((self.n, self.n), dtype=torch.float64)
        norm2 = torch.zeros((), dtype=torch.float64)
        for rows, part in zip(task.labels.split(2**16), logits.split(2**16)):
            L = part.double() - part.double().mean(1, keepdim=True)
            M.index_add_(0, rows, L)
            norm2 += L.square().sum()
        chars = self.characters()
        dot = (chars[:, self.quotient()] * M).sum((1, 2))
        denom = (float(self.n) ** self.k * chars.square().sum(1)).sqrt() * norm2.sqrt()
        return dot / denom if float(norm2) > 0 else torch.zeros_like(dot)


class CyclicBasis(HarmonicBasis):
    """Z_p^k, labelled by frequency f = 0..p//2 (0 = the constant), FFT-backed on the grid.

    Example:
        >>> b = CyclicBasis(7, 2)
        >>> b.labels, b.dims
        ((0, 1, 2, 3), (1, 2, 2, 2))
    """

    label_kind = "frequency"

    def __init__(self, p: int, k: int):
        self.n, self.k = p, k
        self.labels = tuple(range(p // 2 + 1))
        index_freq = frequency_of_index(p)
        self.dims = tuple(int((index_freq == f).sum()) for f in self.labels)
        self._B = fourier_basis(p).T

    def _canonical(self, label: Any) -> Any:
        return check_frequencies(self.n, [label])[0]

    def operand_basis(self, label: Any) -> Tensor:
        return self._B[:, frequency_of_index(self.n) == label]

    def coefficients(self, W: Tensor) -> Tensor:
        return to_fourier(W.detach(), dims=(0,))

    def coefficient_names(self) -> list[str]:
        """``const``, ``cos 1``, ``sin 1``, ... (the real Fourier basis of Z_p).

        Example:
            >>> CyclicBasis(5, 2).coefficient_names()
            ['const', 'cos 1', 'sin 1', 'cos 2', 'sin 2']
        """
        return basis_labels(self.n)

    def term_elements(self, task: Any, term: str) -> Tensor:
        return _term_column(self, task, term)

    def grid_energy(self, values: Tensor) -> GridEnergy:
        """FFT over the grid, one chunk of columns at a time (see :func:`grid_power`)."""
        F, k = self.n // 2, self.k
        freqs, zeros = torch.arange(1, F + 1), torch.zeros(F, dtype=torch.long)
        blocks, totals, tuples = [], [], None
        for chunk in columns(values):
            power = grid_power(chunk, self.n, k)
            block = power.new_zeros((F, chunk.shape[1]))
            for corner in range(1, 2**k):
                block += power[tuple(freqs if corner >> a & 1 else zeros for a in range(k))]
            blocks.append(block.T)
            totals.append(power.flatten(0, k - 1).sum(0))
            summed = power.sum(-1)
            tuples = summed if tuples is None else tuples + summed
        return GridEnergy(torch.cat(blocks), torch.cat(totals), tuples)

    def block_projection(self, values: Tensor, labels: Sequence[Any]) -> Tensor:
        mask = frequency_mask(self.n, self.k, list(self.resolve(labels)))
        return torch.cat([filter_grid(c, self.n, self.k, mask) for c in columns(values)], 1)

    def characters(self) -> Tensor:
        g = torch.arange(self.n, dtype=torch.float64)
        return torch.stack([torch.cos(2 * math.pi * f * g / self.n) * (1 if f in (0, self.n / 2)
                                                                        else 2)
                            for f in self.labels])

    def quotient(self) -> Tensor:
        g = torch.arange(self.n)
        return (g[:, None] - g[None, :]) % self.n


class IrrepBasis(HarmonicBasis):
    """G^k for a finite group, labelled by the names of ``G.irreps()`` (real irreps).

    Example:
        >>> from mi_margin.groups import symmetric
        >>> b = IrrepBasis(symmetric(3), 2)
        >>> b.labels, b.dims
        (('trivial', '(1,1,1)', '(2,1)'), (1, 1, 4))
    """

    label_kind = "irrep"

    def __init__(self, group: Any, k: int):
        self.group, self.n, self.k = group, group.order, k
        irreps = group.irreps()                                   # trivial first
        self.labels = tuple(r.name for r in irreps)
        self.dims = tuple(r.isotypic_dim for r in irreps)
        self._Q = {r.name: torch.from_numpy(np.array(isotypic_basis(group, r))) for r in irreps}
        self._irreps = {r.name: r for r in irreps}

    def _is_trivial(self, label: Any) -> bool:
        return self.group.irrep(label).name == self.labels[0]

    def _canonical(self, label: Any) -> Any:
        name = self.group.irrep(label).name
        if name == self.labels[0]:
            raise MiMarginError(f"the trivial irrep carries only the mean; choose among "
                                f"{list(self.nontrivial)}")
        return name

    def operand_basis(self, label: Any) -> Tensor:
        return self._Q[label]

    def term_elements(self, task: Any, term: str) -> Tensor:
        return _term_column(self, task, term)

    def characters(self) -> Tensor:
        return torch.tensor(np.stack([self._irreps[name].character for name in self.labels]))

    def quotient(self) -> Tensor:
        return torch.tensor(self.group.table)[:, torch.tensor(self.group.inverse)]


class ParityBasis(HarmonicBasis):
    """{±1}^n = Z_2^n (sparse parity), labelled by subsets S ⊆ {0..n−1} as sorted tuples.

    Grid functions must be given on the whole cube in the task's binary order (row r has
    x_j = −1 where bit j of r is set). The single "term" is the input x itself: χ_S(x) is both
    the block and the product direction of S.

    Example:
        >>> ParityBasis(2).labels
        ((), (0,), (1,), (0, 1))
    """

    label_kind = "subset"

    def __init__(self, n: int):
        self.n, self.k = 2**n, 1
        self.bits = n
        self.labels = tuple(tuple(j for j in range(n) if mask >> j & 1) for mask in range(2**n))
        self.dims = (1,) * len(self.labels)

    def _canonical(self, label: Any) -> Any:
        bits = as_python(label)
        subset = (tuple(sorted(bits)) if isinstance(bits, (list, tuple)) and all(
            isinstance(j, int) and not isinstance(j, bool) for j in bits) else None)
        if subset not in self.nontrivial:
            raise MiMarginError(f"a subset must be a non-empty tuple of distinct bit indices in "
                                f"0..{self.bits - 1}, got {label!r}")
        return subset

    def _describe(self) -> str:
        return f"the task's subsets are the non-empty subsets of the bits 0..{self.bits - 1}"

    def _characters_on_cube(self) -> Tensor:
        rows = torch.arange(2**self.bits)
        masks = torch.arange(2**self.bits)
        ones = torch.tensor([bin(v).count("1") for v in range(2**self.bits)])
        return 1.0 - 2.0 * (ones[rows[:, None] & masks[None, :]] % 2).double()

    def operand_basis(self, label: Any) -> Tensor:
        mask = sum(1 << j for j in label)
        return self._characters_on_cube()[:, mask:mask + 1] / math.sqrt(self.n)

    def coefficients(self, W: Tensor) -> Tensor:
        return _walsh(W.detach().double()) / math.sqrt(self.n)

    def term_elements(self, task: Any, term: str) -> Tensor:
        if term != "x":
            raise MiMarginError(f"sparse parity has the single term 'x', got term={term!r}")
        return torch.arange(self.n)

    def terms(self) -> tuple[str, ...]:
        return ("x",)

    def grid_energy(self, values: Tensor) -> GridEnergy:
        energy = torch.cat([self.coefficients(c - c.mean(0)).square() for c in columns(values)],
                           1)
        return GridEnergy(energy[1:].T, energy.sum(0), None)

    def block_projection(self, values: Tensor, labels: Sequence[Any]) -> Tensor:
        Q = self.term_directions(None, labels, "x")
        return Q @ (Q.T @ values.double())

    def characters(self) -> Tensor:
        return torch.tensor([[1.0, 1.0], [1.0, -1.0]])

    def quotient(self) -> Tensor:
        return torch.tensor([[0, 1], [1, 0]])

    def logit_similarity(self, task: Any, logits: Tensor) -> Tensor:
        """cos(ℓ̃, χ_S(x)ψ(c)) with ψ = (+1, −1): class 0 is y = +1 (Morwani et al. Thm 8).

        ⟨ℓ̃, χ_S ψ⟩ = Σ_x χ_S(x)(ℓ_0 − ℓ_1)(x), one Walsh–Hadamard transform; the cube has
        squared norm 2·2^n.
        """
        L = logits.double() - logits.double().mean(1, keepdim=True)
        coef = _walsh(L[:, :1] - L[:, 1:])[:, 0]
        norm = L.norm() * math.sqrt(2 * self.n)
        return coef / norm if float(L.norm()) > 0 else torch.zeros_like(coef)


def _walsh(values: Tensor) -> Tensor:
    """Unnormalised Walsh–Hadamard transform along axis 0: Σ_x χ_S(x) v(x) for every mask S."""
    out = values.clone()
    h, n = 1, out.shape[0]
    while h < n:
        view = out.reshape(n // (2 * h), 2, h, -1)
        a, b = view[:, 0].clone(), view[:, 1].clone()
        view[:, 0], view[:, 1] = a + b, a - b
        h *= 2
    return out


def _term_column(basis: HarmonicBasis, task: Any, term: str) -> Tensor:
    labels = basis.terms()
    if term not in labels:
        raise MiMarginError(f"term must be one of {labels} for k={basis.k}, got term={term!r}")
    return task.labels if term == labels[-1] and basis.k > 1 else task.inputs[:, labels.index(term)]


class EncodedBasis(HarmonicBasis):
    """A group's basis read through a task's :class:`~mi_margin.tasks.algebra.Encoding`.

    Weights over tokens or classes, grid functions in the task's row order and the task's labels
    are mapped to group elements, then handed to the group's own basis (its FFT fast path
    included): a token's row is the function's value at the token's element, a grid row the value
    at its operands' elements (inverted operands as their inverses). An inversion maps every
    isotypic subspace to itself (ρ(g⁻¹) = ρ(g)ᵀ), so a weight over tokens is read without it.

    Example:
        >>> from mi_margin.tasks import ModularOperation
        >>> b = basis_for(ModularOperation(p=7, op="multiply"))
        >>> type(b.inner).__name__, b.labels
        ('CyclicBasis', (0, 1, 2, 3))
    """

    def __init__(self, inner: HarmonicBasis, task: Any):
        alg = task.algebra
        self.inner, self.label_kind, self.labels = inner, inner.label_kind, inner.labels
        self.dims, self.n, self.k = inner.dims, inner.n, inner.k
        self._elements = alg.encoding.elements
        self._tokens = alg.encoding.tokens
        self._view = ElementView(alg.elements(task), alg.product(task))
        key = (self._view.inputs * self.n ** torch.arange(self.k - 1, -1, -1)).sum(1)
        self._rows = key.argsort()             # the task row at each position of the grid

    def _canonical(self, label: Any) -> Any:
        return self.inner._canonical(label)

    def _is_trivial(self, label: Any) -> bool:
        return self.inner._is_trivial(label)

    def _describe(self) -> str:
        return self.inner._describe()

    def operand_basis(self, label: Any) -> Tensor:
        return self.inner.operand_basis(label)[self._elements]

    def coefficients(self, W: Tensor) -> Tensor:
        return self.inner.coefficients(W[self._tokens])

    def coefficient_names(self) -> list[str]:
        return self.inner.coefficient_names()

    def by_element(self, W: Tensor) -> Tensor:
        return W[self._tokens]

    def operand_elements(self, task: Any) -> Tensor:
        return self._view.inputs

    def term_elements(self, task: Any, term: str) -> Tensor:
        return self.inner.term_elements(self._view, term)

    def term_energy(self, task: Any, values: Tensor, term: str) -> Tensor:
        return self.inner.term_energy(self._view, values, term)

    def term_directions(self, task: Any, labels: Sequence[Any], term: str | None = None
                        ) -> Tensor:
        return self.inner.term_directions(self._view, labels, term)

    def grid_order(self, values: Tensor) -> Tensor:
        return values[self._rows]

    def grid_energy(self, values: Tensor) -> GridEnergy:
        return self.inner.grid_energy(values[self._rows])

    def block_projection(self, values: Tensor, labels: Sequence[Any]) -> Tensor:
        out = self.inner.block_projection(values[self._rows], labels)
        return torch.empty_like(out).index_copy_(0, self._rows, out)

    def characters(self) -> Tensor:
        return self.inner.characters()

    def quotient(self) -> Tensor:
        return self.inner.quotient()

    def logit_similarity(self, task: Any, logits: Tensor) -> Tensor:
        return self.inner.logit_similarity(self._view, logits[:, self._tokens])


class ElementView(NamedTuple):
    """A task's grid as group elements: operands [N, k] and labels' elements [N]."""

    inputs: Tensor
    labels: Tensor


def require_labels(task: Any, label_kind: str, what: str) -> HarmonicBasis:
    """The task's basis, or an error unless its labels are ``label_kind`` (the field's views:
    frequencies need a cyclic domain, irreps a group's). Returns the basis.

    Example:
        >>> import mi_margin as mm
        >>> require_labels(mm.GroupComposition("S3"), "frequency", "key_frequencies")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: key_frequencies reads frequencies, but ... irreps; ...
    """
    basis = basis_for(task)
    if basis.label_kind != label_kind:
        raise MiMarginError(f"{what} reads {PLURAL[label_kind]}, but {task!r} is analysed in "
                            f"{PLURAL[basis.label_kind]}; the task-independent analyzers "
                            "(spectrum, key_components, ...) take every task")
    return basis


def _cyclic(task: Any) -> HarmonicBasis:
    return CyclicBasis(task.algebra.domain.n, task.algebra.k)


def _irrep(task: Any) -> HarmonicBasis:
    k = task.algebra.k
    if not 2 <= k <= len(string.ascii_lowercase):
        raise MiMarginError(f"irrep analysis needs k >= 2 operands (a product to compose) "
                            f"and k <= 26, got k={k}")
    return IrrepBasis(task.algebra.domain.group(), k)


def _cube(task: Any) -> HarmonicBasis:
    return ParityBasis(task.algebra.domain.bits)


#: the basis of each kind of domain (tasks/algebra.py), built from the task
BASES: dict[type, Callable[[Any], HarmonicBasis]] = {Cyclic: _cyclic, Group: _irrep, Cube: _cube}
_CACHE: dict[Hashable, HarmonicBasis] = {}


def basis_for(task: Any) -> HarmonicBasis:
    """The harmonic basis of ``task``'s algebra: its domain's basis on domain^k (cached per domain
    and k), read through the task's encoding when it has one.

    The whole grid must be present (a sampled cube has no Walsh transform).

    Example:
        >>> import mi_margin as mm
        >>> basis_for(mm.ModularAddition(p=5, k=3)).label_kind
        'frequency'
    """
    algebra = getattr(task, "algebra", None)
    if not isinstance(algebra, Algebra):
        raise MiMarginError(f"no harmonic basis for {type(task).__name__}: a task declares its "
                            "algebra (mi_margin.tasks.algebra) to be analysed")
    if not task.whole_grid or len(task.labels) != algebra.order ** algebra.k:
        grid = (f"{algebra.order}^{algebra.k} = " if algebra.k > 1 else "") + \
            f"{algebra.order ** algebra.k}"
        raise MiMarginError(f"harmonic analysis needs the whole grid of {grid} inputs, each once; "
                            f"{task!r} holds {len(task.labels)}"
                            + (" drawn at random" if not task.whole_grid else "")
                            + " (sparse parity needs the whole cube: n <= 16 and n_samples=None)")
    key = (algebra.domain, algebra.k)
    if key not in _CACHE:
        _CACHE[key] = BASES[type(algebra.domain)](task)
    return _CACHE[key] if algebra.encoding is None else EncodedBasis(_CACHE[key], task)

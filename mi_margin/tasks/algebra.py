"""What a task computes in: its domain (a finite group, with the harmonic basis that suits it) and
the encoding that turns its tokens into group elements (docs/architecture.md "Tasks own their
algebra").

Every task of this package labels a k-tuple of symbols with their "product". The :class:`Algebra`
a task declares says in which group that product is taken and how the symbols map to the group:

- the **domain**: :class:`Cyclic` (Z_n, analysed with the FFT), :class:`Group` (any finite group,
  analysed in its isotypic basis) or :class:`Cube` (Z_2^n = {±1}^n, analysed with the Walsh–Hadamard
  transform);
- ``k``, the number of operands composed (the analysed grid is domain^k);
- ``inputs``: ``"operands"`` (each operand is one token, one-hot for an MLP) or ``"vectors"`` (the
  input is one ±1 vector, as sparse parity's);
- the :class:`Encoding`: the group element each symbol stands for (``None``: symbol i is element i)
  and which operands enter inverted. Power et al.'s binary operations are encodings: a − b is
  a + (−b) in Z_p, a·b is g^(log a + log b) in Z_p* ≅ Z_(p−1) (symbols relabelled by their discrete
  log), a / b is a·b⁻¹.

Analyses (``analysis.basis.basis_for``), model configs and fit checks, the theory and the figures read
these fields; none of them asks for a task by name.

Example:
    >>> from mi_margin.tasks import ModularOperation
    >>> alg = ModularOperation(p=7, op="multiply").algebra
    >>> alg.domain, alg.k, alg.encoding.elements.tolist()
    (Cyclic(n=6), 2, [0, 2, 1, 4, 5, 3])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.groups import FiniteGroup, cyclic

if TYPE_CHECKING:
    from mi_margin.tasks.base import Task

#: how a model reads one input: one token per operand, or one ±1 vector
INPUTS = ("operands", "vectors")


@dataclass(frozen=True)
class Cyclic:
    """Z_n: labels are the real frequencies 0..n//2, grid functions transform with the FFT."""

    n: int
    label_kind: ClassVar[str] = "frequency"

    @property
    def order(self) -> int:
        return self.n

    def group(self) -> FiniteGroup:
        """Z_n as a :class:`~mi_margin.groups.FiniteGroup` (element i is i, written ``Cn``)."""
        return cyclic(self.n)


@dataclass(frozen=True)
class Group:
    """A finite group G: labels are its real irreps, functions project onto isotypic subspaces."""

    G: FiniteGroup
    label_kind: ClassVar[str] = "irrep"

    @property
    def order(self) -> int:
        return int(self.G.order)

    def group(self) -> FiniteGroup:
        return self.G


@dataclass(frozen=True)
class Cube:
    """Z_2^bits = {±1}^bits: labels are the subsets S (characters χ_S), the Walsh transform."""

    bits: int
    label_kind: ClassVar[str] = "subset"

    @property
    def order(self) -> int:
        return 2**self.bits

    def group(self) -> FiniteGroup:
        raise MiMarginError("an encoding of the cube {±1}^n is not supported: its inputs are "
                            "vectors, not symbols")


Domain = Cyclic | Group | Cube


@dataclass(frozen=True, eq=False)
class Encoding:
    """How a task's symbols (operand tokens and classes alike) are group elements.

    Attributes:
        elements: int64 [n]: the group element symbol i stands for (a permutation of 0..n−1).
        inverted: one flag per operand: the operand enters the product as its inverse.
        symbols: what each token means to a reader (e.g. the residues 1..p−1), for labels.
    """

    elements: Tensor
    inverted: tuple[bool, ...]
    symbols: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.elements)
        if not torch.equal(self.elements.sort().values, torch.arange(n)):
            raise MiMarginError(f"an encoding's elements must be a permutation of 0..{n - 1}, "
                                f"got {self.elements.tolist()}")
        if len(self.symbols) != n:
            raise MiMarginError(f"an encoding needs one symbol per element ({n}), got "
                                f"{len(self.symbols)}")

    @property
    def tokens(self) -> Tensor:
        """The inverse map: the symbol (token or class) standing for each element, [n]."""
        return torch.empty_like(self.elements).scatter_(0, self.elements,
                                                         torch.arange(len(self.elements)))


@dataclass(frozen=True, eq=False)
class Algebra:
    """A task's domain, number of operands, input form and encoding (module docstring).

    ``encoding=None`` means symbol i is group element i and no operand is inverted.
    """

    domain: Domain
    k: int
    inputs: Literal["operands", "vectors"] = "operands"
    encoding: Encoding | None = field(default=None)

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise MiMarginError(f"inputs must be one of {INPUTS}, got inputs={self.inputs!r}")

    @property
    def order(self) -> int:
        """Elements of one operand's group."""
        return self.domain.order

    def operand_elements(self, i: int) -> Tensor:
        """The group element token t contributes as operand i (its inverse if operand i enters
        inverted), int64 [n]."""
        if self.encoding is None:
            return torch.arange(self.order)
        x = self.encoding.elements
        if not self.encoding.inverted[i]:
            return x
        inverse = torch.as_tensor(self.domain.group().inverse.copy(), dtype=torch.long)
        return inverse[x]

    def elements(self, task: Task) -> Tensor:
        """The group element each operand of each input contributes to the product, int64 [N, k]
        (inverted operands as their inverses)."""
        if self.encoding is None:
            return task.inputs.long()
        x = task.inputs.long()
        return torch.stack([self.operand_elements(i)[x[:, i]] for i in range(self.k)], 1)

    def product(self, task: Task) -> Tensor:
        """The group element of each input's label, int64 [N]."""
        if self.encoding is None:
            return task.labels
        return self.encoding.elements[task.labels]

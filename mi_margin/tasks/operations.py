"""Power et al.'s binary operations mod p beyond addition: a − b, a·b and a / b
(docs/mathematics.md §4.5).

Power et al. (2022, "Grokking", Table 1) train small transformers on the table of a binary operation
mod a prime p. Each of these operations is a group composition under an input encoding
(tasks/algebra.py), so every analysis of addition applies to it unchanged:

- ``"subtract"``: a − b = a + (−b) in Z_p; the second operand enters inverted (negated).
- ``"multiply"``: a·b in Z_p* = {1, ..., p−1}, a cyclic group of order p − 1. With a primitive root g,
  a = g^(log a) and a·b = g^(log a + log b): the residues relabelled by their discrete log make it
  addition in Z_(p−1), so a multiplication model's key frequencies are frequencies of log a.
- ``"divide"``: a / b = a·b⁻¹ in Z_p*; the second operand enters inverted (log a − log b).

Multiplication and division leave out 0, which is not in the group (Power et al. keep a = 0 for
division; 0 is absorbing and has no discrete log). The tokens are the task's symbols in increasing
order: residue a for subtraction, residue a is token a − 1 for multiplication and division
(``task.symbols`` lists them); '=' is the next token.

Example:
    >>> task = ModularOperation(p=5, op="multiply")
    >>> task.symbols, len(task), task.d_vocab
    ((1, 2, 3, 4), 16, 4)
    >>> a, b = task.inputs[7].tolist(); task.symbols[a], task.symbols[b], task.symbols[task.labels[7]]
    (2, 4, 3)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mi_margin.checks import check_choice, check_int
from mi_margin.errors import MiMarginError
from mi_margin.tasks.algebra import Algebra, Cyclic, Encoding
from mi_margin.tasks.base import Task, check_grid_size, grid
from mi_margin.tasks.modular import is_prime

#: the operations, and whether they act on Z_p* (the nonzero residues) rather than on Z_p
OPERATIONS = {"subtract": False, "multiply": True, "divide": True}


def primitive_root(p: int) -> int:
    """The smallest generator g of Z_p* (every nonzero residue is a power of g), p prime.

    Example:
        >>> primitive_root(7), primitive_root(113)
        (3, 3)
    """
    if not is_prime(p):
        raise MiMarginError(f"Z_p* is cyclic with a primitive root only for a prime p, got p={p}")
    order = p - 1
    factors = {q for q in range(2, order + 1) if order % q == 0 and is_prime(q)}
    return next(g for g in range(1, p) if all(pow(g, order // q, p) != 1 for q in factors))


def discrete_log(p: int) -> torch.Tensor:
    """``log[a]`` for a = 0..p−1 with g = :func:`primitive_root` (g^log[a] = a; log[0] = −1).

    Example:
        >>> discrete_log(7).tolist()
        [-1, 0, 2, 1, 4, 5, 3]
    """
    g, log = primitive_root(p), torch.full((p,), -1, dtype=torch.long)
    power = 1
    for i in range(p - 1):
        log[power] = i
        power = power * g % p
    return log


class ModularOperation(Task):
    """Every pair of symbols labelled with ``a op b`` mod p (module docstring; Power et al. 2022).

    Inputs are token pairs in lexicographic order (last operand fastest); ``task.symbols[t]`` is the
    residue token t stands for.

    Example:
        >>> task = ModularOperation(p=7, op="subtract")
        >>> a, b = task.inputs[10].tolist(); a, b, int(task.labels[10])
        (1, 3, 5)
    """

    kind: ClassVar[str] = "modular_operation"
    ARGS: ClassVar[tuple[str, ...]] = ("p", "op")

    def __init__(self, p: int = 97, op: str = "multiply", train_fraction: float = 1.0,
                 seed: int = 0):
        p = check_int("p", p, low=3)
        check_choice("op", op, tuple(OPERATIONS))
        if not is_prime(p):
            raise MiMarginError(f"ModularOperation needs a prime p (Z_p* is a group only then), "
                                f"got p={p}")
        check_grid_size(f"ModularOperation(p={p})", p**2, 24)
        self.p, self.op = p, op
        nonzero = OPERATIONS[op]
        self.symbols = tuple(range(1 if nonzero else 0, p))
        n = len(self.symbols)
        elements = discrete_log(p)[1:] if nonzero else torch.arange(p)
        self._algebra = Algebra(Cyclic(n), 2, "operands",
                                Encoding(elements, (False, op != "multiply"), self.symbols))
        inputs = grid([n, n])
        residues = torch.tensor(self.symbols)[inputs]
        self._finish(inputs, self._table(residues) - self.symbols[0], train_fraction, seed)

    def _table(self, r: torch.Tensor) -> torch.Tensor:
        """``a op b`` mod p of residue pairs [N, 2], computed in Z_p itself (no logs)."""
        a, b = r[:, 0], r[:, 1]
        if self.op == "subtract":
            return (a - b) % self.p
        if self.op == "multiply":
            return a * b % self.p
        return a * torch.tensor([pow(int(x), -1, self.p) for x in range(1, self.p)])[b - 1] % self.p

    @property
    def algebra(self) -> Algebra:
        return self._algebra

    @property
    def k(self) -> int:
        return 2

    @property
    def d_vocab(self) -> int:
        return len(self.symbols)

    @property
    def d_vocab_out(self) -> int:
        return len(self.symbols)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "p": self.p, "op": self.op,
                "train_fraction": self.train_fraction, "seed": self.seed}

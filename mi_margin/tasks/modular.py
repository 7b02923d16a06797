"""k-input modular addition: (a1 + ... + ak) mod p (Nanda et al. 2023; Li et al. 2024 for k > 2)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from mi_margin.checks import check_int
from mi_margin.tasks.algebra import Algebra, Cyclic
from mi_margin.tasks.base import Task, check_grid_size, grid


def is_prime(n: int) -> bool:
    """Trial division; fine for the moduli of this field (p < 10^6)."""
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


class NonPrimeModulusWarning(UserWarning):
    """The margin theorems (Morwani et al. Thm 7; Li et al. Thm 4.1) assume p is an odd prime."""


class ModularAddition(Task):
    """Every input of Z_p^k labelled with (a1 + ... + ak) mod p.

    Inputs are in lexicographic order (last operand fastest), so ``labels.reshape([p] * k)`` is the
    addition table. Transformers read ``tokens`` = ``[a1, ..., ak, p]`` (token p is '=').

    Example:
        >>> task = ModularAddition(p=7, k=2, train_fraction=0.5, seed=0)
        >>> task.inputs.shape, int(task.labels[10]), task.tokens[10].tolist()
        (torch.Size([49, 2]), 4, [1, 3, 7])
    """

    kind: ClassVar[str] = "modular_addition"
    ARGS: ClassVar[tuple[str, ...]] = ("p", "k")

    def __init__(self, p: int = 113, k: int = 2, train_fraction: float = 1.0, seed: int = 0):
        p, k = check_int("p", p, low=2), check_int("k", k, low=1)
        check_grid_size(f"ModularAddition(p={p}, k={k})", p**k, 8 * (k + 1))
        if not is_prime(p):
            warnings.warn(
                f"p={p} is not prime; the margin theory (Morwani et al. Thm 7, Li et al. Thm 4.1) "
                "assumes a prime modulus, so theory predictions will not apply",
                NonPrimeModulusWarning,
                stacklevel=2,
            )
        self.p, self.k_operands = p, k
        inputs = grid([p] * k)
        self._finish(inputs, inputs.sum(dim=1) % p, train_fraction, seed)

    @property
    def algebra(self) -> Algebra:
        return Algebra(Cyclic(self.p), self.k)

    @property
    def k(self) -> int:
        return self.k_operands

    @property
    def d_vocab(self) -> int:
        return self.p

    @property
    def d_vocab_out(self) -> int:
        return self.p

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "p": self.p, "k": self.k,
                "train_fraction": self.train_fraction, "seed": self.seed}

"""(n, k)-sparse parity: the product of k support bits of x in {±1}^n (Morwani et al. 2024, Thm 8)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mi_margin.checks import check_int, check_int_tuple, check_memory
from mi_margin.errors import MiMarginError
from mi_margin.tasks.algebra import Algebra, Cube
from mi_margin.tasks.base import MAX_EXAMPLES, MAX_SEED, Task

#: Largest n for which the whole cube {±1}^n is enumerated; beyond it a seeded sample is drawn.
MAX_FULL_CUBE_BITS = 16
#: bytes per sampled bit while the task is built: int64 bits, their float32 copy and the ±1 inputs
BYTES_PER_BIT = 16


class SparseParity(Task):
    """Inputs x in {±1}^n, label y = prod_{j in support} x_j, encoded as 0 for y=+1 and 1 for y=-1.

    The whole cube is used when n <= 16 (in the binary order of row indices, bit 0 = x_0 first),
    otherwise ``n_samples`` distinct-ish seeded random points (default 2**14). ``support`` defaults to
    the first k coordinates. MLPs read the float vector directly; transformers read ``tokens`` with
    bit tokens 0 (x=+1) / 1 (x=-1) and '=' = 2.

    Example:
        >>> task = SparseParity(n=4, k=2)
        >>> task.inputs.shape, task.support
        (torch.Size([16, 4]), (0, 1))
    """

    kind: ClassVar[str] = "sparse_parity"
    ARGS: ClassVar[tuple[str, ...]] = ("n", "k", "support", "n_samples")

    def __init__(self, n: int, k: int, support: tuple[int, ...] | list[int] | None = None,
                 train_fraction: float = 1.0, seed: int = 0, n_samples: int | None = None):
        n = check_int("n", n, low=1)
        k = check_int("k", k, low=1, high=n)
        support = tuple(range(k)) if support is None else check_int_tuple("support", support)
        if len(support) != k or len(set(support)) != k:
            raise MiMarginError(f"support must hold k={k} distinct bit indices, got {support}")
        bad = [j for j in support if not 0 <= j < n]
        if bad:
            raise MiMarginError(f"support indices must be in [0, {n - 1}], got {bad}")
        seed = check_int("seed", seed, low=0, high=MAX_SEED)
        self.n, self.k_support, self.support = n, k, support
        self.n_samples = n_samples
        self.whole_grid = n <= MAX_FULL_CUBE_BITS and n_samples is None
        if self.whole_grid:
            bits = (torch.arange(2**n)[:, None] >> torch.arange(n)) & 1
        else:
            m = 2**14 if n_samples is None else check_int("n_samples", n_samples, 1, MAX_EXAMPLES)
            check_memory(f"SparseParity(n={n}) with {m:,} samples", BYTES_PER_BIT * m * n)
            gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
            bits = torch.randint(0, 2, (m, n), generator=gen)
        x = 1.0 - 2.0 * bits.float()
        labels = (bits[:, list(support)].sum(dim=1) % 2).long()
        self._finish(x, labels, train_fraction, seed)

    @property
    def algebra(self) -> Algebra:
        """The cube {±1}^n read as one vector (the label is the character χ_support)."""
        return Algebra(Cube(self.n), 1, "vectors")

    @property
    def k(self) -> int:
        """Number of support bits (the degree of the parity)."""
        return self.k_support

    @property
    def d_vocab(self) -> int:
        return 2

    @property
    def d_vocab_out(self) -> int:
        return 2

    @property
    def n_ctx(self) -> int:
        return self.n + 1

    @property
    def tokens(self) -> torch.Tensor:
        """Bit tokens (0 for +1, 1 for -1) then '=' (token 2), int64 [N, n+1]."""
        bits = (self.inputs < 0).long()
        return torch.cat([bits, torch.full((len(bits), 1), 2, dtype=torch.long)], dim=1)

    def one_hot(self) -> torch.Tensor:
        """The ±1 vectors themselves, float [N, 1, n] (one 'operand' read by one linear map)."""
        return self.inputs[:, None, :]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "k": self.k, "support": list(self.support),
                "train_fraction": self.train_fraction, "seed": self.seed,
                "n_samples": self.n_samples}

"""What every task shares: the full input grid, labels, a seeded train/test split and model inputs."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mi_margin.checks import check_float, check_int
from mi_margin.errors import MiMarginError
from mi_margin.tasks.algebra import Algebra

#: Largest number of examples a task will materialise (tokens are int64 [N, k+1]; 2**24 rows of
#: k+1 = 4 tokens is 0.5 GiB, and analyses hold several tensors of that size).
MAX_EXAMPLES = 2**24
#: the largest seed ``torch.Generator.manual_seed`` takes
MAX_SEED = 2**63 - 1


def check_fraction(name: str, value: float) -> None:
    """Raise unless ``0 < value <= 1``."""
    check_float(name, value, low=0, high=1, low_open=True)


def check_grid_size(what: str, n_examples: int, row_bytes: int) -> None:
    """Raise a clear error when a grid of ``n_examples`` rows would not fit."""
    if n_examples > MAX_EXAMPLES:
        gib = n_examples * row_bytes / 2**30
        raise MiMarginError(
            f"{what} has {n_examples:,} inputs (about {gib:,.1f} GiB as tokens); the limit is "
            f"{MAX_EXAMPLES:,} inputs. Use a smaller modulus/group or fewer operands."
        )


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of ``range(n)``: the first ``round(train_fraction * n)`` of a permutation
    (at least one example) are the training set, the rest the test set. Both are sorted."""
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    n_train = max(1, min(n, round(train_fraction * n)))
    return perm[:n_train].sort().values, perm[n_train:].sort().values


class Task:
    """Base class of the tasks: every input of the task's domain with its label.

    Attributes (filled by subclasses in ``__post_init__``):
        inputs: operand indices, int64 [N, k] (float ±1 [N, n] for sparse parity).
        labels: int64 [N], the class of each input.
        train_idx, test_idx: int64 indices into the N inputs (seeded split).
    """

    kind: ClassVar[str] = "task"
    #: the constructor's arguments as :meth:`to_dict` spells them, besides train_fraction and seed
    ARGS: ClassVar[tuple[str, ...]] = ()
    train_fraction: float
    seed: int
    inputs: Tensor
    labels: Int[Tensor, " N"]
    train_idx: Int[Tensor, " n_train"]
    test_idx: Int[Tensor, " n_test"]
    #: whether ``inputs`` enumerate the whole domain^k, each input once in the grid's order (what
    #: the harmonic analyses and the theorems read); False for a sampled parity cube, whose rows
    #: are drawn with replacement however many there are
    whole_grid: bool = True

    # -- filled by subclasses -------------------------------------------------------------------
    @property
    def algebra(self) -> Algebra:
        """The task's domain, operands, input form and encoding (:mod:`mi_margin.tasks.algebra`)."""
        raise NotImplementedError

    @property
    def k(self) -> int:
        """Number of operands (input positions before '=')."""
        raise NotImplementedError

    @property
    def d_vocab(self) -> int:
        """Size of one operand's vocabulary (without the '=' token)."""
        raise NotImplementedError

    @property
    def d_vocab_out(self) -> int:
        """Number of classes."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-able constructor arguments; ``tasks.from_dict`` rebuilds the task."""
        raise NotImplementedError

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Task:
        """The task from :meth:`to_dict`'s arguments (without ``kind``)."""
        return cls(**args)

    # -- shared ---------------------------------------------------------------------------------
    def _finish(self, inputs: Tensor, labels: Tensor, train_fraction: float, seed: int) -> None:
        """Store the grid and labels and draw the seeded split (called last by subclasses)."""
        check_fraction("train_fraction", train_fraction)
        check_int("seed", seed, low=0, high=MAX_SEED)
        self.train_fraction, self.seed = float(train_fraction), int(seed)
        self.inputs, self.labels = inputs, labels
        self.train_idx, self.test_idx = split_indices(len(labels), train_fraction, seed)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def eq_token(self) -> int:
        """The '=' token, appended after the operands for transformers (= ``d_vocab``)."""
        return self.d_vocab

    @property
    def n_ctx(self) -> int:
        """Transformer context length: k operands and '='."""
        return self.k + 1

    @property
    def tokens(self) -> Int[Tensor, "N k_plus_1"]:
        """Transformer input ``[a1, ..., ak, '=']`` for every example (int64 [N, k+1])."""
        ops = self.inputs.long()
        eq = torch.full((len(ops), 1), self.eq_token, dtype=torch.long)
        return torch.cat([ops, eq], dim=1)

    def one_hot(self) -> Float[Tensor, "N k d_vocab"]:
        """One-hot operands, float [N, k, d_vocab] (the theory's x^(1), ..., x^(k))."""
        return torch.nn.functional.one_hot(self.inputs.long(), self.d_vocab).float()

    def mlp_fields(self) -> dict[str, Any]:
        """The :class:`~mi_margin.MLPConfig` fields an MLP needs to read this task: one-hot operands
        (``d_vocab`` per operand, ``k`` operands) or, for vector inputs, one vector of
        ``inputs.shape[1]`` entries."""
        if self.algebra.inputs == "vectors":
            return {"d_vocab": int(self.inputs.shape[1]), "d_vocab_out": self.d_vocab_out, "k": 1,
                    "input_kind": "vector"}
        return {"d_vocab": self.d_vocab, "d_vocab_out": self.d_vocab_out, "k": self.k,
                "input_kind": "one_hot"}

    def model_inputs(self, model_kind: str) -> Tensor:
        """What a model of kind ``"transformer"`` or ``"mlp"`` takes as input for all N examples."""
        return self.tokens if model_kind == "transformer" else self.inputs

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "kind")
        return f"{type(self).__name__}({args})"


#: the named example subsets of a task
SUBSETS = ("all", "train", "test")


def check_task(value: Any, what: str) -> Task:
    """``value`` if it is a task; else a :class:`MiMarginError` that starts with ``what`` (who
    needs it) and shows how to make one."""
    if not isinstance(value, Task):
        raise MiMarginError(f"{what} (e.g. mm.ModularAddition(p=113)), got {value!r}")
    return value


def subset_indices(task: Task, subset: str) -> Tensor:
    """Indices of ``subset`` ("all", "train" or "test") into the task's examples (non-empty).

    Example:
        >>> from mi_margin.tasks.modular import ModularAddition
        >>> len(subset_indices(ModularAddition(p=5, train_fraction=0.6), "train"))
        15
    """
    if subset not in SUBSETS:
        raise MiMarginError(f"subset must be one of {list(SUBSETS)}, got subset={subset!r}")
    idx = {"all": torch.arange(len(task.labels)), "train": task.train_idx,
           "test": task.test_idx}[subset]
    if len(idx) == 0:
        raise MiMarginError(f"subset={subset!r} of {task!r} is empty; use another subset")
    return idx


def grid(sizes: list[int]) -> Int[Tensor, "N k"]:
    """All tuples of ``prod(sizes)`` in lexicographic order (last operand fastest), int64 [N, k].

    Row ``i`` holds the digits of ``i`` in the mixed radix ``sizes``, so reshaping a per-example
    quantity to ``sizes`` gives it as a function on the grid (what the FFT-based analyses use).
    """
    n = math.prod(sizes)
    idx = torch.arange(n)
    cols = []
    for size in reversed(sizes):
        cols.append(idx % size)
        idx = idx // size
    return torch.stack(cols[::-1], dim=1)

"""When a seed of a study has grokked, and when it may stop.

Grokking (Power et al. 2022; Nanda et al. 2023, docs/mathematics.md §4.3, §4.4) is a *delay*: the
training set is memorized first and test accuracy rises much later. A seed's history gives:

- ``memorized``: the first evaluation with train accuracy ≥ ``level``;
- ``first_crossing``: the first evaluation at or after memorization with test accuracy ≥ ``level``;
- ``stable``: the first evaluation from which test accuracy stays ≥ ``level`` for ``patience``
  consecutive evaluations (a spike that falls back is not grokking);
- ``delay``: ``stable − memorized`` in steps (0 when test accuracy rose with train accuracy).

:class:`StopRule` ends a seed ``cleanup`` × ``stable`` steps after it grokked stably (Nanda et al.'s
cleanup phase lasts about half the circuit-formation phase; Chughtai et al.'s S5 MLP cleans up from
87k to 120k epochs), checked only at multiples of ``chunk`` steps so that the stop step does not
depend on where a run was interrupted. A seed that never groks runs to the recipe's step budget and
is counted as not grokked, never dropped.

Example:
    >>> import pandas as pd
    >>> h = pd.DataFrame({"step": [0, 100, 200, 300, 400, 500, 600],
    ...                   "train_acc": [0.1, 1, 1, 1, 1, 1, 1],
    ...                   "test_acc": [0.0, 0.1, 0.995, 0.5, 0.995, 1.0, 1.0]})
    >>> grokking_steps(h, patience=3)
    {'memorized': 100, 'first_crossing': 200, 'stable': 400, 'delay': 300}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from mi_margin.checks import check_float, check_int, keep

#: accuracy that counts as memorized (train) or grokked (test), as in the zoo's phase bounds
LEVEL = 0.99


def grokking_steps(history: pd.DataFrame, level: float = LEVEL, patience: int = 5) -> dict[str, Any]:
    """Memorization, first-crossing and stable grokking steps of ``history`` (None when never)."""
    steps = history["step"].to_numpy()
    train_ok = (history["train_acc"] >= level).to_numpy()
    test_ok = (history["test_acc"] >= level).to_numpy()
    out: dict[str, Any] = {"memorized": None, "first_crossing": None, "stable": None, "delay": None}
    if not train_ok.any():
        return out
    start = int(train_ok.argmax())
    out["memorized"] = int(steps[start])
    run = 0
    for i in range(start, len(steps)):
        if test_ok[i]:
            if out["first_crossing"] is None:
                out["first_crossing"] = int(steps[i])
            run += 1
            if run == patience:
                out["stable"] = int(steps[i - patience + 1])
                out["delay"] = out["stable"] - out["memorized"]
                break
        else:
            run = 0
    return out


@dataclass(frozen=True)
class StopRule:
    """End a seed once it has grokked stably and cleaned up (see the module docstring).

    Attributes:
        level: test (and train) accuracy that counts as grokked (memorized).
        patience: consecutive evaluations at or above ``level`` for a stable crossing.
        cleanup: train on for ``cleanup`` × the stable grokking step after it.
        chunk: the stop is checked at multiples of this many steps only.
    """

    level: float = LEVEL
    patience: int = 5
    cleanup: float = 0.25
    chunk: int = 2000

    def __post_init__(self) -> None:
        keep(self, "level", check_float("level", self.level, low=0, high=1, low_open=True))
        keep(self, "patience", check_int("patience", self.patience, low=1))
        keep(self, "cleanup", check_float("cleanup", self.cleanup, low=0))
        keep(self, "chunk", check_int("chunk", self.chunk, low=1))

    def done(self, history: pd.DataFrame, step: int) -> bool:
        """Whether a seed at ``step`` with ``history`` may stop."""
        stable = grokking_steps(history, self.level, self.patience)["stable"]
        return stable is not None and step >= stable * (1 + self.cleanup)

    def next_stop(self, step: int, budget: int) -> int:
        """The next step at which the rule is checked (a multiple of ``chunk``, at most ``budget``)."""
        return min((step // self.chunk + 1) * self.chunk, budget)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "patience": self.patience, "cleanup": self.cleanup,
                "chunk": self.chunk}

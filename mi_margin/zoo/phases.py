"""Which checkpoints an entry ships: linear within each phase of training.

A grokking run (Nanda et al. 2023, Fig. 7; docs/mathematics.md §4.3) goes through memorization
(train accuracy rises), circuit formation (train and test flat, the Fourier/irrep circuit grows)
and cleanup (test accuracy jumps, the weight norm falls). The boundaries are read from the
history (:func:`phase_bounds`): memorization ends when train accuracy first reaches ``level``;
cleanup starts when test accuracy then first reaches ``level / 4``; the model has grokked when
test accuracy reaches ``level``. (Nanda et al. read their boundaries by eye from the progress
measures; these accuracy thresholds are a reproducible stand-in for choosing checkpoints.)

Grokking is generalization *delayed* after memorization (Power et al. 2022; Nanda et al. 2023).
:func:`generalization` measures it: the memorization step M (train accuracy first ≥ ``level``),
the generalization step G (the first step from which test accuracy stays ≥ ``level``), the delay
G − M, and the test accuracy at M. A run **grokked** when its test accuracy at M was still below
``level / 4`` (it had not begun to generalize when it had memorized) and it generalized later;
a run whose test accuracy rose with its train accuracy generalized without a delay.
Checkpoints are then spread linearly over each phase (dense where the phase is short), so the
progress measures show all three phases from the shipped checkpoints alone.

Example:
    >>> import pandas as pd
    >>> h = pd.DataFrame({"step": [0, 10, 20, 30, 40, 50, 60], "train_acc": [0, .5, 1, 1, 1, 1, 1],
    ...                   "test_acc": [0, 0, 0, 0, .5, 1, 1]})
    >>> phase_bounds(h)
    {'memorized': 20, 'cleanup_start': 40, 'grokked': 50, 'end': 60}
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd


def first_step(history: pd.DataFrame, column: str, level: float) -> int | None:
    """First recorded step where ``history[column] >= level`` (None if never)."""
    hit = history[history[column] >= level]["step"]
    return int(hit.iloc[0]) if len(hit) else None


#: accuracy that counts as memorized (train) or grokked (test)
LEVEL = 0.99


def phase_bounds(history: pd.DataFrame, level: float = LEVEL) -> dict[str, Any]:
    """Steps that separate the phases: memorized (train acc ≥ level), cleanup start (test acc
    ≥ level / 4 after memorization), grokked (test acc ≥ level) and the last step."""
    end = int(history["step"].iloc[-1])
    memorized = first_step(history, "train_acc", level)
    after = history if memorized is None else history[history["step"] >= memorized]
    return {"memorized": memorized, "cleanup_start": first_step(after, "test_acc", level / 4),
            "grokked": first_step(after, "test_acc", level), "end": end}


def generalization(history: pd.DataFrame, level: float = LEVEL) -> dict[str, Any]:
    """Memorization step, stable generalization step, their difference (the delay), the test
    accuracy at memorization and whether that is grokking (see the module docstring).

    Example:
        >>> h = pd.DataFrame({"step": [0, 10, 20, 30, 40], "train_acc": [0, 1, 1, 1, 1],
        ...                   "test_acc": [0, 0.6, 1, 0.9, 1]})
        >>> g = generalization(h)
        >>> g["memorized"], g["generalized"], g["delay"], g["grokked"]
        (10, 40, 30, False)
    """
    memorized = first_step(history, "train_acc", level)
    below = history[history["test_acc"] < level]["step"]
    after = history[history["step"] > int(below.iloc[-1])] if len(below) else history
    generalized = int(after["step"].iloc[0]) if len(after) else None
    at_mem = (None if memorized is None else
              float(history[history["step"] == memorized]["test_acc"].iloc[0]))
    delay = None if memorized is None or generalized is None else generalized - memorized
    return {"memorized": memorized, "generalized": generalized, "delay": delay,
            "test_acc_at_memorization": at_mem,
            "grokked": generalized is not None and at_mem is not None and at_mem < level / 4}


def _nearest(available: list[int], targets: np.ndarray) -> list[int]:
    arr = np.asarray(available)
    return sorted({int(arr[np.abs(arr - t).argmin()]) for t in targets})


def pick_checkpoints(available: list[int], history: pd.DataFrame, n: int, kind: str) -> list[int]:
    """About ``n`` of the ``available`` steps, always the first and the last.

    "max_margin" runs: log-spaced. "grokking" runs: the phase boundaries of :func:`phase_bounds`
    first, then the rest spread linearly inside each phase (so a phase shorter than the others
    is sampled more densely); at most ``max(n, number of boundaries)`` steps. ``n <= 2``: the first
    and last only (an entry whose point is the final algorithm, not the training dynamics).
    """
    available = sorted(available)
    first, last = available[0], available[-1]
    if n <= 2:
        return sorted({first, last})
    if kind == "max_margin":
        return sorted({first, last, *_nearest(available, np.geomspace(max(first, 1), last, n))})
    bounds = phase_bounds(history)
    edges = sorted({first, last, *(s for s in (bounds["memorized"], bounds["cleanup_start"],
                                               bounds["grokked"]) if s is not None and first < s < last)})
    inner = max(0, (n - len(edges)) // (len(edges) - 1)) if len(edges) > 1 else 0
    targets = [*edges, *(t for a, b in itertools.pairwise(edges)
                         for t in np.linspace(a, b, inner + 2)[1:-1])]
    return _nearest(available, np.asarray(targets, dtype=float))

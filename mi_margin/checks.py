"""Validation of configuration values: one set of checks that every config and task calls.

Each check raises :class:`~mi_margin.errors.MiMarginError` naming the field, the value it got and
what is valid. ``bool`` is refused where an integer or a number is expected (``True`` is an ``int``
to Python, but ``steps=True`` is always a mistake), and numbers must be finite unless a check says
otherwise.

Example:
    >>> check_int("steps", 10, low=1)
    10
    >>> check_int("steps", True, low=1)
    Traceback (most recent call last):
    ...
    mi_margin.errors.MiMarginError: steps must be an integer >= 1, got steps=True
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mi_margin.errors import MiMarginError

#: environment variable overriding the memory budget of :func:`check_memory`, in GiB
MEMORY_ENV = "MI_MARGIN_MEMORY_GIB"


def _fail(name: str, rule: str, value: Any) -> MiMarginError:
    return MiMarginError(f"{name} must be {rule}, got {name}={value!r}")


def _bounds(low: float | None, high: float | None, low_open: bool = False) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"<= {high}")
    return " and ".join(parts)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[low, high]``."""
    rule = " ".join(["an integer", _bounds(low, high)]).strip()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(name, rule, value)
    n = int(value)
    if (low is not None and n < low) or (high is not None and n > high):
        raise _fail(name, rule, value)
    return n


def keep(obj: Any, name: str, value: Any) -> Any:
    """Set field ``name`` of a (frozen) dataclass to its checked ``value`` and return it, so that
    what is stored is the plain Python number the check returns (``numpy.int64(3)`` → ``3``):
    it then serializes to JSON and seeds torch like any int.

    Example:
        >>> import dataclasses, numpy as np
        >>> @dataclasses.dataclass(frozen=True)
        ... class C:
        ...     n: int
        >>> c = C(np.int64(3)); keep(c, "n", check_int("n", c.n)); type(c.n).__name__
        3
        'int'
    """
    object.__setattr__(obj, name, value)
    return value


def check_output_file(path: Any, what: str) -> Path:
    """``path`` as a Path a file can be written to: not a folder, in a folder that exists. Checked
    before the work that fills it, so that nothing is computed for a file that cannot be written.

    Example:
        >>> check_output_file(".", "the report")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: cannot write the report to .: it is a folder ...
    """
    out = Path(path)
    if out.is_dir():
        raise MiMarginError(f"cannot write {what} to {out}: it is a folder (name a file in it, "
                            f"e.g. {out / 'report.html'})")
    if not out.parent.is_dir():
        raise MiMarginError(f"cannot write {what} to {out}: the folder {out.parent} does not "
                            "exist (create it first)")
    return out


def check_optional_int(name: str, value: Any, low: int | None = None) -> int | None:
    """None, or an integer >= ``low``."""
    return None if value is None else check_int(name, value, low)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    rule = " ".join(["a finite number", _bounds(low, high, low_open)]).strip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, rule, value)
    x = float(value)
    if not math.isfinite(x) or (high is not None and x > high):
        raise _fail(name, rule, value)
    if low is not None and (x < low or (low_open and x == low)):
        raise _fail(name, rule, value)
    return x


def check_optional_float(name: str, value: Any, low: float | None = None,
                         high: float | None = None, low_open: bool = False) -> float | None:
    """None, or a finite number in range (see :func:`check_float`)."""
    return None if value is None else check_float(name, value, low, high, low_open)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value)
    return value


def check_choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """``value`` if it is one of ``options``."""
    if not isinstance(value, (str, type(None))) or value not in options:
        raise _fail(name, f"one of {list(options)}", value)
    return value


def check_fields(cls: type, given: Iterable[str]) -> None:
    """Refuse names in ``given`` that are not fields of the dataclass ``cls``, naming each with
    the nearest valid field (a typo is the usual cause) and listing the valid ones.

    Example:
        >>> from mi_margin.training.config import TrainConfig
        >>> check_fields(TrainConfig, ["step"])
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: TrainConfig has no field 'step' (did you mean 'steps'?); ...
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        said = "; ".join(
            f"no field {name!r}" + "".join(f" (did you mean {m!r}?)"
                                           for m in difflib.get_close_matches(name, names, 1))
            for name in unknown)
        raise MiMarginError(f"{cls.__name__} has {said}; valid: {sorted(names)}")


def named_fields(cls: type) -> type:
    """Class decorator: the dataclass ``cls`` refuses unknown keyword arguments with
    :func:`check_fields`'s message (a typo named, the nearest field suggested) rather than
    Python's TypeError; ``dataclasses.replace`` and ``from_dict`` go through it too."""
    init: Callable[..., None] = cls.__init__  # type: ignore[misc]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        check_fields(cls, kwargs)
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def as_python(value: Any) -> Any:
    """A numpy or torch value as the Python numbers (or nested lists) it holds, through
    ``.tolist()``; anything else unchanged. An integer then passes the checks the same from any
    library, while a float or bool tensor stays a float or bool, for them to refuse.

    Example:
        >>> import numpy as np, torch
        >>> as_python(np.int64(3)), as_python(torch.tensor([1, 2])), as_python(np.array([[0, 1]]))
        (3, [1, 2], [[0, 1]])
        >>> as_python(torch.tensor(1.5)), as_python("standard")
        (1.5, 'standard')
    """
    return value.tolist() if hasattr(value, "tolist") and hasattr(value, "ndim") else value


def check_int_tuple(name: str, value: Any, low: int | None = None) -> tuple[int, ...]:
    """A list or tuple of integers >= ``low``, as a tuple."""
    rule = " ".join(["a list of integers", _bounds(low, None)]).strip()
    value = as_python(value)                                   # a numpy or torch array of ints
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _fail(name, rule, value)
    try:
        return tuple(check_int(name, v, low) for v in value)
    except MiMarginError:
        raise _fail(name, rule, value) from None


def memory_budget() -> float:
    """Bytes a single allocation may take: ``MI_MARGIN_MEMORY_GIB`` GiB if set, else the machine's
    physical memory (infinite where the OS does not say, e.g. Windows)."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        try:
            gib: Any = float(text)
        except ValueError:
            gib = text
        return check_float(MEMORY_ENV, gib, low=0, low_open=True) * 2**30
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return math.inf


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in the largest binary unit that keeps it >= 1 (``"1.5 GiB"``)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= size:
            return f"{n_bytes / size:,.1f} {unit}"
    return f"{n_bytes:.0f} B"


def check_memory(what: str, n_bytes: float) -> None:
    """Refuse, before allocating, ``n_bytes`` that exceed :func:`memory_budget` (naming the size).

    Example:
        >>> check_memory("a [2**40, 2**20] float32 table", 4 * 2.0**60)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: a [2**40, 2**20] float32 table needs 4,194,304.0 TiB ...
    """
    budget = memory_budget()
    if n_bytes > budget:
        raise MiMarginError(
            f"{what} needs {format_bytes(n_bytes)} of memory, more than the budget of "
            f"{format_bytes(budget)} (this machine's memory, or {MEMORY_ENV}); refused before "
            "allocating")

"""`get(name)`: groups by short name ("S5", "A5", "D7", "C113", "Z113", "Q8", "C2xC3"), cached."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache

from mi_margin.errors import MiMarginError
from mi_margin.groups.constructors import (
    alternating,
    cyclic,
    dihedral,
    direct_product,
    quaternion,
    symmetric,
)
from mi_margin.groups.group import FiniteGroup, check_order

_FAMILIES: dict[str, tuple[Callable[[int], FiniteGroup], Callable[[int], int]]] = {
    "C": (cyclic, lambda n: n),
    "Z": (cyclic, lambda n: n),
    "D": (dihedral, lambda n: 2 * n),
    "S": (symmetric, math.factorial),
    "A": (alternating, lambda n: max(1, math.factorial(n) // 2)),
}
_HELP = ("names are Cn or Zn (cyclic, order n), Dn (dihedral, order 2n), Sn (symmetric), "
         "An (alternating), Q8, and products joined by 'x' such as 'C2xC3' or 'D5xC50'")


def _order_of(part: str) -> int:
    if part == "Q8":
        return 8
    match = re.fullmatch(r"([CZDSA])(\d+)", part)
    if match is None:
        raise MiMarginError(f"unknown group name {part!r}: {_HELP}")
    family, n = match.group(1), int(match.group(2))
    if n < 1:
        raise MiMarginError(f"group name {part!r}: n must be >= 1")
    if family in "SA" and n > 12:  # do not even compute huge factorials
        raise MiMarginError(f"{part} has order {n}!{'/2' if family == 'A' else ''}, far above "
                            f"the limit of the group constructors")
    order = _FAMILIES[family][1](n)
    check_order(order, part)
    return order


def _build(part: str) -> FiniteGroup:
    if part == "Q8":
        return quaternion()
    family, n = part[0], int(part[1:])
    G = _FAMILIES[family][0](n)
    if family == "Z":
        G.name = part
    return G


@lru_cache(maxsize=64)
def _get(key: str) -> FiniteGroup:
    parts = key.split("x")
    order = math.prod(_order_of(p) for p in parts)
    check_order(order, key)
    if len(parts) == 1:
        return _build(key)
    return direct_product(*(_get(p) for p in parts), name=key)


def get(name: str) -> FiniteGroup:
    """The group called ``name``; the same object is returned on every call (irreps stay cached).

    Accepts ``Cn``/``Zn``, ``Dn`` (order 2n), ``Sn``, ``An``, ``Q8`` and products such as
    ``"C2xC3"`` (case-insensitive, ``×`` also accepted). Unknown names and groups above
    :data:`~mi_margin.groups.group.MAX_ORDER` elements raise :class:`MiMarginError`.

    Example:
        >>> get("S5").order, get("D7").order, get("Z113").name, get("C2xC3").order
        (120, 14, 'Z113', 6)
    """
    if not isinstance(name, str):
        raise MiMarginError(f"group name must be a string, got {name!r}")
    key = name.strip().upper().replace("×", "X").replace(" ", "").replace("X", "x")
    if not key:
        raise MiMarginError(f"empty group name: {_HELP}")
    bad = [p for p in key.split("x") if p != "Q8" and re.fullmatch(r"[CZDSA]\d+", p) is None]
    if bad:  # every part is named before any size is checked ("S9x" is not S9)
        part = f"the part {bad[0]!r}" if bad[0] else "an empty part"
        raise MiMarginError(f"unknown group name {name!r} ({part} names no group): {_HELP}")
    return _get(key)

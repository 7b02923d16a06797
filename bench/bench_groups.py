"""Benchmark: building groups and their real irreps, closed forms vs the numerical decomposition.

For each group: time to build it (Cayley table, inverses, element orders, classes), to build
its irreps by closed forms (rotations, Young's orthogonal form, tensor products) and by the general
decomposition of the regular representation (docs/mathematics.md §6.3), and the ratio closed/numerical.
Each timing is the best of ``--repeats`` runs on a freshly constructed group (no caches). Prints a
table and writes bench/results/groups.json.

Usage:
    .venv/bin/python bench/bench_groups.py [--repeats 3] [--groups S4 S5 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from mi_margin.groups import (
    FiniteGroup,
    alternating,
    cyclic,
    dihedral,
    direct_product,
    numerical_irreps,
    symmetric,
)

BUILDERS: dict[str, Callable[[], FiniteGroup]] = {
    "S4": lambda: symmetric(4),
    "S5": lambda: symmetric(5),
    "A5": lambda: alternating(5),
    "S6": lambda: symmetric(6),
    "D61": lambda: dihedral(61),
    "C113": lambda: cyclic(113),
    "D5xC50": lambda: direct_product(dihedral(5), cyclic(50)),
}


def _best(work: Callable[[FiniteGroup], object], make: Callable[[], FiniteGroup],
          repeats: int, include_make: bool = False) -> float:
    """Best time of ``work(G)`` over fresh groups ``G = make()`` (``make`` timed only if asked)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        G = make()
        if not include_make:
            start = time.perf_counter()
        work(G)
        times.append(time.perf_counter() - start)
    return min(times)


def _structure(G: FiniteGroup) -> None:
    _ = G.conjugacy_classes, G.element_orders, G.inverse


def bench(name: str, repeats: int) -> dict[str, float | int | str]:
    make = BUILDERS[name]
    build_s = _best(_structure, make, repeats, include_make=True)
    closed_s = _best(lambda G: G.irreps("closed"), make, repeats)
    numerical_s = _best(numerical_irreps, make, repeats)
    G = make()
    return {"group": name, "order": G.order, "classes": G.num_classes,
            "real_irreps": len(G.irreps()), "build_s": build_s, "closed_s": closed_s,
            "numerical_s": numerical_s, "closed_over_numerical": closed_s / numerical_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--groups", nargs="*", default=list(BUILDERS), choices=list(BUILDERS))
    args = parser.parse_args()
    rows = [bench(name, args.repeats) for name in args.groups]
    header = (f"{'group':8} {'order':>6} {'classes':>7} {'irreps':>6} {'build s':>9} "
              f"{'closed s':>9} {'numeric s':>9} {'closed/num':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['group']:8} {r['order']:>6} {r['classes']:>7} {r['real_irreps']:>6} "
              f"{r['build_s']:>9.4f} {r['closed_s']:>9.4f} {r['numerical_s']:>9.4f} "
              f"{r['closed_over_numerical']:>10.3f}")
    out = Path(__file__).parent / "results" / "groups.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "repeats": args.repeats}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

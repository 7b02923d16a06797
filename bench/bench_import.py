"""Benchmark: the cost of ``import mi_margin`` against the cost of ``import transformer_lens``.

mi_margin needs TransformerLens (its models are TL hooked modules), so importing TL is the floor;
the aim is that ``import mi_margin`` costs little more. Each import runs in a fresh interpreter,
alternating the two, ``REPEATS`` times; the median of each is reported with their ratio. Also
checked: plotly, circuitsvis, Ray and scipy are not loaded by ``import mi_margin``.

Run: ``.venv/bin/python bench/bench_import.py`` → prints the ratio, writes bench/results/import.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPEATS = 7
ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("plotly", "circuitsvis", "ray", "scipy")
TIMER = ("import sys, time; t = time.perf_counter(); import {module}; "
         "print(time.perf_counter() - t); print(','.join(m for m in {heavy!r} if m in sys.modules))")


def import_seconds(module: str) -> tuple[float, str]:
    """Wall time of ``import module`` in a fresh interpreter, and which heavy modules it loaded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", TIMER.format(module=module, heavy=HEAVY)],
                         capture_output=True, text=True, check=True, env=env).stdout.split("\n")
    return float(out[0]), out[1]


def main() -> None:
    times: dict[str, list[float]] = {"transformer_lens": [], "mi_margin": []}
    loaded = ""
    import_seconds("transformer_lens")                      # warm the file cache once
    for _ in range(REPEATS):
        for module in times:
            seconds, heavy = import_seconds(module)
            times[module].append(seconds)
            loaded = heavy if module == "mi_margin" else loaded
    median = {m: statistics.median(t) for m, t in times.items()}
    ratio = median["mi_margin"] / median["transformer_lens"]
    for module, t in times.items():
        print(f"import {module:17s} median {median[module]:.2f} s  (runs: "
              + ", ".join(f"{x:.2f}" for x in t) + ")")
    print(f"ratio mi_margin / transformer_lens = {ratio:.2f}")
    print(f"heavy modules loaded by import mi_margin: {loaded or 'none'}")
    out = ROOT / "bench" / "results" / "import.json"
    out.write_text(json.dumps({"median_seconds": median, "runs": times, "ratio": ratio,
                               "heavy_loaded": loaded, "python": sys.version.split()[0],
                               "machine": platform.machine()}, indent=2))


if __name__ == "__main__":
    main()

"""Execute the tutorial notebooks and write rendered pages: docs/tutorials/<name>.md with the figures
as small PNG files beside them, so that a reader sees every output without running anything.

Usage (from the repository root; figures need ``pip install kaleido`` and a Chrome/Chromium):

    python tutorials/_render.py            # full settings (zoo models; fallbacks train longer)
    python tutorials/_render.py --fast     # MI_MARGIN_FAST=1, as the test suite runs them
    python tutorials/_render.py 01 03      # only the notebooks whose names start with these

The committed notebooks stay without outputs (tests/tutorials checks it); the rendered pages are
what the documentation shows. Each page records the mode it was run in and the run time. Pages carry
no test plumbing (the last cell's ``RESULT {json}`` line, which the tests read, is left out) and no
paths of the machine that built them (Python warnings, which name the file that raised them, are
left out of the outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import nbformat
import plotly.io as pio
from _exercises import with_solutions
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "tutorials"
PLOTLY = "application/vnd.plotly.v1+json"
#: a Python warning as printed to stderr: "<file>:<line>: <Category>: <message>" and the source line
WARNING = re.compile(r"^\S+:\d+: \w*Warning: .*\n(?:  .*\n)?", re.MULTILINE)
MAX_LINES = 60          # longer text outputs are cut (the notebook shows them in full)
WIDTH, HEIGHT = 760, 440
#: the cell printing the ``RESULT {json}`` line the tests read (tutorials/_build.py)
PLUMBING = re.compile(r'^print\("RESULT ', re.MULTILINE)


def execute(path: Path, fast: bool) -> tuple[nbformat.NotebookNode, float]:
    """Run the notebook in a kernel (in the tutorials folder) and return it with its run time.

    Exercise cells run with their solutions filled in (tutorials/_exercises.py); the returned
    notebook shows the stubs again, with the outputs of the run.
    """
    nb = nbformat.read(path, as_version=4)
    filled = with_solutions(nb)
    os.environ["MI_MARGIN_FAST"] = "1" if fast else "0"
    start = time.perf_counter()
    NotebookClient(filled, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    for cell, original in zip(filled.cells, nb.cells):
        cell.source = original.source
    return filled, time.perf_counter() - start


def _merged_streams(outputs: list[Any]) -> list[Any]:
    """Consecutive outputs to the same stream as one (progress bars write many small pieces)."""
    merged: list[Any] = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream" and merged[-1]["name"] == out["name"]):
            merged[-1] = nbformat.from_dict({**merged[-1], "text": merged[-1]["text"] + out["text"]})
        else:
            merged.append(out)
    return merged


def _text(text: str) -> str:
    # a carriage return redraws the line (progress bars): keep what the terminal would show last
    lines = [line.split("\r")[-1] for line in text.rstrip().split("\n")]
    lines = [line for line in lines if line.strip()]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... ({len(lines) - MAX_LINES} more lines)"]
    return "```text\n" + "\n".join(lines) + "\n```\n" if lines else ""


def _figure(data: dict[str, Any], png: Path) -> str:
    fig = pio.from_json(json.dumps(data))
    height = fig.layout.height or HEIGHT
    png.write_bytes(pio.to_image(fig, format="png", width=WIDTH, height=height))
    return f"![figure]({png.parent.name}/{png.name})\n"


def _html(html: str) -> str:
    if "<script" in html:                          # plotly.js / circuitsvis: interactive only
        return "*(interactive view: run the notebook to see it)*\n" if "circuits" in html else ""
    return re.sub(r"<style.*?</style>", "", html, flags=re.DOTALL).strip() + "\n"


def _output(out: nbformat.NotebookNode, files: Path, counter: list[int]) -> str:
    kind = out.get("output_type")
    if kind == "stream":        # warnings name files on the machine that ran the notebook
        return _text(WARNING.sub("", out.get("text", "")))
    if kind == "error":
        return _text("\n".join(re.sub(r"\x1b\[[0-9;]*m", "", t) for t in out.get("traceback", [])))
    data = out.get("data", {})
    if PLOTLY in data:
        counter[0] += 1
        return _figure(data[PLOTLY], files / f"fig{counter[0]:02d}.png")
    if "text/html" in data:
        return _html(data["text/html"])
    if "text/plain" in data:
        return _text(data["text/plain"])
    return ""


def render(nb: nbformat.NotebookNode, name: str, seconds: float, fast: bool) -> Path:
    """Write docs/tutorials/<name>.md and its figures folder; return the page's path."""
    files = OUT / f"{name}_files"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir(parents=True)
    mode = "fast mode (MI_MARGIN_FAST=1)" if fast else "full settings"
    parts = [f"<!-- generated by tutorials/_render.py from tutorials/{name}.ipynb; do not edit -->\n",
             f"*Rendered from [`tutorials/{name}.ipynb`](../../tutorials/{name}.ipynb), run in "
             f"{mode} in {seconds:.0f} s. Figures are static here; run the notebook to explore "
             f"them.*\n"]
    counter = [0]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source + "\n")
            continue
        if PLUMBING.search(cell.source):
            continue
        parts.append("```python\n" + cell.source + "\n```\n")
        parts += [_output(out, files, counter) for out in _merged_streams(cell.get("outputs", []))]
    page = OUT / f"{name}.md"
    page.write_text("\n".join(p for p in parts if p))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="name prefixes (default: every notebook)")
    parser.add_argument("--fast", action="store_true", help="run with MI_MARGIN_FAST=1")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for path in sorted(HERE.glob("[0-9]*.ipynb")):
        if args.only and not any(path.name.startswith(p) for p in args.only):
            continue
        nb, seconds = execute(path, args.fast)
        page = render(nb, path.stem, seconds, args.fast)
        size = page.stat().st_size + sum(f.stat().st_size for f in (OUT / f"{path.stem}_files").iterdir())
        print(f"{path.name}: ran in {seconds:.0f} s, wrote {page} ({size / 1e3:.0f} kB with figures)")


if __name__ == "__main__":
    main()

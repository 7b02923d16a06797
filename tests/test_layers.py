"""The layer table of docs/architecture.md holds: a module imports only from its own package or the
packages above it in the table. Imports are read with ``ast`` from every module of the package,
function-level imports included (the table allows no import in a function to get around it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mi_margin"
#: modules outside the table: the package root composes the layers; _progress and _tl are
#: leaf helpers (tqdm, TransformerLens) that any layer may use
OUTSIDE = {"__init__", "__main__", "_progress", "_tl"}


def layers() -> dict[str, int]:
    """Package or module name -> its row in the table (0 = top) of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Layers", 1)[1].split("\n\n| package")[1].split("\n\n")[0]
    rank = {}
    for row, line in enumerate(table.splitlines()[2:]):
        first = line.split("|")[1]
        for name in re.findall(r"`([\w./]+?)/?`", first):
            rank[name.removesuffix(".py")] = row
    return rank


def unit(module: str, rank: dict[str, int]) -> str:
    """The table entry of ``mi_margin.<package>.<module>...``: the module when the table names it
    (``sweep/cli``), else its subpackage or top-level module."""
    parts = module.split(".")
    return "/".join(parts[1:3]) if "/".join(parts[1:3]) in rank else parts[1]


def imports(source: str, here: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a mi_margin module in the source of module ``here``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:                      # relative import: resolve against this module
                base = here.rsplit(".", node.level)[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" if mod == "mi_margin" else mod for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith("mi_margin.")]
    return found


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "data")


def test_the_table_names_every_package_and_module():
    rank = layers()
    units = {unit(_name(p), rank) for p in MODULES}
    assert units - OUTSIDE - set(rank) == set(), "add these to the table of docs/architecture.md"


def upward(source: str, here: str, rank: dict[str, int]) -> list[tuple[int, str]]:
    """The imports of module ``here`` that reach a layer below its own."""
    own = unit(here, rank)
    if own in OUTSIDE:
        return []
    return [(line, mod) for line, mod in imports(source, here)
            if unit(mod, rank) not in OUTSIDE and rank[unit(mod, rank)] > rank[own]]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_lower_layer(path):
    bad = upward(path.read_text(), _name(path), layers())
    assert not bad, f"{_name(path)} imports from layers below its own: {bad}"


def test_the_checker_sees_an_upward_import():
    """The checker refuses what it must: an analyzer importing the plotting layer (also inside a
    function, also relatively), and accepts imports from above."""
    rank = layers()
    here = "mi_margin.analysis.probe"
    assert upward("def f():\n    from mi_margin.viz import plot\n", here, rank) == \
        [(2, "mi_margin.viz")]
    assert upward("from ..theory import compare\n", here, rank) == [(1, "mi_margin.theory")]
    assert upward("import mi_margin.sweep.cli\n", here, rank) == [(1, "mi_margin.sweep.cli")]
    assert upward("from mi_margin import tasks\nfrom mi_margin.groups import get\n", here,
                  rank) == []

"""The exercises of a tutorial notebook, filled in with their solutions (for the test suite and
for rendering: the notebook as committed holds the stubs a reader completes).

An exercise is a code cell whose metadata names the function it defines (``"exercise": name``,
tagged ``exercise``); filling it in replaces the stub by an import of that function from
``walkthrough_solutions`` (tutorials/walkthrough_solutions.py), so the notebook's check cells run
on the solution.
"""

from __future__ import annotations

import copy

import nbformat

SOLUTIONS = "walkthrough_solutions"


def exercise_names(nb: nbformat.NotebookNode) -> list[str]:
    """The functions the notebook's exercise cells define, in order."""
    return [c.metadata["exercise"] for c in nb.cells if "exercise" in c.get("metadata", {})]


def with_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose exercise cells import the solutions instead of holding stubs."""
    filled = copy.deepcopy(nb)
    for cell in filled.cells:
        name = cell.get("metadata", {}).get("exercise")
        if name is not None:
            cell.source = f"from {SOLUTIONS} import {name}"
    return filled

"""The model zoo: the papers' models, trained by committed recipes, shipped with the package.

``mm.zoo.list()`` names the entries, ``mm.zoo.load(name)`` gives a :class:`~mi_margin.Run`
(the trained model in eval mode, task, train config, history, checkpoints) offline from the
installed files; an entry whose recipe post-processes the trained weights (e.g. the LP reweighting
of ``morwani_S4_quadratic``) ships that as a named variant, ``mm.zoo.variants(name)`` and
``mm.zoo.load(name, variant="reweighted")``;
``mm.zoo.card(name)`` the entry's card (recipe, wall time to grok and on what machine, final
metrics, key frequencies or irreps, margin against the theory, the paper's numbers next to ours).
Entries are built by ``python -m mi_margin.zoo.build`` from the recipes in
:mod:`mi_margin.zoo.recipes`; the format (safetensors + JSON, no pickle) is in
:mod:`mi_margin.zoo.store`.

Example:
    >>> import mi_margin as mm
    >>> "morwani_parity_n10_k4_quartic" in mm.zoo.list()
    True
    >>> run = mm.zoo.load("morwani_parity_n10_k4_quartic")
    >>> float(run.history["train_acc"].iloc[-1])
    1.0
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.training import Run
from mi_margin.zoo import populations
from mi_margin.zoo.store import read_entry, read_meta
from mi_margin.zoo.store import variants as _variants

DATA = Path(__file__).parent / "data"


def list() -> builtins.list[str]:
    """The names of the installed entries, sorted."""
    if not DATA.is_dir():
        return []
    return sorted(p.name for p in DATA.iterdir() if (p / "entry.json").is_file())


def _folder(name: str) -> Path:
    names = list()
    if name not in names:
        raise MiMarginError(f"no zoo entry {name!r}; valid: {names}")
    return DATA / name


def load(name: str, variant: str | None = None) -> Run:
    """The entry ``name`` as a :class:`~mi_margin.Run`: the trained model (eval mode, the last
    checkpoint's weights), or with ``variant`` one of :func:`variants` (the post-processed weights;
    the checkpoints stay the trained ones).

    Example:
        >>> import mi_margin as mm
        >>> mm.zoo.variants("morwani_S4_quadratic")
        ['reweighted']
        >>> run = mm.zoo.load("morwani_S4_quadratic", variant="reweighted")
        >>> run.model.training
        False
    """
    return read_entry(_folder(name), variant)


def variants(name: str) -> builtins.list[str]:
    """The named variants of entry ``name`` besides its trained weights ([] for most entries)."""
    return _variants(read_meta(_folder(name)))


def titles() -> dict[str, str]:
    """``{name: title}`` of the installed entries (the title is the recipe's one line)."""
    from mi_margin.zoo.recipes import RECIPES  # imports the theory layer: only when asked

    return {name: RECIPES[name].title if name in RECIPES else "" for name in list()}


def card(name: str) -> str:
    """The markdown card of entry ``name``."""
    return (_folder(name) / "card.md").read_text()


def population(name: str) -> Any:
    """One row per seed of the shipped population ``name`` (a DataFrame; see
    :mod:`mi_margin.zoo.populations`, whose ``names()`` lists them)."""
    return populations.population(name)


__all__ = ["card", "list", "load", "population", "titles", "variants"]

"""Key labels of a summary row, from the similarities and spectrum shares the row stores.

Rows keep every label's logit similarity and logit-spectrum share, so the key set can be
recomputed under another rule without retraining or re-running the analyses. The defaults are the
package's own (docs/mathematics.md §3.4, §4.2): an irrep is key when its logit similarity with
χ_ρ(abc⁻¹) exceeds Chughtai et al.'s 0.005 (``mm.key_irreps``); a frequency or parity subset is
key when its share of the centred logit spectrum is at least half an equal share
(``mm.key_components``, ``min_share=0.5``).
"""

from __future__ import annotations

import json
from typing import Any

from mi_margin.analysis.spectrum import KEY_SIMILARITY

#: the default rule per label kind: (column of the row, threshold kind, value)
RULES: dict[str, tuple[str, str, float]] = {
    "irrep": ("similarity", "absolute", KEY_SIMILARITY),
    "frequency": ("logit_share", "relative", 0.5),
    "subset": ("logit_share", "relative", 0.5),
}


def values(row: dict[str, Any] | Any, column: str) -> dict[str, float]:
    """A row's stored ``{label: value}`` of ``column`` ("similarity" or "logit_share")."""
    raw = row[column]
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def key_labels(row: dict[str, Any] | Any, rule: tuple[str, str, float] | None = None) -> list[str]:
    """The key labels of a summary row, in basis order, under ``rule`` (default: :data:`RULES`).

    Example:
        >>> row = {"label_kind": "irrep", "similarity": '{"sign": 0.6, "standard": 0.001}'}
        >>> key_labels(row)
        ['sign']
    """
    column, kind, value = rule or RULES[str(row["label_kind"])]
    vals = values(row, column)
    cut = value if kind == "absolute" else value / max(len(vals), 1)
    return [lab for lab, x in vals.items() if (x > cut if kind == "absolute" else x >= cut)]

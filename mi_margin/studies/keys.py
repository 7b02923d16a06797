"""Key labels of a summary row, from the similarities and spectrum shares the row stores.

Rows keep every label's logit similarity and logit-spectrum share, so the key set can be
recomputed under another rule without retraining or re-running the analyses. The defaults are the
package's own, the one rule per basis of :data:`~mi_margin.analysis.key_rules.KEY_RULES`
(docs/mathematics.md §3.4, §4.2): an irrep is key when its logit similarity with χ_ρ(abc⁻¹)
exceeds max(0.005, 4 |G|^{−(k+1)/2}) (Chughtai et al.'s 0.005, raised on small groups;
``mm.key_irreps``); a frequency or parity subset is key when its share of the centred logit
spectrum is at least half an equal share (``mm.key_components``, ``min_share=0.5``).
"""

from __future__ import annotations

import json
from typing import Any

from mi_margin.analysis.key_rules import KEY_SIMILARITY, MIN_SHARE, irrep_threshold

#: the default rule per label kind: (column of the row, threshold kind, value); the irrep rule's
#: value is Chughtai's 0.005, raised for the row's group by :func:`default_rule`
RULES: dict[str, tuple[str, str, float]] = {
    "irrep": ("similarity", "absolute", KEY_SIMILARITY),
    "frequency": ("logit_share", "relative", MIN_SHARE),
    "subset": ("logit_share", "relative", MIN_SHARE),
}


def default_rule(row: dict[str, Any] | Any) -> tuple[str, str, float]:
    """The API's rule for ``row``: :data:`RULES`, with the irrep threshold of the row's group,
    max(0.005, 4 |G|^{−(k+1)/2}) with |G| the sum of the stored block dimensions (the trivial
    label's 1 included) and k the row's task's (2 when the row has no task)."""
    column, kind, value = RULES[str(row["label_kind"])]
    if str(row["label_kind"]) == "irrep":
        order = 1 + round(sum(values(row, "block_dims").values()))
        k = json.loads(row["task"]).get("k", 2) if "task" in row else 2
        value = irrep_threshold(order, k)
    return column, kind, value


def values(row: dict[str, Any] | Any, column: str) -> dict[str, float]:
    """A row's stored ``{label: value}`` of ``column`` ("similarity" or "logit_share")."""
    raw = row[column]
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def key_labels(row: dict[str, Any] | Any, rule: tuple[str, str, float] | None = None) -> list[str]:
    """The key labels of a summary row, in basis order, under ``rule`` (default:
    :func:`default_rule`, the API's).

    Example:
        >>> row = {"label_kind": "irrep", "similarity": '{"sign": 0.6, "standard": 0.2}',
        ...        "block_dims": '{"sign": 1, "standard": 4}'}      # S3: threshold 4·6^-1.5 ≈ 0.27
        >>> key_labels(row), key_labels(row, ("similarity", "absolute", 0.005))
        (['sign'], ['sign', 'standard'])
    """
    column, kind, value = rule or default_rule(row)
    vals = values(row, column)
    cut = value if kind == "absolute" else value / max(len(vals), 1)
    return [lab for lab, x in vals.items() if (x > cut if kind == "absolute" else x >= cut)]

"""Which labels count as key: one documented rule per basis, and the result that records it.

The papers name the components a model uses by different rules: Nanda et al. (2023, §4.2) read key
frequencies off the logits' Fourier spectrum, Chughtai et al. (2023, p4-10) call an irrep key when
its logit similarity exceeds 0.005. :data:`KEY_RULES` is the one table the analyzers
(:func:`~mi_margin.analysis.spectrum.key_frequencies`, :func:`~mi_margin.analysis.spectrum.key_irreps`,
:func:`~mi_margin.analysis.spectrum.key_components`) take their defaults from, and the zoo's cards
use them unchanged (docs/mathematics.md §4.2 and §3.4):

- ``"frequency"`` (Z_p^k) and ``"subset"`` (sparse parity): the relative rule — a label is key when
  its share of the class-centred logits' variance is at least 0.5 / L (half an equal share).
- ``"irrep"`` (a finite group G, k operands): logit similarity above
  max(0.005, 4 |G|^{−(k+1)/2}) — Chughtai's absolute 0.005, raised on groups of at most 86
  elements (k = 2) to four times the similarity an untrained model reaches by chance.

Every key set is a :class:`KeySet`: a list of the labels that also records the rule, its threshold
on this task, the model's accuracy (test split, else all inputs) and whether the model has
generalized; a model that has not (accuracy below :data:`GENERALIZED`) gets a
:class:`~mi_margin.errors.NotGeneralizedWarning`, since the key labels of a model that does not
compute the task describe no algorithm. Key frequencies also separate the **output harmonics**: a
key frequency of the logits that carries no key share of the embedding and is a sum or difference
of two embedding key frequencies is produced by the nonlinearity's products, not embedded (in
the zoo's ``nanda_p113_transformer`` the embedding uses 1, 8 and 21, and the logits also carry
42 = 2·21).

Example:
    >>> import mi_margin as mm
    >>> rule_for(mm.GroupComposition("S4")).threshold  # doctest: +ELLIPSIS
    0.0340...
    >>> rule_for(mm.ModularAddition(p=113)).name
    'logit share >= 0.5 of an equal share'
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mi_margin.analysis.basis import basis_for
from mi_margin.errors import NotGeneralizedWarning

#: Chughtai et al. (2023, p4-10): an irrep is key when its logit similarity exceeds this.
KEY_SIMILARITY = 0.005
#: the irrep rule raises Chughtai's threshold to this multiple of the chance similarity |G|^{−(k+1)/2}
CHANCE_MULTIPLE = 4.0
#: the relative rule's default: a share of at least this many equal shares (1 / L each)
MIN_SHARE = 0.5
#: accuracy (test split, else all inputs) at which a model counts as having generalized
GENERALIZED = 0.99


@dataclass(frozen=True)
class KeyRule:
    """How one basis decides that a label is key.

    Attributes:
        basis: the basis's ``label_kind`` ("frequency", "irrep" or "subset").
        name: the rule in words (as cards print it).
        measure: what is compared with the threshold ("logit share" or "logit similarity").
        threshold: the threshold on this task (share ≥ threshold, or similarity > threshold).
    """

    basis: str
    name: str
    measure: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.name}; threshold {self.threshold:.3g} on this task"


def irrep_threshold(group_order: int, k: int = 2) -> float:
    """The irrep rule's threshold: max(0.005, 4 |G|^{−(k+1)/2}).

    Example:
        >>> irrep_threshold(120)      # S5: Chughtai's 0.005
        0.005
    """
    return max(KEY_SIMILARITY, CHANCE_MULTIPLE * group_order ** (-(k + 1) / 2))


def share_rule(kind: str, n_labels: int, min_share: float = MIN_SHARE) -> KeyRule:
    """The relative rule: share ≥ ``min_share`` / L over L non-trivial labels."""
    return KeyRule(kind, f"logit share >= {min_share:g} of an equal share", "logit share",
                   min_share / n_labels)


def similarity_rule(threshold: float) -> KeyRule:
    """Chughtai's rule at ``threshold`` (the default one names how it was raised)."""
    name = (f"logit similarity > max({KEY_SIMILARITY}, {CHANCE_MULTIPLE:g}·|G|^-(k+1)/2)"
            if threshold != KEY_SIMILARITY else f"logit similarity > {KEY_SIMILARITY} (Chughtai)")
    return KeyRule("irrep", name, "logit similarity", threshold)


#: the default rule of each basis (its label_kind), for a task
KEY_RULES: dict[str, Callable[[Any], KeyRule]] = {
    "frequency": lambda task: share_rule("frequency", len(basis_for(task).nontrivial)),
    "subset": lambda task: share_rule("subset", len(basis_for(task).nontrivial)),
    "irrep": lambda task: similarity_rule(irrep_threshold(task.d_vocab, task.k)),
}


def rule_for(task: Any) -> KeyRule:
    """The default key rule of ``task``'s basis (:data:`KEY_RULES`)."""
    return KEY_RULES[basis_for(task).label_kind](task)


class KeySet(list):
    """Key labels (a list, in basis order) with the rule that chose them and the model's accuracy.

    Attributes:
        rule: the :class:`KeyRule` applied (its threshold on this task).
        values: the measure of every non-trivial label (share or similarity), by label.
        accuracy: the model's accuracy on the task's test split (all inputs when there is none).
        generalized: ``accuracy >= GENERALIZED``.
        harmonics: key frequencies that are output harmonics (see the module docstring); () else.
    """

    def __init__(self, labels: Iterable[Any], rule: KeyRule, values: dict[Any, float],
                 accuracy: float, harmonics: Iterable[Any] = ()):
        super().__init__(labels)
        self.rule, self.values, self.accuracy = rule, dict(values), float(accuracy)
        self.generalized = self.accuracy >= GENERALIZED
        self.harmonics = tuple(harmonics)

    @property
    def embedded(self) -> list[Any]:
        """The key labels that are not output harmonics."""
        return [lab for lab in self if lab not in self.harmonics]


def warn_unless_generalized(keys: KeySet, what: str) -> KeySet:
    """``keys``, with a :class:`NotGeneralizedWarning` when the model has not generalized."""
    if not keys.generalized:
        warnings.warn(f"{what}: the model has not generalized (accuracy {keys.accuracy:.4f} < "
                      f"{GENERALIZED}); its {len(keys)} key labels describe no algorithm for the task",
                      NotGeneralizedWarning, stacklevel=3)
    return keys


def output_harmonics(keys: Iterable[int], embedded: Iterable[int], p: int) -> list[int]:
    """Key frequencies not among the ``embedded`` ones that are a sum or difference of two
    embedded frequencies (a multiple 2f included), up to sign mod p.

    Example:
        >>> output_harmonics([1, 8, 21, 42], [1, 8, 21], 113)
        [42]
    """
    emb = list(embedded)
    made = {min(s % p, -s % p) for a in emb for b in emb for s in (a + b, a - b)}
    return [f for f in keys if f not in emb and f in made]

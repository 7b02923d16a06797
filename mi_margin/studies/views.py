"""The population views a paper prints over seeds, each one call on a study's table.

- :func:`label_frequency`: how often each irrep (or frequency) is key across the seeds that
  generalized, beside its dimension, the paper's own counts where it gives them (Chughtai et
  al. 2023, Fig. 7 over 50 S5 MLP seeds), and the max-margin network (Morwani et al. 2024:
  Theorem 9 over every irrep, Theorem 7 over every frequency, our LP extension where Theorem 9's
  condition fails, as on A5). Like is compared with like: a max-margin network has every label
  it uses key (``theory_key``), so a seed without one departs from it; and the seeds' mean share
  of the logit spectrum (``logit_share``) stands beside the max-margin network's
  (``theory_logit_share``, measured on its certificate; its budget share ∝ d^2.5 is
  ``theory_share``). This is the contrast the package exists to show: cross-entropy networks
  learn a few irreps in proportions of their own, the max-margin solution spreads over all of
  them. The theorems are about homogeneous MLPs (x² neurons, no biases); for other networks the
  max-margin columns are a reference, not a prediction (a row's ``margin_ratio_reason`` says
  why its margin is undefined).
- :func:`grokking_distribution`: memorization, first and stable grokking steps and the delay, with
  seeds that never grokked counted (not dropped).
- :func:`key_count_distribution`: the number of key labels per seed that generalized, and N_δ
  (labels holding a 1 − δ share of the logit spectrum, docs/mathematics.md §4.4).

The two label views count only seeds whose final test accuracy reached
:data:`~mi_margin.analysis.key_rules.GENERALIZED` (:func:`generalized`): the key labels of a
network that has not generalized describe no algorithm for the task (Chughtai et al. count trained
networks). ``only_generalized=False`` counts every seed.

Each returns an :class:`~mi_margin.analysis.results.AnalysisResult` (``.to_dataframe()``,
``.plot()``); ``paper`` arguments take the counts a population records
(:class:`~mi_margin.zoo.recipes.Population`).

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"seed": [0, 1], "label_kind": ["irrep", "irrep"],
    ...     "task": ['{"kind": "group_composition", "group": "S3", "k": 2, '
    ...              '"train_fraction": 0.5, "seed": 0}'] * 2,
    ...     "block_dims": ['{"(1,1,1)": 1, "(2,1)": 4}'] * 2,
    ...     "similarity": ['{"(1,1,1)": 0.5, "(2,1)": 0.8}', '{"(1,1,1)": 0.0, "(2,1)": 0.9}']})
    >>> view = label_frequency(table, paper={"sign": 3, "standard": 4}, paper_seeds=4)
    >>> view.to_dataframe()[["label", "dim", "seeds_key", "paper"]].values.tolist()
    [['(1,1,1)', 1, 1, 3], ['(2,1)', 2, 2, 4]]
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

from mi_margin.analysis.key_rules import GENERALIZED
from mi_margin.analysis.results import AnalysisResult
from mi_margin.checks import check_int
from mi_margin.errors import MiMarginError
from mi_margin.studies.keys import key_labels, values
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.theory.predictions import max_margin


def _check(table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    if isinstance(table, str):
        raise MiMarginError(f"a study's table is needed, got the string {table!r}; for a shipped "
                            f"population pass mm.zoo.population({table!r})")
    if not isinstance(table, pd.DataFrame):
        table = getattr(table, "table", None)
    missing = [c for c in columns if table is None or c not in table]
    if missing:
        raise MiMarginError(f"a study table with columns {list(columns)} is needed; missing {missing}")


def _table_of(study_or_table: Any) -> pd.DataFrame:
    if isinstance(study_or_table, pd.DataFrame):
        return study_or_table
    _check(study_or_table, ())
    if not isinstance(getattr(study_or_table, "table", None), pd.DataFrame):
        raise MiMarginError(f"a study (mm.study's result) or its table of rows is needed, got "
                            f"{type(study_or_table).__name__}")
    return study_or_table.table


def generalized(study_or_table: Any, level: float = GENERALIZED) -> pd.DataFrame:
    """The rows of the seeds whose final test accuracy is at least ``level`` (a table without a
    ``test_acc`` column, e.g. one built by hand, is returned whole)."""
    table = _table_of(study_or_table)
    return table[table["test_acc"] >= level] if "test_acc" in table else table


def none_generalized(study_or_table: Any) -> str | None:
    """Why the label views have nothing to count (no seed generalized), else None; cards and
    reports print it in place of those views."""
    table = _table_of(study_or_table)
    if not generalized(table).empty:
        return None
    return (f"None of the {len(table)} seeds generalized (final test accuracy ≥ {GENERALIZED}), "
            "so no key labels are counted.")


def at_budget(table: pd.DataFrame) -> pd.Series:
    """Per row, whether the seed stopped at its step budget rather than by the stop rule: it
    never grokked stably, or its cleanup was cut short. Its key labels may still have been
    changing, so the views count these seeds apart too (a table without ``step`` and
    ``budget`` columns has none)."""
    if "step" not in table or "budget" not in table:
        return pd.Series(False, index=table.index)
    return table["step"] >= table["budget"]


def _counted(study_or_table: Any, only_generalized: bool) -> tuple[pd.DataFrame, int]:
    """The rows a label view counts, and how many seeds it leaves out."""
    table = _table_of(study_or_table)
    kept = generalized(table) if only_generalized else table
    if kept.empty:
        raise MiMarginError(f"none of the {len(table)} seeds generalized (final test accuracy ≥ "
                            f"{GENERALIZED}); pass only_generalized=False to count them anyway")
    return kept, len(table) - len(kept)


@dataclass(frozen=True)
class LabelFrequency(AnalysisResult):
    """Per label: dimension, seeds in which it is key, that fraction, whether the max-margin
    network has it key, the paper's count, the seeds' mean logit-spectrum share beside the
    max-margin network's, and its budget share (None where the theory or paper gives none).

    Attributes:
        label_kind, n_seeds: what the labels are and over how many seeds.
        theory: the result the budget shares come from (e.g. "Morwani et al. 2024, Theorem 9"),
            or None where no max-margin prediction is known for the task.
        left_out: seeds not counted (they did not generalize, :func:`generalized`).
        n_at_budget: counted seeds that stopped at their step budget (:func:`at_budget`).
        rows: the table's rows (label, aliases, dim, seeds_key, fraction, key_at_budget (of
            the seeds_key, those stopped at the budget), theory_key, paper, logit_share,
            theory_logit_share, theory_share).
        paper_seeds: how many seeds the paper's counts are over.
        by_dim: the same counts pooled by dimension (where the paper names irreps we can only
            match by dimension, e.g. S5's two 5-dimensional irreps "5d_a", "5d_b").
    """

    _score = "fraction"

    label_kind: str
    n_seeds: int
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    paper_seeds: int | None = None
    by_dim: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    left_out: int = 0
    theory: str | None = None
    n_at_budget: int = 0

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))

    def dimension_table(self) -> pd.DataFrame:
        """Key occurrences pooled by dimension, ours and the paper's, per seed."""
        return pd.DataFrame(list(self.by_dim))


def _theory_shares(task_json: str, label_kind: str) -> tuple[dict[str, float], str | None]:
    """The max-margin network's budget share per label, keyed as the rows name labels (the
    prediction's ``freq_f`` is the rows' frequency ``f``), and the result it comes from."""
    try:
        pred = max_margin(task_from_dict(json.loads(task_json)))
    except MiMarginError:
        return {}, None
    shares = {str(k): float(v) for k, v in (pred.budget_share or {}).items()}
    if label_kind == "frequency":
        shares = {k.removeprefix("freq_"): v for k, v in shares.items()}
    return shares, pred.theorem


#: decimals the certificate's shares keep: float64 spectra are exact to about 1e-15 of the
#: total, so a label the max-margin network does not use reads 0, not a machine's rounding
ROUNDED = 12


@lru_cache(maxsize=16)
def _theory_logit_shares(task_json: str) -> dict[str, float]:
    """The max-margin network's share of the centred logit spectrum per label, measured on its
    certificate (:func:`~mi_margin.theory.certificates.certificate`, a network attaining γ*) as
    a study row measures a seed's (``logit_share``); empty where no certificate is known."""
    from mi_margin.analysis.spectrum import component_shares, logit_similarity
    from mi_margin.theory.certificates import certificate

    task = task_from_dict(json.loads(task_json))
    try:
        model = certificate(task)
    except MiMarginError:
        return {}
    labels = [str(lab) for lab in logit_similarity(model, task).labels]
    shares = component_shares(model, task, "logits").tolist()
    return {lab: round(share, ROUNDED) for lab, share in zip(labels, shares)}


def _mean_shares(table: pd.DataFrame) -> dict[str, float]:
    """Each label's logit-spectrum share averaged over the rows (empty without that column)."""
    if "logit_share" not in table:
        return {}
    shares = pd.DataFrame([values(row, "logit_share") for _, row in table.iterrows()])
    return {str(lab): float(v) for lab, v in shares.mean().items()}


def _one_task(table: pd.DataFrame) -> str:
    """The task all rows share (seeds aside), refused when the rows mix settings: the label
    views count labels of one task."""
    settings = {json.dumps({k: v for k, v in json.loads(t).items() if k != "seed"}, sort_keys=True)
                for t in table["task"]}
    if len(settings) > 1:
        raise MiMarginError(f"the label views count the seeds of one setting; this table holds "
                            f"{len(settings)} ({', '.join(sorted(settings))}): select one "
                            f"setting's rows, or use key_count_by_setting for a grid")
    return str(table["task"].iloc[0])


def _irreps(task_json: str) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Aliases and dimensions d of a group task's irreps by name (a row stores the dimension of
    each label's block of the grid, d² for an irrep; other tasks' labels keep that one)."""
    group = getattr(task_from_dict(json.loads(task_json)), "group", None)
    if group is None:
        return {}, {}
    return ({rho.name: rho.aliases for rho in group.irreps()},
            {rho.name: rho.dim for rho in group.irreps()})


def _paper_dim(name: str, dims: dict[str, int], aliases: dict[str, tuple[str, ...]]) -> int | None:
    """The dimension of a label as the paper names it: ours, one of our aliases, or "5d_a"."""
    for label, names in aliases.items():
        if name == label or name in names:
            return dims.get(label)
    head = name.split("d", 1)[0]
    return int(head) if head.isdigit() and name[len(head):].startswith("d") else dims.get(name)


def _paper_counts(paper: dict[Any, int] | None, paper_seeds: int | None,
                  known: Callable[[Any], bool] | None = None) -> dict[Any, int]:
    """``paper`` checked: counts are integers from 0 to ``paper_seeds``, which they need;
    ``known(name)`` says whether the views know a name (None: any)."""
    if not paper:
        return {}
    if not isinstance(paper, dict):
        raise MiMarginError(f"paper must map labels to seed counts, got {type(paper).__name__}")
    if paper_seeds is None:
        raise MiMarginError("paper counts need paper_seeds, the number of seeds they are over")
    check_int("paper_seeds", paper_seeds, low=1)
    for name, count in paper.items():
        check_int(f"paper[{name!r}]", count, low=0, high=paper_seeds)
    unknown = [name for name in paper if known is not None and not known(name)]
    if unknown:
        raise MiMarginError(f"paper names {unknown}, which the views do not know (labels, their "
                            f"aliases, or an irrep's dimension as in '5d_a')")
    return dict(paper)


def label_frequency(study_or_table: Any, paper: dict[str, int] | None = None,
                    paper_seeds: int | None = None, only_generalized: bool = True) -> LabelFrequency:
    """How often each label is key over the seeds, against its dimension, the paper's counts and
    the max-margin network (module docstring).

    ``paper`` maps the paper's label names (ours, our aliases such as "standard", or names like
    "5d_a" matched by dimension) to the number of its ``paper_seeds`` seeds in which it was key;
    an unknown name, a count outside 0..paper_seeds, or counts without ``paper_seeds`` are
    refused. The rows must be of one setting (a grid's table: select a setting, or use
    :func:`~mi_margin.studies.grid.key_count_by_setting`). Only the seeds that generalized are
    counted unless ``only_generalized=False``.
    """
    _check(study_or_table, ("label_kind", "task", "block_dims"))
    table, left_out = _counted(study_or_table, only_generalized)
    task_json, first = _one_task(table), table.iloc[0]
    aliases, irrep_dims = _irreps(task_json)
    dims = {k: irrep_dims.get(k, int(v)) for k, v in values(first, "block_dims").items()}
    shares, theory = _theory_shares(task_json, str(first["label_kind"]))
    theirs = _theory_logit_shares(task_json) if shares else {}
    ours = _mean_shares(table)
    counts = Counter(lab for _, row in table.iterrows() for lab in key_labels(row))
    cut = at_budget(table)
    counts_cut = Counter(lab for _, row in table[cut].iterrows() for lab in key_labels(row))
    n = len(table)
    paper = _paper_counts(paper, paper_seeds,
                          lambda name: _paper_dim(str(name), dims, aliases) is not None)
    ours_of = {name: next((lab for lab, al in aliases.items() if name == lab or name in al), None)
               for name in paper}
    rows = tuple({"label": lab, "aliases": ", ".join(aliases.get(lab, ())), "dim": dims[lab],
                  "seeds_key": counts[lab], "fraction": counts[lab] / n if n else 0.0,
                  "key_at_budget": counts_cut[lab],
                  "theory_key": (shares[lab] > 0) if lab in shares else None,
                  "paper": next((c for name, c in paper.items() if ours_of[name] == lab), None),
                  "logit_share": ours.get(lab), "theory_logit_share": theirs.get(lab),
                  "theory_share": shares.get(lab)}
                 for lab in dims)
    by_dim = []
    for d in sorted(set(dims.values())):
        labs = [lab for lab in dims if dims[lab] == d]
        paper_d = [c for name, c in paper.items() if _paper_dim(name, dims, aliases) == d]
        by_dim.append({"dim": d, "labels": len(labs), "key_per_seed": sum(counts[x] for x in labs) / n,
                       "paper_key_per_seed": (sum(paper_d) / paper_seeds
                                              if paper_d and paper_seeds else None),
                       "theory_share": (sum(shares[x] for x in labs if x in shares)
                                        if shares else None)})
    return LabelFrequency(label_kind=str(first["label_kind"]), n_seeds=n, rows=rows,
                          paper_seeds=paper_seeds, by_dim=tuple(by_dim), left_out=left_out,
                          n_at_budget=int(cut.sum()),
                          theory=theory if shares else None)


@dataclass(frozen=True)
class GrokkingDistribution(AnalysisResult):
    """Per seed: memorized, first_crossing, stable and delay (None: never grokked).

    Attributes:
        rows: one per seed; n_seeds, n_grokked; n_at_budget: seeds stopped at their step
            budget (:func:`at_budget`), grokked or not.
    """

    _score = "stable"

    rows: tuple[dict[str, Any], ...] = field(repr=False)
    n_seeds: int = 0
    n_grokked: int = 0
    n_at_budget: int = 0

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))

    def describe(self) -> pd.DataFrame:
        """Count, quantiles and mean of each step over the seeds that reached it. Seeds that
        never grokked within their budget are not in a step's count, so its quantiles are those
        of the seeds that grokked, lower than the population's: ``n_seeds - n_grokked`` says
        how many are missing."""
        return self._table()[["memorized", "first_crossing", "stable", "delay"]].astype(
            "float").describe()


def grokking_distribution(study_or_table: Any) -> GrokkingDistribution:
    """The grokking steps of every seed; seeds that never grokked stay in (as None)."""
    table = _table_of(study_or_table)
    _check(table, ("seed", "memorized", "first_crossing", "stable", "delay", "step"))
    cols = ["seed", "memorized", "first_crossing", "stable", "delay", "step"]
    rows = tuple({c: (None if pd.isna(row[c]) else int(row[c])) for c in cols}
                 for _, row in table.iterrows())
    return GrokkingDistribution(rows=rows, n_seeds=len(rows),
                                n_grokked=sum(r["stable"] is not None for r in rows),
                                n_at_budget=int(at_budget(table).sum()))


@dataclass(frozen=True)
class KeyCountDistribution(AnalysisResult):
    """How many seeds have n key labels (and n labels holding 1 − δ of the logit spectrum).

    Attributes:
        rows: one per n: seeds with n key labels, seeds with N_δ = n, the paper's count, and
            each as a fraction of its seeds (ours over ``n_seeds``, the paper's over
            ``paper_seeds``: raw counts over different totals do not compare).
        paper_seeds: how many seeds the paper's counts are over.
        n_seeds, left_out: seeds counted, and not counted (they did not generalize).
    """

    _score = "seeds"

    rows: tuple[dict[str, Any], ...] = field(repr=False)
    paper_seeds: int | None = None
    n_seeds: int = 0
    left_out: int = 0

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))


def key_count_distribution(study_or_table: Any, paper: dict[int, int] | None = None,
                           paper_seeds: int | None = None,
                           only_generalized: bool = True) -> KeyCountDistribution:
    """Seeds per number of key labels and per N_δ; ``paper``: n -> seeds in the paper. Only the
    seeds that generalized are counted unless ``only_generalized=False`` (module docstring)."""
    _check(study_or_table, ("label_kind", "n_delta"))
    table, left_out = _counted(study_or_table, only_generalized)
    if "task" in table:
        _one_task(table)
    keys = Counter(len(key_labels(row)) for _, row in table.iterrows())
    ndelta = Counter(int(v) for v in table["n_delta"])
    paper = _paper_counts(paper, paper_seeds, lambda n: isinstance(n, int) and n >= 0)
    ns = sorted(set(keys) | set(ndelta) | set(paper))
    n_seeds = len(table)
    rows = tuple({"n": n, "seeds": keys.get(n, 0), "seeds_n_delta": ndelta.get(n, 0),
                  "paper": paper.get(n), "fraction": keys.get(n, 0) / n_seeds,
                  "fraction_n_delta": ndelta.get(n, 0) / n_seeds,
                  "paper_fraction": paper[n] / paper_seeds if n in paper and paper_seeds else None}
                 for n in ns)
    return KeyCountDistribution(rows=rows, paper_seeds=paper_seeds, n_seeds=len(table),
                                left_out=left_out)

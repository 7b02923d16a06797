"""The README's sentences about the shipped populations say what the loaded tables show: every
count, range and seed they name is recomputed here from ``mm.zoo.population`` (and, for the grid
over primes, from the rows in the repository's ``populations/`` folder)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

import mi_margin as mm
from mi_margin.studies.keys import key_labels
from mi_margin.studies.ship import seed_ranges
from mi_margin.studies.views import generalized, label_frequency
from mi_margin.zoo.recipes import POPULATIONS

ROOT = Path(__file__).parents[2]


def readme() -> str:
    """The README with its line breaks and runs of spaces read as single spaces."""
    return " ".join((ROOT / "README.md").read_text().split())


def claim(pattern: str) -> tuple[str, ...]:
    """The groups of the README's one sentence that matches ``pattern``."""
    found = re.findall(pattern, readme())
    assert len(found) == 1, f"the README should say {pattern!r} once; found {len(found)}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def key_count(table: pd.DataFrame, label: str) -> int:
    """In how many of the generalized seeds ``label`` is key (by label or alias)."""
    rows = label_frequency(table).to_dataframe()
    match = rows[(rows["label"] == label)
                 | rows["aliases"].map(lambda a: label in a.split(", "))]
    assert len(match) == 1, label
    return int(match["seeds_key"].iloc[0])


def test_s4_counts():
    table = mm.zoo.population("chughtai_S4_mlp")
    n, did, sign, std_sign = claim(r"of the (\d+) S4 seeds, (\d+) did, and in them sign is key in "
                                   r"(\d+) and the 3-dimensional standard_sign in (\d+)")
    assert (int(n), int(did)) == (len(table), len(generalized(table)))
    assert (int(sign), int(std_sign)) == (key_count(table, "sign"),
                                          key_count(table, "standard_sign"))
    shares = claim(r"the seeds hold (\S+) of their logit spectrum in sign and (\S+) in "
                   r"standard_sign, where the max-margin network holds (\S+) and (\S+) \(its")
    rows = label_frequency(table).to_dataframe().set_index("aliases")
    sign_row, std_row = (rows.loc[next(a for a in rows.index if name in a.split(", "))]
                         for name in ("sign", "standard_sign"))
    assert shares == tuple(f"{v:.3f}" for v in (sign_row["logit_share"], std_row["logit_share"],
                                                sign_row["theory_logit_share"],
                                                std_row["theory_logit_share"]))


def test_a5_counts():
    table = mm.zoo.population("chughtai_A5_mlp")
    n, did, std, three, five = claim(
        r"of the (\d+) A5 seeds, (\d+) did, the standard \(4,1\) is key in all (\d+), the two "
        r"3-dimensional irreps in (\d+) each and the 5-dimensional \(3,2\) in (\d+)")
    assert (int(n), int(did), int(std)) == (len(table), len(generalized(table)),
                                             len(generalized(table)))
    assert key_count(table, "(4,1)") == int(std)
    rows = label_frequency(table).to_dataframe()
    assert rows[rows["dim"] == 3]["seeds_key"].tolist() == [int(three)] * 2
    assert key_count(table, "(3,2)") == int(five)
    cut, of = claim(r"\((\d+) of those (\d+) seeds stopped at their step budget")
    assert int(of) == int(five)
    assert int(cut) == label_frequency(table).to_dataframe().set_index("label").loc[
        "(3,2)", "key_at_budget"]


def cpu_range(table: pd.DataFrame, column: str, seeds: range) -> str:
    values = table[table["seed"].isin(seeds)][column]
    return f"{values.min():,.0f}–{values.max():,.0f}"


def test_cpu_ranges_of_the_named_seeds():
    s4, nanda = mm.zoo.population("chughtai_S4_mlp"), mm.zoo.population("nanda_p113_transformer")
    cpu, wall = claim(r"S4 seeds took (\S+) s of CPU each \((\S+) s wall; seeds 0–7")
    assert (cpu, wall) == (cpu_range(s4, "cpu_s", range(8)), cpu_range(s4, "wall_s", range(8)))
    assert claim(r"p = 113 transformer (\S+) s to its stop rule \(seeds 0–1\)") == (
        cpu_range(nanda, "cpu_s", range(2)),)


def prime_grid() -> dict[int, pd.DataFrame]:
    folder = ROOT / "populations" / "key_frequencies_vs_p"
    return {int(p.name): pd.DataFrame([json.loads(line) for line in (p / "rows.jsonl").open()])
            for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.isdigit()}


def test_key_frequencies_over_primes():
    grid = dict(sorted(prime_grid().items()))
    none = [p for p, t in grid.items() if len(generalized(t)) == 0]
    every = [p for p, t in grid.items() if len(generalized(t)) == len(t)]
    assert sorted(none + every) == sorted(grid), "each prime's seeds all generalized or none did"
    said_none = claim(r"at p = ([\d, and]+) no seed generalized")[0]
    assert [int(p) for p in re.findall(r"\d+", said_none)] == none
    lo, hi = claim(r"from p = (\d+) to (\d+) every seed did")
    assert (int(lo), int(hi)) == (every[0], every[-1])
    n_delta = pd.concat([grid[p]["n_delta"] for p in every])
    assert claim(r"stayed between (\d+) and (\d+)") == (str(n_delta.min()), str(n_delta.max()))
    means, primes = claim(r"\(means ([\d., ]+) at p = ([\d, and]+)\)")
    assert [int(p) for p in re.findall(r"\d+", primes)] == every
    assert means.split(", ") == [f"{grid[p]['n_delta'].mean():.1f}" for p in every]
    first, last = claim(r"the number of frequencies doubled from (\d+) to (\d+)")
    assert (int(first), int(last)) == ((every[0] - 1) // 2, (every[-1] - 1) // 2)


# The S5 MLP population grows by a few seeds per session; its sentence is written from the table
# (`python tests/zoo/test_readme_populations.py --write` puts it into the README).

S5 = "chughtai_S5_mlp"
S5_SENTENCE = re.compile(r"The S5 MLP population is under way.*?`mi_margin/zoo/data/populations/`"
                         r"\)?\.")


def named(label: str, aliases: str, dim: int) -> str:
    """A label as the README names it: its word alias, else "the d-dimensional (partition)"."""
    word = next((a for a in aliases.split(", ") if a and not a.startswith("(")), None)
    return word or f"the {dim}-dimensional {label}"


def seeds_phrase(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + " and ".join(
        [", ".join(map(str, seeds[:-1])), str(seeds[-1])] if len(seeds) > 1 else [str(seeds[0])])


def s5_sentence(table: pd.DataFrame) -> str:
    """The README's sentence on the S5 MLP population, from its shipped table."""
    pop = POPULATIONS[S5]
    done = generalized(table)
    if set(done["seed"]) != set(table[table["grokked"]]["seed"]):
        raise AssertionError("a seed grokked without generalizing, or the reverse: the sentence "
                             "says 'grokked' for both; rewrite it")
    failed = table[~table["seed"].isin(done["seed"])].sort_values("seed")
    budget = int(table["budget"].max())
    missing = (f"; {seeds_phrase(failed['seed'].tolist())} did not (test accuracy "
               + " and ".join(f"{a:.2f}" for a in failed["test_acc"]) + " at the budget)"
               if len(failed) else "")
    keys = {int(r["seed"]): set(key_labels(r)) for _, r in done.iterrows()}
    parts = []
    for row in label_frequency(table).to_dataframe().itertuples():
        name, lacking = named(row.label, row.aliases, row.dim), sorted(
            s for s, k in keys.items() if row.label not in k)
        parts.append(f"{name} in all" if not lacking else
                     f"{name} in all but {seeds_phrase(lacking)}" if len(lacking) <= 3 else
                     f"{name} in {row.seeds_key or 'none'}")
    paper = ", ".join(f"{n} {c}" for n, c in (pop.paper_key or {}).items())
    return (f"The S5 MLP population is under way: {pop.seeds} seeds planned, shipped so far seeds "
            f"{seed_ranges(table['seed'])}. {len(done)} of these {len(table)} grokked stably "
            f"within the {budget:,}-step budget, at steps {done['stable'].min():,.0f}–"
            f"{done['stable'].max():,.0f}{missing}. Key over those {len(done)}: "
            + ", ".join(parts) + f" (in Chughtai et al.'s {pop.paper_seeds} seeds: {paper}). Each "
            f"seed took {cpu_range(table, 'cpu_s', range(pop.seeds))} s of CPU on the shared "
            "machine. The populations' cards are in `mi_margin/zoo/data/populations/`.")


def test_s5_sentence_says_what_the_table_shows():
    expected = s5_sentence(mm.zoo.population(S5))
    assert expected in readme(), (
        f"the README's S5 sentence should read:\n{expected}\n"
        "(python tests/zoo/test_readme_populations.py --write)")


def write() -> None:
    """Put the S5 sentence into the README, the paragraph re-wrapped at 100 columns."""
    import textwrap
    path = ROOT / "README.md"
    paragraphs = path.read_text().split("\n\n")
    i = next(i for i, p in enumerate(paragraphs) if S5_SENTENCE.search(" ".join(p.split())))
    text = S5_SENTENCE.sub(lambda _: s5_sentence(mm.zoo.population(S5)),
                           " ".join(paragraphs[i].split()))
    paragraphs[i] = textwrap.fill(text, 100, break_on_hyphens=False)
    path.write_text("\n\n".join(paragraphs))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write()

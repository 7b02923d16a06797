"""``mi-margin study NAME --out DIR``: train (or finish) a population of seeds and print its views
(the root cli.py calls :func:`add_study_parser`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mi_margin.checks import check_output_file
from mi_margin.errors import MiMarginError


def seed_arg(text: str) -> list[int] | range | int:
    """``"50"`` (a count), ``"0-49"`` (a range, kept lazy: the study refuses more than
    :data:`~mi_margin.studies.study.MAX_SEEDS` before building a list) or ``"3,5,8"`` (a list).

    Example:
        >>> seed_arg("3"), seed_arg("2-4"), seed_arg("1,7")
        (3, range(2, 5), [1, 7])
    """
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-"))
            return range(lo, hi + 1)
        if "," in text:
            return [int(x) for x in text.split(",")]
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seeds look like 50, 0-49 or 3,5,8; got {text!r}") from err


def add_study_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``study`` command to ``mi-margin``'s subparsers.

    Example:
        >>> parser = argparse.ArgumentParser(prog="mi-margin")
        >>> p = add_study_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["study", "chughtai_S4_mlp", "--out", "s4", "--seeds", "0-3"]).seeds
        range(0, 4)
    """
    from mi_margin.studies.stop import StopRule
    from mi_margin.zoo.recipes import POPULATIONS

    p = subparsers.add_parser(
        "study", help="train many seeds of a zoo population to a stop rule; one row per seed",
        description="Seeds already finished in --out are skipped, interrupted ones resume; rows "
                    "stream into OUT/rows.jsonl. Populations: " + ", ".join(sorted(POPULATIONS)),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("name", choices=sorted(POPULATIONS), metavar="NAME", help="population name")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, help="study folder")
    p.add_argument("--seeds", type=seed_arg, default=argparse.SUPPRESS,
                   help="a count (50), a range (0-49) or a list (3,5,8); default: the population's")
    p.add_argument("--address", default=argparse.SUPPRESS,
                   help="run seeds as Ray tasks: a cluster address (auto, 127.0.0.1:6379, "
                        "ray://head:10001) or 'local'; default: one after another here")
    p.add_argument("--cleanup", type=float, default=argparse.SUPPRESS,
                   help="train on for this fraction of the stable grokking step (default: "
                        f"{StopRule.cleanup})")
    p.add_argument("--patience", type=int, default=argparse.SUPPRESS,
                   help="evaluations at test accuracy >= 0.99 for a stable crossing (default: "
                        f"{StopRule.patience})")
    p.add_argument("--keep-runs", action="store_true", default=argparse.SUPPRESS,
                   help="keep each seed's run folder")
    p.add_argument("--resummarize", action="store_true",
                   help="train nothing: recompute the finished seeds' rows from their kept final "
                        "weights with this package's analyses (after an analysis changed), with "
                        "the study's own stop rule; refused with the flags above")
    p.add_argument("--report", default=None, help="also write the study's HTML report here")
    p.add_argument("--ship", default=None, metavar="DEST",
                   help="also write the population's summary table and card into DEST (the zoo's "
                        "is mi_margin/zoo/data/populations)")
    p.set_defaults(func=cmd_study)
    return p


#: the flags ``--resummarize`` cannot honor, by their argparse names: it trains nothing, here,
#: and recomputes every finished seed's row with the stop rule the study recorded
NOT_WITH_RESUMMARIZE = {"seeds": "--seeds", "address": "--address", "cleanup": "--cleanup",
                        "patience": "--patience", "keep_runs": "--keep-runs"}


def check_not_with_resummarize(given: dict[str, Any]) -> None:
    """Refuse the flags ``--resummarize`` would ignore (``given``: the parsed arguments, where
    these flags appear only when given), rather than ignore them silently."""
    ignored = [flag for name, flag in NOT_WITH_RESUMMARIZE.items() if name in given]
    if ignored:
        raise MiMarginError(f"--resummarize recomputes the rows of every finished seed with the "
                            f"study's own stop rule and trains nothing, so it cannot take "
                            f"{', '.join(ignored)}; leave them out (or run the study without "
                            "--resummarize to train)")


def _print_row(row: dict[str, Any]) -> None:
    print(f"seed {row['seed']}: step {row['step']}, grokked {row['grokked']} (stable at "
          f"{row['stable']}), test acc {row['test_acc']:.4f}", flush=True)


def cmd_study(args: argparse.Namespace) -> int:
    from mi_margin.studies import StopRule, study
    from mi_margin.studies.ship import check_source
    from mi_margin.studies.study import resummarize
    from mi_margin.studies.views import (
        grokking_distribution,
        key_count_distribution,
        label_frequency,
        none_generalized,
    )
    from mi_margin.zoo.recipes import POPULATIONS

    pop = POPULATIONS[args.name]
    given = vars(args)           # NOT_WITH_RESUMMARIZE's flags are in it only when given
    if args.resummarize:
        check_not_with_resummarize(given)
    if args.report:                        # checked before the seeds train, not after
        check_output_file(args.report, "the study's report")
    if args.ship and Path(args.ship).exists() and not Path(args.ship).is_dir():
        raise MiMarginError(f"--ship {args.ship} is a file, not a folder for the population")
    try:
        rule = StopRule(**{k: given[k] for k in ("patience", "cleanup") if k in given})
    except MiMarginError as err:
        raise MiMarginError(f"study: {err}") from err
    if args.resummarize:
        check_source(args.name, args.out)
        st = resummarize(args.out)
    else:
        st = study(args.name, given.get("seeds"), args.out, rule, address=given.get("address"),
                   keep_runs=given.get("keep_runs", False), on_row=_print_row)
    why = none_generalized(st)
    if why:                        # the label views count generalized seeds only: say why not
        print(why)
    else:
        print(label_frequency(st, pop.paper_key, pop.paper_seeds).to_dataframe()
              .to_string(index=False))
        print(key_count_distribution(st, pop.paper_n_key, pop.paper_seeds).to_dataframe()
              .to_string(index=False))
    print(grokking_distribution(st).describe().to_string())
    if args.report:
        from mi_margin.viz.population import write_study_report

        print(f"report written to {write_study_report(st, args.report, pop)}")
    if args.ship:
        from mi_margin.studies.ship import build

        print(f"population summary written to {build(args.name, args.out, args.ship)}")
    return 0

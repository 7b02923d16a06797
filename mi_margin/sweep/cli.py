"""``mi-margin sweep SPEC``: run a sweep spec and print its summary (the lead's cli.py calls
:func:`add_sweep_parser`)."""

from __future__ import annotations

import argparse
from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.sweep.execute import failed_rows, run_sweep
from mi_margin.sweep.summary import key_sets, universality


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to ``mi-margin``'s subparsers.

    Example:
        >>> parser = argparse.ArgumentParser(prog="mi-margin")
        >>> p = add_sweep_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["sweep", "s.toml", "--sequential"]).sequential
        True
    """
    p = subparsers.add_parser(
        "sweep", help="train and analyse every run of a sweep spec (TOML/YAML/JSON) on Ray",
        description="Runs already finished in the output folder are skipped; the results table "
                    "(table.parquet or table.csv) is rebuilt from the run folders. Exit status 1 "
                    "when a run failed (raised); a diverged run is a result, not a failure.")
    p.add_argument("spec", help="sweep spec file (.toml, .yaml, .json)")
    p.add_argument("--out", default=None, help="sweep folder (default: sweep_<spec name>)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. auto, ray://head:10001); default: a local "
                        "Ray instance on this machine's cores")
    p.add_argument("--sequential", action="store_true",
                   help="run in this process, one run after another, without Ray (debugging)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--cpus-per-run", type=int, default=1, help="CPUs (torch threads) per run")
    p.add_argument("--batch-on-gpu", action="store_true",
                   help="train shape-identical runs as one batched job on a GPU when there is one")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet",
                   help="results table format")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep, then print counts, the table path and the universality table if any."""
    res = run_sweep(args.spec, args.out, address=args.address, sequential=args.sequential,
                    num_cpus=args.num_cpus, cpus_per_run=args.cpus_per_run,
                    batch_on_gpu=args.batch_on_gpu, table_format=args.format)
    ran = res.n_runs - res.n_skipped
    print(f"{res.n_runs} runs ({res.n_skipped} already done, {ran} run now, {res.n_failed} failed "
          f"or diverged) in {res.seconds:.1f} s [{res.mode}]; table: {res.table_path.resolve()}")
    errors = [c for c in res.table.columns if c.endswith("_error") and c != "error"]
    for _, row in res.table[failed_rows(res.table)].iterrows():
        what = [f"{row['status']}: {row['error']}"] if row["status"] in ("failed", "diverged") else []
        what += [f"{c[:-len('_error')]} analysis: {row[c]}" for c in errors if isinstance(row[c], str)]
        print(f"  {row['run_id']}: " + "; ".join(what))
    if any(c in res.table for c in ("key_irreps", "key_frequencies")):
        try:
            print(universality(res.table).to_string(index=False))
            print(key_sets(res.table).to_string(index=False))
        except MiMarginError as err:  # no run has analysis results yet
            print(f"no universality table: {err}")
    # a run that raised is an error (exit status 1, the table is kept); a diverged run is a result
    return 1 if (res.table["status"] == "failed").any() else 0

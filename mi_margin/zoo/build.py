"""Build zoo entries: train a recipe, or take a run folder, and write the entry with its card.

Command line (one torch thread; see docs/performance.md)::

    python -m mi_margin.zoo.build train NAME --out DIR        # the run DIR/run, the entry DIR/NAME
    python -m mi_margin.zoo.build train NAME --out DIR --resume   # continues DIR/run
    python -m mi_margin.zoo.build entry NAME --run DIR/run    # writes the entry DIR/NAME
    python -m mi_margin.zoo.build entry NAME... --runs-root ROOT   # run folders ROOT/NAME/run
    python -m mi_margin.zoo.build entry NAME --run DIR/run --dest mi_margin/zoo/data --overwrite
                                                              # replaces the installed entry
    python -m mi_margin.zoo.build cards                       # rewrite every card from the entries
    python -m mi_margin.zoo.build table                       # the README "Reproductions" table

An entry is written next to its run folder unless ``--dest`` says where, and an existing entry
folder is replaced only with ``--overwrite``: rebuilding never touches the installed package
unless asked to.

``train`` records the wall time at every evaluation in the history column ``wall_s`` and the
machine in ``DIR/machine.json``. ``entry`` keeps about ``recipe.n_ship`` checkpoints
(:func:`~mi_margin.zoo.phases.pick_checkpoints`), stores each intermediate one in the smallest of
float16 / float32 on which the analyses give the same answers (:mod:`mi_margin.zoo.checks`; the
initialisation, when the model config's seed rebuilds it, as a small correction that every CPU
decodes to the same bits, :mod:`mi_margin.zoo.init`), and writes the card
(:mod:`mi_margin.zoo.cards`) from the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

import mi_margin as mm
from mi_margin.errors import MiMarginError
from mi_margin.models.config import dtype_name
from mi_margin.models.io import build_model
from mi_margin.theory.predictions import max_margin
from mi_margin.theory.recipe import margin_metric
from mi_margin.training import Run
from mi_margin.zoo import cards
from mi_margin.zoo.checks import same_answers, signature
from mi_margin.zoo.phases import pick_checkpoints
from mi_margin.zoo.recipes import RECIPES, Recipe
from mi_margin.zoo.store import INIT, read_entry, read_meta, variants, write_entry

DATA = Path(__file__).parent / "data"
#: reduced precisions tried for intermediate checkpoints, smallest first
REDUCED = ("float16", "float32")


def recipe(name: str) -> Recipe:
    """The recipe called ``name`` (a clear error listing the valid names otherwise)."""
    if name not in RECIPES:
        raise MiMarginError(f"no zoo recipe {name!r}; valid: {sorted(RECIPES)}")
    return RECIPES[name]


def machine() -> dict[str, Any]:
    """The CPU, thread count and library versions a timing was measured with."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "mi_margin": mm.__version__, "python": platform.python_version(),
            "loadavg_at_start": round(os.getloadavg()[0], 2)}


def wall_clock(wall_before: float = 0.0, cpu_before: float = 0.0) -> Any:
    """A ``train(metrics=...)`` callable: wall-clock and CPU seconds (this process) since training
    started, ``wall_s`` and ``cpu_s`` (CPU time is what a busy shared machine does not inflate).
    A resumed run passes the seconds its earlier sessions used, so the columns keep counting."""
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    return lambda model, task: {"wall_s": time.perf_counter() - wall,
                                "cpu_s": time.process_time() - cpu}


def train_recipe(name: str, out: str | Path | None = None, resume: bool = False) -> Run:
    """Train recipe ``name``; with ``out``, the run folder is ``out/run`` and the machine is
    recorded in ``out/machine.json``. With ``resume``, a run already in ``out/run`` continues
    exactly where it stopped (a long recipe may take several sessions)."""
    rec = recipe(name)
    model, task, config = rec.make()
    run_dir = Path(out) / "run" if out is not None else None
    previous = None
    if resume:
        if run_dir is None or not (run_dir / "run.json").is_file():
            raise MiMarginError(f"nothing to resume: no run folder at {run_dir}")
        previous = mm.load(run_dir)
        if previous.config != config:
            raise MiMarginError(f"{run_dir} was trained with another config than recipe {name!r}")
    last = previous.history.iloc[-1] if previous is not None and len(previous.history) else {}
    metrics = [wall_clock(float(last.get("wall_s", 0.0)), float(last.get("cpu_s", 0.0)))]
    if rec.kind == "max_margin":
        metrics.append(margin_metric(max_margin(task).gamma))
    if previous is not None:
        return mm.train(previous.model, previous.task, config, run=previous, metrics=metrics)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "machine.json").write_text(json.dumps(machine(), indent=1))
    return mm.train(model, task, config, out_dir=run_dir, metrics=metrics)


def choose_precision(run: Run, steps: list[int]) -> tuple[dict[int, str], dict[str, Any]]:
    """dtype per kept step (final: the model's own; others the first of ``REDUCED`` that leaves
    their signature unchanged, else the model's own) and the full-precision signatures the entry
    records."""
    dtypes: dict[int, str] = {}
    recorded: dict[str, Any] = {}
    seeded = build_model(run.model.cfg.to_dict()).state_dict()
    for step in steps:
        model = run.model_at(step)
        full = signature(model, run.task)
        recorded[str(step)] = full
        if step == run.step:
            dtypes[step] = dtype_name(model.cfg.dtype)
            continue
        if same_weights(run.checkpoints[step], seeded):
            dtypes[step] = INIT
            continue
        own = dtype_name(model.cfg.dtype)
        dtypes[step] = next((d for d in REDUCED if d != own
                             and same_answers(full, signature(rounded(run, step, d), run.task))),
                            own)
    return dtypes, recorded


def same_weights(state: dict[str, torch.Tensor], seeded: dict[str, torch.Tensor]) -> bool:
    """``state`` is bit for bit ``seeded``, the model its config's seed builds (then the entry
    stores it as a correction to its portable rebuild, :mod:`mi_margin.zoo.init`)."""
    return all(torch.equal(value, seeded[name]) for name, value in state.items())


def rounded(run: Run, step: int, dtype: str) -> Any:
    """The model at checkpoint ``step`` with its weights rounded to ``dtype`` (and back)."""
    model = run.model_at(step)
    model.load_state_dict({k: v.to(getattr(torch, dtype)).to(v.dtype)
                           for k, v in run.checkpoints[step].items()})
    return model


def build_entry(name: str, run: Run | str | Path, dest: str | Path,
                machine_info: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write the zoo entry ``dest/name`` from ``run`` (a Run or a run folder) and its card;
    returns the entry folder. An existing entry there is replaced only with ``overwrite``."""
    rec = recipe(name)
    root = Path(dest) / name
    if (root / "entry.json").exists() and not overwrite:
        raise MiMarginError(f"{root} already holds an entry; pass overwrite=True (--overwrite) "
                            "to replace it")
    if not isinstance(run, Run):
        folder = Path(run)
        run = mm.load(folder)
        info = folder.parent / "machine.json"
        if machine_info is None and info.is_file():
            machine_info = json.loads(info.read_text())
    assert isinstance(run, Run)
    if run.step not in run.checkpoints:
        run.checkpoints[run.step] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    steps = pick_checkpoints(sorted(run.checkpoints), run.history, rec.n_ship, rec.kind)
    dtypes, recorded = choose_precision(run, steps)
    build: dict[str, Any] = {"recipe": name, "machine": machine_info or {},
                             "built": time.strftime("%Y-%m-%d")}
    final = None
    if rec.finish is not None:
        start = time.perf_counter()
        final = dict(rec.finish(run.model_at(run.step), run.task).state_dict())
        build["finish"] = {"function": rec.finish.__name__,
                           "seconds": round(time.perf_counter() - start, 2), "variant": rec.variant}
    write_entry(root, run, dtypes, build, {"signatures": recorded}, final)
    write_card(root)
    return root


def card_text(root: Path) -> str:
    """The card of the entry folder ``root``, computed from its shipped files: the trained model
    and each named variant (:func:`~mi_margin.zoo.store.variants`)."""
    meta = read_meta(root)
    dtypes = {int(s): d for s, d in meta["checkpoints"].items()}
    named = {v: read_entry(root, v).model for v in variants(meta)}
    return cards.card(recipe(root.name), read_entry(root), meta["build"], dtypes, named)


def write_card(root: Path) -> None:
    """(Re)write an entry's card from its shipped files (also after a change to the card layout)."""
    (root / "card.md").write_text(card_text(root))


def reproductions_table(dest: str | Path = DATA) -> str:
    """The README's "Reproductions" table, one row per built entry, read from the cards."""
    rows = ["| paper figure | reproduced? (what differs) | ours (times: machine, threads, load) "
            "| how to regenerate |", "|---|---|---|---|"]
    for root in sorted(p for p in Path(dest).iterdir() if (p / "card.md").is_file()):
        rows.append(cards.table_row(recipe(root.name), (root / "card.md").read_text()))
    return "\n".join(rows)


TABLE_START, TABLE_END = "<!-- zoo-table -->", "<!-- /zoo-table -->"


def update_readme(path: str | Path, dest: str | Path = DATA) -> None:
    """Replace the table between the zoo-table markers of ``path`` by :func:`reproductions_table`."""
    text = Path(path).read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise MiMarginError(f"{path} has no {TABLE_START} ... {TABLE_END} markers")
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    Path(path).write_text(f"{head}{TABLE_START}\n{reproductions_table(dest)}\n{TABLE_END}{tail}")


def report_size(dest: str | Path = DATA) -> str:
    """Total size of the files under ``dest`` against the 25 MB budget (tests/zoo checks it),
    leaving out run folders (``train --out DIR`` writes the run and the entry side by side)."""
    runs = [p.parent for p in Path(dest).rglob("run.json")]
    total = sum(p.stat().st_size for p in Path(dest).rglob("*")
                if p.is_file() and not any(p.is_relative_to(run) for run in runs))
    return f"zoo size {total / 1e6:.2f} MB of the 25 MB budget"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mi_margin.zoo.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train a recipe into OUT/run, then build its entry")
    p_train.add_argument("name")
    p_train.add_argument("--out", required=True)
    p_train.add_argument("--no-entry", action="store_true", help="only train")
    p_train.add_argument("--resume", action="store_true", help="continue the run in OUT/run")
    p_entry = sub.add_parser("entry", help="build entries from run folders")
    p_entry.add_argument("names", nargs="+")
    where = p_entry.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="the run folder (one name)")
    where.add_argument("--runs-root", help="run folders are RUNS_ROOT/NAME/run (train --out RUNS_ROOT/NAME)")
    for p in (p_train, p_entry):
        p.add_argument("--dest", help="write the entry to DEST/NAME (default: next to its run "
                       "folder, OUT/NAME or RUN/../NAME); the installed zoo is mi_margin/zoo/data")
        p.add_argument("--overwrite", action="store_true", help="replace an existing entry DEST/NAME")
    p_table = sub.add_parser("table", help="print the Reproductions table")
    p_table.add_argument("--readme", help="rewrite the table inside this README instead")
    p_cards = sub.add_parser("cards", help="regenerate every entry's card from its shipped files")
    p_cards.add_argument("--dest", default=str(DATA))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "table":
        if args.readme:
            update_readme(args.readme)
        else:
            print(reproductions_table())
        return
    if args.command == "cards":
        for root in sorted(p for p in Path(args.dest).iterdir() if (p / "entry.json").is_file()):
            write_card(root)
            print(root / "card.md")
        return
    if args.command == "train":
        dest = args.dest or args.out
        if not args.no_entry and (Path(dest) / args.name / "entry.json").exists() and not args.overwrite:
            parser.error(f"{Path(dest) / args.name} already holds an entry; add --overwrite to replace it")
        run = train_recipe(args.name, args.out, args.resume)
        print(f"trained {args.name}: {run}", flush=True)
        if args.no_entry:
            return
        print(build_entry(args.name, Path(args.out) / "run", dest, overwrite=args.overwrite),
              report_size(dest))
        return
    if args.run and len(args.names) > 1:
        parser.error("--run takes one name; use --runs-root for several")
    for name in args.names:
        folder = Path(args.run or Path(args.runs_root) / name / "run")
        dest = args.dest or folder.parent
        print(build_entry(name, folder, dest, overwrite=args.overwrite), report_size(dest), flush=True)


if __name__ == "__main__":
    main()

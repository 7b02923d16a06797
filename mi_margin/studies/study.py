"""Studies: many seeds of one setting, trained to a stop rule, one summary row per seed.

``mm.study(source, seeds, out)`` trains every seed that is not done yet (resuming any that were
interrupted), streams one row per seed as it finishes into ``OUT/rows.jsonl``, and returns a
:class:`Study` whose table and population views (:mod:`mi_margin.studies.views`) are what the papers
print over seeds: how often each irrep or frequency is key, the grokking-step distribution, the
number of key labels per seed. ``source`` is a zoo population name (``mm.zoo.recipes.POPULATIONS``)
or any ``seed -> (model, task, TrainConfig)`` callable.

Layout of ``OUT``::

    study.json              what the study is (source, stop rule, seeds)
    rows.jsonl              one summary row per finished seed, appended as seeds finish
    seed_S/run/             the seed's run folder while it trains (removed once exported)
    seed_S/final.safetensors, seed_S/history.csv   the finished seed (see mi_margin.studies.seeds)
    seed_S/error.txt        the traceback of a seed that failed (removed once it succeeds)

A seed that fails (its recipe raises, its training diverges, ...) gets no row: the other seeds
go on, and the study then raises an error naming the failed seeds. Calling again retries them;
leaving them out of ``seeds`` finishes the study without them.

Every step is safe to kill: a run folder resumes exactly, the export is atomic, and a row is only
trusted once its line is complete, so running the same call again finishes the study with the same
table. With ``address=`` the seeds run as Ray tasks on a cluster (``"auto"``, ``host:port`` of a
cluster started with ``ray start --head``; a wrong address fails in seconds, checked as a sweep's
is); ``OUT`` must then be on a filesystem every node sees.

Example:
    >>> import mi_margin as mm
    >>> def tiny(seed):
    ...     task = mm.ModularAddition(p=7, train_fraction=0.6, seed=seed)
    ...     model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32, seed=seed))
    ...     return model, task, mm.TrainConfig(steps=40, lr=1e-2, eval_every=20, progress=False)
    >>> st = mm.study(tiny, seeds=2, out=getfixture("tmp_path") / "st", progress=False)
    >>> st.table["seed"].tolist()
    [0, 1]
"""

from __future__ import annotations

import itertools
import json
import numbers
import os
import shutil
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin._progress import progress_bar
from mi_margin.errors import MiMarginError
from mi_margin.models.files import append_durably, atomic_write
from mi_margin.studies.seeds import (
    SeedRecipe,
    built,
    check_same_recipe,
    check_trainable,
    export_seed,
    is_exported,
    read_seed,
    recipe_name,
    train_seed,
)
from mi_margin.studies.stop import StopRule
from mi_margin.studies.summary import summary_row
from mi_margin.sweep.execute import connect, import_ray
from mi_margin.zoo.recipes import POPULATIONS

ROWS, META, ERROR = "rows.jsonl", "study.json", "error.txt"


def recipe_of(source: str | SeedRecipe) -> SeedRecipe:
    """The seed recipe of a population name or a callable."""
    if isinstance(source, str):
        if source not in POPULATIONS:
            raise MiMarginError(f"no population {source!r}; valid: {sorted(POPULATIONS)}")
        return POPULATIONS[source].make
    if not callable(source):
        raise MiMarginError(f"source must be a population name or a seed -> (model, task, config) "
                            f"callable, got {type(source).__name__}")
    return source


#: the most seeds one study takes (each is a training run; the list is built before any trains)
MAX_SEEDS = 1_000_000


def seed_list(seeds: int | Iterable[int] | None, source: str | SeedRecipe) -> list[int]:
    """``seeds`` as a sorted list of ints: a count (0..n-1), an iterable (e.g. ``range`` or
    ``numpy.arange``), or None (a population's all)."""
    if seeds is None:
        if not isinstance(source, str):
            raise MiMarginError("seeds= is needed when the source is not a zoo population")
        seeds = POPULATIONS[source].seeds
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = range(int(seeds))
    if not isinstance(seeds, Iterable) or isinstance(seeds, (str, bytes)):
        raise MiMarginError(f"seeds must be a count or a list of seeds, got {seeds!r}")
    out = list(itertools.islice(seeds, MAX_SEEDS + 1))        # an endless iterator stops here
    if len(out) > MAX_SEEDS:
        raise MiMarginError(f"seeds: more than {MAX_SEEDS:,} seeds (got {seeds!r}); a study of "
                            "that many would not finish; split it into several studies")
    if not out or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0
                      for s in out):
        raise MiMarginError(f"seeds must be a positive count or non-negative integers, got {seeds!r}")
    out = [int(s) for s in out]
    if len(set(out)) != len(out):
        raise MiMarginError(f"seeds must not repeat, got {sorted(out)}")
    return sorted(out)


@dataclass(frozen=True)
class SeedFailure:
    """A seed that raised instead of giving a row: ``error`` is the exception's type and
    message; its traceback is in ``seed_S/error.txt``."""

    seed: int
    error: str


def seed_job(source: str | SeedRecipe, seed: int, out: str, rule: StopRule,
             keep_run: bool = False, progress: bool = False) -> dict[str, Any] | SeedFailure:
    """Train, export and summarize one seed (a Ray task on a cluster); returns its row, or a
    :class:`SeedFailure` if anything raised (so that the other seeds go on; :func:`study`
    reports it). With ``progress``, the seed's training shows a bar (local studies only: a Ray
    worker's bars would interleave in the driver's output)."""
    torch.set_num_threads(max(1, int(os.environ.get("MI_MARGIN_STUDY_THREADS", "1"))))
    recipe, folder = recipe_of(source), Path(out) / f"seed_{seed}"
    try:
        if not is_exported(folder):
            run, budget = train_seed(recipe, seed, folder, rule, progress)
            export_seed(run, folder, budget, rule)
        row = seed_row(folder, seed, rule)
    except Exception as err:  # one seed's failure must not stop the others
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ERROR).write_text(traceback.format_exc())
        return SeedFailure(seed, f"{type(err).__name__}: {err}")
    (folder / ERROR).unlink(missing_ok=True)
    if not keep_run and (folder / "run").exists():
        shutil.rmtree(folder / "run")
    return row


def failure_error(out: Path, failed: list[SeedFailure], wanted: list[int]) -> MiMarginError:
    """The error a study raises when seeds failed: which, why, and the two ways on."""
    bad = {f.seed for f in failed}
    rest = ",".join(str(s) for s in wanted if s not in bad)
    why = "; ".join(f"seed {f.seed}: {f.error}" for f in sorted(failed, key=lambda f: f.seed))
    return MiMarginError(
        f"{len(failed)} of the {len(wanted)} seeds of the study in {out} failed ({why}); "
        f"tracebacks in {out}/seed_S/{ERROR}. The other seeds' rows are in {ROWS}. Calling the "
        "study again retries the failed seeds (from their run folders); to finish it without "
        f"them, leave them out of the seeds: " + (f"seeds=[{rest}] (--seeds {rest})" if rest
                                                 else "no seed is left"))


def seed_row(folder: Path, seed: int, rule: StopRule) -> dict[str, Any]:
    """The summary row of the exported seed in ``folder``, from its kept record alone."""
    model, task, history, meta = read_seed(folder)
    return summary_row(seed, model, task, history, meta, rule)


def read_meta(path: Path) -> dict[str, Any]:
    """A study folder's ``study.json``; a missing or damaged one is a clear error (it is replaced
    whole, so only an outside edit damages it)."""
    if not path.is_file():
        raise MiMarginError(f"{path.parent} holds no study ({path.name} is missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MiMarginError(f"{path} is not a study's record (not JSON: {err}); restore it or "
                            "use another folder") from None
    if not isinstance(meta, dict) or "source" not in meta:
        raise MiMarginError(f"{path} is not a study's record (no 'source'); restore it or use "
                            "another folder")
    return meta


def read_rows(path: Path) -> dict[int, dict[str, Any]]:
    """Rows by seed from ``rows.jsonl``; an incomplete last line (a kill mid-write) is ignored."""
    rows: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "seed" in row:
            rows[int(row["seed"])] = row
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row as a complete line, on disk before returning."""
    append_durably(path, (json.dumps(row) + "\n").encode())


def resummarize(out: str | Path, progress: bool = True) -> Study:
    """Recompute every finished seed's row of the study in ``out`` from its kept record (final
    weights and history, :func:`~mi_margin.studies.seeds.read_seed`) with the analyses of the
    installed package, and replace ``rows.jsonl`` with them (atomically: a kill leaves the old
    rows or all the new ones). For a study summarized before an analysis changed; no seed is
    retrained, and seeds without a record (still training) keep no row until they finish.

    Example:
        >>> st = resummarize("populations/chughtai_S4_mlp")      # doctest: +SKIP
    """
    out = Path(out)
    meta = read_meta(out / META)
    rule = StopRule(**meta["rule"])
    seeds = [s for s in meta["seeds"] if is_exported(out / f"seed_{s}")]
    rows = [seed_row(out / f"seed_{seed}", seed, rule)
            for seed in progress_bar(seeds, desc=f"resummarize {meta['source']}",
                                     disable=not progress)]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    atomic_write(out / ROWS, lambda tmp: Path(tmp).write_text(text))
    return Study(source=meta["source"], out=out, rule=rule, table=pd.DataFrame(rows))


def _local(jobs: list[tuple[Any, ...]],
           progress: bool) -> Iterator[dict[str, Any] | SeedFailure]:
    for source, seed, out, rule, keep_run in jobs:
        yield seed_job(source, seed, out, rule, keep_run, progress)


def _ray(jobs: list[tuple[Any, ...]], address: str,
         runtime_env: dict[str, Any] | None) -> Iterator[dict[str, Any] | SeedFailure]:
    """Rows (or :class:`SeedFailure`) of ``jobs`` run as Ray tasks, in the order they finish. A
    task whose worker or node dies is run again (a seed resumes from its run folder, so a retry
    loses nothing and a seed is never counted twice: rows are keyed by seed)."""
    ray = import_ray()
    started = connect(ray, None if address == "local" else address, None, runtime_env)
    remote = ray.remote(num_cpus=1, max_retries=3)(seed_job)
    pending = [remote.remote(*job) for job in jobs]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


@dataclass
class Study:
    """A study's rows and where they live; views in :mod:`mi_margin.studies.views`.

    Attributes:
        source: population name (or the recipe's name); out: the study folder;
        rule: the stop rule; table: one row per finished seed, sorted by seed.
    """

    source: str
    out: Path
    rule: StopRule
    table: pd.DataFrame


def study(source: str | SeedRecipe, seeds: int | Iterable[int] | None = None,
          out: str | Path = "study", rule: StopRule | None = None, address: str | None = None,
          progress: bool = True, keep_runs: bool = False,
          on_row: Callable[[dict[str, Any]], None] | None = None,
          runtime_env: dict[str, Any] | None = None) -> Study:
    """Run (or finish) a study and return it; see the module docstring.

    Args:
        source: a zoo population name or a ``seed -> (model, task, TrainConfig)`` callable.
        seeds: a count, the seeds themselves, or None for a population's own count.
        out: the study folder (created; a study already there continues).
        rule: when a seed may stop (default :class:`StopRule`).
        address: run seeds as Ray tasks: a cluster address (``"auto"``, ``"ray://head:10001"``,
            ``"127.0.0.1:6379"``) or ``"local"`` for an embedded instance on this machine's cores;
            None (default): one after another in this process.
        progress: show the study's bar and, one after another here, the current seed's training
            (its steps out of its budget, and its test accuracy) in a second bar.
        keep_runs: keep each seed's run folder after export (checkpoints of its chunks).
        on_row: called with each new row as it arrives (e.g. to print or plot live).
        runtime_env: Ray's runtime environment for the tasks (e.g. ``{"env_vars":
            {"PYTHONPATH": ...}}`` when the nodes do not have mi_margin installed).

    Raises:
        MiMarginError: before any seed trains, for a recipe the study cannot measure (a task
            without test inputs, an ``eval_every`` that does not divide ``rule.chunk``:
            :func:`~mi_margin.studies.seeds.check_trainable`) or one that no longer builds the
            finished seeds; after the other seeds, when some seeds failed (naming them).
    """
    rule = rule or StopRule()
    if not isinstance(rule, StopRule):
        raise MiMarginError(f"rule must be a StopRule, got {type(rule).__name__}")
    if on_row is not None and not callable(on_row):       # refused before any seed trains
        raise MiMarginError(f"on_row must be a function of a row, got {on_row!r}")
    if address is not None and not isinstance(address, str):
        raise MiMarginError(f"address must be a string such as 'auto', '127.0.0.1:6379' or "
                            f"'local', got {address!r}")
    recipe = recipe_of(source)
    wanted = seed_list(seeds, source)
    name = recipe_name(source)
    out = study_folder(out)
    meta = {"source": name, "rule": rule.to_dict()}
    old = read_meta(out / META) if (out / META).is_file() else dict(meta)
    if {k: old.get(k) for k in meta} != meta:
        raise MiMarginError(f"{out} holds a study of {old.get('source')!r} with rule "
                            f"{old.get('rule')}; this call is {meta}: use another folder")
    rows = read_rows(out / ROWS)
    todo = [s for s in wanted if s not in rows]
    if todo:                      # a recipe the study cannot measure is refused before training
        _, task, config = built(recipe, todo[0])
        check_trainable(recipe, task, config, rule)
    for s in wanted:              # a finished seed counts only if the recipe still builds it
        if is_exported(out / f"seed_{s}"):
            check_same_recipe(recipe, s, out / f"seed_{s}")
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**meta, "seeds": sorted(set(wanted) | set(old.get("seeds", [])))})
    # replaced whole: a kill never half-writes it
    atomic_write(out / META, lambda tmp: Path(tmp).write_text(text))
    jobs = [(source, s, str(out), rule, keep_runs) for s in todo]
    stream = _ray(jobs, address, runtime_env) if address is not None else _local(jobs, progress)
    failed: list[SeedFailure] = []
    with progress_bar(total=len(wanted), initial=len(wanted) - len(jobs), desc=f"study {name}",
                      disable=not progress) as bar:
        for row in stream:
            bar.update(1)
            if isinstance(row, SeedFailure):
                failed.append(row)
                continue
            append_row(out / ROWS, row)
            rows[row["seed"]] = row
            if on_row is not None:
                on_row(row)
            bar.set_postfix(grokked=f"{sum(r['grokked'] for r in rows.values())}/{len(rows)}")
    if failed:
        raise failure_error(out, failed, wanted)
    table = pd.DataFrame([rows[s] for s in wanted if s in rows])
    return Study(source=name, out=out, rule=rule, table=table)


def study_folder(out: Any) -> Path:
    """``out`` as a study folder's path, refused unless it is a path that is not a file."""
    if not isinstance(out, (str, os.PathLike)):
        raise MiMarginError(f"out must be a folder path, got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MiMarginError(f"out={str(out)!r} is a file, not a study folder")
    return out

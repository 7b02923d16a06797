"""What one sweep worker does: train one run (or a batch of runs) into its folder, then analyse it.

A run folder is an ordinary ``train(..., out_dir=...)`` folder (``run.json``, ``history.csv``,
weights, checkpoints) plus three sweep files: ``sweep_run.json`` (the run's spec and timing),
``analysis.json`` (each analysis's results or error) and, when something raised, ``error.txt``
(the traceback). Everything the sweep table shows is read back from these files, so an interrupted
sweep loses nothing that was written, and a second invocation knows what is left to do:

- status ``finished`` / ``stopped_early`` with every analysis done: nothing;
- the same with an analysis missing or failed: the analyses only (the model is loaded);
- status ``diverged``: nothing (a deterministic outcome, reported in the table with its error);
- status ``running`` (the sweep was interrupted mid-run): training resumes exactly where it
  stopped (:func:`mi_margin.resume`);
- no ``run.json`` (never started, or failed before training): the run is trained from scratch.
"""

from __future__ import annotations

import json
import socket
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mi_margin.models import HookedMLP, HookedOneLayerTransformer, MLPConfig, TransformerConfig
from mi_margin.models.files import atomic_write
from mi_margin.sweep.analyses import run_analyses
from mi_margin.sweep.spec import RunSpec
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.training import TrainConfig, load_run, resume, train
from mi_margin.training.batched import train_batched
from mi_margin.training.run_folder import read_status

SPEC_FILE = "sweep_run.json"
ANALYSIS_FILE = "analysis.json"
ERROR_FILE = "error.txt"
#: run.json statuses after which a run is never trained again
TERMINAL = ("finished", "stopped_early", "diverged")
#: model config fields that may differ inside one batched job (they only change the initial weights)
INIT_ONLY = ("seed", "init_scale")
#: TrainConfig fields every run of one batched job must share (mi_margin.training.batched)
SHARED_TRAIN = ("optimizer", "batch_size", "microbatch", "snapshot_every")


# -- reading a run folder -------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when the file is missing or damaged (a damaged sweep
    file is rewritten by the next invocation: analyses are redone, timing restarts)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def run_status(root: Path) -> str | None:
    """``status`` from the folder's ``run.json`` (None before training wrote one, or if it is
    damaged: training it again then fails with the reason)."""
    return read_status(root)


def run_dir_for(out: Path, run: RunSpec) -> Path:
    """The folder of ``run`` under ``out``: an existing folder with its config hash (so a run keeps
    its folder when axes are extended and grid indices shift), else ``out / run.run_id``."""
    matches = sorted(out.glob(f"*-{run.config_hash}"))
    return matches[0] if matches else out / run.run_id


def pending_work(root: Path, run: RunSpec) -> str:
    """``"none"``, ``"analyses"`` or ``"train"`` (see the module docstring)."""
    status = run_status(root)
    if status == "diverged":
        return "none"
    if status in TERMINAL:
        return "analyses" if analyses_to_do(root, run) else "none"
    return "train"


def analyses_to_do(root: Path, run: RunSpec) -> tuple[str, ...]:
    """The analyses of ``run`` without a result, with an error, or run with other options."""
    done = read_json(root / ANALYSIS_FILE)
    return tuple(a for a in run.analyses if a not in done or "error" in done[a]
                 or done[a].get("options", {}) != run.analysis_options.get(a, {}))


# -- building and training ------------------------------------------------------------------------
def build(run: RunSpec) -> tuple[Any, Any, Any]:
    """(model, task, TrainConfig) of ``run``; bad values raise here (and fail only this run)."""
    task = task_from_dict(run.task)
    overrides = {k: v for k, v in run.model.items() if k != "kind"}
    model: Any
    if run.model["kind"] == "transformer":
        model = HookedOneLayerTransformer(TransformerConfig.for_task(task, **overrides))
    else:
        model = HookedMLP(MLPConfig.for_task(task, **overrides))
    return model, task, train_config(run)


def train_config(run: RunSpec) -> Any:
    """The run's :class:`~mi_margin.TrainConfig` (progress bars off: the sweep has its own)."""
    return TrainConfig.from_dict({**run.train, "progress": False})


def _train_one(root: Path, run: RunSpec) -> Any:
    status = run_status(root)
    if status == "running":  # interrupted: continue from the last snapshot, exactly
        return resume(root, steps=train_config(run).steps)
    if status in TERMINAL:
        return load_run(root)
    model, task, config = build(run)
    return train(model, task, config, out_dir=root)


def _start(root: Path, run: RunSpec) -> float:
    root.mkdir(parents=True, exist_ok=True)
    (root / ERROR_FILE).unlink(missing_ok=True)
    seconds = read_json(root / SPEC_FILE).get("seconds", 0.0)   # earlier attempts' worker time
    write_json(root / SPEC_FILE, {"spec": run.to_dict(), "host": socket.gethostname(),
                                  "seconds": seconds})
    return time.perf_counter()


def _finish(root: Path, run: RunSpec, trained: Any, seconds: float) -> dict[str, Any]:
    """Run the missing analyses on the trained model, record timing; the worker's summary."""
    spec = read_json(root / SPEC_FILE)
    spec["seconds"] = spec.get("seconds", 0.0) + seconds
    write_json(root / SPEC_FILE, spec)
    todo = analyses_to_do(root, run)
    if todo:
        done = read_json(root / ANALYSIS_FILE)
        with torch.no_grad():
            done.update(run_analyses(todo, trained.model.cpu(), trained.task,
                                     run.analysis_options))
        write_json(root / ANALYSIS_FILE, done)
    return {"run_id": root.name, "status": trained.status, "error": None}


def record_failure(root: Path, message: str) -> dict[str, Any]:
    """Write ``error.txt`` and return the worker's summary of a failed run."""
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / ERROR_FILE, lambda tmp: Path(tmp).write_text(message))
    last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return {"run_id": root.name, "status": run_status(root) or "failed", "error": last}


def execute_run(run_dict: dict[str, Any], run_dir: str, threads: int | None = None
                ) -> dict[str, Any]:
    """Train (or resume) one run into ``run_dir`` and analyse it; never raises.

    ``threads`` sets torch's intra-op threads (a Ray worker gets as many as the CPUs it reserved).

    Example:
        >>> execute_run(spec.runs()[0].to_dict(), "sweep/0000-1a2b3c4d5e")   # doctest: +SKIP
        {'run_id': '0000-1a2b3c4d5e', 'status': 'finished', 'error': None}
    """
    run, root = RunSpec.from_dict(run_dict), Path(run_dir)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if pending_work(root, run) == "none":
            return {"run_id": root.name, "status": run_status(root), "error": None}
        start = _start(root, run)
        trained = _train_one(root, run)
        return _finish(root, run, trained, time.perf_counter() - start)
    except Exception:  # any failure belongs to this run only
        return record_failure(root, traceback.format_exc())


# -- batched jobs (GPU) ---------------------------------------------------------------------------
def batch_key(run: RunSpec) -> str:
    """Runs with equal keys can train as one batched job (``train_batched``): the same task, the
    same model up to its seed/init scale, and the same optimizer and batching."""
    model = {k: v for k, v in run.model.items() if k not in INIT_ONLY}
    train = {k: run.train.get(k) for k in SHARED_TRAIN}
    if run.train.get("batch_size") is not None:
        train["seed"] = run.train.get("seed")
    return json.dumps({"task": run.task, "model": model, "train": train}, sort_keys=True,
                      default=str)


def execute_group(run_dicts: Sequence[dict[str, Any]], run_dirs: Sequence[str],
                  threads: int | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """Train fresh, shape-identical runs as one ``train_batched`` job, then analyse each.

    If the batch cannot be built (a bad value in one run), every run falls back to
    :func:`execute_run` so that only the bad one fails.
    """
    runs = [RunSpec.from_dict(d) for d in run_dicts]
    roots = [Path(p) for p in run_dirs]
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        built = [build(r) for r in runs]
    except Exception:
        return [execute_run(d, p, threads) for d, p in zip(run_dicts, run_dirs)]
    starts = [_start(root, run) for root, run in zip(roots, runs)]
    try:
        trained = train_batched([b[0] for b in built], built[0][1], [b[2] for b in built],
                                device=device, out_dirs=roots)
    except Exception:
        message = traceback.format_exc()
        return [record_failure(root, message) for root in roots]
    seconds = (time.perf_counter() - starts[0]) / len(runs)
    out = []
    for root, run, result in zip(roots, runs, trained):
        try:
            if result.status == "diverged":
                out.append(record_failure(root, "TrainingDivergedError: the loss became "
                                                "NaN/inf in batched training"))
            else:
                out.append(_finish(root, run, result, seconds))
        except Exception:
            out.append(record_failure(root, traceback.format_exc()))
    return out

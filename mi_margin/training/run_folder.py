"""Run folders: snapshots that appear all at once or not at all, and a loader that checks everything.

Layout (format ``mi_margin.run/2``)::

    run.json                     the published snapshot: task, model and train configs, step, status,
                                 the snapshot folder, the kept checkpoints and how much of
                                 history.csv belongs to the run, each with its SHA-256, and a
                                 SHA-256 of run.json itself
    history.csv                  one row per evaluation, appended as training goes
    snapshots/step_XXXXXXXX_id/  model.safetensors (weights) and train_state.safetensors
                                 (optimizer and RNG state for an exact resume)
    checkpoints/step_XXXXXXXX.safetensors   kept weights (log- or linearly spaced steps)
    model.safetensors            a hard link to the published snapshot's weights (convenience;
                                 the folder's loader does not read it; ``mm.load`` of this file
                                 checks it against run.json)
    writer.lock                  the pid of the process writing the folder, locked while it writes

One process at a time writes a folder: :meth:`RunWriter.start` and :meth:`RunWriter.reopen` take
an exclusive lock (``flock``) on ``writer.lock``, which the OS releases when the process ends,
however it ends; a second writer is refused naming the holder's pid. A snapshot is written in this
order: new checkpoint files, the snapshot folder (built under a temporary name, fsync-ed, renamed
into ``snapshots/``), the new history rows (appended and fsync-ed), ``model.safetensors`` relinked
to the new weights, and last ``run.json``, replaced atomically and fsync-ed: that rename publishes
the snapshot. Until then the previous ``run.json`` describes a complete earlier snapshot, and
every file it names is untouched, so a process killed at any moment leaves a loadable run; and
``model.safetensors`` is never older than ``run.json`` (if a writer was killed between the two,
it is newer, and :func:`load_published_model` refuses it). Files written after
the last publication (an unfinished snapshot folder, checkpoints it does not list, history rows
beyond its byte count, temporaries) are ignored by :func:`load_run` and removed when a writer opens
the folder again (:func:`~mi_margin.resume`); the loader itself only reads, since a run may still
be training while someone inspects it.

Folders written by mi_margin 0.1 (format ``mi_margin.run/1``: ``run.json``, ``model.safetensors``,
``train_state.safetensors``, ``history.csv``, ``checkpoints/``) load with the same checks; resuming
one rewrites it in the current layout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch

from mi_margin.errors import CheckpointError, MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.files import (
    append_durably,
    atomic_write,
    fault_point,
    fsync_dir,
    is_temporary,
    temporary_path,
)
from mi_margin.models.io import read_model, read_tensors, save_model, save_tensors

try:  # POSIX; elsewhere (Windows) folders are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.training.config import NOT_THE_RECIPE, TrainConfig
from mi_margin.training.run import STATUSES, Run

RUN_FORMAT = "mi_margin.run/2"
OLD_RUN_FORMAT = "mi_margin.run/1"
CHECKPOINT_FORMAT = "mi_margin.checkpoint/1"
STATE_FORMAT = "mi_margin.train_state/1"
META, HISTORY, SNAPSHOTS, CHECKPOINTS = "run.json", "history.csv", "snapshots", "checkpoints"
MODEL, STATE, LOCK = "model.safetensors", "train_state.safetensors", "writer.lock"
#: everything in a folder that belongs to a run (other files, such as a sweep's, are left alone)
RUN_ENTRIES = (META, HISTORY, SNAPSHOTS, CHECKPOINTS, MODEL, STATE)
SNAPSHOT_NAME = re.compile(r"snapshots/step_\d{8}_[0-9a-f]{8}")


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINTS}/step_{step:08d}.safetensors"


def meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of ``run.json``'s contents other than its own ``digest`` (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def history_bytes(rows: list[dict[str, Any]], columns: list[str], header: bool) -> bytes:
    """CSV lines of ``rows`` (floats written by ``repr``, so they read back exactly)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else repr(float(row[c]))
                         if isinstance(row[c], float) else row[c] for c in columns])
    return buf.getvalue().encode()


def holds_run(root: Path) -> bool:
    """Whether ``root`` holds a published run (of either format), or a model file a new run
    would replace (a ``model.safetensors`` beside ``snapshots/`` but no ``run.json`` is what a
    writer killed before its first publication left: no run)."""
    return (root / META).exists() or (root / STATE).exists() or (
        (root / MODEL).exists() and not (root / SNAPSHOTS).is_dir())


def existing_run_error(root: Path, wanted: dict[str, dict[str, Any]]) -> MiMarginError:
    """Why a new run with the configs ``wanted`` (``{"task": ..., "model": ..., "train": ...}``,
    as ``to_dict`` gives them) is refused in ``root``, which holds a run, with the exact way on:
    load the same run if it finished, resume it if not, else another folder or ``overwrite=True``."""
    path = str(root)
    try:
        meta = read_pointer(root)
    except CheckpointError as err:
        return MiMarginError(f"{root} holds a run that cannot be read ({err}); replace it with "
                             "overwrite=True (mi-margin train --overwrite)")
    wanted = json.loads(json.dumps(wanted))
    differ = sorted(f"{part}.{key}" for part, fields in wanted.items()
                    for key in set(fields) | set(meta.get(part) or {})
                    if (meta.get(part) or {}).get(key) != fields.get(key)
                    and not (part == "train" and key in NOT_THE_RECIPE))
    status, step = meta.get("status"), meta.get("step")
    if differ == ["train.steps"]:
        steps = wanted["train"]["steps"]
        return MiMarginError(f"{root} holds this run with another step budget ({status} at step "
                             f"{step}; this call asks for {steps}): continue it with "
                             f"mm.resume({path!r}, steps={steps}) (mi-margin train --resume "
                             f"--steps {steps} --out {path}), or start again with overwrite=True "
                             "(mi-margin train --overwrite), which discards its steps so far")
    if differ:
        return MiMarginError(f"{root} holds another run (it differs in {', '.join(differ)}): "
                             "choose another out_dir, or replace it with overwrite=True "
                             "(mi-margin train --overwrite), which discards that run")
    if status in ("finished", "stopped_early"):
        return MiMarginError(f"{root} already holds this run ({status} at step {step}): load it "
                             f"with run = mm.load({path!r}), or train it again with "
                             "overwrite=True (mi-margin train --overwrite)")
    return MiMarginError(f"{root} holds this run, {status} at step {step}: continue it with "
                         f"mm.resume({path!r}) (mi-margin train --resume), or start again with "
                         "overwrite=True (mi-margin train --overwrite)")


def _remove(path: Path) -> None:
    fault_point()
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- writing ---------------------------------------------------------------------------------------
def lock_folder(root: Path) -> IO[str]:
    """Take the folder's writer lock (refused, naming the holder's pid, if another writer holds
    it); it lasts until the returned file is closed or the process ends."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK, "a+")  # held open: the lock lives with it
    except OSError as err:
        raise MiMarginError(f"cannot write a run folder at {root}: {err}") from err
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise MiMarginError(f"{root} is being written by another process (pid {holder}); wait "
                            "for it to finish (or stop it), then resume or overwrite") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class RunWriter:
    """Writes one run folder: checkpoints, snapshot folders, history rows, and ``run.json`` last.

    Use :meth:`start` for a new run and :meth:`reopen` to continue a loaded one; :meth:`publish`
    writes a snapshot of a :class:`Run`, :meth:`mark` republishes the current one with a new status.
    The writer holds the folder's lock until :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(self, root: Path, lock: IO[str]):
        self.root, self.lock = root, lock
        self.pointer: dict[str, Any] | None = None
        self.rows_written, self.bytes_written = 0, 0
        self.hasher = hashlib.sha256()
        self.columns: list[str] | None = None
        try:
            (root / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
            (root / CHECKPOINTS).mkdir(exist_ok=True)
        except OSError as err:
            self.close()
            raise MiMarginError(f"cannot write a run folder at {root}: {err}") from err

    def close(self) -> None:
        """Release the folder's lock."""
        self.lock.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def start(cls, root: str | Path, overwrite: bool = False) -> RunWriter:
        """A writer for a new run in ``root``; refuses a folder holding a run unless ``overwrite``
        (then that run's files are removed; other files in the folder are kept)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise MiMarginError(f"cannot write a run folder at {root}: it is a file")
        lock = lock_folder(root)
        if holds_run(root) and not overwrite:
            lock.close()
            raise MiMarginError(
                f"{root} already holds a run; continue it with mm.resume({str(root)!r}) "
                "(mi-margin train --resume) or replace it with overwrite=True "
                "(mi-margin train --overwrite)")
        # an overwritten run (run.json first), or what a killed start left
        for path in sorted(root.iterdir(), key=lambda p: p.name != META):
            if path.name in RUN_ENTRIES or is_temporary(path):
                _remove(path)
        return cls(root, lock)

    @classmethod
    def reopen(cls, run: Run) -> RunWriter:
        """A writer continuing ``run`` in ``run.path``: drops what the last published snapshot
        does not name (a 0.1 folder is rewritten in the current layout first)."""
        assert run.path is not None
        writer = cls(run.path, lock_folder(Path(run.path)))
        try:
            pointer = read_pointer(run.path)
            if (pointer.get("step"), pointer.get("status")) != (run.step, run.status):
                raise MiMarginError(
                    f"{run.path} changed since this run was loaded (it is at step "
                    f"{pointer.get('step')}, {pointer.get('status')}; the run at step {run.step}, "
                    f"{run.status}): load it again to continue it")
        except BaseException:
            writer.close()
            raise
        if pointer["format"] == OLD_RUN_FORMAT:
            writer.rewrite(run)
            return writer
        writer.pointer = pointer
        published = pointer["history"]
        data = _read_prefix(run.path / HISTORY, published["bytes"])
        writer.hasher.update(data)
        writer.rows_written, writer.bytes_written = published["rows"], published["bytes"]
        writer.columns = data.split(b"\n", 1)[0].decode().split(",") if data else None
        writer.clean()
        return writer

    # the steps of a snapshot
    def _write_checkpoints(self, run: Run) -> dict[str, str]:
        kept = dict(self.pointer["checkpoints"]) if self.pointer else {}
        for step in sorted(run.checkpoints):
            if step <= run.step and str(step) not in kept:
                kept[str(step)] = save_tensors(self.root / checkpoint_name(step),
                                               run.checkpoints[step],
                                               {"format": CHECKPOINT_FORMAT, "step": step})
        return kept

    def _write_snapshot(self, run: Run) -> dict[str, str]:
        name = f"{SNAPSHOTS}/step_{run.step:08d}_{secrets.token_hex(4)}"
        final = self.root / name
        tmp = temporary_path(final)
        tmp.unlink()
        tmp.mkdir()
        try:
            model = save_model(run.model, tmp / MODEL, step=run.step)
            state = save_tensors(tmp / STATE, run.train_state,
                                 {"format": STATE_FORMAT, "step": run.step})
            fault_point()
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(final.parent)
        return {"path": name, "model": model, "train_state": state}

    def _append_history(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = self.columns or list(rows[0])
        data = history_bytes(rows, columns, header=self.bytes_written == 0)
        path = self.root / HISTORY
        try:
            append_durably(path, data)
        except BaseException:
            if path.exists():
                os.truncate(path, self.bytes_written)
            raise
        self.hasher.update(data)
        self.columns = columns
        self.rows_written += len(rows)
        self.bytes_written += len(data)

    def _publish(self, pointer: dict[str, Any]) -> None:
        pointer["digest"] = meta_digest(pointer)
        text = json.dumps(pointer, indent=1)
        old = self.pointer
        self._link_latest(pointer)      # first: the link is never older than run.json
        atomic_write(self.root / META, lambda tmp: Path(tmp).write_text(text))
        self.pointer = pointer
        if old is not None and old["snapshot"]["path"] != pointer["snapshot"]["path"]:
            _remove(self.root / old["snapshot"]["path"])

    def _link_latest(self, pointer: dict[str, Any]) -> None:
        """Point ``model.safetensors`` at ``pointer``'s weights (hard link, else a copy)."""
        source = self.root / pointer["snapshot"]["path"] / MODEL
        tmp = temporary_path(self.root / MODEL)
        tmp.unlink()
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            fault_point()
            os.replace(tmp, self.root / MODEL)
        finally:
            tmp.unlink(missing_ok=True)

    # what callers use
    def publish(self, run: Run, rows: list[dict[str, Any]]) -> None:
        """Write a snapshot of ``run`` (its model, train_state, step, status, configs, its kept
        checkpoints and the ``rows`` up to its step) and publish it."""
        checkpoints = self._write_checkpoints(run)
        snapshot = self._write_snapshot(run)
        self._append_history([r for r in rows[self.rows_written:] if r["step"] <= run.step])
        self._publish({
            "format": RUN_FORMAT, "task": run.task.to_dict(), "model": run.model.cfg.to_dict(),
            "train": run.config.to_dict(), "step": run.step, "status": run.status,
            "error": run.error, "snapshot": snapshot, "checkpoints": checkpoints,
            "history": {"rows": self.rows_written, "bytes": self.bytes_written,
                        "sha256": self.hasher.hexdigest()}})

    def mark(self, run: Run) -> None:
        """Republish the current snapshot with ``run.status`` and ``run.error`` (a diverged run
        keeps its last snapshot: the weights after it are not finite)."""
        assert self.pointer is not None
        self._publish({**self.pointer, "status": run.status, "error": run.error})

    def rewrite(self, run: Run) -> None:
        """Write all of ``run`` afresh (history as one file) and publish it."""
        rows = [r for r in (run.history.to_dict("records") if len(run.history) else [])
                if r["step"] <= run.step]
        self.columns = list(rows[0]) if rows else None
        data = history_bytes(rows, self.columns, header=True) if self.columns else b""
        atomic_write(self.root / HISTORY, lambda tmp: Path(tmp).write_bytes(data))
        self.hasher = hashlib.sha256(data)
        self.rows_written, self.bytes_written = len(rows), len(data)
        self.publish(run, rows)
        self.clean()

    def clean(self) -> None:
        """Remove what the published ``run.json`` does not name."""
        assert self.pointer is not None
        root, pointer = self.root, self.pointer
        history = root / HISTORY
        if history.exists() and history.stat().st_size > pointer["history"]["bytes"]:
            fault_point()
            os.truncate(history, pointer["history"]["bytes"])
        snapshot = root / pointer["snapshot"]["path"]
        kept = {root / checkpoint_name(int(s)) for s in pointer["checkpoints"]}
        for path in list((root / SNAPSHOTS).iterdir()):
            if path != snapshot:
                _remove(path)
        for path in list((root / CHECKPOINTS).iterdir()):
            if path not in kept:
                _remove(path)
        for path in list(root.iterdir()):
            if is_temporary(path) or path.name == STATE:
                _remove(path)
        self._link_latest(pointer)


def save_run(run: Run, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``run`` as a run folder at ``path`` (its own folder: a new snapshot there).

    A folder holding another run is refused unless ``overwrite=True``.
    """
    root = Path(path)
    if run.path is not None and root.resolve() == Path(run.path).resolve() and holds_run(root):
        with RunWriter.reopen(run) as writer:
            writer.publish(run, run.history.to_dict("records") if len(run.history) else [])
    else:
        with RunWriter.start(root, overwrite) as writer:
            writer.rewrite(run)
    run.path = root
    return root


# -- reading ---------------------------------------------------------------------------------------
def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path} is damaged: {what}")


def _field(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _fail(path, f"{key!r} is {value!r}, expected {getattr(kind, '__name__', kind)}")
    return value


def read_pointer(root: Path) -> dict[str, Any]:
    """``run.json`` of ``root`` as a dict, its digest checked (current format)."""
    path = root / META
    if not path.is_file():
        raise CheckpointError(f"{root} is not a run folder (no {META})")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise CheckpointError(f"{path} is corrupted: {err}") from err
    if not isinstance(meta, dict):
        raise _fail(path, "it does not hold a JSON object")
    if meta.get("format") == RUN_FORMAT:
        if meta.get("digest") != meta_digest(meta):
            raise _fail(path, "its contents do not match its SHA-256 (edited or corrupted)")
    elif meta.get("format") != OLD_RUN_FORMAT:
        raise CheckpointError(f"{path} is not a mi_margin run (format {meta.get('format')!r})")
    return meta


def read_status(root: Path) -> str | None:
    """The status in ``root/run.json``, or None when there is no readable run there."""
    try:
        return str(read_pointer(Path(root)).get("status"))
    except CheckpointError:
        return None


def _read_prefix(path: Path, n_bytes: int) -> bytes:
    if not path.is_file():
        if n_bytes:
            raise CheckpointError(f"{path} is missing")
        return b""
    with path.open("rb") as fh:
        data = fh.read(n_bytes)
    if len(data) != n_bytes:
        raise _fail(path, f"it has {len(data)} bytes, {META} published {n_bytes}")
    return data


def _parse_history(data: bytes, path: Path, step: int, status: str) -> pd.DataFrame:
    if not data:
        history = pd.DataFrame()
    else:
        try:
            history = pd.read_csv(io.BytesIO(data))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
            raise _fail(path, f"not a readable CSV ({err})") from err
        if "step" not in history or not pd.api.types.is_integer_dtype(history["step"]):
            raise _fail(path, "no integer 'step' column")
        steps = history["step"].tolist()
        if steps != sorted(set(steps)):
            raise _fail(path, f"its steps are not increasing: {steps}")
        history = history[history["step"] <= step].reset_index(drop=True)
    if status in ("finished", "stopped_early") and (
            not len(history) or int(history["step"].iloc[-1]) != step):
        raise _fail(path, f"the run {status} at step {step} but its history does not end there")
    return history


def _configs(meta: dict[str, Any], path: Path) -> tuple[Any, dict[str, Any], TrainConfig, int, str]:
    step = _field(meta, "step", int, path)
    status = _field(meta, "status", str, path)
    if step < 0 or status not in STATUSES:
        raise _fail(path, f"step={step!r}, status={status!r} (valid statuses: {list(STATUSES)})")
    model_cfg = _field(meta, "model", dict, path)
    try:
        task = task_from_dict(_field(meta, "task", dict, path))
        config = TrainConfig.from_dict(_field(meta, "train", dict, path))
    except MiMarginError as err:
        raise _fail(path, f"invalid configuration: {err}") from err
    return task, model_cfg, config, step, status


def _weights(path: Path, step: int, digest: str | None, model: Any) -> dict[str, torch.Tensor]:
    tensors, meta, found = read_tensors(path)
    if digest is not None and found != digest:
        raise _fail(path, f"it is not the file {META} published (SHA-256 differs)")
    if meta.get("step") != step:
        raise _fail(path, f"it holds step {meta.get('step')!r}, expected {step}")
    want = model.state_dict()
    if set(tensors) != set(want) or any(tensors[k].shape != v.shape for k, v in want.items()):
        raise _fail(path, "its tensors are not the weights of the run's model")
    return tensors


def _model(path: Path, step: int, digest: str | None, cfg: dict[str, Any]) -> Any:
    model, meta, found = read_model(path)
    if digest is not None and found != digest:
        raise _fail(path, f"it is not the file {META} published (SHA-256 differs)")
    if meta.get("step", step) != step:
        raise _fail(path, f"it holds step {meta.get('step')!r}, expected {step}")
    try:  # through the config class, so fields added since the run was written take defaults
        same = model.cfg.to_dict() == type(model.cfg).from_dict(cfg).to_dict()
    except MiMarginError:
        same = False
    if not same:
        raise _fail(path, f"its model config differs from {META}'s")
    return model


def _state(path: Path, step: int, digest: str | None) -> dict[str, torch.Tensor]:
    tensors, meta, found = read_tensors(path)
    if digest is not None and found != digest:
        raise _fail(path, f"it is not the file {META} published (SHA-256 differs)")
    if meta.get("format") != STATE_FORMAT or meta.get("step") != step:
        raise _fail(path, f"it holds {meta!r}, expected {STATE_FORMAT} at step {step}")
    if "rng" not in tensors or tensors["rng"].dtype != torch.uint8:
        raise _fail(path, "no RNG state")
    return tensors


def as_run(run_or_path: Any, what: str) -> Run:
    """``run_or_path`` as a :class:`Run`: a run folder is loaded (:func:`load_run`), a Run passes,
    anything else (a model, None) is refused with ``what`` (why the caller needs a run)."""
    if isinstance(run_or_path, (str, os.PathLike)):
        return load_run(Path(run_or_path))
    if not isinstance(run_or_path, Run):
        raise MiMarginError(f"{what}: pass a Run or a run folder (what mm.train returns, or its "
                            f"out_dir), got {type(run_or_path).__name__}")
    return run_or_path


def load_run(path: str | Path) -> Run:
    """Load a run folder (written by ``train(..., out_dir=...)`` or :func:`save_run`): its last
    published snapshot, every file checked; any damage is a :class:`CheckpointError` naming the
    file and what is wrong."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a run folder")
    meta = read_pointer(root)
    meta_path = root / META
    task, model_cfg, config, step, status = _configs(meta, meta_path)
    if meta["format"] == OLD_RUN_FORMAT:
        model = _model(root / MODEL, step, None, model_cfg)
        state = _state(root / STATE, step, None)
        listed = _field(meta, "checkpoints", list, meta_path)
        checkpoints = {int(s): None for s in listed if isinstance(s, int)}
        if not (root / HISTORY).is_file():
            raise CheckpointError(f"{root / HISTORY} is missing")
        data = (root / HISTORY).read_bytes()
    else:
        snap = _field(meta, "snapshot", dict, meta_path)
        name = snap.get("path")
        if not isinstance(name, str) or not SNAPSHOT_NAME.fullmatch(name):
            raise _fail(meta_path, f"bad snapshot path {name!r}")
        model = _model(root / name / MODEL, step, snap.get("model"), model_cfg)
        state = _state(root / name / STATE, step, snap.get("train_state"))
        listed = _field(meta, "checkpoints", dict, meta_path)
        checkpoints = {int(s): d for s, d in listed.items() if s.isdigit()}
        published = _field(meta, "history", dict, meta_path)
        n_bytes = published.get("bytes")
        if not isinstance(n_bytes, int) or isinstance(n_bytes, bool) or n_bytes < 0:
            raise _fail(meta_path, f"bad history byte count {n_bytes!r}")
        data = _read_prefix(root / HISTORY, n_bytes)
        if hashlib.sha256(data).hexdigest() != published.get("sha256"):
            raise _fail(root / HISTORY, f"its first {n_bytes} bytes do not match {META}'s SHA-256")
    if len(checkpoints) != len(listed) or 0 not in checkpoints or max(checkpoints) > step:
        raise _fail(meta_path, f"bad checkpoint list {listed!r} (must hold 0 and steps <= {step})")
    kept = {s: _weights(root / checkpoint_name(s), s, d, model) for s, d in checkpoints.items()}
    history = _parse_history(data, root / HISTORY, step, status)
    try:
        check_fits(model, task)
    except MiMarginError as err:
        raise _fail(meta_path, str(err)) from err
    error = meta.get("error")
    return Run(model=model, task=task, config=config, history=history, checkpoints=kept,
               step=step, status=status, path=root, train_state=state,
               error=error if isinstance(error, str) else None)


def load_published_model(root: Path) -> Any:
    """The model in ``root/model.safetensors``, checked to be the weights ``run.json`` published
    (a writer killed after relinking it and before publishing leaves newer, unpublished weights
    there: refused)."""
    path = root / MODEL
    pointer = read_pointer(root)
    model, meta, found = read_model(path)
    if pointer["format"] == RUN_FORMAT and found != pointer["snapshot"]["model"]:
        raise CheckpointError(
            f"{path} holds step {meta.get('step')!r}, not the step {pointer['step']} that "
            f"{root / META} published (its writer stopped before publishing): load the run "
            f"folder {root} instead, or resume it")
    return model


def published_history(root: Path) -> pd.DataFrame:
    """The history rows of ``root``'s published snapshot (empty if there is no readable run)."""
    try:
        meta = read_pointer(Path(root))
        if meta["format"] == OLD_RUN_FORMAT:
            data = (Path(root) / HISTORY).read_bytes()
        else:
            data = _read_prefix(Path(root) / HISTORY, int(meta["history"]["bytes"]))
        return _parse_history(data, Path(root) / HISTORY, int(meta["step"]), "running")
    except (CheckpointError, KeyError, TypeError, ValueError, OSError):
        return pd.DataFrame()

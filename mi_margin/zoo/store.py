"""The zoo's on-disk format: one folder per entry, safetensors + JSON + CSV + markdown, no pickle.

An entry folder holds

- ``entry.json``: ``{"format": "mi_margin.zoo/2", "name", "task", "model", "train", "step",
  "status", "checkpoints": {step: dtype}, "build": {...}, "checks": {...}}`` — the task, model
  and train configs as their ``to_dict()``, the dtype each checkpoint is stored in (``"init"``:
  the initialisation the model config's seed builds, stored as a correction to its portable
  rebuild, :mod:`mi_margin.zoo.init`; ``init_digest`` holds its SHA-256, checked on loading), how
  the entry was built (recipe, wall time, machine) and the analyses computed on the full-precision
  weights at build time (so a test can recompute them on the shipped, possibly reduced-precision,
  ones);
- ``weights.safetensors``: every kept checkpoint, tensor names ``step_XXXXXXXX/<param>`` (and
  ``final/<param>``: the variant named ``build["finish"]["variant"]``, when a finishing step
  post-processed the trained weights; ``init/<param>``: the initialisation's correction), with a
  SHA-256 of the tensors in its metadata (:func:`mi_margin.models.io.save_tensors`), and the entry
  the weights were built with: entry.json's fields that say what the weights are (:data:`SEALED`)
  and the SHA-256 of history.csv. Loading compares both, so an edited entry.json (a task, model or
  train field, the status, the checkpoint list) or history.csv is refused naming what differs;
  ``build`` and ``checks`` describe the build and are not sealed;
- ``history.csv``: the training metrics, one row per evaluation;
- ``card.md``: the human-readable card.

The format is the zoo's own and stays stable when the run-folder format changes: a build script
converts a :class:`~mi_margin.Run` into an entry (:mod:`mi_margin.zoo.build`). Format 1 rebuilt
the initialisation from the seed, which gives its bits only on CPUs whose kernels round like the
builder's (so most CPUs lost step 0); format 2 stores it. A format-1 entry is rebuilt from its
run folder with ``python -m mi_margin.zoo.build entry NAME --run RUN``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin.errors import CheckpointError, MiMarginError
from mi_margin.models.compat import check_fits
from mi_margin.models.io import (
    atomic_write,
    build_model,
    load_state,
    load_tensors,
    save_tensors,
    tensors_digest,
)
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.training import Run, TrainConfig
from mi_margin.zoo import init
from mi_margin.zoo.normals import portable_init

ZOO_FORMAT = "mi_margin.zoo/2"
#: the files of an entry folder (the card is written last, from the shipped weights)
ENTRY_FILES = ("entry.json", "weights.safetensors", "history.csv", "card.md")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}
#: the "dtype" of the seeded initialisation, stored as a correction to its portable rebuild
INIT = "init"
FINAL = "final/"
#: the tensor-name prefix of the initialisation's correction (:mod:`mi_margin.zoo.init`)
INIT_PREFIX = "init/"
#: the fields of entry.json recorded in the weights' metadata and compared on loading
SEALED = ("format", "name", "task", "model", "train", "step", "status", "checkpoints", "final",
          "init_digest")
MISSING = "<missing>"


def _prefix(step: int) -> str:
    return f"step_{step:08d}/"


def write_entry(root: Path, run: Run, dtypes: dict[int, str], build: dict[str, Any],
                checks: dict[str, Any], final: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``run`` (its checkpoints at the steps of ``dtypes``, each cast to its dtype) to ``root``.

    The final step must be among the kept steps; it is the entry's model unless ``final`` gives
    other weights (a finishing step applied after training, described in ``build["finish"]``).
    """
    if run.step not in dtypes:
        raise CheckpointError(f"the final step {run.step} must be kept; kept: {sorted(dtypes)}")
    tensors: dict[str, torch.Tensor] = {}
    init_digest = None
    for step, dtype in sorted(dtypes.items()):
        state = run.checkpoints[step]
        if dtype == INIT:
            init_digest = tensors_digest(state)
            correction = init.encode(state, portable_init(run.model.cfg.to_dict()))
            tensors.update({INIT_PREFIX + name: value for name, value in correction.items()})
            continue
        for name, value in state.items():
            tensors[_prefix(step) + name] = value.detach().to(DTYPES[dtype])
    for name, value in (final or {}).items():
        tensors[FINAL + name] = value.detach()
    meta = {"format": ZOO_FORMAT, "name": root.name, "task": run.task.to_dict(),
            "model": run.model.cfg.to_dict(), "train": run.config.to_dict(), "step": run.step,
            "status": run.status, "checkpoints": {str(s): d for s, d in sorted(dtypes.items())},
            "final": "finished" if final else "checkpoint", "init_digest": init_digest,
            "build": build, "checks": checks}
    history = run.history.to_csv(index=False).encode()
    root.mkdir(parents=True, exist_ok=True)
    save_tensors(root / "weights.safetensors", tensors,
                 {"format": ZOO_FORMAT, "entry": {k: meta[k] for k in SEALED},
                  "history_sha256": hashlib.sha256(history).hexdigest()})
    atomic_write(root / "history.csv", lambda tmp: Path(tmp).write_bytes(history))
    text = json.dumps(meta, indent=1)
    atomic_write(root / "entry.json", lambda tmp: Path(tmp).write_text(text))
    for name in ENTRY_FILES[:3]:
        (root / name).chmod(0o644)      # package data: readable by every user


def read_meta(root: Path) -> dict[str, Any]:
    """The parsed ``entry.json`` of the entry folder ``root``."""
    path = root / "entry.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is missing or corrupted: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is corrupted: it holds a {type(meta).__name__}, not an "
                              "entry's JSON object")
    if meta.get("format") != ZOO_FORMAT:
        raise CheckpointError(f"{path} is not a zoo entry ({meta.get('format')!r}, "
                              f"expected {ZOO_FORMAT!r})")
    return meta


def variants(meta: dict[str, Any]) -> list[str]:
    """The named post-processed variants of an entry (e.g. ``["reweighted"]``), from its meta."""
    finish = meta.get("build", {}).get("finish")
    return [finish["variant"]] if meta.get("final") == "finished" and finish else []


def read_entry(root: Path, variant: str | None = None) -> Run:
    """The :class:`Run` stored in the entry folder ``root``; its model is in eval mode.

    The model holds the trained weights (the last checkpoint); with ``variant`` (one of
    :func:`variants`, e.g. ``"reweighted"``), the ``final/`` weights of the entry's finishing step
    instead, while the checkpoints stay the trained ones. Checkpoints stored in reduced precision
    are cast back to the model's dtype (their values are the rounded ones; the build checked that
    the reported analyses do not change). The ``"init"`` checkpoint is decoded from its correction
    to the portable rebuild, which gives the builder's bits on every CPU (:mod:`mi_margin.zoo.init`);
    its SHA-256 is checked.
    """
    meta = read_meta(root)
    if variant is not None and variant not in variants(meta):
        raise CheckpointError(f"{root.name} has no variant {variant!r}; variants: {variants(meta)}")
    tensors, sealed = load_tensors(root / "weights.safetensors")
    history = check_sealed(root, meta, sealed)
    try:
        model = build_model(meta["model"])
        task, config = task_from_dict(meta["task"]), TrainConfig.from_dict(meta["train"])
    except MiMarginError as err:
        raise CheckpointError(f"{root / 'entry.json'} holds an invalid configuration: "
                              f"{err}") from err
    dtype = next(iter(model.state_dict().values())).dtype
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    for step_text, stored in meta["checkpoints"].items():
        if stored == INIT:
            checkpoints[int(step_text)] = read_init(root, meta, tensors)
            continue
        prefix = _prefix(int(step_text))
        checkpoints[int(step_text)] = {name[len(prefix):]: value.to(dtype)
                                       for name, value in tensors.items()
                                       if name.startswith(prefix)}
        load_state(model, checkpoints[int(step_text)],      # checked here, loaded below
                   f"{root / 'weights.safetensors'} (checkpoint {step_text})")
    final = {name[len(FINAL):]: value for name, value in tensors.items() if name.startswith(FINAL)}
    load_state(model, final if variant else checkpoints[int(meta["step"])],
               root / "weights.safetensors")
    model.eval()
    check_fits(model, task)
    return Run(model=model, task=task, config=config, history=history, checkpoints=checkpoints,
               step=int(meta["step"]), status=meta["status"])


def differences(found: Any, built: Any, where: str = "") -> list[str]:
    """``field=value (built: value)`` for every leaf where ``found`` and ``built`` differ."""
    if isinstance(found, dict) and isinstance(built, dict):
        return [d for key in sorted(set(found) | set(built), key=str)
                for d in differences(found.get(key, MISSING), built.get(key, MISSING),
                                     f"{where}.{key}" if where else str(key))]
    return [] if found == built else [f"{where}={found!r} (built: {built!r})"]


def check_sealed(root: Path, meta: dict[str, Any], sealed: dict[str, Any]) -> pd.DataFrame:
    """Refuse an entry.json or history.csv that is not the one the weights were built with
    (:data:`SEALED`); the history, read."""
    weights = root / "weights.safetensors"
    if not isinstance(sealed.get("entry"), dict) or "history_sha256" not in sealed:
        raise CheckpointError(f"{weights} does not record the entry it was built with (written "
                              "by an older mi_margin): rebuild it with python -m mi_margin.zoo.build")
    found = differences({k: meta.get(k, MISSING) for k in SEALED}, sealed["entry"])
    if found:
        raise CheckpointError(f"{root / 'entry.json'} is not the entry {weights.name} was built "
                              f"with (edited?): {'; '.join(found)}")
    path = root / "history.csv"
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path} is missing or unreadable: {err}") from err
    if hashlib.sha256(data).hexdigest() != sealed["history_sha256"]:
        raise CheckpointError(f"{path} is not the history {weights.name} was built with "
                              "(edited, reordered or truncated: its SHA-256 differs)")
    return pd.read_csv(io.BytesIO(data))


def read_init(root: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entry's initialisation: its stored correction added to the portable rebuild."""
    stored = {name[len(INIT_PREFIX):]: value for name, value in tensors.items()
              if name.startswith(INIT_PREFIX)}
    state = init.decode(stored, portable_init(meta["model"]))
    if tensors_digest(state) != meta.get("init_digest"):
        raise CheckpointError(f"{root / 'weights.safetensors'}: the initialisation decodes to other "
                              "weights than the entry recorded (init_digest)")
    return state

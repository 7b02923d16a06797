"""The zoo's on-disk format: one folder per entry, safetensors + JSON + CSV + markdown, no pickle.

An entry folder holds

- ``entry.json``: ``{"format": "mi_margin.zoo/1", "name", "task", "model", "train", "step",
  "status", "checkpoints": {step: dtype}, "build": {...}, "checks": {...}}`` — the task, model
  and train configs as their ``to_dict()``, the dtype each checkpoint is stored in (``"init"``: not
  stored, because it is the initialisation that the model config's seed rebuilds; ``init_digest``
  holds its SHA-256, checked on loading), how the entry
  was built (recipe, wall time, machine) and the analyses computed on the full-precision weights
  at build time (so a test can recompute them on the shipped, possibly reduced-precision, ones);
- ``weights.safetensors``: every kept checkpoint, tensor names ``step_XXXXXXXX/<param>`` (and
  ``final/<param>``: the variant named ``build["finish"]["variant"]``, when a finishing step
  post-processed the trained weights), with a
  SHA-256 of the tensors in its metadata (:func:`mi_margin.models.io.save_tensors`);
- ``history.csv``: the training metrics, one row per evaluation;
- ``card.md``: the human-readable card.

The format is the zoo's own and stays stable when the run-folder format changes: a build script
converts a :class:`~mi_margin.Run` into an entry (:mod:`mi_margin.zoo.build`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin.errors import CheckpointError
from mi_margin.models.io import atomic_write, build_model, load_tensors, save_tensors, tensors_digest
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.training import Run, TrainConfig

ZOO_FORMAT = "mi_margin.zoo/1"
#: the files of an entry folder (the card is written last, from the shipped weights)
ENTRY_FILES = ("entry.json", "weights.safetensors", "history.csv", "card.md")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}
#: the "dtype" of a checkpoint that is not stored: the seeded initialisation, rebuilt on loading
INIT = "init"
FINAL = "final/"


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
    root.mkdir(parents=True, exist_ok=True)
    save_tensors(root / "weights.safetensors", tensors, {"format": ZOO_FORMAT})
    atomic_write(root / "history.csv", lambda tmp: run.history.to_csv(tmp, index=False))
    text = json.dumps(meta, indent=1)
    atomic_write(root / "entry.json", lambda tmp: Path(tmp).write_text(text))
    for name in ENTRY_FILES[:3]:
        (root / name).chmod(0o644)      # package data: readable by every user


def read_meta(root: Path) -> dict[str, Any]:
    """The parsed ``entry.json`` of the entry folder ``root``."""
    path = root / "entry.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is missing or corrupted: {err}") from err
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
    the reported analyses do not change). The ``"init"`` checkpoint is the freshly built model's
    own weights, used only if their SHA-256 is the one recorded (another torch build may
    initialise differently: then it is left out, with a warning).
    """
    meta = read_meta(root)
    if variant is not None and variant not in variants(meta):
        raise CheckpointError(f"{root.name} has no variant {variant!r}; variants: {variants(meta)}")
    tensors, _ = load_tensors(root / "weights.safetensors")
    model = build_model(meta["model"])
    dtype = next(iter(model.state_dict().values())).dtype
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    for step_text, stored in meta["checkpoints"].items():
        if stored == INIT:
            init = {name: value.clone() for name, value in model.state_dict().items()}
            if tensors_digest(init) == meta.get("init_digest"):
                checkpoints[int(step_text)] = init
            else:
                warnings.warn(f"{root.name}: this torch initialises the model differently from the "
                              f"one that built the entry, so checkpoint {step_text} (the "
                              "initialisation) is left out", stacklevel=2)
            continue
        prefix = _prefix(int(step_text))
        checkpoints[int(step_text)] = {name[len(prefix):]: value.to(dtype)
                                       for name, value in tensors.items()
                                       if name.startswith(prefix)}
    final = {name[len(FINAL):]: value for name, value in tensors.items() if name.startswith(FINAL)}
    model.load_state_dict(final if variant else checkpoints[int(meta["step"])], strict=True)
    model.eval()
    return Run(model=model, task=task_from_dict(meta["task"]),
               config=TrainConfig.from_dict(meta["train"]),
               history=pd.read_csv(root / "history.csv"), checkpoints=checkpoints,
               step=int(meta["step"]), status=meta["status"])

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
  ``final/<param>`` when a finishing step changed the trained weights, ``init/<param>`` for the
  initialisation's correction), with a SHA-256 of the tensors in its metadata
  (:func:`mi_margin.models.io.save_tensors`);
- ``history.csv``: the training metrics, one row per evaluation;
- ``card.md``: the human-readable card.

The format is the zoo's own and stays stable when the run-folder format changes: a build script
converts a :class:`~mi_margin.Run` into an entry (:mod:`mi_margin.zoo.build`). Format 1 rebuilt
the initialisation from the seed, which gives its bits only on CPUs whose kernels round like the
builder's; ``python -m mi_margin.zoo.build store-init NAME`` converts such an entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin.errors import CheckpointError
from mi_margin.models.io import atomic_write, build_model, load_tensors, save_tensors, tensors_digest
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
INIT_PREFIX = "init/"


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


def read_entry(root: Path) -> Run:
    """The :class:`Run` stored in the entry folder ``root``; its model is in eval mode.

    The model holds the ``final/`` weights when the entry has a finishing step, else the last
    checkpoint. Checkpoints stored in reduced precision are cast back to the model's dtype (their values are
    the rounded ones; the build checked that the reported analyses do not change). The ``"init"``
    checkpoint is decoded from its correction to the portable rebuild, which gives the builder's
    bits on every CPU (:mod:`mi_margin.zoo.init`); its SHA-256 is checked.
    """
    meta = read_meta(root)
    tensors, _ = load_tensors(root / "weights.safetensors")
    model = build_model(meta["model"])
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
    final = {name[len(FINAL):]: value for name, value in tensors.items() if name.startswith(FINAL)}
    model.load_state_dict(final or checkpoints[int(meta["step"])], strict=True)
    model.eval()
    return Run(model=model, task=task_from_dict(meta["task"]),
               config=TrainConfig.from_dict(meta["train"]),
               history=pd.read_csv(root / "history.csv"), checkpoints=checkpoints,
               step=int(meta["step"]), status=meta["status"])


def read_init(root: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entry's initialisation: its stored correction added to the portable rebuild."""
    stored = {name[len(INIT_PREFIX):]: value for name, value in tensors.items()
              if name.startswith(INIT_PREFIX)}
    state = init.decode(stored, portable_init(meta["model"]))
    if tensors_digest(state) != meta.get("init_digest"):
        raise CheckpointError(f"{root / 'weights.safetensors'}: the initialisation decodes to other "
                              "weights than the entry recorded (init_digest)")
    return state

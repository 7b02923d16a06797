"""``save(obj, path)`` and ``load(path)`` for models and runs (safetensors + JSON, no pickle)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mi_margin.errors import CheckpointError, MiMarginError
from mi_margin.models.io import load_model, save_model
from mi_margin.training.run import Run
from mi_margin.training.run_folder import META, MODEL, load_published_model, load_run, save_run


def save(obj: Any, path: str | Path, overwrite: bool = False) -> Path:
    """Save a model (to a ``.safetensors`` file) or a :class:`Run` (to a folder; a folder holding
    another run is refused unless ``overwrite=True``).

    Example:
        >>> mm.save(model, "p113.safetensors"); mm.save(run, "runs/p113")   # doctest: +SKIP
    """
    path = Path(path)
    if isinstance(obj, Run):
        return save_run(obj, path, overwrite=overwrite)
    if hasattr(obj, "cfg") and hasattr(obj, "state_dict"):
        save_model(obj, path)
        return path
    raise MiMarginError(f"save() takes a model or a Run, got {type(obj).__name__}")


def load(path: str | Path) -> Any:
    """Load what :func:`save` wrote: a run folder gives a :class:`Run`, a file a model (a run
    folder's ``model.safetensors`` is checked to be the weights its ``run.json`` published)."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"load takes a run folder or a model file, got {path!r}")
    path = Path(path)
    if path.is_dir():
        return load_run(path)
    if path.is_file():
        if path.name == MODEL and (path.parent / META).is_file():
            return load_published_model(path.parent)
        return load_model(path)
    raise CheckpointError(f"nothing to load at {path}")

"""A training run: the model, its task and config, the metrics history and kept checkpoints.

A run folder (``mi-margin train`` and ``train(..., out_dir=...)`` write one, ``save(run, path)``
too) holds ``run.json`` (task, model and train configs, status), ``history.csv``,
``model.safetensors`` (latest weights), ``train_state.safetensors`` (optimizer and RNG state for an
exact resume) and ``checkpoints/step_XXXXXXXX.safetensors``. Every file is written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin.errors import CheckpointError
from mi_margin.models.io import (
    atomic_write,
    build_model,
    load_model,
    load_tensors,
    save_model,
    save_tensors,
)
from mi_margin.tasks import Task
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.training.config import TrainConfig

RUN_FORMAT = "mi_margin.run/1"


@dataclass
class Run:
    """The result of :func:`~mi_margin.train`.

    Attributes:
        model: the trained model (latest weights).
        task, config: what it was trained on and how.
        history: one row per evaluation (``step``, ``lr``, ``train_loss``, ``train_acc``,
            ``test_loss``, ``test_acc``, ``weight_norm_sq``, plus any custom metrics).
        checkpoints: step -> state dict of the weights after that many steps (0 = initial).
        step: optimizer steps taken; status: "finished", "stopped_early", "diverged" or "running".
        path: the run folder, when the run is saved.
    """

    model: Any
    task: Task
    config: TrainConfig
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    step: int = 0
    status: str = "running"
    path: Path | None = None
    train_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def model_at(self, step: int) -> Any:
        """A copy of the model with the weights of checkpoint ``step``, in eval mode (as
        TransformerLens's patching requires; the models have no dropout)."""
        if step not in self.checkpoints:
            raise CheckpointError(f"no checkpoint at step {step}; kept: {sorted(self.checkpoints)}")
        model = build_model(self.model.cfg.to_dict())
        model.load_state_dict(self.checkpoints[step])
        return model.eval()

    @property
    def initial_state(self) -> dict[str, torch.Tensor]:
        """The weights at initialisation (always kept; the centered NFA needs them)."""
        return self.checkpoints[0]

    def summary(self) -> dict[str, Any]:
        """Last history row plus identification, as a flat dict."""
        last = self.history.iloc[-1].to_dict() if len(self.history) else {}
        return {"task": repr(self.task), "model": self.model.cfg.kind, "status": self.status,
                "step": self.step, **last}

    def __repr__(self) -> str:
        return (f"Run({self.task!r}, {type(self.model).__name__}, step={self.step}, "
                f"status={self.status!r}, path={self.path})")


# -- persistence -----------------------------------------------------------------------------------
def _checkpoint_path(root: Path, step: int) -> Path:
    return root / "checkpoints" / f"step_{step:08d}.safetensors"


def write_meta(run: Run, root: Path) -> None:
    meta = {"format": RUN_FORMAT, "task": run.task.to_dict(), "model": run.model.cfg.to_dict(),
            "train": run.config.to_dict(), "step": run.step, "status": run.status,
            "checkpoints": sorted(run.checkpoints)}
    text = json.dumps(meta, indent=2)
    atomic_write(root / "run.json", lambda tmp: Path(tmp).write_text(text))


def write_history(run: Run, root: Path) -> None:
    atomic_write(root / "history.csv", lambda tmp: run.history.to_csv(tmp, index=False))


def write_checkpoint(run: Run, root: Path, step: int) -> None:
    save_tensors(_checkpoint_path(root, step), run.checkpoints[step],
                 {"format": "mi_margin.checkpoint/1", "step": step})


def write_state(run: Run, root: Path) -> None:
    """Latest weights and the optimizer/RNG state needed to resume exactly."""
    save_model(run.model, root / "model.safetensors")
    save_tensors(root / "train_state.safetensors", run.train_state,
                 {"format": "mi_margin.train_state/1", "step": run.step})


def save_run(run: Run, path: str | Path) -> Path:
    """Write the whole run folder to ``path``."""
    root = Path(path)
    for step in run.checkpoints:
        write_checkpoint(run, root, step)
    write_state(run, root)
    write_history(run, root)
    write_meta(run, root)
    run.path = root
    return root


def load_run(path: str | Path) -> Run:
    """Load a run folder (written by ``train(..., out_dir=...)`` or :func:`save_run`)."""
    root = Path(path)
    meta_path = root / "run.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{root} is not a run folder (no run.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta_path} is corrupted: {err}") from err
    if meta.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{meta_path} is not a mi_margin run ({meta.get('format')!r})")
    model = load_model(root / "model.safetensors")
    state, _ = load_tensors(root / "train_state.safetensors")
    checkpoints = {s: load_tensors(_checkpoint_path(root, s))[0] for s in meta["checkpoints"]}
    history_path = root / "history.csv"
    history = pd.read_csv(history_path) if history_path.is_file() else pd.DataFrame()
    return Run(model=model, task=task_from_dict(meta["task"]),
               config=TrainConfig.from_dict(meta["train"]), history=history,
               checkpoints=checkpoints, step=int(meta["step"]), status=meta["status"],
               path=root, train_state=state)

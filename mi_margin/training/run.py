"""A training run: the model, its task and config, the metrics history and kept checkpoints.

Runs are saved as run folders (:mod:`mi_margin.training.run_folder`: ``train(..., out_dir=...)``,
``mi-margin train`` and ``save(run, path)`` write one; :func:`load_run` reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin.errors import CheckpointError
from mi_margin.models.io import build_model
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig

#: what ``Run.status`` can be
STATUSES = ("running", "finished", "stopped_early", "diverged")


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
        error: why the run diverged (None otherwise).
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
    error: str | None = None

    def model_at(self, step: int) -> Any:
        """A copy of the model with the weights of checkpoint ``step``."""
        if step not in self.checkpoints:
            raise CheckpointError(f"no checkpoint at step {step}; kept: {sorted(self.checkpoints)}")
        model = build_model(self.model.cfg.to_dict())
        model.load_state_dict(self.checkpoints[step])
        return model

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

"""One run's bookkeeping inside the training loop (:func:`~mi_margin.training.loop.fit`, which
holds one :class:`Recorder` per model): history rows, kept checkpoints, snapshots and the
divergence check.

Snapshots go to disk on their own cadence (:class:`SnapshotClock`), separate from evaluations:
by default whenever the time since the last write is ``1 / WRITE_BUDGET`` times what that write
took, so that writing costs at most :data:`WRITE_BUDGET` of the run's wall time whatever the model
size or disk speed (bench/bench_snapshots.py measures it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch

from mi_margin.checks import check_memory, format_bytes
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import weight_norm_sq
from mi_margin.tasks import Task
from mi_margin.training.config import TrainConfig, checkpoint_steps
from mi_margin.training.run import Run
from mi_margin.training.run_folder import RunWriter

Metric = Callable[[Any, Task], dict[str, float]]
#: the largest fraction of wall time that writing snapshots may take (adaptive cadence)
WRITE_BUDGET = 0.02


class SnapshotClock:
    """Decides when a snapshot is written to disk: every ``every`` steps, or (``every=None``) when
    the time since the last write is at least the last write's duration / :data:`WRITE_BUDGET`.
    Never due without a run folder (``enabled=False``)."""

    def __init__(self, every: int | None, enabled: bool, step: int = 0):
        self.every, self.enabled = every, enabled
        self.last_step, self.last_end, self.cost = step, time.perf_counter(), 0.0

    def due(self, step: int) -> bool:
        if not self.enabled:
            return False
        if self.every is not None:
            return step - self.last_step >= self.every
        return time.perf_counter() - self.last_end >= self.cost / WRITE_BUDGET

    @contextmanager
    def writing(self, step: int) -> Iterator[None]:
        """Time the writes done inside the ``with`` block as the snapshot of ``step``."""
        start = time.perf_counter()
        yield
        self.last_end = time.perf_counter()
        self.last_step, self.cost = step, self.last_end - start


class LossWatch:
    """The per-step training losses since the last check (kept on the device, so that nothing
    synchronises with the host between checks); :meth:`check` finds NaN/inf among them."""

    def __init__(self) -> None:
        self.pending: list[torch.Tensor] = []

    def add(self, losses: torch.Tensor) -> None:
        """Losses of one step, [N] (one per model)."""
        self.pending.append(losses)

    def check(self, done: int) -> dict[int, tuple[int, float]]:
        """``{instance: (step, loss)}`` of the first non-finite loss of each instance since the
        last check (``done`` = steps taken so far)."""
        if not self.pending:
            return {}
        losses = torch.stack(self.pending).cpu()
        self.pending.clear()
        first = done - len(losses) + 1
        bad = ~torch.isfinite(losses)
        out = {}
        for n in bad.any(0).nonzero().flatten().tolist():
            i = int(bad[:, n].nonzero()[0])
            out[n] = (first + i, float(losses[i, n]))
        return out


def check_checkpoint_memory(model: Any, config: TrainConfig) -> None:
    """Refuse, before training, a checkpoint schedule whose kept weights cannot fit in memory."""
    kept = len(checkpoint_steps(config))
    each = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    check_memory(f"keeping {kept:,} checkpoints ({format_bytes(each)} each, n_checkpoints="
                 f"{config.n_checkpoints}, steps={config.steps})", kept * each)


class Recorder:
    """One run's bookkeeping while it trains: history rows, kept weights, snapshots, divergence.
    ``evals`` are (train loss, train acc, test loss, test acc), computed by the loop's engine."""

    def __init__(self, run: Run, metrics: Sequence[Metric], writer: RunWriter | None):
        self.run, self.metrics, self.writer = run, metrics, writer
        self.rows: list[dict[str, Any]] = (run.history.to_dict("records") if len(run.history)
                                           else [])
        self.keep_at = set(checkpoint_steps(run.config))

    def wants_eval(self, done: int) -> bool:
        cfg = self.run.config
        return done % cfg.eval_every == 0 or done == cfg.steps

    def wants_checkpoint(self, done: int) -> bool:
        return done in self.keep_at or done == self.run.config.steps

    def save(self, done: int, model: Any, evals: Sequence[float] | None,
             train_state: dict[str, torch.Tensor], write: bool) -> None:
        """After ``done`` steps: keep the weights and record ``evals`` if the run asks for them,
        stop it if it finished or reached its target (from step 1 on), and snapshot it."""
        if self.wants_checkpoint(done):  # kept in memory, written with the next snapshot
            self.run.checkpoints[done] = {k: v.detach().cpu().clone()
                                          for k, v in model.state_dict().items()}
        row = None
        if self.wants_eval(done):
            assert evals is not None
            row = self.record(done, model, evals)
        cfg = self.run.config
        reached = row is not None and done > 0 and (
            (cfg.target_test_acc is not None and row["test_acc"] >= cfg.target_test_acc)
            or (cfg.target_train_loss is not None and row["train_loss"] <= cfg.target_train_loss))
        status = "stopped_early" if reached else "finished" if done == cfg.steps else "running"
        self.snapshot(done, train_state, status, write)

    def record(self, step: int, model: Any, evals: Sequence[float]) -> dict[str, Any]:
        """Append the history row of ``step`` (metrics computed on ``model``)."""
        row: dict[str, Any] = {"step": step, "lr": self.run.config.lr_at(max(step - 1, 0))}
        row["train_loss"], row["train_acc"], row["test_loss"], row["test_acc"] = map(float, evals)
        row["weight_norm_sq"] = weight_norm_sq(model)
        for metric in self.metrics:
            row.update(metric(model, self.run.task))
        if self.rows and list(row) != list(self.rows[0]):
            raise MiMarginError(f"metrics must return the same keys at every evaluation: step "
                                f"{step} gave columns {list(row)}, earlier rows {list(self.rows[0])}")
        self.rows.append(row)
        return row

    def snapshot(self, step: int, train_state: dict[str, torch.Tensor], status: str,
                 write: bool) -> None:
        """Make the run's state that of ``step`` (the model already holds its weights) and, if
        ``write`` (or the run stopped) and there is a run folder, publish it there."""
        run = self.run
        run.step, run.train_state, run.status = step, train_state, status
        run.history = pd.DataFrame(self.rows)
        if self.writer is not None and (write or status != "running"):
            self.writer.publish(run, self.rows)

    def finish(self) -> None:
        """A run that had no step left to take: mark it finished."""
        self.run.status = "finished"
        if self.writer is not None:
            self.writer.mark(self.run)

    def diverge(self, step: int, loss: float) -> str:
        """Mark the run diverged at ``step`` (on disk too: its last snapshot is kept) and return
        the message."""
        run = self.run
        message = (f"loss became {loss} at step {step}; checkpoints up to step "
                   f"{max(run.checkpoints)} are kept")
        if self.writer is not None and self.writer.pointer is not None:
            message += (f" in {self.writer.root} (whose last snapshot is at step "
                        f"{self.writer.pointer['step']})")
        run.status, run.error = "diverged", message
        if self.writer is not None:
            self.writer.mark(run)
        return message

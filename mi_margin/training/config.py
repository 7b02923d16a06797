"""The training configuration: optimizer, schedule, penalty, logging and checkpoints."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mi_margin.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_int_tuple,
    check_optional_float,
    check_optional_int,
    keep,
    named_fields,
)
from mi_margin.errors import MiMarginError

#: the largest seed ``torch.Generator.manual_seed`` takes
MAX_SEED = 2**63 - 1
#: the largest optimizer coefficient (peak learning rate, weight decay, norm penalty): the square
#: root of float32's largest number (3.4e38), so that a coefficient times a weight or gradient of
#: up to the same size stays finite in the optimizer's float32 arithmetic; beyond it torch cannot
#: even hold the coefficient in float32 (a raw RuntimeError) or the first step overflows
MAX_COEFFICIENT = 2.0**64
#: the largest norm-penalty power r: ||ω||^r overflows float32 for ||ω|| >= 2 beyond r = 128
MAX_PENALTY_POWER = 128.0
#: the most checkpoints a schedule may ask for (computing the schedule takes this many steps;
#: the kept weights are held in memory, which training checks before it starts)
MAX_CHECKPOINTS = 10**5


#: TrainConfig fields that say how a run is shown and saved, not what it computes: two runs that
#: differ only in them are the same run (a run folder begun with one resumes with the other)
NOT_THE_RECIPE = ("progress", "snapshot_every")


@named_fields
@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are Nanda et al.'s grokking recipe (docs/mathematics.md §4.1): full batch,
    AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98), 10 warm-up steps, and a loss whose tiny late
    values are kept (:func:`~mi_margin.models.evaluation.cross_entropy64`; theirs is float64).

    Attributes:
        steps: optimizer steps in total.
        lr, optimizer ("adamw" or "sgd"; full-batch "sgd" is plain gradient descent), betas,
            momentum (SGD only, in [0, 1): the heavy-ball sum diverges from 1 on),
            weight_decay (decoupled for AdamW, L2 for SGD). The peak learning rate (``lr`` times
            ``lr_gamma`` per milestone), ``weight_decay`` and ``norm_penalty`` are at most
            :data:`MAX_COEFFICIENT` (2^64).
        norm_penalty: λ of the L_{2,ν} penalty λ·Σ_i ||ω_i||_2^r on the MLP's neuron parameters
            (Morwani et al. §1.1); r = ``norm_penalty_power`` or, when None, the homogeneity ν.
        batch_size: None for full batch, else seeded minibatches drawn without replacement.
        microbatch: the full-batch gradient is accumulated over chunks of this many examples
            (the same gradient; chunks bound the memory of large tasks). None: one chunk. The
            default, 16384, makes every paper model's training set here one chunk (the largest,
            Chughtai et al.'s S5 transformer, has 8,640 examples), which is the fastest on a
            CPU with the table fast paths (docs/performance.md §3).
        warmup_steps: linear LR warm-up (lr·min((step+1)/warmup, 1)).
        lr_milestones, lr_gamma: multiply the LR by ``lr_gamma`` at each milestone step
            (Morwani et al. App. B doubles it: ``lr_gamma=2``).
        eval_every: record train/test loss and accuracy and the weight norm every N steps.
        checkpoint_schedule: "log" (log-spaced), "linear" or "none"; the initial and final weights
            are always kept. ``n_checkpoints`` is the number of intervals the schedule divides
            training into: the weights at steps 0 and ``steps`` and at the n − 1 points between,
            so n + 1 checkpoints, fewer where log-spaced points round to the same step
            (:func:`checkpoint_steps`; at most :data:`MAX_CHECKPOINTS`).
        target_test_acc, target_train_loss: stop early once reached (checked at eval steps).
        seed: seeds minibatch order (model init is seeded by the model config).
        progress: show a tqdm progress bar.
        snapshot_every: with a run folder, write a snapshot (weights, optimizer and RNG state,
            history, metadata) every this many steps; None (default) writes one whenever the
            time trained since the last one is 1/:data:`~mi_margin.training.recorder.WRITE_BUDGET`
            times what that write took, so writing costs at most that fraction of the run.
            Kept checkpoints are saved with the next snapshot; the final state always is.
    """

    steps: int = 1000
    lr: float = 1e-3
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.98)
    momentum: float = 0.0
    weight_decay: float = 1.0
    norm_penalty: float = 0.0
    norm_penalty_power: float | None = None
    batch_size: int | None = None
    microbatch: int | None = 16384
    warmup_steps: int = 10
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 2.0
    eval_every: int = 100
    checkpoint_schedule: str = "log"
    n_checkpoints: int = 20
    target_test_acc: float | None = None
    target_train_loss: float | None = None
    seed: int = 0
    progress: bool = True
    snapshot_every: int | None = None

    def __post_init__(self) -> None:
        for name in ["steps", "eval_every"]:
            keep(self, name, check_int(name, getattr(self, name), low=1))
        keep(self, "n_checkpoints", check_int("n_checkpoints", self.n_checkpoints, low=1,
                                              high=MAX_CHECKPOINTS))
        keep(self, "warmup_steps", check_int("warmup_steps", self.warmup_steps, low=0))
        keep(self, "seed", check_int("seed", self.seed, low=0, high=MAX_SEED))
        keep(self, "lr", check_float("lr", self.lr, low=0, high=MAX_COEFFICIENT, low_open=True))
        keep(self, "lr_gamma", check_float("lr_gamma", self.lr_gamma, low=0, high=MAX_COEFFICIENT,
                                           low_open=True))
        for name in ["weight_decay", "norm_penalty"]:
            keep(self, name, check_float(name, getattr(self, name), low=0, high=MAX_COEFFICIENT))
        if not 0 <= keep(self, "momentum", check_float("momentum", self.momentum, low=0)) < 1:
            raise MiMarginError(f"momentum must be in [0, 1) (the heavy-ball sum diverges from 1 "
                                f"on), got momentum={self.momentum!r}")
        keep(self, "norm_penalty_power", check_optional_float(
            "norm_penalty_power", self.norm_penalty_power, low=0, high=MAX_PENALTY_POWER,
            low_open=True))
        check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        check_choice("checkpoint_schedule", self.checkpoint_schedule, ("log", "linear", "none"))
        for name in ["batch_size", "microbatch", "snapshot_every"]:
            keep(self, name, check_optional_int(name, getattr(self, name), low=1))
        keep(self, "target_test_acc", check_optional_float("target_test_acc", self.target_test_acc,
                                                           low=0, high=1))
        keep(self, "target_train_loss", check_optional_float("target_train_loss",
                                                             self.target_train_loss, low=0))
        check_bool("progress", self.progress)
        betas = self.betas
        if isinstance(betas, (str, bytes)) or not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise MiMarginError(f"betas must be two numbers in [0, 1), got betas={betas!r}")
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                   for b in betas):  # (nan fails 0 <= b)
            raise MiMarginError(f"betas must be two numbers in [0, 1), got betas={betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        milestones = check_int_tuple("lr_milestones", self.lr_milestones, low=0)
        object.__setattr__(self, "lr_milestones", tuple(sorted(milestones)))
        log_peak = math.log(self.lr) + max(0.0, len(milestones) * math.log(self.lr_gamma))
        if log_peak > math.log(MAX_COEFFICIENT):
            raise MiMarginError(f"the peak learning rate lr·lr_gamma^{len(milestones)} (lr="
                                f"{self.lr!r}, lr_gamma={self.lr_gamma!r}, {len(milestones)} "
                                f"milestones) must be at most {MAX_COEFFICIENT:.3g}")

    def lr_at(self, step: int) -> float:
        """The learning rate used at optimizer step ``step`` (0-based)."""
        warm = min((step + 1) / self.warmup_steps, 1.0) if self.warmup_steps else 1.0
        doublings = sum(1 for m in self.lr_milestones if step >= m)
        return self.lr * warm * self.lr_gamma**doublings

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"], d["lr_milestones"] = list(self.betas), list(self.lr_milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a model or task config's
        ``kind`` too)."""
        if not isinstance(d, dict):
            raise MiMarginError(f"a TrainConfig dict is needed, got {type(d).__name__}: {d!r}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def checkpoint_steps(cfg: TrainConfig) -> list[int]:
    """Steps (number of optimizer steps taken) at which weights are kept: 0, ``steps`` and the
    ``n_checkpoints − 1`` points of the schedule between them, without repeats.

    Example:
        >>> checkpoint_steps(TrainConfig(steps=400, n_checkpoints=8, checkpoint_schedule="linear"))
        [0, 50, 100, 150, 200, 250, 300, 350, 400]
        >>> len(checkpoint_steps(TrainConfig(steps=400, n_checkpoints=20)))   # log: 1, 1, 2, ...
        20
    """
    steps = {0, cfg.steps}
    n = cfg.n_checkpoints
    if cfg.checkpoint_schedule == "linear":
        steps |= {round(cfg.steps * i / n) for i in range(1, n)}
    elif cfg.checkpoint_schedule == "log":
        steps |= {round(cfg.steps ** (i / n)) for i in range(1, n)}
    return sorted(steps)

"""Training: ``train()``, ``TrainConfig``, runs (metrics history, checkpoints) and exact resume."""

from mi_margin.models.evaluation import cross_entropy64, evaluate
from mi_margin.training.batched import evaluate_batched, train_batched
from mi_margin.training.config import TrainConfig, checkpoint_steps
from mi_margin.training.io import load, save
from mi_margin.training.loop import resume, train
from mi_margin.training.run import Run
from mi_margin.training.run_folder import load_run, save_run

__all__ = ["Run", "TrainConfig", "checkpoint_steps", "cross_entropy64", "evaluate", "evaluate_batched",
           "load", "load_run", "resume", "save", "save_run", "train", "train_batched"]

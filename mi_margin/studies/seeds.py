"""Train one seed of a study to its stop rule, resumably, and keep what the summaries need.

A seed lives in a run folder ``FOLDER/run`` (:mod:`~mi_margin.training.run_folder`: killed at any
moment, it resumes to the exact weights an uninterrupted run reaches). It trains in chunks that end
at multiples of ``rule.chunk`` (:class:`~mi_margin.studies.stop.StopRule`), so an interrupted seed stops
at the same step as one that never was. The recipe's learning-rate schedule does not depend on the
step budget, so the chunks follow the recipe's own trajectory; only initial and final weights are
kept (the history is recorded every ``eval_every`` steps as in the recipe).

When a seed is done, :func:`export_seed` writes its record: ``final.safetensors`` (weights, model,
task and train configs, step) and ``history.csv``, all a summary row is computed from, so that
summaries can be recomputed after the analyses change without retraining.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mi_margin.errors import MiMarginError
from mi_margin.models.config import config_from_dict
from mi_margin.models.io import read_model, read_tensors, save_model
from mi_margin.studies.stop import StopRule
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.training import Run, TrainConfig, load, train
from mi_margin.training.config import NOT_THE_RECIPE

#: ``seed -> (model, task, TrainConfig)``; the config's ``steps`` is the seed's step budget
SeedRecipe = Callable[[int], tuple[Any, Any, TrainConfig]]
FINAL, HISTORY = "final.safetensors", "history.csv"


def _clock(history: pd.DataFrame) -> Callable[[Any, Any], dict[str, float]]:
    """A ``train(metrics=...)`` callable counting wall and CPU seconds across resumed chunks."""
    last = history.iloc[-1] if len(history) and "cpu_s" in history else {}
    wall0 = time.perf_counter() - float(last.get("wall_s", 0.0))
    cpu0 = time.process_time() - float(last.get("cpu_s", 0.0))
    return lambda model, task: {"wall_s": time.perf_counter() - wall0,
                                "cpu_s": time.process_time() - cpu0}


def built(recipe: SeedRecipe, seed: int) -> tuple[Any, Any, TrainConfig]:
    """``recipe(seed)``, refused unless it is ``(model, task, TrainConfig)``, naming the recipe."""
    from mi_margin.tasks import Task

    name = getattr(recipe, "__name__", repr(recipe))
    try:
        inspect.signature(recipe).bind(seed)
    except TypeError as err:
        raise MiMarginError(f"the study's recipe {name} must take one argument, the seed "
                            f"({err})") from None
    except ValueError:                        # no signature to read (some builtins): just call
        pass
    made = recipe(seed)
    if not (isinstance(made, tuple) and len(made) == 3 and isinstance(made[1], Task)
            and isinstance(made[2], TrainConfig) and hasattr(made[0], "cfg")):
        raise MiMarginError(f"the study's recipe {name} must return (model, task, TrainConfig), "
                            f"got {type(made).__name__} "
                            f"{tuple(type(x).__name__ for x in made) if isinstance(made, tuple) else ''}")
    return made


def train_seed(recipe: SeedRecipe, seed: int, folder: str | Path, rule: StopRule,
               progress: bool = False) -> tuple[Run, int]:
    """Train (or continue) ``seed`` of ``recipe`` in ``folder/run`` until ``rule`` says it is done
    or its step budget is spent; returns the run and the budget (the recipe's ``steps``, which
    :func:`export_seed` records), so that the recipe is built once per seed. With ``progress``,
    each chunk shows its steps and test accuracy in a bar of its own."""
    model, task, config = built(recipe, seed)
    budget, run_dir = config.steps, Path(folder) / "run"
    config = config.replace(checkpoint_schedule="none", progress=progress)
    run: Run | None = load(run_dir) if (run_dir / "run.json").is_file() else None
    # a run interrupted with the bar on or off resumes either way (NOT_THE_RECIPE)
    if run is not None and run.config.replace(steps=config.steps, **{
            name: getattr(config, name) for name in NOT_THE_RECIPE}) != config:
        raise MiMarginError(f"{run_dir} holds a run of another recipe or seed than seed {seed}")
    while run is None or not (run.step >= budget or rule.done(run.history, run.step)):
        step = 0 if run is None else run.step
        chunk = config.replace(steps=rule.next_stop(step, budget))
        if run is None:
            run = train(model, task, chunk, out_dir=run_dir, metrics=[_clock(pd.DataFrame())])
        else:
            run = train(run.model, run.task, chunk, run=run, metrics=[_clock(run.history)])
    return run, budget


def export_seed(run: Run, dest: str | Path, budget: int, rule: StopRule) -> Path:
    """Write ``dest/final.safetensors`` and ``dest/history.csv`` of a finished seed (the history
    first, the weights last: a seed counts as done once its weights are there)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    run.history.to_csv(dest / HISTORY, index=False)
    save_model(run.model, dest / FINAL, step=run.step, task=run.task.to_dict(),
               train=run.config.to_dict(), budget=budget, stop_rule=rule.to_dict())
    return dest


def check_same_recipe(recipe: SeedRecipe, seed: int, dest: str | Path) -> None:
    """Refuse to count an exported seed that ``recipe`` would not build again (another task or
    model): continuing a study with a changed recipe would mix two settings' rows silently."""
    model, task, _ = built(recipe, seed)
    _, meta, _ = read_tensors(Path(dest) / FINAL)
    stored = meta["task"] if isinstance(meta["task"], dict) else json.loads(meta["task"])
    # read back through the current classes, so that fields added since (with their defaults)
    # do not count as a change
    same_task = task_from_dict(stored).to_dict() == task.to_dict()
    if not same_task or config_from_dict(meta["config"]) != model.cfg:
        name = getattr(recipe, "__name__", repr(recipe))
        raise MiMarginError(f"seed {seed} in {dest} was trained on {stored} with model "
                            f"{meta['config']}, but the recipe {name} now builds {task.to_dict()} "
                            f"with {model.cfg.to_dict()}: use another folder for the new recipe")


def is_exported(dest: str | Path) -> bool:
    return (Path(dest) / FINAL).is_file()


def read_seed(dest: str | Path) -> tuple[Any, Any, pd.DataFrame, dict[str, Any]]:
    """``(model, task, history, meta)`` of an exported seed."""
    model, meta, _ = read_model(Path(dest) / FINAL)
    task_cfg = meta["task"] if isinstance(meta["task"], dict) else json.loads(meta["task"])
    return model, task_from_dict(task_cfg), pd.read_csv(Path(dest) / HISTORY), meta

"""Train one seed of a study to its stop rule, resumably, and keep what the summaries need.

A seed lives in a run folder ``FOLDER/run`` (:mod:`~mi_margin.training.run_folder`: killed at any
moment, it resumes to the exact weights an uninterrupted run reaches). It trains in chunks that end
at multiples of ``rule.chunk`` (:class:`~mi_margin.studies.stop.StopRule`), so an interrupted seed stops
at the same step as one that never was. The recipe's learning-rate schedule does not depend on the
step budget, so the chunks follow the recipe's own trajectory; only initial and final weights are
kept. The history is recorded every ``eval_every`` steps as in the recipe: training evaluates at
the end of every chunk too, so a recipe whose ``eval_every`` does not divide the chunk is refused
(:func:`check_trainable`), as is a task without test inputs (grokking is measured on them).

When a seed is done, :func:`export_seed` writes its record: ``final.safetensors`` (weights, model,
task and train configs, step) and ``history.csv``, all a summary row is computed from, so that
summaries can be recomputed after the analyses change without retraining.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mi_margin._progress import progress_bar
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
#: TrainConfig fields in which a seed's stored config may differ from its recipe's: how a run is
#: shown and saved (NOT_THE_RECIPE), its checkpoints (a study keeps none: it trains with
#: checkpoint_schedule="none") and ``steps`` (the end of the seed's last chunk; the step budget
#: is compared on its own)
NOT_THE_SEED = (*NOT_THE_RECIPE, "checkpoint_schedule", "n_checkpoints", "steps")


def stable_repr(value: Any) -> str:
    """``repr(value)`` without memory addresses (``<function f at 0x7f..>`` → ``<function f>``),
    which differ from one process to the next."""
    return re.sub(r" at 0x[0-9A-Fa-f]+", "", repr(value))


def recipe_name(recipe: Any) -> str:
    """The name a study records for ``recipe``, the same in every process (a resumed study must
    find its own folder; ``repr`` holds memory addresses): a population's name, a function's
    ``__name__`` (as studies have always recorded it), a ``functools.partial`` as its function's
    name with the arguments' reprs, or a callable object's class ``__qualname__``.

    Example:
        >>> def tiny(p, seed): ...
        >>> recipe_name(tiny), recipe_name(functools.partial(tiny, 11)), recipe_name("chughtai_S4_mlp")
        ('tiny', 'partial(tiny, 11)', 'chughtai_S4_mlp')
    """
    if isinstance(recipe, str):
        return recipe
    if isinstance(recipe, functools.partial):
        args = [recipe_name(recipe.func), *map(stable_repr, recipe.args),
                *(f"{k}={stable_repr(v)}" for k, v in recipe.keywords.items())]
        return f"partial({', '.join(args)})"
    name = getattr(recipe, "__name__", None)
    return name if isinstance(name, str) else type(recipe).__qualname__


def _clock(history: pd.DataFrame) -> Callable[[Any, Any], dict[str, float]]:
    """A ``train(metrics=...)`` callable counting wall and CPU seconds across resumed chunks."""
    last = history.iloc[-1] if len(history) and "cpu_s" in history else {}
    wall0 = time.perf_counter() - float(last.get("wall_s", 0.0))
    cpu0 = time.process_time() - float(last.get("cpu_s", 0.0))
    return lambda model, task: {"wall_s": time.perf_counter() - wall0,
                                "cpu_s": time.process_time() - cpu0}


def _mover(bar: Any, start: int, end: int, every: int,
           new_run: bool) -> Callable[[Any, Any], dict[str, float]]:
    """A ``train(metrics=...)`` callable that moves the seed's ``bar`` to the step of each
    evaluation of a chunk from ``start`` to ``end`` (metrics are called at every evaluation but
    not told its step): train() evaluates a new run at step 0, then after every ``every``-th step
    and at the chunk's end."""
    steps = iter([*([start] if new_run else []),
                  *range((start // every + 1) * every, end, every), end])

    def move(model: Any, task: Any) -> dict[str, float]:
        bar.update(next(steps) - bar.n)
        return {}

    return move


def built(recipe: SeedRecipe, seed: int) -> tuple[Any, Any, TrainConfig]:
    """``recipe(seed)``, refused unless it is ``(model, task, TrainConfig)``, naming the recipe."""
    from mi_margin.tasks import Task

    name = recipe_name(recipe)
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


def check_trainable(recipe: SeedRecipe, task: Any, config: TrainConfig, rule: StopRule) -> None:
    """Refuse a seed a study cannot measure as the recipe trains it: a task without test inputs
    (grokking is a rise of test accuracy; without a test split it is NaN, no seed would ever
    count as grokked or stop before its budget, and the views would refuse the rows), or an
    ``eval_every`` that does not divide the rule's ``chunk`` (training also evaluates at every
    chunk's end, so the history, and the stable step, counted in evaluations, would not be the
    recipe's)."""
    name = recipe_name(recipe)
    if len(task.test_idx) == 0:
        raise MiMarginError(
            f"the study's recipe {name} builds a task without test inputs "
            f"({type(task).__name__} with train_fraction={task.train_fraction} trains on all "
            f"{len(task.train_idx)} inputs): a study measures grokking as test accuracy, which "
            "is undefined without a test split; build the task with a train_fraction below 1 "
            "(e.g. train_fraction=0.5)")
    every, chunk = config.eval_every, rule.chunk
    if chunk % every:
        below, above = chunk // every * every, (chunk // every + 1) * every
        raise MiMarginError(
            f"the recipe {name} evaluates every eval_every={every} steps, which does not divide "
            f"the stop rule's chunk={chunk}: the study would also evaluate at every chunk's end, "
            "so its history (and the stable step, counted in evaluations) would not be the "
            f"recipe's; use a chunk that is a multiple of {every} (e.g. StopRule(chunk="
            f"{above if below == 0 else below}) or {above}), or an eval_every that divides "
            f"{chunk}")


def recipe_record(task: Any, model_cfg: Any, config: TrainConfig) -> dict[str, Any]:
    """What a seed's training computes from, flat: ``{"task.p": 11, "model.d_mlp": 48,
    "train.lr": 0.01, ...}`` (the train config without :data:`NOT_THE_SEED`)."""
    train = {k: v for k, v in config.to_dict().items() if k not in NOT_THE_SEED}
    return {f"{part}.{k}": v for part, values in (("task", task.to_dict()),
                                                  ("model", model_cfg.to_dict()),
                                                  ("train", train))
            for k, v in values.items()}


def differences(stored: dict[str, Any], now: dict[str, Any]) -> str:
    """The fields in which two records differ, e.g. ``"train.lr: 0.01 in the folder, 0.001
    now"`` ("absent" where a record lacks the field)."""
    def shown(record: dict[str, Any], key: str) -> str:
        return repr(record[key]) if key in record else "absent"

    return "; ".join(f"{key}: {shown(stored, key)} in the folder, {shown(now, key)} now"
                     for key in dict.fromkeys([*stored, *now])
                     if (key in stored, stored.get(key)) != (key in now, now.get(key)))


def train_seed(recipe: SeedRecipe, seed: int, folder: str | Path, rule: StopRule,
               progress: bool = False) -> tuple[Run, int]:
    """Train (or continue) ``seed`` of ``recipe`` in ``folder/run`` until ``rule`` says it is done
    or its step budget is spent; returns the run and the budget (the recipe's ``steps``, which
    :func:`export_seed` records), so that the recipe is built once per seed. With ``progress``,
    one bar shows the seed's steps out of its budget and its test accuracy."""
    model, task, config = built(recipe, seed)
    check_trainable(recipe, task, config, rule)
    budget, run_dir = config.steps, Path(folder) / "run"
    config = config.replace(checkpoint_schedule="none", progress=False)
    run: Run | None = load(run_dir) if (run_dir / "run.json").is_file() else None
    # a run interrupted with the bar on or off resumes either way (NOT_THE_SEED)
    if run is not None:
        changed = differences(recipe_record(run.task, run.model.cfg, run.config),
                              recipe_record(task, model.cfg, config))
        if changed:
            raise MiMarginError(f"{run_dir} holds a run of another recipe than seed {seed} of "
                                f"{recipe_name(recipe)} ({changed}): remove it to train the "
                                "seed anew, or use another study folder for the new recipe")
    start = 0 if run is None else run.step
    with progress_bar(total=budget, initial=start, desc=f"seed {seed}", leave=False,
                      disable=not progress) as bar:
        while run is None or not (run.step >= budget or rule.done(run.history, run.step)):
            step = 0 if run is None else run.step
            chunk = config.replace(steps=rule.next_stop(step, budget))
            metrics = [_clock(pd.DataFrame() if run is None else run.history)]
            if progress:
                metrics.append(_mover(bar, step, chunk.steps, config.eval_every, run is None))
            if run is None:
                run = train(model, task, chunk, out_dir=run_dir, metrics=metrics)
            else:
                run = train(run.model, run.task, chunk, run=run, metrics=metrics)
            bar.set_postfix(test_acc=f"{run.history['test_acc'].iloc[-1]:.3f}")
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


def _json(value: Any) -> Any:
    """A metadata entry that may be stored as JSON text or already decoded."""
    return json.loads(value) if isinstance(value, str) else value


def check_same_recipe(recipe: SeedRecipe, seed: int, dest: str | Path) -> None:
    """Refuse to count an exported seed that ``recipe`` would not train again: another task,
    model, train config (but for :data:`NOT_THE_SEED`) or step budget. Continuing a study with
    a changed recipe would mix two settings' rows silently. The stored configs are read back
    through the current classes, so that fields added since (with their defaults) do not count
    as a change."""
    model, task, config = built(recipe, seed)
    _, meta, _ = read_tensors(Path(dest) / FINAL)
    stored = recipe_record(task_from_dict(_json(meta["task"])), config_from_dict(meta["config"]),
                           TrainConfig.from_dict(_json(meta["train"])))
    changed = differences({**stored, "budget": int(meta["budget"])},
                          {**recipe_record(task, model.cfg, config), "budget": config.steps})
    if changed:
        raise MiMarginError(f"seed {seed} in {dest} was trained on another recipe than "
                            f"{recipe_name(recipe)} builds now ({changed}): use another folder "
                            "for the new recipe")


def is_exported(dest: str | Path) -> bool:
    return (Path(dest) / FINAL).is_file()


def read_seed(dest: str | Path) -> tuple[Any, Any, pd.DataFrame, dict[str, Any]]:
    """``(model, task, history, meta)`` of an exported seed."""
    model, meta, _ = read_model(Path(dest) / FINAL)
    return model, task_from_dict(_json(meta["task"])), pd.read_csv(Path(dest) / HISTORY), meta

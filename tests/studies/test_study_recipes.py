"""What a study takes as a recipe and how it keeps to it: the recipe's train config and budget
are part of a finished seed, a recipe's recorded name is the same in every process, recipes a
study cannot measure are refused before training, one failing seed does not stop the others, and
``--resummarize`` refuses the flags it cannot honor."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest

import mi_margin as mm
from mi_margin.studies import StopRule, study
from mi_margin.studies.grid import setting_recipe
from mi_margin.studies.seeds import recipe_name, train_seed

RULE = StopRule(patience=2, cleanup=0.5, chunk=30)


def tiny_p(p: int, seed: int, **train):
    """Addition mod ``p`` on 60% of the table, a ReLU MLP for 150 steps (``train`` changes the
    TrainConfig); quick, and it does not generalize."""
    task = mm.ModularAddition(p=p, train_fraction=0.6, seed=seed)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=48, act_fn="relu",
                                               input_style="embed", d_embed=32, seed=seed))
    config = mm.TrainConfig(steps=150, lr=1e-2, weight_decay=1.0, eval_every=10, progress=False)
    return model, task, config.replace(**train)


def tiny(seed: int):
    """``tiny_p`` mod 11."""
    return tiny_p(11, seed)


def tiny_with(**train):
    """``tiny`` with another TrainConfig, under the same name (a recipe edited in place)."""
    def changed(seed: int):
        return tiny_p(11, seed, **train)

    changed.__name__ = "tiny"
    return changed


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A study folder holding seed 0 of ``tiny``, finished."""
    out = tmp_path_factory.mktemp("finished") / "st"
    study(tiny, seeds=1, out=out, rule=RULE, progress=False)
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "st"))


@pytest.mark.parametrize("change, text", [
    ({"lr": 2e-2}, "train.lr: 0.01 in the folder, 0.02 now"),
    ({"weight_decay": 0.5}, "train.weight_decay: 1.0 in the folder, 0.5 now"),
    ({"optimizer": "sgd"}, "train.optimizer: 'adamw' in the folder, 'sgd' now"),
    ({"steps": 180}, "budget: 150 in the folder, 180 now"),
], ids=["lr", "weight decay", "optimizer", "budget"])
def test_a_finished_seed_of_another_train_config_or_budget_is_refused(finished, tmp_path, change,
                                                                      text):
    """The recipe's train config (but for how a run is shown, saved and chunked) and its step
    budget are part of a finished seed: a study continued with others is refused, naming the
    field and both values, before anything trains."""
    out = copy_of(finished, tmp_path)
    with pytest.raises(mm.MiMarginError, match=re.escape(text) + ".*use another folder"):
        study(tiny_with(**change), seeds=2, out=out, rule=RULE, progress=False)
    assert not (out / "seed_1").exists()


def test_fields_that_do_not_change_the_computation_are_not_a_change(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    before = (out / "rows.jsonl").read_text()
    same = tiny_with(progress=True, snapshot_every=7, checkpoint_schedule="linear",
                     n_checkpoints=3)
    assert study(same, seeds=1, out=out, rule=RULE, progress=False).table["seed"].tolist() == [0]
    assert (out / "rows.jsonl").read_text() == before


def test_a_seed_interrupted_under_another_task_is_refused(tmp_path):
    """A seed's run folder begun by a recipe that built another task (p = 7) is not continued
    under the new one (it went on with the old task and model, silently)."""
    model, task, config = tiny_p(7, 0)
    mm.train(model, task, config.replace(steps=RULE.chunk, checkpoint_schedule="none"),
             out_dir=tmp_path / "s" / "run")
    with pytest.raises(mm.MiMarginError, match=r"another recipe .*task\.p: 7 in the folder, 11 now"):
        train_seed(tiny, 0, tmp_path / "s", RULE)


class Recipe:
    """A callable object as a recipe (its default repr holds its memory address)."""

    def __call__(self, seed: int):
        return tiny_p(11, seed)


def test_recipe_names_hold_no_memory_address():
    assert recipe_name(partial(tiny_p, 11)) == "partial(tiny_p, 11)"
    assert recipe_name(partial(tiny_p, 11, lr=0.1)) == "partial(tiny_p, 11, lr=0.1)"
    assert recipe_name(partial(tiny_p, p=11)) == "partial(tiny_p, p=11)"
    assert recipe_name(Recipe()) == "Recipe"
    assert recipe_name(tiny_p) == "tiny_p" and recipe_name("chughtai_S4_mlp") == "chughtai_S4_mlp"
    assert re.fullmatch(r"partial\(tiny_p, <[\w.]*Recipe object>\)",
                        recipe_name(partial(tiny_p, Recipe())))
    assert setting_recipe(partial(tiny_p, lr=0.1), 7).__name__ == "partial(tiny_p, lr=0.1)[7]"
    assert setting_recipe(tiny_p, 7).__name__ == "tiny_p[7]"      # as the shipped grid's folders


def test_a_study_of_a_callable_object_resumes(tmp_path):
    study(Recipe(), seeds=1, out=tmp_path, rule=RULE, progress=False)
    assert json.loads((tmp_path / "study.json").read_text())["source"] == "Recipe"
    assert study(Recipe(), seeds=1, out=tmp_path, rule=RULE, progress=False).table["seed"].tolist() == [0]


def test_a_study_of_a_partial_resumes_in_a_new_process(tmp_path):
    """The recorded name of a partial is the same in another process (its repr held the
    function's address there), so a study of one continues after a restart."""
    study(partial(tiny_p, 11), seeds=1, out=tmp_path / "st", rule=RULE, progress=False)
    assert json.loads((tmp_path / "st" / "study.json").read_text())["source"] == "partial(tiny_p, 11)"
    source = Path(__file__).read_text()
    recipe = source[source.index("def tiny_p"):source.index("def tiny(seed")]
    script = textwrap.dedent("""
        from functools import partial
        import mi_margin as mm
        from mi_margin.studies import StopRule, study
        """) + recipe + textwrap.dedent(f"""
        new = []
        st = study(partial(tiny_p, 11), seeds=2, out={str(tmp_path / "st")!r},
                   rule=StopRule(patience=2, cleanup=0.5, chunk=30), progress=False,
                   on_row=new.append)
        assert [r["seed"] for r in new] == [1], new
        assert st.table["seed"].tolist() == [0, 1]
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("task", [mm.ModularAddition(p=5, train_fraction=1.0),
                                  mm.SparseParity(n=4, k=2)],
                         ids=["train_fraction=1", "sparse parity's default"])
def test_a_task_without_test_inputs_is_refused_before_training(tmp_path, task):
    """Grokking is measured on the test split: without one no seed ever counts as grokked or
    stops early (each ran to its budget before)."""
    def recipe(seed):
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, seed=seed))
        return model, task, mm.TrainConfig(steps=60, eval_every=10, progress=False)

    with pytest.raises(mm.MiMarginError, match=r"without test inputs.*train_fraction below 1"):
        study(recipe, seeds=1, out=tmp_path, rule=RULE, progress=False)
    assert not (tmp_path / "seed_0").exists()


def test_an_eval_every_that_does_not_divide_the_chunk_is_refused(tmp_path):
    """Training also evaluates at a chunk's end, so with eval_every = 20 and chunks of 30 the
    history would hold evaluations the recipe's does not (and patience counts evaluations)."""
    with pytest.raises(mm.MiMarginError, match=r"eval_every=20 .* chunk=30.*multiple of 20 "
                                               r"\(e\.g\. StopRule\(chunk=20\) or 40\)"):
        study(partial(tiny_p, 11, eval_every=20), seeds=1, out=tmp_path, rule=RULE,
              progress=False)
    assert not (tmp_path / "seed_0").exists()


def failing_at(bad: int, how: str):
    """``tiny`` that raises (``how="raises"``) or diverges (``"diverges"``) for seed ``bad``."""
    def recipe(seed):
        if seed == bad and how == "raises":
            raise RuntimeError("boom")
        return tiny_p(11, seed, **({"lr": 1e18} if seed == bad else {}))

    recipe.__name__ = "failing"
    return recipe


@pytest.mark.parametrize("how, error", [("raises", "RuntimeError: boom"),
                                        ("diverges", "TrainingDivergedError: loss became nan")])
def test_a_failing_seed_does_not_stop_the_others(tmp_path, how, error):
    """A seed whose recipe raises or whose training diverges gets no row; the seeds after it
    train, then the study names it, its error and the seeds to run without it. Run again, it
    is retried (the first seed to train is built before any trains: a recipe that raises for
    it raises its own error); without it, the study finishes."""
    recipe = failing_at(1, how)
    rows: list[dict] = []
    with pytest.raises(mm.MiMarginError) as caught:
        study(recipe, seeds=3, out=tmp_path, rule=RULE, progress=False, on_row=rows.append)
    text = str(caught.value)
    assert f"1 of the 3 seeds of the study in {tmp_path} failed (seed 1: {error}" in text
    assert "seeds=[0,2] (--seeds 0,2)" in text
    assert [r["seed"] for r in rows] == [0, 2]
    lines = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["seed"] for x in lines) == [0, 2]
    assert error.split(":")[0] in (tmp_path / "seed_1" / "error.txt").read_text()
    with pytest.raises(RuntimeError if how == "raises" else mm.MiMarginError,
                       match="boom" if how == "raises" else "seed 1: TrainingDivergedError"):
        study(recipe, seeds=3, out=tmp_path, rule=RULE, progress=False)
    assert study(recipe, seeds=[0, 2], out=tmp_path, rule=RULE,
                 progress=False).table["seed"].tolist() == [0, 2]


def test_a_seed_that_failed_once_succeeds_when_retried(tmp_path):
    with pytest.raises(mm.MiMarginError, match="seed 1: RuntimeError: boom"):
        study(failing_at(1, "raises"), seeds=2, out=tmp_path, rule=RULE, progress=False)
    ok = failing_at(-1, "raises")
    assert study(ok, seeds=2, out=tmp_path, rule=RULE, progress=False).table["seed"].tolist() == [0, 1]
    assert not (tmp_path / "seed_1" / "error.txt").exists()


@pytest.mark.parametrize("flags", [["--seeds", "3"], ["--patience", "3"], ["--cleanup", "0.5"],
                                   ["--address", "auto"], ["--keep-runs"]],
                         ids=lambda f: f[0])
def test_resummarize_refuses_the_flags_it_would_ignore(tmp_path, capsys, flags):
    from mi_margin.cli import main

    args = ["study", "chughtai_S4_mlp", "--out", str(tmp_path), "--resummarize", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot take {flags[0]}" in err and "--resummarize" in err

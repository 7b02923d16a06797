"""study_grid: one study per setting, resumable, and the view of key labels against the setting."""

from __future__ import annotations

import importlib
import json

import pandas as pd
import pytest

import mi_margin as mm
from mi_margin.studies import StopRule
from mi_margin.studies.grid import folder_name, key_count_by_setting, setting_recipe, study_grid
from mi_margin.studies.keys import key_labels

RULE = StopRule(patience=2, cleanup=0.5, chunk=30)


def tiny(p: int, seed: int):
    """A ReLU MLP on addition mod p for 60 steps (quick to train; it need not generalize)."""
    task = mm.ModularAddition(p=p, train_fraction=0.6, seed=seed)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="relu", seed=seed))
    return model, task, mm.TrainConfig(steps=60, lr=1e-2, eval_every=10, progress=False)


def test_a_grid_is_one_study_per_setting_and_resumes_without_training(tmp_path, monkeypatch):
    grid = study_grid(tiny, [5, 7], seeds=[0, 2], out=tmp_path, rule=RULE, progress=False)
    assert grid.table[["setting", "seed"]].values.tolist() == [[5, 0], [5, 2], [7, 0], [7, 2]]
    for p in (5, 7):
        meta = json.loads((tmp_path / str(p) / "study.json").read_text())
        assert meta["source"] == f"tiny[{p}]" and meta["seeds"] == [0, 2]
        rows = grid.table[grid.table["setting"] == p]
        assert all(json.loads(t)["p"] == p for t in rows["task"])

    def no_training(*args, **kwargs):
        raise AssertionError("a finished grid trained again")

    study_module = importlib.import_module("mi_margin.studies.study")  # the package's `study` is the function
    monkeypatch.setattr(study_module, "train_seed", no_training)
    again = study_grid(tiny, [5, 7], seeds=[0, 2], out=tmp_path, rule=RULE, progress=False)
    pd.testing.assert_frame_equal(again.table, grid.table)


def test_a_setting_recipe_is_the_recipe_at_that_setting():
    recipe = setting_recipe(tiny, 7)
    assert recipe.__name__ == "tiny[7]"
    _, task, _ = recipe(3)
    assert task.p == 7 and task.seed == 3


def test_bad_grids_are_refused(tmp_path):
    with pytest.raises(mm.MiMarginError, match="at least one setting"):
        study_grid(tiny, [], seeds=1, out=tmp_path)
    assert folder_name("a/b") == folder_name("a b") == "a_b"
    with pytest.raises(mm.MiMarginError, match="distinct folder names"):
        study_grid(tiny, ["a/b", "a b"], seeds=1, out=tmp_path)
    with pytest.raises(mm.MiMarginError, match="missing columns"):
        key_count_by_setting(pd.DataFrame({"seed": [0]}))


def _row(setting, seed, similarity, n_delta, test_acc):
    return {"setting": setting, "seed": seed, "label_kind": "frequency", "n_delta": n_delta,
            "test_acc": test_acc, "similarity": json.dumps(similarity),
            "logit_share": json.dumps(similarity)}


def test_the_view_counts_only_generalized_seeds_per_setting():
    table = pd.DataFrame([
        _row(11, 0, {"1": 0.4, "2": 0.3, "3": 0.0, "4": 0.0, "5": 0.0}, 2, 1.0),
        _row(11, 1, {"1": 0.4, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0}, 1, 1.0),
        _row(11, 2, {"1": 0.4, "2": 0.4, "3": 0.4, "4": 0.4, "5": 0.4}, 5, 0.5),
        _row(13, 0, {str(f): 0.3 * (f < 4) for f in range(1, 7)}, 3, 0.995)])
    view = key_count_by_setting(table)
    rows = view.to_dataframe().set_index("setting")
    assert rows.loc[11, "seeds"] == 3 and rows.loc[11, "generalized"] == 2
    kept = table[table["test_acc"] >= 0.99]
    for setting, part in kept.groupby("setting"):
        n_key = [len(key_labels(r)) for _, r in part.iterrows()]
        assert rows.loc[setting, "n_key_mean"] == sum(n_key) / len(n_key)
        assert rows.loc[setting, "n_delta_max"] == part["n_delta"].max()
        assert rows.loc[setting, "n_delta_min"] == part["n_delta"].min()
    assert [(p["setting"], p["seed"]) for p in view.points] == [(11, 0), (11, 1), (13, 0)]
    fig = view.plot()
    seeds_trace = fig.data[0]
    assert list(seeds_trace.y) == [p["n_delta"] for p in view.points]
    assert list(fig.data[1].y) == rows["n_delta_mean"].tolist()
    assert "11: 2/3" in fig.layout.title.text


def test_the_grid_recipe_is_chughtais_mlp_on_addition_mod_p():
    from mi_margin.zoo.recipes import KEY_FREQUENCY_PRIMES, chughtai_mlp, chughtai_mlp_mod_p

    model, task, train = chughtai_mlp_mod_p(7, seed=3, steps=500)
    assert isinstance(task, mm.ModularAddition) and (task.p, task.seed) == (7, 3)
    assert task.train_fraction == 0.4 and train.steps == 500
    group_model, _, group_train = chughtai_mlp("S3", 0.4, 3, 500)
    same = ("input_style", "d_embed", "d_mlp", "act_fn", "seed")
    assert {f: getattr(model.cfg, f) for f in same} == {f: getattr(group_model.cfg, f) for f in same}
    assert train == group_train
    assert all(mm.ModularAddition(p=p).p == p for p in KEY_FREQUENCY_PRIMES)

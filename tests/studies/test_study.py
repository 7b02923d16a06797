"""mm.study: chunks follow the recipe's trajectory, kills anywhere resume to the same table, and
the population views count what the rows say."""

from __future__ import annotations

import itertools
import json
import re
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch

import mi_margin as mm
from mi_margin.studies import StopRule, study
from mi_margin.studies.seeds import _clock, read_seed, train_seed
from mi_margin.studies.study import MAX_SEEDS, seed_job, seed_list
from mi_margin.studies.views import grokking_distribution, key_count_distribution, label_frequency

RULE = StopRule(patience=2, cleanup=0.5, chunk=30)
TIMING = ["cpu_s", "wall_s"]


def tiny(seed: int):
    """Addition mod 11 on 60% of the table: a ReLU MLP trained for 150 steps (it does not
    generalize: these tests need seeds that train quickly, not ones that grok)."""
    task = mm.ModularAddition(p=11, train_fraction=0.6, seed=seed)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=48, act_fn="relu",
                                               input_style="embed", d_embed=32, seed=seed))
    return model, task, mm.TrainConfig(steps=150, lr=1e-2, weight_decay=1.0, eval_every=10,
                                       progress=False)


def test_a_seed_trained_in_chunks_is_the_uninterrupted_run(tmp_path):
    run, budget = train_seed(tiny, 0, tmp_path / "s", RULE)
    model, task, config = tiny(0)
    assert budget == config.steps
    plain = mm.train(model, task, config.replace(steps=run.step))
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, run.model.state_dict()[name]), name
    pd.testing.assert_frame_equal(run.history.drop(columns=TIMING), plain.history)


def test_a_seed_begun_without_a_bar_resumes_with_one(tmp_path):
    """A seed's run folder begun with progress off (as a Ray task or an older version runs it)
    continues with the bar on, to the weights of a run that was never interrupted."""
    model, task, config = tiny(0)
    mm.train(model, task, config.replace(steps=RULE.chunk, checkpoint_schedule="none",
                                         progress=False), out_dir=tmp_path / "s" / "run",
             metrics=[_clock(pd.DataFrame())])             # its first chunk, as train_seed runs it
    run, _ = train_seed(tiny, 0, tmp_path / "s", RULE, progress=True)
    whole, _ = train_seed(tiny, 0, tmp_path / "whole", RULE)
    assert run.step == whole.step
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, run.model.state_dict()[name]), name


def rows_without_timing(out: Path) -> pd.DataFrame:
    table = pd.DataFrame([json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()])
    return table.drop(columns=TIMING).sort_values("seed").reset_index(drop=True)


def test_killed_anywhere_the_study_finishes_with_the_same_table(tmp_path, in_child):
    def study_at(out: Path) -> Callable[[], object]:
        return partial(study, tiny, seeds=2, out=out, rule=RULE, progress=False)

    ref = tmp_path / "ref"
    count = tmp_path / "count"
    assert in_child(study_at(ref), count_to=count) == 0
    n = int(count.read_text())
    expected = rows_without_timing(ref)
    assert expected["seed"].tolist() == [0, 1]
    for k in sorted({1, 2, 3, n // 3, n // 2, n - 3, n - 1, n}):
        out = tmp_path / f"kill{k}"
        assert in_child(study_at(out), kill_at=k) == -signal.SIGKILL, k
        again = study(tiny, seeds=2, out=out, rule=RULE, progress=False)
        assert again.table["seed"].tolist() == [0, 1]
        pd.testing.assert_frame_equal(rows_without_timing(out), expected)
        for seed in (0, 1):
            got, want = read_seed(out / f"seed_{seed}")[0], read_seed(ref / f"seed_{seed}")[0]
            for name, value in want.state_dict().items():
                assert torch.equal(value, got.state_dict()[name]), (k, seed, name)
            assert not (out / f"seed_{seed}" / "run").exists()


def test_a_seed_job_builds_its_recipe_once(tmp_path):
    calls = []

    def counted(seed: int):
        calls.append(seed)
        return tiny(seed)

    row = seed_job(counted, 0, str(tmp_path), RULE)
    assert calls == [0] and row["seed"] == 0 and row["budget"] == tiny(0)[2].steps


def test_a_seeds_bar_moves_to_the_step_of_each_evaluation():
    """The bar follows train()'s evaluations (step 0 of a new run, every eval_every steps, the
    chunk's end), read off the bar's count, not its drawing (tqdm draws at most every 0.1 s)."""
    import io

    from tqdm import tqdm

    from mi_margin.studies.seeds import _mover

    for start, end, new_run, seen in [(0, 50, True, [0, 20, 40, 50]),
                                      (30, 70, False, [40, 60, 70])]:
        with tqdm(total=100, initial=start, file=io.StringIO()) as bar:
            move = _mover(bar, start, end, 20, new_run)
            steps = []
            for _ in seen:
                move(None, None)
                steps.append(bar.n)
        assert steps == seen


def test_a_local_study_shows_the_current_seeds_training(tmp_path, capsys, monkeypatch):
    """Run one after another here, a study shows each seed's training below its own bar: one
    bar per seed, its steps out of the seed's budget (not of the current chunk's end) and its
    test accuracy; a resumed seed's bar starts at the step it resumes from. With
    progress=False, nothing."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    budget = tiny(0)[2].steps
    study(tiny, seeds=1, out=tmp_path / "shown", rule=RULE, progress=True)
    err = capsys.readouterr().err
    assert "study tiny" in err and "seed 0" in err and "test_acc=" in err
    assert f" 0/{budget}" in err and f"{budget}/{budget}" in err
    assert f"/{RULE.chunk} " not in err and f"/{2 * RULE.chunk} " not in err
    model, task, config = tiny(1)
    mm.train(model, task, config.replace(steps=RULE.chunk, checkpoint_schedule="none"),
             out_dir=tmp_path / "resumed" / "run", metrics=[_clock(pd.DataFrame())])
    train_seed(tiny, 1, tmp_path / "resumed", RULE, progress=True)
    err = capsys.readouterr().err
    assert f"{RULE.chunk}/{budget}" in err and f" 0/{budget}" not in err
    study(tiny, seeds=1, out=tmp_path / "quiet", rule=RULE, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("recipe, text", [
    (lambda: tiny(0), "must take one argument"),
    (lambda seed: tiny(seed)[:2], "must return (model, task, TrainConfig)"),
    (lambda seed: None, "must return (model, task, TrainConfig)"),
    (lambda seed: (*tiny(seed)[:2], {"steps": 10}), "must return (model, task, TrainConfig)"),
], ids=["no seed argument", "two values", "None", "a dict for the config"])
def test_a_recipe_of_the_wrong_shape_is_refused_by_name(tmp_path, recipe, text):
    with pytest.raises(mm.MiMarginError, match=re.escape(text)):
        study(recipe, seeds=1, out=tmp_path, rule=RULE, progress=False)


def test_a_study_continued_with_a_changed_recipe_is_refused(tmp_path):
    """A recipe of the same name that now builds another task (p = 7, not 11) is not allowed to
    count the seeds the old one trained: their rows would mix two settings."""
    study(tiny, seeds=1, out=tmp_path, rule=RULE, progress=False)
    study(tiny, seeds=1, out=tmp_path, rule=RULE, progress=False)          # the same: fine

    def changed(seed):
        config = tiny(seed)[2]
        task = mm.ModularAddition(p=7, train_fraction=0.6, seed=seed)
        return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=48, act_fn="relu",
                                                  input_style="embed", d_embed=32)), task, config

    changed.__name__ = "tiny"
    with pytest.raises(mm.MiMarginError, match=r"seed 0 .* was trained on .* use another folder"):
        study(changed, seeds=2, out=tmp_path, rule=RULE, progress=False)


def test_a_folder_of_another_study_is_refused(tmp_path):
    study(tiny, seeds=1, out=tmp_path, rule=RULE, progress=False)
    with pytest.raises(mm.MiMarginError, match="another folder"):
        study(tiny, seeds=1, out=tmp_path, rule=StopRule(chunk=7), progress=False)


def test_a_damaged_study_folder_is_a_clear_error(tmp_path):
    """A file where the folder should be, a study.json that is not JSON or not a study's, and a
    rows line without a seed: each a MiMarginError naming it (or, the row, skipped)."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(mm.MiMarginError, match="is a file"):
        study(tiny, seeds=1, out=tmp_path / "afile", rule=RULE, progress=False)
    out = tmp_path / "st"
    study(tiny, seeds=1, out=out, rule=RULE, progress=False)
    with open(out / "rows.jsonl", "a") as f:
        f.write('{"no_seed": 1}\n')
    assert study(tiny, seeds=1, out=out, rule=RULE, progress=False).table["seed"].tolist() == [0]
    for text in ("{not json", "[1, 2]"):
        (out / "study.json").write_text(text)
        with pytest.raises(mm.MiMarginError, match="is not a study's record"):
            study(tiny, seeds=1, out=out, rule=RULE, progress=False)


@pytest.mark.parametrize("seeds", [0, -1, [1, 1], [0.5], True, "3"])
def test_bad_seeds_are_refused(tmp_path, seeds):
    with pytest.raises(mm.MiMarginError):
        study(tiny, seeds=seeds, out=tmp_path, progress=False)


def test_unknown_population_and_non_callable_sources_are_refused(tmp_path):
    with pytest.raises(mm.MiMarginError, match="no population"):
        study("chughtai_S7_mlp", out=tmp_path)
    with pytest.raises(mm.MiMarginError, match="callable"):
        study(42, seeds=1, out=tmp_path)


S5 = json.dumps(mm.GroupComposition("S5").to_dict())


def s5_row(seed: int, keys: set[str], stable: int | None) -> dict:
    """A row of an S5 seed whose key irreps are ``keys`` (similarity 0.5, others 0)."""
    irreps = [r for r in mm.GroupComposition("S5").group.irreps() if r.name != "trivial"]
    sim = {r.name: (0.5 if r.name in keys else 0.0) for r in irreps}
    return {"seed": seed, "task": S5, "label_kind": "irrep", "similarity": json.dumps(sim),
            "block_dims": json.dumps({r.name: r.dim ** 2 for r in irreps}), "n_delta": len(keys),
            "memorized": 300, "first_crossing": stable, "stable": stable,
            "delay": None if stable is None else stable - 300, "step": 1000}


def test_views_count_a_constructed_population():
    sign, std, std_sign = "(1,1,1,1,1)", "(4,1)", "(2,1,1,1)"
    table = pd.DataFrame([s5_row(0, {sign, std}, 800), s5_row(1, {sign, std, "(3,2)"}, 900),
                          s5_row(2, {std_sign}, None)])
    paper = {"sign": 49, "standard": 49, "standard_sign": 17, "5d_a": 18, "5d_b": 10, "6d": 0}
    view = label_frequency(table, paper, 50)
    rows = view.to_dataframe().set_index("label")
    assert rows.loc[sign, "seeds_key"] == 2 and rows.loc[std, "seeds_key"] == 2
    assert rows.loc[std_sign, "paper"] == 17 and pd.isna(rows.loc["(3,2)", "paper"])
    dims = {r["dim"]: r for r in view.by_dim}
    assert dims[5]["key_per_seed"] == pytest.approx(1 / 3)
    assert dims[5]["paper_key_per_seed"] == pytest.approx(28 / 50)
    assert dims[4]["paper_key_per_seed"] == pytest.approx(66 / 50)
    # Theorem 9: shares ∝ d^2.5 over the non-trivial irreps
    d = {r.name: r.dim for r in mm.GroupComposition("S5").group.irreps() if r.name != "trivial"}
    total = sum(x ** 2.5 for x in d.values())
    for lab, dim in d.items():
        assert rows.loc[lab, "theory_share"] == pytest.approx(dim ** 2.5 / total, rel=1e-9)
    counts = key_count_distribution(table, {2: 20, 3: 19}, 50).to_dataframe().set_index("n")
    assert counts.loc[2, "seeds"] == 1 and counts.loc[3, "seeds"] == 1 and counts.loc[1, "seeds"] == 1
    grok = grokking_distribution(table)
    assert (grok.n_seeds, grok.n_grokked) == (3, 2)
    assert grok.to_dataframe()["stable"].isna().sum() == 1


@pytest.mark.parametrize("name", ["nanda_p113_transformer", "chughtai_A5_mlp"])
def test_theory_shares_are_the_max_margin_predictions_of_the_rows_task(name):
    """Every label's theory_share is the max-margin prediction's budget share for the rows' task,
    named as the rows name labels (the prediction's freq_f is the rows' frequency f), and the
    view names the result it comes from: Theorem 7 on Z_113, our LP extension on A5."""
    table = mm.zoo.population(name)
    pred = mm.theory.max_margin(mm.tasks.from_dict(json.loads(table["task"].iloc[0])))
    view = label_frequency(table)
    rows = view.to_dataframe()
    prefix = "freq_" if view.label_kind == "frequency" else ""
    assert view.theory == pred.theorem
    assert rows["theory_share"].tolist() == [pred.budget_share[prefix + lab] for lab in rows["label"]]
    assert sum(r["theory_share"] for r in view.by_dim) == pytest.approx(1.0, rel=1e-12)


def test_label_views_count_only_the_seeds_that_generalized():
    """A seed whose final test accuracy is below 0.99 is left out of the label views (its key
    labels describe no algorithm), counted with only_generalized=False, and kept in the grokking
    table."""
    sign, std = "(1,1,1,1,1)", "(4,1)"
    rows = [dict(s5_row(0, {sign, std}, 800), test_acc=1.0),
            dict(s5_row(1, {sign, std}, 900), test_acc=0.995),
            dict(s5_row(2, {"(3,2)"}, None), test_acc=0.42)]
    table = pd.DataFrame(rows)
    view = label_frequency(table)
    frame = view.to_dataframe().set_index("label")
    assert (view.n_seeds, view.left_out) == (2, 1)
    assert frame.loc["(3,2)", "seeds_key"] == 0 and frame.loc[sign, "fraction"] == 1.0
    every = label_frequency(table, only_generalized=False).to_dataframe().set_index("label")
    assert every.loc["(3,2)", "seeds_key"] == 1 and every.loc[sign, "fraction"] == pytest.approx(2 / 3)
    counts = key_count_distribution(table)
    assert (counts.n_seeds, counts.left_out) == (2, 1)
    assert counts.to_dataframe().set_index("n")["seeds"].to_dict() == {2: 2}
    assert grokking_distribution(table).n_seeds == 3
    with pytest.raises(mm.MiMarginError, match="none of the 1 seeds generalized"):
        label_frequency(table.iloc[[2]])


def test_the_study_command_parses_and_refuses(capsys):
    from mi_margin.cli import main

    with pytest.raises(SystemExit):
        main(["study", "chughtai_S4_mlp", "--out", "x", "--seeds", "a-b"])
    assert main(["study", "chughtai_S4_mlp", "--out", "x", "--cleanup", "-1"]) == 2
    assert "cleanup" in capsys.readouterr().err


def test_a_study_ships_as_a_population_and_reports(tmp_path, monkeypatch):
    """The shipped table is the study's rows; the card and report show the views' numbers."""
    from mi_margin.studies import ship
    from mi_margin.viz.population import write_study_report
    from mi_margin.zoo import populations
    from mi_margin.zoo.recipes import Population

    st = study(tiny, seeds=2, out=tmp_path / "st", rule=RULE, progress=False)
    pop = Population("tiny", "addition mod 11", tiny, 2, "none", paper_n_key={2: 1},
                     paper_seeds=1)
    monkeypatch.setitem(ship.POPULATIONS, "tiny", pop)
    monkeypatch.setattr(populations, "DATA", tmp_path / "zoo")
    ship.build("tiny", tmp_path / "st", tmp_path / "zoo")
    with pytest.raises(mm.MiMarginError, match="holds a study of 'tiny', not of 'chughtai_S4_mlp'"):
        ship.build("chughtai_S4_mlp", tmp_path / "st", tmp_path / "zoo")
    shipped = mm.zoo.population("tiny")
    assert shipped["seed"].tolist() == [0, 1]
    for col in ("memorized", "stable", "test_loss", "n_delta", "similarity"):
        pd.testing.assert_series_equal(shipped[col], st.table[col].astype(shipped[col].dtype))
    text = mm.zoo.populations.population_card("tiny")
    assert f"{int(st.table['grokked'].sum())} of 2 seeds" in text
    assert not (st.table["test_acc"] >= 0.99).any()          # tiny does not generalize
    page = write_study_report(st, tmp_path / "report.html", pop).read_text()
    assert "Grokking steps" in page
    assert "None of the 2 seeds generalized" in text and "None of the 2 seeds" in page
    general = st.table.assign(test_acc=1.0)                 # as if both had generalized
    assert "Counted over the 2 seeds that generalized" in ship.card(pop, general, RULE.to_dict())
    page = write_study_report(general, tmp_path / "report2.html", pop).read_text()
    assert "Number of key labels" in page
    with pytest.raises(mm.MiMarginError, match="no population"):
        mm.zoo.population("nope")


def test_the_study_command_reports_and_ships_a_study_where_no_seed_generalized(
        tmp_path, monkeypatch, capsys):
    """`mi-margin study` says why the label views are empty and still writes the report and the
    shipped card (it stopped with an error before); a folder of another population is refused."""
    from mi_margin.cli import main
    from mi_margin.studies import ship
    from mi_margin.zoo.recipes import Population

    study(tiny, seeds=2, out=tmp_path / "st", rule=RULE, progress=False)
    monkeypatch.setitem(ship.POPULATIONS, "tiny", Population("tiny", "addition mod 11", tiny, 2,
                                                             "none"))
    args = ["study", "tiny", "--out", str(tmp_path / "st"), "--resummarize"]
    assert main([*args, "--report", str(tmp_path / "r.html"), "--ship", str(tmp_path / "zoo")]) == 0
    assert "None of the 2 seeds generalized" in capsys.readouterr().out
    assert (tmp_path / "r.html").is_file() and (tmp_path / "zoo" / "tiny.md").is_file()
    assert main(["study", "chughtai_S4_mlp", *args[2:]]) == 2
    assert "holds a study of 'tiny'" in capsys.readouterr().err


def test_resummarize_recomputes_every_row_from_the_kept_records(tmp_path):
    """Rows rebuilt from each seed's final weights and history equal the rows the study wrote;
    a row computed by other (older) analyses is replaced, and no seed is retrained."""
    from mi_margin.studies.study import resummarize

    st = study(tiny, seeds=[0, 3], out=tmp_path, rule=RULE, progress=False)
    path = tmp_path / "rows.jsonl"
    fresh = path.read_text()
    stale = [json.loads(line) | {"live_neurons": -1, "mean_purity": 2.0}
             for line in fresh.splitlines()]
    path.write_text("".join(json.dumps(row) + "\n" for row in stale))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("seed_*/final.safetensors")}
    again = resummarize(tmp_path, progress=False)
    assert path.read_text() == fresh
    pd.testing.assert_frame_equal(again.table, st.table)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    with pytest.raises(mm.MiMarginError, match="holds no study"):
        resummarize(tmp_path / "nothing", progress=False)


@pytest.mark.parametrize("seeds", [10**9, range(10**9), itertools.count()],
                         ids=["a billion", "range of a billion", "endless iterator"])
def test_too_many_seeds_are_refused_before_any_list_is_built(seeds):
    """A count, a range or an endless iterator beyond MAX_SEEDS is refused after reading
    MAX_SEEDS + 1 of them (a list of a billion ints would take gigabytes; an endless iterator
    never returned)."""
    with pytest.raises(mm.MiMarginError, match="more than 1,000,000 seeds"):
        seed_list(seeds, "chughtai_S4_mlp")
    assert seed_list(MAX_SEEDS, "chughtai_S4_mlp")[-1] == MAX_SEEDS - 1

"""Sweeps: spec expansion and loading, the results table, summaries, resumability, a real Ray run.

Oracles: a sweep row must equal what ``mm.train`` gives for the same configuration when called
directly (and the analyses what the analysis functions give on that model); a resumed run must
equal an uninterrupted one; the universality counts are checked on constructed tables.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mi_margin as mm
from mi_margin.errors import MiMarginError
from mi_margin.sweep import (
    SweepSpec,
    analyses,
    collect,
    grid_metric,
    grokking_step,
    heatmap_figure,
    key_sets,
    read_table,
    run_sweep,
    universality,
    universality_figure,
    write_table,
)
from mi_margin.sweep.cli import add_sweep_parser
from mi_margin.sweep.execute import import_ray, plan
from mi_margin.sweep.worker import batch_key, execute_group, execute_run, run_dir_for

ROOT = Path(__file__).resolve().parents[2]
METRICS = ["train_loss", "train_acc", "test_loss", "test_acc", "weight_norm_sq"]


def small_spec(**changes) -> SweepSpec:
    """S3 composition, a 16-neuron MLP, 50 full-batch steps: a run takes a fraction of a second."""
    base = dict(task={"kind": "group_composition", "group": "S3", "train_fraction": 0.5},
                model={"kind": "mlp", "d_mlp": 16},
                train={"steps": 50, "lr": 0.01, "eval_every": 10, "n_checkpoints": 3},
                axes={"seed": [0, 1]}, analyses=("irreps", "margin"), name="tiny")
    return SweepSpec(**{**base, **changes})


def direct(spec: SweepSpec, point: dict) -> mm.Run:
    """The oracle: train a grid point with the public API, applying the documented axis semantics
    ("seed" = split, init and training seed) here, independently of the sweep code."""
    sections = {"task": dict(spec.task), "model": dict(spec.model), "train": dict(spec.train)}
    for name, value in point.items():
        for target in (["task.seed", "model.seed", "train.seed"] if name == "seed" else [name]):
            section, key = target.split(".")
            sections[section][key] = value
    t = sections["task"]
    task = mm.GroupComposition(t["group"], train_fraction=t["train_fraction"],
                               seed=t.get("seed", 0))
    model_kw = {k: v for k, v in sections["model"].items() if k != "kind"}
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, **model_kw))
    return mm.train(model, task, mm.TrainConfig(**sections["train"], progress=False))


def assert_rows_match_direct(table: pd.DataFrame, spec: SweepSpec) -> None:
    from mi_margin.analysis.margin import margin
    from mi_margin.analysis.spectrum import key_irreps

    for run_spec in spec.runs():
        row = table.set_index("index").loc[run_spec.index]
        if row["status"] == "failed":
            continue
        run = direct(spec, run_spec.point)
        last = run.history.iloc[-1]
        for m in METRICS:
            assert row[m] == pytest.approx(last[m], rel=1e-5, abs=1e-7), m
        assert row["step"] == run.step
        assert list(row["key_irreps"]) == key_irreps(run.model, run.task)
        assert row["normalized_margin"] == pytest.approx(margin(run.model, run.task).normalized,
                                                         rel=1e-4, abs=1e-9)


# -- spec -----------------------------------------------------------------------------------------
def test_grid_expansion_order_and_seed_axis():
    spec = small_spec(axes={"seed": [3, 4], "train.weight_decay": [0.0, 0.5, 1.0]})
    runs = spec.runs()
    assert len(runs) == 6
    assert [r.point for r in runs[:3]] == [{"seed": 3, "train.weight_decay": w}
                                           for w in (0.0, 0.5, 1.0)]
    for r in runs:
        seed = r.point["seed"]
        assert (r.task["seed"], r.model["seed"], r.train["seed"]) == (seed, seed, seed)
        assert r.train["weight_decay"] == r.point["train.weight_decay"]
    assert len({r.config_hash for r in runs}) == 6
    assert [r.run_id for r in runs] == [r.run_id for r in spec.runs()]       # deterministic


def test_run_id_ignores_analyses_but_not_config():
    a = small_spec().runs()[0]
    b = small_spec(analyses=("margin",)).runs()[0]
    c = small_spec(train={"steps": 51, "lr": 0.01, "eval_every": 10, "n_checkpoints": 3}).runs()[0]
    assert a.run_id == b.run_id
    assert a.config_hash != c.config_hash


@pytest.mark.parametrize("changes, match", [
    ({"axes": {"train.weight_decy": [1.0]}}, "weight_decy"),
    ({"axes": {"model.nope": [1]}}, "nope"),
    ({"axes": {"weight_decay": [1.0]}}, "must be 'seed'"),
    ({"axes": {"train.a.b": [1.0]}}, "must be 'seed'"),
    ({"axes": {"seed": []}}, "no values"),
    ({"axes": {"model.act_fn": "relu"}}, "must be a list"),
    ({"analyses": ("fourier", "spectra")}, "spectra"),
    ({"analysis_options": {"fourier": {"threshold": 0.5}}}, "not in analyses"),
    ({"task": {"kind": "knot_theory"}}, "knot_theory"),
])
def test_bad_spec_is_a_clear_error(changes, match):
    with pytest.raises(MiMarginError, match=match):
        small_spec(**changes)


def test_spec_files_equal_the_dataclass(tmp_path):
    spec = small_spec(axes={"seed": [0, 1], "task.train_fraction": [0.4, 0.6]},
                      analysis_options={"irreps": {"min_similarity": 0.05}})
    d = spec.to_dict()
    (tmp_path / "s.json").write_text(json.dumps(d))
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    toml = "\n".join([
        'name = "tiny"', 'analyses = ["irreps", "margin"]',
        "[task]", 'kind = "group_composition"', 'group = "S3"', "train_fraction = 0.5",
        "[model]", 'kind = "mlp"', "d_mlp = 16",
        "[train]", "steps = 50", "lr = 0.01", "eval_every = 10", "n_checkpoints = 3",
        "[axes]", "seed = [0, 1]", '"task.train_fraction" = [0.4, 0.6]',
        "[analysis_options.irreps]", "min_similarity = 0.05"])
    (tmp_path / "s.toml").write_text(toml)
    for name in ("s.json", "s.yaml", "s.toml"):
        loaded = SweepSpec.load(tmp_path / name)
        assert loaded == spec, name
        assert [r.run_id for r in loaded.runs()] == [r.run_id for r in spec.runs()]
    with pytest.raises(MiMarginError, match="must end in"):
        (tmp_path / "s.ini").write_text("")
        SweepSpec.load(tmp_path / "s.ini")


def test_example_specs_load():
    for path in sorted((ROOT / "examples" / "sweeps").glob("*.toml")):
        assert SweepSpec.load(path).runs(), path


# -- table and summaries --------------------------------------------------------------------------
def test_grokking_step_is_first_eval_step_at_threshold():
    hist = pd.DataFrame({"step": [0, 100, 200, 300], "test_acc": [0.1, 0.98, 0.99, 0.5]})
    assert grokking_step(hist) == 200.0
    assert math.isnan(grokking_step(hist.assign(test_acc=[0.1, 0.2, 0.3, 0.4])))
    assert math.isnan(grokking_step(pd.DataFrame()))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_roundtrip_keeps_key_lists(tmp_path, fmt):
    table = pd.DataFrame({"index": [0, 1, 2], "status": ["finished", "failed", "finished"],
                          "key_irreps": [["(2,1)", "(1,1,1)"], None, []],
                          "test_acc": [1.0, np.nan, 0.5]})
    back = read_table(write_table(table, tmp_path / f"t.{fmt}"))
    assert back["key_irreps"].iloc[0] == ["(2,1)", "(1,1,1)"]
    assert back["key_irreps"].iloc[2] == []
    assert back["key_irreps"].iloc[1] is None or (isinstance(back["key_irreps"].iloc[1], float)
                                                  and math.isnan(back["key_irreps"].iloc[1]))
    assert back["test_acc"].iloc[0] == 1.0


def test_universality_counts_every_irrep_of_the_group():
    from mi_margin.groups import get

    irreps = [r.name for r in get("S4").irreps()]
    sign, std = irreps[1], irreps[4]
    table = pd.DataFrame({
        "status": ["finished", "finished", "stopped_early", "failed", "finished"],
        "task.group": ["S4"] * 5,
        "model.act_fn": ["quadratic", "relu", "quadratic", "quadratic", "relu"],
        "key_irreps": [[sign, std], [std], [std, sign], None, np.nan],
    })
    u = universality(table).set_index("label")
    assert list(u.index) == irreps                      # never-key irreps are listed with 0
    assert u.loc[std, "n_key"] == 3 and u.loc[sign, "n_key"] == 2
    assert (u["n_runs"] == 3).all()                     # failed / unanalysed runs excluded
    assert u.loc[irreps[0], "n_key"] == 0
    assert u.loc[sign, "fraction"] == pytest.approx(2 / 3)
    by = universality(table, by="model.act_fn").set_index(["model.act_fn", "label"])
    assert by.loc[("quadratic", sign), "n_key"] == 2 and by.loc[("relu", sign), "n_key"] == 0
    sets = key_sets(table)
    assert sets.iloc[0].tolist()[:3] == [" + ".join(sorted([sign, std])), 2, 2]
    fig = universality_figure(table)
    assert fig.data[0].y.tolist() == u["fraction"].tolist()


def test_universality_frequencies_and_missing_results():
    table = pd.DataFrame({"status": ["finished"] * 2, "task.p": [7, 7],
                          "key_frequencies": [[1, 3], [3]]})
    u = universality(table).set_index("label")
    assert list(u.index) == ["1", "2", "3"] and u["n_key"].tolist() == [1, 0, 2]
    with pytest.raises(MiMarginError, match="no key_irreps/key_frequencies"):
        universality(pd.DataFrame({"status": ["failed"], "key_irreps": [None]}))


def test_grid_metric_and_heatmap():
    table = pd.DataFrame({"train.weight_decay": [0.1, 0.1, 1.0, 1.0, 0.1],
                          "task.train_fraction": [0.3, 0.3, 0.3, 0.5, 0.5],
                          "grokking_step": [400.0, 600.0, 200.0, np.nan, 300.0]})
    grid = grid_metric(table, "train.weight_decay", "task.train_fraction", "grokking_step")
    assert grid.loc[0.3, 0.1] == 500.0 and grid.loc[0.3, 1.0] == 200.0
    assert grid.loc[0.5, 0.1] == 300.0 and math.isnan(grid.loc[0.5, 1.0])
    counts = grid_metric(table, "train.weight_decay", "task.train_fraction", "grokking_step",
                         agg="count")
    assert counts.loc[0.3, 0.1] == 2
    fig = heatmap_figure(table, "train.weight_decay", "task.train_fraction", "grokking_step")
    np.testing.assert_array_equal(fig.data[0].z, grid.to_numpy())
    with pytest.raises(MiMarginError, match="agg"):
        grid_metric(table, "train.weight_decay", "task.train_fraction", "grokking_step", agg="mode")


# -- sequential execution -------------------------------------------------------------------------
def test_sequential_sweep_equals_direct_training_and_records_failures(tmp_path):
    spec = small_spec(axes={"seed": [0, 1], "train.weight_decay": [0.5, -1.0]})
    res = run_sweep(spec, tmp_path / "sw", sequential=True, progress=False, table_format="csv")
    table = res.table
    assert len(table) == 4 and res.n_failed == 2 and res.mode == "sequential"
    bad = table[table["train.weight_decay"] == -1.0]
    assert (bad["status"] == "failed").all()
    assert bad["error"].str.contains("weight_decay").all()
    for path in bad["path"]:
        assert "MiMarginError" in (Path(path) / "error.txt").read_text()
    good = table[table["train.weight_decay"] == 0.5]
    assert (good["status"] == "finished").all()
    assert_rows_match_direct(table, spec)
    # the written table equals the returned one, and a rebuild from the folders equals both
    pd.testing.assert_frame_equal(read_table(res.table_path)[METRICS], table[METRICS])
    pd.testing.assert_frame_equal(collect(tmp_path / "sw")[METRICS], table[METRICS])
    # run folders are ordinary run folders
    loaded = mm.load(good["path"].iloc[0])
    assert loaded.status == "finished" and loaded.step == 50


def test_failed_analysis_is_recorded_then_redone_alone(tmp_path, monkeypatch):
    spec = small_spec(axes={"seed": [0]}, analyses=("irreps", "fourier"))
    def broken(model, task, **options):
        raise RuntimeError("the irreps analysis failed")

    original = analyses.REGISTRY["irreps"]
    monkeypatch.setitem(analyses.REGISTRY, "irreps", broken)
    first = run_sweep(spec, tmp_path / "sw", sequential=True, progress=False).table
    row = first.iloc[0]
    assert row["status"] == "finished"
    assert "irreps" in row["irreps_error"] and "reads frequencies" in row["fourier_error"]
    weights = Path(row["path"]) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    monkeypatch.setitem(analyses.REGISTRY, "irreps", original)
    res = run_sweep(spec, tmp_path / "sw", sequential=True, progress=False)
    row = res.table.iloc[0]
    assert isinstance(row["key_irreps"], (list, np.ndarray)) and "irreps_error" not in res.table
    assert weights.stat().st_mtime_ns == stamp                           # not retrained


def test_interrupted_run_resumes_and_equals_uninterrupted(tmp_path):
    spec = small_spec(axes={"seed": [1]})
    run_spec = spec.runs()[0]
    out = tmp_path / "sw"
    root = run_dir_for(out, run_spec)
    calls = []

    def crash_at_third_eval(model, task):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {}

    task = mm.GroupComposition("S3", train_fraction=0.5, seed=1)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, seed=1))
    with pytest.raises(KeyboardInterrupt):
        mm.train(model, task, mm.TrainConfig(**run_spec.train, progress=False), out_dir=root,
                 metrics=[crash_at_third_eval])
    assert json.loads((root / "run.json").read_text())["status"] == "running"
    res = run_sweep(spec, out, sequential=True, progress=False)
    assert res.table["status"].tolist() == ["finished"]
    resumed = mm.load(root).history
    full = direct(spec, run_spec.point).history
    np.testing.assert_allclose(resumed[METRICS].to_numpy(), full[METRICS].to_numpy(), rtol=1e-6)


def test_batched_groups_equal_single_runs(tmp_path):
    spec = small_spec(axes={"model.seed": [0, 1, 2], "train.lr": [0.01, 0.02]})
    runs = spec.runs()
    assert len({batch_key(r) for r in runs}) == 1               # same task, shapes, optimizer
    jobs = plan([(r, tmp_path / "b" / r.run_id) for r in runs], batch=True, max_batch=4)
    assert sorted(len(j) for j in jobs) == [2, 4]
    assert plan([(r, tmp_path / r.run_id) for r in runs], batch=False, max_batch=4) == \
        [[(r, tmp_path / r.run_id)] for r in runs]
    split = small_spec(axes={"seed": [0, 1]}).runs()            # different splits: no batching
    assert batch_key(split[0]) != batch_key(split[1])
    for job in jobs:
        execute_group([r.to_dict() for r, _ in job], [str(p) for _, p in job], device="cpu")
    for r in runs:
        execute_run(r.to_dict(), str(tmp_path / "s" / r.run_id))
    batched, single = collect(tmp_path / "b"), collect(tmp_path / "s")
    assert (batched["status"] == "finished").all()
    np.testing.assert_allclose(batched[METRICS].to_numpy(), single[METRICS].to_numpy(),
                               rtol=1e-6, atol=1e-9)
    assert batched["key_irreps"].map(list).tolist() == single["key_irreps"].map(list).tolist()


def test_missing_ray_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MiMarginError, match=r"pip install 'mi_margin\[sweep\]'"):
        import_ray()
    with pytest.raises(MiMarginError, match="sweep"):
        run_sweep(small_spec(), tmp_path / "sw", progress=False)


def test_cli_sweep_sequential(tmp_path, capsys):
    import argparse

    spec_path = tmp_path / "s.json"
    spec_path.write_text(json.dumps(small_spec(axes={"seed": [0]}).to_dict()))
    parser = argparse.ArgumentParser(prog="mi-margin")
    add_sweep_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", str(spec_path), "--sequential", "--out",
                              str(tmp_path / "sw"), "--format", "csv"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "1 runs (0 already done, 1 run now, 0 failed" in out and "table.csv" in out
    assert (tmp_path / "sw" / "table.csv").is_file()
    bad = tmp_path / "bad.json"                 # every run fails: exit status 1, table kept
    bad.write_text(json.dumps(small_spec(axes={"seed": [0]}, task={
        "kind": "group_composition", "group": "S3", "train_fraction": 1.5}).to_dict()))
    args = parser.parse_args(["sweep", str(bad), "--sequential", "--out", str(tmp_path / "bad"),
                              "--format", "csv"])
    assert args.func(args) == 1
    assert "1 failed" in capsys.readouterr().out and (tmp_path / "bad" / "table.csv").is_file()


def test_an_axis_that_repeats_a_value_is_refused():
    with pytest.raises(MiMarginError, match="repeats a value"):
        small_spec(axes={"seed": [0, 0]})
    with pytest.raises(MiMarginError, match="repeats a value"):     # the same weight decay
        small_spec(axes={"train.weight_decay": [1, 1.0]})


def test_a_seed_axis_beside_one_of_the_seeds_it_sets_is_refused():
    """'seed' sets task.seed, model.seed and train.seed: a model.seed axis beside it was
    overwritten, and its points trained the same run twice under two labels."""
    with pytest.raises(MiMarginError, match=r"axes \['model.seed'\] would be overwritten"):
        small_spec(axes={"seed": [0, 1], "model.seed": [0, 1]})


# -- Ray ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One real local Ray instance for the module (2 CPUs, no dashboard, temp dir under pytest's).
    Ray comes with the sweep extras; the test extras must include it so that CI runs this."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def test_ray_sweep_equals_sequential_records_failure_and_resumes(ray_local, tmp_path):
    spec = small_spec(axes={"seed": [0, 1, 2], "train.weight_decay": [0.5, -1.0]})
    res = run_sweep(spec, tmp_path / "ray", progress=False)
    assert res.mode == "ray" and res.n_runs == 6 and res.n_skipped == 0
    table = res.table
    assert table["status"].tolist() == ["finished", "failed"] * 3
    assert table.loc[table["status"] == "failed", "error"].str.contains("weight_decay").all()
    seq = run_sweep(spec, tmp_path / "seq", sequential=True, progress=False).table
    assert table["run_id"].tolist() == seq["run_id"].tolist()
    ok = table["status"] == "finished"
    np.testing.assert_allclose(table.loc[ok, METRICS].to_numpy(), seq.loc[ok, METRICS].to_numpy(),
                               rtol=1e-5, atol=1e-7)
    keys = table.loc[ok, "key_irreps"].map(list).tolist()
    assert keys == seq.loc[ok, "key_irreps"].map(list).tolist()
    assert_rows_match_direct(table, spec)
    stamps = {p: (Path(p) / "model.safetensors").stat().st_mtime_ns for p in table.loc[ok, "path"]}
    again = run_sweep(spec, tmp_path / "ray", progress=False)
    assert again.n_skipped == 3                                  # finished runs skipped
    assert again.table["status"].tolist() == table["status"].tolist()   # failed ones retried
    assert {p: (Path(p) / "model.safetensors").stat().st_mtime_ns for p in stamps} == stamps
    assert ray_local.is_initialized()                            # a caller's Ray is left running


def test_misspelt_analysis_option_is_refused_naming_the_valid_ones():
    with pytest.raises(MiMarginError, match=r"min_simlarity.*min_similarity"):
        small_spec(analysis_options={"irreps": {"min_simlarity": 0.05}})


def test_invalid_analysis_option_value_counts_as_a_failure(tmp_path):
    spec = small_spec(axes={"seed": [0]}, analyses=("margin",),
                      analysis_options={"margin": {"subset": "everything"}})
    res = run_sweep(spec, tmp_path / "sw", sequential=True, progress=False)
    assert res.n_failed == 1 and "everything" in res.table.iloc[0]["margin_error"]


def test_a_real_ray_head_passes_the_address_check(ray_local):
    """The address check's gRPC handshake (:data:`~mi_margin.sweep.execute.HTTP2_OPENING`) is
    answered by a real GCS, here the local instance's; the slow cluster tests pass it too."""
    from mi_margin.sweep.execute import check_address

    check_address(ray_local.get_runtime_context().gcs_address)

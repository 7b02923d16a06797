"""A study on a real multi-node Ray cluster on one machine (tests/conftest.py's loopback cluster):
a worker node killed mid-study; every seed once, and the table of a study run in this process."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import mi_margin as mm
from mi_margin.studies import StopRule, study

ray = pytest.importorskip("ray")
RULE = StopRule(patience=2, cleanup=0.5, chunk=200)
TIMING = ["cpu_s", "wall_s"]


def slow_tiny(seed: int):
    """Addition mod 11 for 1,200 steps with a snapshot every 50: a few seconds, so a node can die
    while it trains a seed."""
    task = mm.ModularAddition(p=11, train_fraction=0.6, seed=seed)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=48, act_fn="relu",
                                               input_style="embed", d_embed=32, seed=seed))
    return model, task, mm.TrainConfig(steps=1200, lr=1e-2, eval_every=50, snapshot_every=50,
                                       progress=False)


def training(out: Path) -> int:
    """Seeds whose run folder has published a snapshot (they are training or done)."""
    return len(list(out.glob("seed_*/run/run.json")))


def kill_when_training(cluster, node, out: Path, seen: dict) -> None:
    while training(out) < 2 and not (out / "rows.jsonl").exists():
        time.sleep(0.05)
    seen["rows_at_kill"] = (out / "rows.jsonl").exists()
    cluster.remove_node(node, allow_graceful=False)


def rows(out: Path) -> pd.DataFrame:
    lines = (out / "rows.jsonl").read_text().splitlines()
    return pd.DataFrame([json.loads(x) for x in lines]).drop(columns=TIMING)


@pytest.mark.slow
def test_study_survives_a_worker_node_killed_mid_study(loopback_cluster, tmp_path):
    cluster, workers = loopback_cluster
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tasks carry the recipe
    out, seen = tmp_path / "cluster", {}
    killer = threading.Thread(target=kill_when_training, args=(cluster, workers[0], out, seen))
    killer.start()
    st = study(slow_tiny, seeds=4, out=out, rule=RULE, address=cluster.address, progress=False)
    killer.join()
    assert seen["rows_at_kill"] is False                       # the node died mid-study
    assert not workers[0].any_processes_alive() and workers[1].any_processes_alive()
    assert st.table["seed"].tolist() == [0, 1, 2, 3]
    got = rows(out).sort_values("seed").reset_index(drop=True)
    assert got["seed"].tolist() == [0, 1, 2, 3]                # each seed once
    seq = study(slow_tiny, seeds=4, out=tmp_path / "seq", rule=RULE, progress=False)
    pd.testing.assert_frame_equal(got, seq.table.drop(columns=TIMING))


def test_a_wrong_address_fails_in_seconds(tmp_path, monkeypatch, free_port):
    """The address is checked by one bounded TCP connection before Ray is asked (as a sweep's)."""
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("Ray was asked to connect"))
    with pytest.raises(mm.MiMarginError, match=f"no Ray cluster answers at '127.0.0.1:{free_port}'"):
        study(slow_tiny, seeds=1, out=tmp_path, address=f"127.0.0.1:{free_port}", progress=False)
    assert not (tmp_path / "rows.jsonl").exists()

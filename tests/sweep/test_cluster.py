"""Sweeps on a real multi-node Ray cluster, on one machine (the ``loopback_cluster`` fixture of
tests/conftest.py: a head and two worker nodes as separate processes, all on 127.0.0.1). A worker
node is killed mid-sweep: the sweep must complete with every run once and a table equal to a
sequential run's (the oracle: the same spec run in this process, one run after another). A wrong
address must fail in seconds with a clear error.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mi_margin as mm
from mi_margin.errors import MiMarginError
from mi_margin.sweep import SweepSpec, execute, run_sweep
from mi_margin.sweep.execute import CONNECT_TIMEOUT, HTTP2_OPENING, check_address

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
# columns that say where and how long a run ran, not what it computed
WHERE = ["path", "seconds"]


def cluster_spec() -> SweepSpec:
    """Six S3 runs of 1,500 full-batch steps with a snapshot every 100: each takes a few seconds,
    so a node can be killed while it trains one."""
    return SweepSpec(task={"kind": "group_composition", "group": "S3", "train_fraction": 0.5},
                     model={"kind": "mlp", "d_mlp": 16},
                     train={"steps": 1500, "lr": 0.01, "eval_every": 100, "n_checkpoints": 3},
                     axes={"seed": list(range(6))}, analyses=("irreps",), name="cluster")


def statuses(out: Path) -> list[str]:
    """The status of every run folder started so far."""
    return [json.loads(p.read_text())["status"] for p in out.glob("*/run.json")]


def kill_when_training(cluster, node, out: Path, seen: dict) -> None:
    """Kill ``node`` (its raylet and workers, no goodbye) once two runs train and none finished,
    so that the node dies in the middle of a run."""
    while True:
        now = statuses(out)
        if now.count("running") >= 2 or "finished" in now:
            break
        time.sleep(0.05)
    seen["at_kill"] = now
    cluster.remove_node(node, allow_graceful=False)


def comparable(table):
    return table.drop(columns=WHERE).reset_index(drop=True)


@pytest.mark.slow
def test_sweep_survives_a_worker_node_killed_mid_sweep(loopback_cluster, tmp_path):
    cluster, workers = loopback_cluster
    spec, out = cluster_spec(), tmp_path / "cluster"
    seen: dict = {}
    killer = threading.Thread(target=kill_when_training, args=(cluster, workers[0], out, seen))
    killer.start()
    res = run_sweep(spec, out, address=cluster.address, progress=False,
                    runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    killer.join()
    assert "finished" not in seen["at_kill"]                   # the node died mid-sweep...
    assert seen["at_kill"].count("running") >= 2               # ...while training runs
    assert not workers[0].any_processes_alive() and workers[1].any_processes_alive()
    assert res.mode == "ray" and res.n_runs == 6 and res.n_failed == 0
    table = res.table
    assert table["status"].tolist() == ["finished"] * 6
    assert table["run_id"].is_unique and len(list(out.glob("*/run.json"))) == 6
    seq = run_sweep(spec, tmp_path / "seq", sequential=True, progress=False).table
    for path in table["path"]:                  # every evaluation step once, none lost or doubled
        steps = mm.load(path).history["step"].tolist()
        assert steps == list(range(0, 1501, 100))
    left, right = comparable(table), comparable(seq)
    assert list(left.columns) == list(right.columns)
    numeric = left.select_dtypes("number").columns
    np.testing.assert_allclose(left[numeric].to_numpy(float), right[numeric].to_numpy(float),
                               rtol=1e-6, atol=1e-9)
    rest = [c for c in left.columns if c not in numeric]
    assert left[rest].map(lambda v: list(v) if isinstance(v, np.ndarray) else v).equals(
        right[rest].map(lambda v: list(v) if isinstance(v, np.ndarray) else v))


def test_wrong_address_fails_in_seconds_naming_it(tmp_path, monkeypatch, free_port):
    """The address is tried by one TCP connection with a timeout of CONNECT_TIMEOUT seconds
    before Ray sees it (Ray alone keeps retrying for minutes)."""
    port = free_port                             # nothing listens there
    timeouts = []
    connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection",
                        lambda addr, timeout: timeouts.append(timeout) or connect(addr, timeout))
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("Ray was asked to connect"))
    with pytest.raises(MiMarginError, match=rf"no Ray cluster answers at '127\.0\.0\.1:{port}'"):
        run_sweep(cluster_spec(), tmp_path / "sw", address=f"127.0.0.1:{port}", progress=False)
    assert timeouts == [CONNECT_TIMEOUT]
    with pytest.raises(MiMarginError, match="ray start --head"):
        check_address(f"ray://127.0.0.1:{port}")
    with pytest.raises(MiMarginError, match="is not host:port"):
        check_address("127.0.0.1")


def serve_once(reply: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listening socket on 127.0.0.1 whose first connection reads the client's opening and gets
    ``reply`` (nothing at all when empty: the connection is held open, silent, until closed)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        conn, _ = server.accept()
        with conn:
            opening = b""
            while len(opening) < len(HTTP2_OPENING):
                opening += conn.recv(len(HTTP2_OPENING))
            if reply:
                conn.sendall(reply)
            with contextlib.suppress(ConnectionResetError):
                while conn.recv(1):                       # until the client hangs up
                    pass
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server, thread


def test_a_grpc_server_passes_the_check():
    """What a gRPC server sends first: a SETTINGS frame (here with one setting, as Ray's GCS
    sends; the real GCS passes in the two cluster tests)."""
    settings = bytes([0, 0, 6, 4, 0, 0, 0, 0, 0]) + bytes([0, 3, 0, 0, 0, 100])
    server, thread = serve_once(settings)
    with server:
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
        thread.join()


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.0 400 Bad request\r\n\r\n", "not a Ray cluster.*HTTP/1.0"),
    (b"", "no Ray cluster answers.*timed out")])
def test_another_service_at_the_address_is_refused_in_seconds(monkeypatch, reply, message):
    """A web server, or a port that accepts and says nothing, is refused within CONNECT_TIMEOUT
    (Ray's own connect waits on it without end)."""
    monkeypatch.setattr(execute, "CONNECT_TIMEOUT", 0.5)
    server, thread = serve_once(reply)
    with server, pytest.raises(MiMarginError, match=message):
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
    thread.join()

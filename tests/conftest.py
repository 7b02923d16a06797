"""Shared test set-up: one torch thread per test process, the group builder of the group tests,
and a forked child that can be killed at a fault point (the crash-safety tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mi_margin.groups import FiniteGroup, from_cayley_table, from_permutations, get
from mi_margin.models import files

torch.set_num_threads(1)


def build_group(name: str) -> FiniteGroup:
    """A group by name, or one of two without closed forms: "perm D4" (from permutations) and
    "relabeled X" (X's table with its elements renumbered, so that the identity is not 0)."""
    if name == "perm D4":
        return from_permutations([[1, 2, 3, 0], [3, 2, 1, 0]])
    if name.startswith("relabeled "):
        G = get(name.split()[1])
        pi = np.random.default_rng(0).permutation(G.order)
        table = np.empty_like(G.table)
        table[np.ix_(pi, pi)] = pi[G.table]
        return from_cayley_table(table, name=name)
    return get(name)


@pytest.fixture
def group_named():
    """:func:`build_group`, for the group tests."""
    return build_group


def run_in_child(fn: Callable[[], object], kill_at: int | None = None,
                 kill_after: float | None = None, count_to: Path | None = None) -> int:
    """Run ``fn()`` in a forked process; its exit code (1 if ``fn`` raised), or −signal if killed.

    ``kill_at``: the fault point (mi_margin.models.files) at which the child SIGKILLs itself
    (None: never); ``kill_after``: seconds after which the test SIGKILLs it; ``count_to``: the
    child writes there the number of fault points it passed.
    """
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without running pytest's teardown
        code = 0
        try:
            torch.set_num_threads(1)
            os.environ[files.KILL_AT_ENV] = str(kill_at if kill_at is not None else 10**9)
            files._points[0] = 0
            fn()
            if count_to is not None:
                count_to.write_text(str(files._points[0]))
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.fixture
def in_child() -> Callable[..., int]:
    """:func:`run_in_child`: ``in_child(fn, kill_at=..., kill_after=..., count_to=...)``."""
    return run_in_child


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (for wrong-address tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_cluster(monkeypatch):
    """A head (no CPUs: it only schedules) and two worker nodes of one CPU each, on 127.0.0.1.

    Ray's own test cluster (``ray.cluster_utils.Cluster``) starts each node as separate processes
    (a GCS, and a raylet with its workers per node); ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes
    every node and the driver take the loopback address, so tests send traffic to loopback only.
    """
    ray = pytest.importorskip("ray")  # optional (mi_margin[sweep]): only the cluster tests need it
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")       # for the nodes' processes
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)     # for this process
    # the test passes the address itself: leave the machine's /tmp/ray/ray_current_cluster alone
    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kw: None)
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    node = {"node_ip_address": "127.0.0.1", "include_dashboard": False, "include_log_monitor": False}
    temp = tempfile.mkdtemp(prefix="mmray")        # short: Ray's socket paths must stay short
    cluster = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": 0,
                                                            "temp_dir": temp})
    workers = [cluster.add_node(**node, num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)

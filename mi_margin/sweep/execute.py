"""Run a sweep: every grid point trained in its own folder, on Ray or one after another.

By default an embedded local Ray instance uses this machine's cores (one run per core: each worker
reserves ``cpus_per_run`` CPUs and trains with that many torch threads, which on a small CPU beats
one run using all cores, docs/performance.md); ``address=`` connects to an existing Ray cluster
instead (``"auto"``, the head's ``"host:6379"`` as ``ray start --head`` prints it, or a Ray Client
``"ray://head:10001"``; an address where nothing answers, or where another kind of service answers,
fails within :data:`CONNECT_TIMEOUT` seconds). Ray does the scheduling; a run whose node dies is
retried elsewhere and resumes from its last snapshot (tests/sweep/test_cluster.py). On a cluster the
output folder must be on a filesystem every node sees (workers write the run folders), and the nodes
need mi_margin installed (or pass ``runtime_env={"py_modules": [...]}``); README.md, "Sweeps on a
cluster", walks through it. ``sequential=True`` runs everything in this process, in grid order, for
debugging.

Finished runs are skipped, interrupted ones resume, failed ones are retried and a failure is
recorded in its folder and in the table without stopping the others (see
:mod:`mi_margin.sweep.worker`). The table is rebuilt from the folders at the end, also when the
sweep is interrupted.

``batch_on_gpu=True`` trains shape-identical fresh runs (same task, same model up to its seed,
same optimizer and batching; :func:`~mi_margin.sweep.worker.batch_key`) as one
:func:`~mi_margin.training.batched.train_batched` job on a GPU, when the Ray cluster (or, with
``sequential=True``, this machine) has one; otherwise runs train one by one. On a CPU batching is
not faster (bench/bench_throughput.py: a batch costs what its runs cost), so it is never used there.
Note that the ``seed`` axis also changes the task's train/test split, so only runs that vary
``model.seed`` (and training hyperparameters) with one split share a task and can be batched.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mi_margin._progress import progress_bar
from mi_margin.errors import MiMarginError
from mi_margin.sweep.spec import RunSpec, SweepSpec
from mi_margin.sweep.table import FORMATS, collect, write_table
from mi_margin.sweep.worker import (
    batch_key,
    execute_group,
    execute_run,
    pending_work,
    record_failure,
    run_dir_for,
    run_status,
    write_json,
)

Job = list[tuple[RunSpec, Path]]

#: seconds to wait for a TCP connection to a cluster address before calling it wrong (Ray itself
#: keeps retrying an address where nothing, or another service, answers for many minutes)
CONNECT_TIMEOUT = 5.0

#: the opening an HTTP/2 client sends (RFC 9113 §3.4: the preface, then an empty SETTINGS frame);
#: a Ray head's GCS and a Ray Client server speak gRPC, which is HTTP/2, so their first frame back
#: is SETTINGS (frame type 4). A web server, a database or a silent port answers otherwise.
HTTP2_OPENING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS_FRAME = 4


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        table: one row per run of the spec (see :mod:`mi_margin.sweep.table`).
        out_dir: the sweep folder; table_path: where the table was written.
        n_runs: grid size; n_skipped: runs already done before this call; n_failed: runs whose
            status is failed or diverged after it, or with an analysis that raised.
        seconds: wall time of this call; mode: "ray" or "sequential"; n_batched: runs trained in
            batched GPU jobs.
    """

    table: pd.DataFrame
    out_dir: Path
    table_path: Path
    n_runs: int
    n_skipped: int
    n_failed: int
    seconds: float
    mode: str
    n_batched: int = 0


def failed_rows(table: pd.DataFrame) -> pd.Series:
    """Which rows of a sweep table failed: training failed or diverged, or an analysis raised."""
    bad = table["status"].isin(["failed", "diverged"])
    for column in [c for c in table.columns if c.endswith("_error") and c != "error"]:
        bad |= table[column].notna()
    return bad


def import_ray() -> Any:
    """``ray``, or a :class:`MiMarginError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise MiMarginError("sweeps run on Ray, which is not installed: "
                            "pip install 'mi_margin[sweep]' (or run with sequential=True, "
                            "mi-margin sweep --sequential)") from err
    return ray


def plan(todo: Job, batch: bool, max_batch: int) -> list[Job]:
    """Jobs to submit: one run each, or with ``batch`` the fresh runs grouped by
    :func:`~mi_margin.sweep.worker.batch_key` into chunks of at most ``max_batch`` (runs that must
    resume or only need analyses stay single)."""
    if not batch:
        return [[item] for item in todo]
    groups: dict[str, Job] = {}
    singles: list[Job] = []
    for run, root in todo:
        if run_status(root) is None:
            groups.setdefault(batch_key(run), []).append((run, root))
        else:
            singles.append([(run, root)])
    chunks = [g[i:i + max_batch] for g in groups.values() for i in range(0, len(g), max_batch)]
    return [c for c in chunks if len(c) > 1] + [c for c in chunks if len(c) == 1] + singles


def _job_args(job: Job) -> tuple[list[dict[str, Any]], list[str]]:
    return [run.to_dict() for run, _ in job], [str(root) for _, root in job]


def _run_local(jobs: list[Job], use_gpu: bool, bar: Any) -> None:
    for job in jobs:
        specs, dirs = _job_args(job)
        if len(job) > 1:
            execute_group(specs, dirs, device="cuda" if use_gpu else None)
        else:
            execute_run(specs[0], dirs[0])
        bar.update(len(job))


def _run_ray(ray: Any, jobs: list[Job], cpus_per_run: int, use_gpu: bool, bar: Any) -> None:
    single = ray.remote(num_cpus=cpus_per_run)(execute_run)
    group = ray.remote(num_cpus=cpus_per_run, num_gpus=1)(execute_group)
    refs: dict[Any, Job] = {}
    for job in jobs:
        specs, dirs = _job_args(job)
        if len(job) > 1:
            refs[group.remote(specs, dirs, cpus_per_run, "cuda" if use_gpu else None)] = job
        else:
            refs[single.remote(specs[0], dirs[0], cpus_per_run)] = job
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died (OOM, node lost, ...)
                    for _, root in refs[ref]:
                        record_failure(root, f"{type(err).__name__}: {err}")
                bar.update(len(refs[ref]))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def check_address(address: str) -> None:
    """Raise :class:`MiMarginError` within :data:`CONNECT_TIMEOUT` seconds unless ``address``
    (``host:port`` or ``ray://host:port``; ``"auto"`` is left to Ray) accepts a TCP connection
    and answers it as gRPC does (:data:`HTTP2_OPENING`). Ray itself keeps retrying an address
    where nothing, or something else, answers; this check stands in front of it. With
    ``RAY_USE_TLS`` set, only the connection is checked (the handshake is then TLS's).

    Example:
        >>> check_address("ray-head")
        Traceback (most recent call last):
        ...
        mi_margin.errors.MiMarginError: Ray address 'ray-head' is not host:port, ray://host:port or auto
    """
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MiMarginError(f"Ray address {address!r} is not host:port, ray://host:port or auto")
    where = "(README.md, 'Sweeps on a cluster')"
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=CONNECT_TIMEOUT) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):
                answer = _first_frame(conn)
                if len(answer) < 9 or answer[3] != SETTINGS_FRAME:
                    raise MiMarginError(
                        f"something answers at {address!r}, but not a Ray cluster (it did not "
                        f"answer as gRPC: {answer[:24]!r}); pass the address `ray start --head` "
                        f"prints (port 6379 by default, 10001 for ray://) {where}")
    except OSError as err:
        raise MiMarginError(
            f"no Ray cluster answers at {address!r} ({err or 'timed out'}); start one with "
            f"`ray start --head` and pass the address it prints {where}") from err


def _first_frame(conn: socket.socket) -> bytes:
    """The first 9 bytes (an HTTP/2 frame header) the server sends after :data:`HTTP2_OPENING`,
    fewer if it closes the connection first."""
    conn.sendall(HTTP2_OPENING)
    answer = b""
    while len(answer) < 9 and (chunk := conn.recv(9 - len(answer))):
        answer += chunk
    return answer


def connect(ray: Any, address: str | None, num_cpus: int | None,
             runtime_env: dict[str, Any] | None) -> bool:
    """Initialise Ray unless this process already is connected (a local instance of ``num_cpus``
    when ``address`` is None, else the cluster at ``address``, checked first by
    :func:`check_address`); True if we started it (sweeps and studies share it)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "runtime_env": runtime_env}
    if address is None:
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
    else:
        check_address(address)
        kwargs.update(address=address)
    try:
        ray.init(**kwargs)
    except ConnectionError as err:     # "auto" with no cluster running on this machine
        raise MiMarginError(f"could not connect to the Ray cluster at {address!r}: {err}") from err
    return True


def run_sweep(spec: SweepSpec | str | Path, out_dir: str | Path | None = None, *,
              address: str | None = None, sequential: bool = False,
              num_cpus: int | None = None, cpus_per_run: int = 1,
              batch_on_gpu: bool = False, max_batch: int = 64,
              runtime_env: dict[str, Any] | None = None, table_format: str = "parquet",
              progress: bool = True) -> SweepResult:
    """Train and analyse every run of ``spec`` (skipping finished ones) and write the table.

    Args:
        spec: a :class:`SweepSpec` or the path of a TOML / YAML / JSON spec.
        out_dir: the sweep folder (default ``sweep_<spec.name>``); one run folder per grid point.
        address: an existing Ray cluster to use (``"auto"``, ``"host:port"``,
            ``"ray://host:port"``; :func:`check_address`); None starts a local Ray instance with
            ``num_cpus`` CPUs (default: all cores) and stops it at the end. If this process is
            already connected to Ray, that connection is used (and left open).
        sequential: run in this process, one run after another, without Ray (debugging).
        cpus_per_run: CPUs each Ray worker reserves (= its torch threads).
        batch_on_gpu: train shape-identical runs as one batched job on a GPU when there is one
            (see the module docstring); ``max_batch`` caps the runs per job.
        runtime_env: passed to ``ray.init`` (e.g. to ship the package to cluster nodes).
        table_format: "parquet" or "csv" (``table.<format>`` in ``out_dir``).
        progress: a tqdm bar over completed runs.

    Example:
        >>> res = run_sweep("examples/sweeps/s4_universality.toml", "sweeps/s4")  # doctest: +SKIP
        >>> res.table[["seed", "test_acc", "key_irreps"]]                          # doctest: +SKIP
    """
    start = time.perf_counter()
    spec = spec if isinstance(spec, SweepSpec) else SweepSpec.load(spec)
    if table_format not in FORMATS:
        raise MiMarginError(f"table_format must be one of {list(FORMATS)}, got {table_format!r}")
    if not isinstance(cpus_per_run, int) or cpus_per_run < 1:
        raise MiMarginError(f"cpus_per_run must be a positive integer, got {cpus_per_run!r}")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise MiMarginError(f"max_batch must be a positive integer, got {max_batch!r}")
    ray = None if sequential else import_ray()
    out = Path(out_dir) if out_dir is not None else Path(f"sweep_{spec.name}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", spec.to_dict())
    runs = [(run, run_dir_for(out, run)) for run in spec.runs()]
    todo = [(run, root) for run, root in runs if pending_work(root, run) != "none"]
    bar = progress_bar(total=len(runs), initial=len(runs) - len(todo), desc=f"sweep {spec.name}",
               unit="run", disable=not progress)
    n_batched = 0
    try:
        if ray is None:
            use_gpu = batch_on_gpu and _local_cuda()
            jobs = plan(todo, use_gpu, max_batch)
            n_batched = sum(len(j) for j in jobs if len(j) > 1)
            _run_local(jobs, use_gpu, bar)
        else:
            started = connect(ray, address, num_cpus, runtime_env)
            try:
                use_gpu = batch_on_gpu and ray.cluster_resources().get("GPU", 0) >= 1
                jobs = plan(todo, use_gpu, max_batch)
                n_batched = sum(len(j) for j in jobs if len(j) > 1)
                _run_ray(ray, jobs, cpus_per_run, use_gpu, bar)
            finally:
                if started:
                    ray.shutdown()
    finally:
        bar.close()
        table = collect(out, runs)
        table_path = write_table(table, out / f"table.{table_format}")
    failed = int(failed_rows(table).sum()) if len(table) else 0
    return SweepResult(table=table, out_dir=out, table_path=table_path, n_runs=len(runs),
                       n_skipped=len(runs) - len(todo), n_failed=failed,
                       seconds=time.perf_counter() - start,
                       mode="sequential" if ray is None else "ray", n_batched=n_batched)


def _local_cuda() -> bool:
    return bool(torch.cuda.is_available())

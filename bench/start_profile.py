"""Where does the time of ``JobManager.start()`` go? A timeline of one start, step by step.

Run::

    .venv/bin/python bench/start_profile.py [--starts 200] [--no-namespaces]

It launches a remo supervisor itself, with trace points wrapped around the steps of a
start (request dispatch, cgroup creation, fork, the child's cgroup join, setsid,
namespace creation, the init's fork, exec...), runs the same job as
``bench/worker_bench.py`` (``sh -c 'printf x; exec sleep 5'``) many times through a
plain ``JobManager``, and prints the median time between consecutive trace points.

Trace points are timestamps from ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, the same
clock in every process), appended to a file by whichever process reaches them: the
client, the supervisor, the set-up child, the job's init and the job before exec. Each
point costs an open/write/close (a few tens of microseconds), so the traced total is a
little above the untraced figure; the split is what this is for.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import inspect
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TRACE: str | None = None
_DEPTH = 0  # 0 = supervisor, +1 per fork: the set-up child, the init, the job


def mark(label: str) -> None:
    if _TRACE is None:
        return
    fd = _real_open(_TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _real_write(fd, f"{time.perf_counter_ns()} {label}@{_DEPTH}\n".encode())
    finally:
        os.close(fd)


def _wrap(owner: Any, name: str, label: str, *, enter: bool = True, leave: bool = True) -> None:
    real = getattr(owner, name, None)
    if real is None:
        print(f"note: {getattr(owner, '__name__', owner)}.{name} not found; not traced")
        return
    if inspect.iscoroutinefunction(real):

        @functools.wraps(real)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            if enter:
                mark(f"{label}>")
            try:
                return await real(*args, **kwargs)
            finally:
                if leave:
                    mark(f"{label}<")

        setattr(owner, name, traced_async)
        return

    @functools.wraps(real)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if enter:
            mark(f"{label}>")
        try:
            return real(*args, **kwargs)
        finally:
            if leave:
                mark(f"{label}<")

    setattr(owner, name, traced)


def _traced_fork() -> int:
    global _DEPTH
    mark("fork>")
    pid = _real_fork()
    if pid == 0:
        _DEPTH += 1
        mark("forked-child")
    return pid


_real_fork = os.fork
_real_open = os.open
_real_write = os.write


def _traced_open(path: Any, *args: Any, **kwargs: Any) -> int:
    name = os.path.basename(os.fspath(path)) if isinstance(path, str | os.PathLike) else "?"
    mark(f"open:{name}>")
    try:
        return _real_open(path, *args, **kwargs)
    finally:
        mark(f"open:{name}<")


def install(trace: str) -> None:
    """Put the trace points in place (in the supervisor process, before it starts)."""
    global _TRACE
    _TRACE = trace
    from remo.cgroups import v1, v2
    from remo.store import jobs
    from remo.supervisor import init, main, namespaces, service, spawn

    os.fork = _traced_fork
    os.open = _traced_open
    _wrap(Path, "mkdir", "mkdir")
    _wrap(service.Supervisor, "_check_free_space", "check_free_space")
    _wrap(main.Server, "_dispatch", "dispatch")
    _wrap(service.Supervisor, "start", "Supervisor.start")
    _wrap(jobs.JobStore, "allocate", "store.allocate")
    _wrap(jobs.JobStore, "insert_running", "store.insert_running")
    _wrap(v1.V1Driver, "create", "cgroup.create")
    _wrap(v2.V2Driver, "create", "cgroup.create")
    _wrap(service, "spawn", "spawn")
    _wrap(spawn, "_read_all", "wait-for-exec", enter=False)
    _wrap(spawn, "_close_fds_except", "close_fds")
    _wrap(spawn, "_host_pid", "host_pid")
    _wrap(namespaces, "enter", "unshare+mount-private")
    _wrap(namespaces, "prepare_init", "prepare_init")
    _wrap(init, "make_output_pipe", "output-pipe")
    _wrap(os, "write", "write")
    _wrap(os, "setsid", "setsid")
    _wrap(os, "chdir", "chdir")
    _wrap(os, "execvpe", "execvpe", leave=False)


# -- the measuring side ----------------------------------------------------------------------


async def measure(state: Path, trace: str, starts: int, namespaces: bool) -> list[float]:
    from remo.worker import JobManager, JobSpec

    global _TRACE
    args = [
        sys.executable,
        __file__,
        "--as-supervisor",
        trace,
        "--state-dir",
        str(state),
        "--linger",
        "0",
    ]
    if not namespaces:
        args.append("--no-namespaces")
    state.mkdir(mode=0o700)
    subprocess.run(args, check=True)  # the supervisor forks away at once
    sock = state / "supervisor.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"supervisor did not start; see {state / 'supervisor.log'}")
        await asyncio.sleep(0.01)
    totals = []
    async with JobManager.open(state, namespaces=namespaces) as manager:
        pid = int(manager._info["pid"])
        for i in range(starts + 10):
            _TRACE = trace if i >= 10 else None  # first ten: warm-up, not traced
            spec = JobSpec(["sh", "-c", "printf x; exec sleep 5"])
            t0 = time.perf_counter_ns()
            mark("client.start>")
            job_id = await manager.start(spec)
            mark("client.start<")
            totals.append((time.perf_counter_ns() - t0) / 1e6)
            _TRACE = None
            await manager.stop(job_id, grace=5)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return totals[10:]


def analyse(trace: str) -> tuple[list[tuple[str, float, float, float]], float]:
    events = []
    with open(trace) as f:
        for line in f:
            ns, label = line.split()
            events.append((int(ns), label))
    events.sort()
    windows: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] | None = None
    for event in events:
        if event[1].startswith("client.start>"):
            current = [event]
        elif current is not None:
            current.append(event)
            if event[1].startswith("client.start<"):
                windows.append(current)
                current = None
    steps: dict[str, list[float]] = collections.defaultdict(list)
    order: dict[str, int] = {}
    for window in windows:
        for (t_a, a), (t_b, b) in itertools.pairwise(window):
            key = f"{a} -> {b}"
            order.setdefault(key, len(order))
            steps[key].append((t_b - t_a) / 1e6)
    total = statistics.median((w[-1][0] - w[0][0]) / 1e6 for w in windows)
    rows = [
        (key, statistics.median(v), _p90(v), len(v) / len(windows))
        for key, v in sorted(steps.items(), key=lambda kv: order[kv[0]])
    ]
    return rows, total


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-supervisor":
        global _DEPTH
        _DEPTH = -1  # the supervisor forks once to detach: it is depth 0 after that
        install(sys.argv[2])
        from remo.supervisor.main import main as supervisor_main

        supervisor_main(sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--no-namespaces", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="remo-start-profile-", dir="/tmp"))
    trace = str(base / "trace")
    try:
        totals = asyncio.run(measure(base / "state", trace, args.starts, not args.no_namespaces))
        rows, total = analyse(trace)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    kind = "without namespaces" if args.no_namespaces else "with PID+mount namespaces"
    print(
        f"{args.starts} traced starts {kind}; label@N: N = 0 supervisor (or client), "
        "1 set-up child, 2 init (or job without a PID namespace), 3 job"
    )
    print(
        f"start() median {statistics.median(totals):.2f} ms, p90 {_p90(totals):.2f} ms "
        "as timed by the client "
        f"(traced window median {total:.2f} ms)\n"
    )
    print("| step (between trace points) | median ms | p90 ms | share of median total | seen in |")
    print("|---|---|---|---|---|")
    for key, med, p90, seen in rows:
        if seen >= 0.5:
            print(
                f"| {key} | {med:.3f} | {p90:.3f} | {med / total * 100:.0f}% | {seen * 100:.0f}% |"
            )


if __name__ == "__main__":
    main()

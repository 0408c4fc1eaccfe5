"""Where does the time of ``JobManager.start()`` go? A timeline of one start, step by step.

Run::

    .venv/bin/python bench/start_profile.py [--starts 200] [--no-namespaces]

It launches a remo supervisor itself, and a spawner, with trace points wrapped around the
steps of a start (request dispatch, the request to a waiting init, files, cgroup limits,
the descriptors, the init's set-up and posix_spawn, the report, the row), runs the same
job as ``bench/worker_bench.py`` (``sh -c 'printf x; exec sleep 5'``) many times through
a plain ``JobManager``, and prints the median time between consecutive trace points.

Trace points are timestamps from ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, the same
clock in every process), appended to a file by whichever process reaches them: the
client, the supervisor and the init. Each point costs an open/write/close (a few tens of
microseconds), so the traced total is a little above the untraced figure; the split is
what this is for. ``KEEP=1`` keeps the trace file.
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TRACE: str | None = None
_DEPTH = 0  # 0 = supervisor (or spawner), +1 per fork: the helper, the init


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


def install(trace: str) -> None:
    """Put the trace points in place (in the supervisor process, before it starts)."""
    global _TRACE
    _TRACE = trace
    from remo.cgroups import v1, v2
    from remo.store import jobs
    from remo.supervisor import main, spawn, starts

    _wrap(Path, "mkdir", "mkdir")
    _wrap(main.Server, "_dispatch", "dispatch")
    _wrap(jobs.JobStore, "insert_running", "store.insert_running")
    _wrap(jobs.JobStore, "set_pid", "store.set_pid")
    _wrap(v1.V1Driver, "create", "cgroup.create")
    _wrap(v2.V2Driver, "create", "cgroup.create")
    _wrap(v1.V1Driver, "apply", "cgroup.create")
    _wrap(v2.V2Driver, "apply", "cgroup.create")
    _wrap(spawn.InitPool, "send", "send-request")
    _wrap(spawn.InitPool, "hand_over", "hand-over")
    _wrap(starts, "read_report", "wait-for-exec", enter=False)
    spawn.InitPool.command = (sys.executable, __file__, "--as-spawner", trace)


def install_in_spawner(trace: str) -> None:
    """Trace points in the spawner and the inits it forks."""
    global _TRACE
    _TRACE = trace
    from remo.supervisor import spawner

    os.fork = _traced_fork
    _wrap(spawner, "_receive", "init.request", enter=False)
    _wrap(spawner, "_receive_fds", "init.fds", enter=False)
    _wrap(spawner, "_start", "init.start")
    _wrap(os, "setuid", "setuid")
    _wrap(os, "chdir", "chdir")
    _wrap(os, "posix_spawnp", "posix_spawnp")
    _wrap(socket.socket, "sendall", "init.report")


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


def read_windows(trace: str) -> list[list[tuple[int, str]]]:
    """The trace points of each start, from the client's call to its return."""
    events = []
    with open(trace) as f:
        for line in f:
            ns, label = line.split()
            events.append((int(ns), label))
    events.sort()
    windows: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] | None = None
    for event in events:
        if event[1] == "client.start>@0":
            current = [event]
        elif current is not None:
            current.append(event)
            if event[1] == "client.start<@0":
                windows.append(current)
                current = None
    return windows


def milestones() -> list[tuple[str, str]]:
    """(trace point, name of the phase that ends there), in the order a start passes them.

    Depth 0 is the supervisor; the waiting init is depth 2 (spawner, helper, init).
    """
    return [
        ("client.start>@0", ""),
        ("dispatch>@0", "request: client to supervisor"),
        ("send-request>@0", "supervisor: validate, resolve the account"),
        ("send-request<@0", "supervisor: take a waiting init, send it the request"),
        ("cgroup.create>@0", "supervisor: job dir, output and status files"),
        ("cgroup.create<@0", "supervisor: create the job's cgroups"),
        ("store.insert_running>@0", "supervisor: open the cgroup.procs files"),
        ("store.insert_running<@0", "supervisor: insert the row (SQLite)"),
        ("hand-over<@0", "supervisor: send the descriptors"),
        ("init.fds<@2", "init: has the descriptors (request decoded meanwhile)"),
        ("posix_spawnp>@2", "init: join cgroups, isolate, account, chdir"),
        ("posix_spawnp<@2", "init: posix_spawn (vfork + exec)"),
        ("wait-for-exec<@0", "report: init to supervisor"),
        ("store.set_pid<@0", "supervisor: track the job, record its pid (SQLite)"),
        ("client.start<@0", "reply: supervisor to client"),
    ]


def analyse(trace: str) -> tuple[list[tuple[str, float, float]], float, float, int]:
    """Median and p90 of each phase, the median total, the p90 total, and the window count."""
    windows = read_windows(trace)
    phases: dict[str, list[float]] = collections.defaultdict(list)
    names: list[str] = []
    totals = []
    for window in windows:
        first: dict[str, int] = {}
        for t, label in window:
            first.setdefault(label, t)
        points = milestones()
        if any(p not in first for p, _ in points):
            continue  # a start whose trace is incomplete (not expected)
        for (prev, _), (point, name) in itertools.pairwise(points):
            if name not in names:
                names.append(name)
            phases[name].append((first[point] - first[prev]) / 1e6)
        totals.append((window[-1][0] - window[0][0]) / 1e6)
    rows = [(name, statistics.median(phases[name]), _p90(phases[name])) for name in names]
    return rows, statistics.median(totals), _p90(totals), len(totals)


def steps(trace: str) -> list[tuple[str, float, float]]:
    """Every pair of consecutive trace points: a finer, noisier view."""
    found: dict[str, list[float]] = collections.defaultdict(list)
    for window in read_windows(trace):
        for (t_a, a), (t_b, b) in itertools.pairwise(window):
            found[f"{a} -> {b}"].append((t_b - t_a) / 1e6)
    return [(k, statistics.median(v), len(v)) for k, v in found.items()]


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-spawner":
        install_in_spawner(sys.argv[2])
        from remo.supervisor.spawner import main as spawner_main

        spawner_main(sys.argv[3:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--as-supervisor":
        global _DEPTH
        _DEPTH = 0  # its detaching fork is not traced: it stays depth 0
        install(sys.argv[2])
        from remo.supervisor.main import main as supervisor_main

        supervisor_main(sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--no-namespaces", action="store_true")
    parser.add_argument("--state-parent", default="/tmp", help="where the state dir goes")
    parser.add_argument(
        "--steps", action="store_true", help="also list every pair of consecutive trace points"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="remo-start-profile-", dir=args.state_parent))
    trace = str(base / "trace")
    try:
        totals = asyncio.run(measure(base / "state", trace, args.starts, not args.no_namespaces))
        rows, total, total_p90, count = analyse(trace)
        pairs = steps(trace) if args.steps else []
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(base, ignore_errors=True)
    kind = "without namespaces" if args.no_namespaces else "with PID+mount namespaces"
    print(f"{count} traced starts {kind}, state dir under {args.state_parent}")
    print(
        f"start() as timed by the client: median {statistics.median(totals):.2f} ms, "
        f"p90 {_p90(totals):.2f} ms (traced: median {total:.2f} ms, p90 {total_p90:.2f} ms)\n"
    )
    print("| phase of a start | median ms | p90 ms | share of the median total |")
    print("|---|---|---|---|")
    for name, med, p90 in rows:
        print(f"| {name} | {med:.3f} | {p90:.3f} | {med / total * 100:.0f}% |")
    if pairs:
        print("\n| trace points (label@process depth) | median ms | count |")
        print("|---|---|---|")
        for key, med, n in pairs:
            print(f"| {key} | {med:.3f} | {n} |")


if __name__ == "__main__":
    main()

"""Benchmarks of the remo worker library (``remo.worker.JobManager``), each with a baseline.

Run::

    .venv/bin/python bench/worker_bench.py            # full run
    .venv/bin/python bench/worker_bench.py --quick    # fewer samples
    .venv/bin/python bench/worker_bench.py --only big-output   # figure 3 alone

Every figure is measured in one run next to a baseline measured in the same run:

1. start latency: ``start()`` until it returns (it returns once exec of the job
   succeeded, see ``remo.supervisor.spawn``), and until a follower sees the job's
   first output byte. With PID+mount namespaces (what the supervisor uses as root),
   without them (``JobManager.open(..., namespaces=False)``), with
   ``network="none"``, after 250 ms of idleness, and with the state dir under another
   parent (``--alt-state-parent``). Baselines: ``subprocess.Popen`` (returns after
   exec) and ``asyncio.create_subprocess_exec``, reading the first byte from a pipe.
   Starts refused with ``StartFailed`` are counted, not fatal.
2. follow latency: a job prints ``time.time_ns()`` every 10 ms; a follower
   (``output(follow=True)``) records arrival. Baseline: the same program's stdout read
   through a plain asyncio pipe.
3. reading a finished 1 GiB output with ``output()`` (the job wrote it to stdout: the
   file read is the job's ``stdout``; ``records``, the index of when it was written, is
   read along). Baseline: ``os.read`` of the same file in 1 MiB chunks.
4. 1,000 ``true`` jobs started and reaped back to back (8 in flight): jobs/s, and leak
   checks on cgroup directories, the supervisor's fds, zombies and RSS. Baseline:
   ``asyncio.create_subprocess_exec("true")`` with the same concurrency.

Results: a table on stdout and ``bench/results/worker.json`` (with ``--only big-output``:
``bench/results/worker-big-output.json``, so that a partial run leaves the full one). The
state directories are temporary (under ``--state-parent``, /tmp by default) and removed
at the end.
``bench/start_profile.py`` breaks one start down step by step.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import platform
import random
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from remo.core.errors import StartFailed
from remo.core.output_format import STDOUT_FILE
from remo.store.jobs import parse_job_id
from remo.supervisor.service import instance_tag
from remo.worker import JobManager, JobSpec

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "worker.json"
RESULTS_BIG_OUTPUT = HERE / "results" / "worker-big-output.json"
CGROUP_ROOT = "/sys/fs/cgroup"

FIRST_BYTE_ARGV = ["sh", "-c", "printf x; exec sleep 5"]
TICKER = (
    "import sys, time\n"
    "n = int(sys.argv[1])\n"
    "deadline = time.monotonic()\n"
    "for _ in range(n):\n"
    "    print(time.time_ns(), flush=True)\n"
    "    deadline += 0.01\n"
    "    delay = deadline - time.monotonic()\n"
    "    if delay > 0:\n"
    "        time.sleep(delay)\n"
)
GIB = 1 << 30
#: The "after idle" start case waits this long first: the first cgroup migration after a
#: quiet spell waits for an RCU grace period (see docs/BENCHMARKS.md).
IDLE_BEFORE_START = 0.25
CHUNK = 1 << 20


# -- statistics ------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Percentile ``p`` (0-100) with linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "min": min(values_ms),
        "median": statistics.median(values_ms),
        "mean": statistics.fmean(values_ms),
        "p90": pct(values_ms, 90),
        "p99": pct(values_ms, 99),
        "max": max(values_ms),
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def ms(ns: int) -> float:
    return ns / 1e6


# -- process inspection ----------------------------------------------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def children(ppid: int) -> dict[str, int]:
    """Children of ``ppid`` by state letter (``Z`` = zombie)."""
    states: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == ppid:
            states[fields[0]] = states.get(fields[0], 0) + 1
    return states


def remo_cgroups(tag: str) -> dict[str, int]:
    """Directories below every ``/sys/fs/cgroup/**/remo/``: all of them, and this instance's."""
    total = ours = 0
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        if os.path.basename(dirpath) != "remo":
            continue
        for sub, subdirs, _ in os.walk(dirpath):
            total += len(subdirs)
            if sub == dirpath:
                ours += sum(1 for d in subdirs if d.startswith(f"{tag}-"))
        dirnames.clear()  # counted above
    return {"all": total, "this_instance": ours}


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


# -- the managers ------------------------------------------------------------------------


class Bench:
    """The managers under test, each with its own state dir and supervisor.

    ``ns``: the default (PID+mount namespaces as root); ``plain``: a supervisor started
    with ``namespaces=False``; ``alt``: the default again, with its state dir under
    another parent directory (to tell remo's own cost from the filesystem's).
    """

    def __init__(self, base: Path, alt_base: Path | None) -> None:
        self.base = base
        self.alt_base = alt_base
        self.ns: JobManager
        self.plain: JobManager
        self.alt: JobManager | None = None
        self.sup_pids: list[int] = []

    @contextlib.asynccontextmanager
    async def open(self) -> Any:
        try:
            async with contextlib.AsyncExitStack() as stack:
                self.ns = await stack.enter_async_context(JobManager.open(self.base / "ns"))
                self.plain = await stack.enter_async_context(
                    JobManager.open(self.base / "no-ns", namespaces=False)
                )
                managers = [self.ns, self.plain]
                if self.alt_base is not None:
                    self.alt = await stack.enter_async_context(
                        JobManager.open(self.alt_base / "ns")
                    )
                    managers.append(self.alt)
                self.sup_pids = [int(m._info["pid"]) for m in managers]
                try:
                    yield self
                finally:
                    for manager in managers:
                        await stop_all(manager)
        finally:
            for pid in self.sup_pids:
                if not wait_gone(pid, 30):
                    print(f"warning: supervisor {pid} did not exit within 30 s", file=sys.stderr)

    def tag(self, manager: JobManager) -> str:
        return instance_tag(manager.paths)


async def stop_all(manager: JobManager) -> None:
    for status in await manager.list(running_only=True):
        with contextlib.suppress(Exception):
            await manager.stop(status.id, grace=0)


async def first_chunk(manager: JobManager, job_id: str) -> bytes:
    stream = manager.output(job_id, follow=True)
    try:
        return await anext(stream)
    finally:
        await stream.aclose()


# -- 1. start latency ----------------------------------------------------------------------


#: Starts refused with StartFailed, by message; a refused start gives no sample.
START_FAILURES: collections.Counter[str] = collections.Counter()


async def remo_start(
    manager: JobManager, network: str, idle: float = 0.0
) -> tuple[int, int] | None:
    spec = JobSpec(FIRST_BYTE_ARGV, network=network)
    if idle:
        await asyncio.sleep(idle)  # not timed: the start comes after a quiet spell
    t0 = time.perf_counter_ns()
    try:
        job_id = await manager.start(spec)
    except StartFailed as err:
        START_FAILURES[str(err)] += 1
        return None
    t1 = time.perf_counter_ns()
    data = await first_chunk(manager, job_id)
    t2 = time.perf_counter_ns()
    assert data.startswith(b"x"), data
    await manager.stop(job_id, grace=5)
    return t1 - t0, t2 - t0


async def popen_true() -> tuple[int, int]:
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(["true"])  # returns once exec succeeded (error pipe at EOF)
    t1 = time.perf_counter_ns()
    proc.wait()
    return t1 - t0, 0


async def popen_first_byte() -> tuple[int, int]:
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(FIRST_BYTE_ARGV, stdout=subprocess.PIPE)
    t1 = time.perf_counter_ns()
    assert proc.stdout is not None
    data = os.read(proc.stdout.fileno(), 1)
    t2 = time.perf_counter_ns()
    assert data == b"x", data
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return t1 - t0, t2 - t0


async def asyncio_first_byte() -> tuple[int, int]:
    t0 = time.perf_counter_ns()
    proc = await asyncio.create_subprocess_exec(*FIRST_BYTE_ARGV, stdout=subprocess.PIPE)
    t1 = time.perf_counter_ns()
    assert proc.stdout is not None
    data = await proc.stdout.read(1)
    t2 = time.perf_counter_ns()
    assert data == b"x", data
    proc.kill()
    await proc.wait()
    return t1 - t0, t2 - t0


async def bench_start(b: Bench, rounds: int, warmup: int) -> dict[str, Any]:
    cases: dict[str, Callable[[], Awaitable[tuple[int, int] | None]]] = {
        "remo_ns": lambda: remo_start(b.ns, "host"),
        "remo_no_ns": lambda: remo_start(b.plain, "host"),
        "remo_ns_network_none": lambda: remo_start(b.ns, "none"),
        "remo_ns_after_idle": lambda: remo_start(b.ns, "host", IDLE_BEFORE_START),
        **({"remo_ns_alt_dir": lambda: remo_start(b.alt, "host")} if b.alt else {}),
        "popen_true": popen_true,
        "popen_sh": popen_first_byte,
        "asyncio_sh": asyncio_first_byte,
    }
    # Check the two supervisors really differ in isolation.
    labels = {}
    for name, manager, network in (
        ("remo_ns", b.ns, "host"),
        ("remo_no_ns", b.plain, "host"),
        ("remo_ns_network_none", b.ns, "none"),
    ):
        job_id = await manager.start(JobSpec(["true"], network=network))
        labels[name] = list((await manager.wait(job_id)).isolation)
    assert "pid" in labels["remo_ns"] and "pid" not in labels["remo_no_ns"], labels
    start: dict[str, list[float]] = {k: [] for k in cases}
    first: dict[str, list[float]] = {k: [] for k in cases}
    failed: collections.Counter[str] = collections.Counter()
    rng = random.Random(1)
    order = list(cases)
    for i in range(warmup + rounds):
        rng.shuffle(order)  # no case always runs right after another
        for name in order:
            sample = await cases[name]()
            if sample is None:
                failed[name] += 1
                continue
            t_start, t_first = sample
            if i >= warmup:
                start[name].append(ms(t_start))
                first[name].append(ms(t_first))
    return {
        "argv": FIRST_BYTE_ARGV,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "isolation": labels,
        "start_failed": dict(failed),
        "start_failure_messages": dict(START_FAILURES),
        "start_returned_ms": {k: summary(v) for k, v in start.items()},
        "first_byte_ms": {k: summary(v) for k, v in first.items() if k != "popen_true"},
        "samples_start_ms": start,
        "samples_first_byte_ms": {k: v for k, v in first.items() if k != "popen_true"},
    }


# -- 2. follow latency ---------------------------------------------------------------------


def line_latencies(buffer: bytearray, chunk: bytes, now: int, out: list[float]) -> None:
    buffer += chunk
    *lines, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    out.extend(ms(now - int(line)) for line in lines if line)


async def follow_remo(manager: JobManager, argv: list[str]) -> list[float]:
    latencies: list[float] = []
    buffer = bytearray()
    job_id = await manager.start(JobSpec(argv))
    async for chunk in manager.output(job_id, follow=True):
        line_latencies(buffer, chunk, time.time_ns(), latencies)
    status = await manager.status(job_id)
    assert status.exit_code == 0, status
    await manager.remove(job_id)
    return latencies


async def follow_pipe(argv: list[str]) -> list[float]:
    latencies: list[float] = []
    buffer = bytearray()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(1 << 16):
        line_latencies(buffer, chunk, time.time_ns(), latencies)
    assert await proc.wait() == 0
    return latencies


async def bench_follow(b: Bench, lines: int, skip: int) -> dict[str, Any]:
    argv = [sys.executable, "-c", TICKER, str(lines + skip)]
    remo = (await follow_remo(b.ns, argv))[skip:]
    pipe = (await follow_pipe(argv))[skip:]
    assert len(remo) == len(pipe) == lines, (len(remo), len(pipe))
    return {
        "lines": lines,
        "skipped_first": skip,
        "interval_ms": 10,
        "remo_follow_ms": summary(remo),
        "pipe_ms": summary(pipe),
    }


# -- 3. reading a finished 1 GiB output ---------------------------------------------------


def read_file(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    total = 0
    try:
        while data := os.read(fd, CHUNK):
            total += len(data)
    finally:
        os.close(fd)
    return total


async def read_remo(manager: JobManager, job_id: str) -> int:
    total = 0
    async for chunk in manager.output(job_id):
        total += len(chunk)
    return total


async def bench_big_output(b: Bench, reps: int) -> dict[str, Any]:
    manager = b.ns
    t0 = time.perf_counter_ns()
    job_id = await manager.start(JobSpec(["head", "-c", "1G", "/dev/zero"]))
    status = await manager.wait(job_id)
    write_ns = time.perf_counter_ns() - t0
    assert status.exit_code == 0, status
    path = manager.paths.job_dir(*parse_job_id(job_id)) / STDOUT_FILE
    assert path.stat().st_size == GIB
    remo_gbs, base_gbs = [], []
    try:
        for _ in range(reps):
            t = time.perf_counter_ns()
            assert read_file(path) == GIB
            base_gbs.append(GIB / (time.perf_counter_ns() - t))  # bytes/ns = GB/s
            t = time.perf_counter_ns()
            assert await read_remo(manager, job_id) == GIB
            remo_gbs.append(GIB / (time.perf_counter_ns() - t))
    finally:
        await manager.remove(job_id)
    assert not path.exists()
    return {
        "bytes": GIB,
        "chunk": CHUNK,
        "reps": reps,
        "job_write_gb_per_s": GIB / write_ns,
        "remo_gb_per_s": remo_gbs,
        "os_read_gb_per_s": base_gbs,
        "remo_median_gb_per_s": statistics.median(remo_gbs),
        "os_read_median_gb_per_s": statistics.median(base_gbs),
    }


# -- 4. many jobs back to back --------------------------------------------------------------


async def run_bounded(count: int, in_flight: int, one: Callable[[], Awaitable[None]]) -> float:
    slots = asyncio.Semaphore(in_flight)

    async def guarded() -> None:
        async with slots:
            await one()

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(guarded())
    return time.perf_counter() - t0


async def bench_churn(b: Bench, count: int, in_flight: int, every: int) -> dict[str, Any]:
    manager = b.ns
    pid = b.sup_pids[0]
    tag = b.tag(manager)
    own = os.getpid()

    def snapshot() -> dict[str, Any]:
        return {
            "cgroup_dirs": remo_cgroups(tag),
            "supervisor_fds": fd_count(pid),
            "supervisor_children": children(pid),
            "supervisor_rss_kib": rss_kib(pid),
            "client_fds": fd_count(own),
        }

    before = snapshot()
    rss: list[tuple[int, int]] = [(0, before["supervisor_rss_kib"])]
    fds: list[tuple[int, int]] = [(0, before["supervisor_fds"])]
    done = 0
    states: dict[str, int] = {}
    early: list[str] = []  # wait() returned while the status still said running
    start_failed: collections.Counter[str] = collections.Counter()

    async def one() -> None:
        nonlocal done
        try:
            job_id = await manager.start(JobSpec(["true"]))
        except StartFailed as err:
            start_failed[str(err)] += 1
            done += 1
            return
        status = await manager.wait(job_id)
        if not status.ended:
            early.append(job_id)
        states[status.state.value] = states.get(status.state.value, 0) + 1
        done += 1
        if done % every == 0:
            rss.append((done, rss_kib(pid)))
            fds.append((done, fd_count(pid)))

    elapsed = await run_bounded(count, in_flight, one)
    after = snapshot()
    await asyncio.sleep(1.0)
    settled = snapshot()
    early_later = {}
    for job_id in early:
        state = (await manager.status(job_id)).state.value
        early_later[state] = early_later.get(state, 0) + 1

    async def base_one() -> None:
        proc = await asyncio.create_subprocess_exec("true")
        assert await proc.wait() == 0

    base_elapsed = await run_bounded(count, in_flight, base_one)
    return {
        "jobs": count,
        "in_flight": in_flight,
        "job_states": states,
        "start_failed": dict(start_failed),
        "wait_returned_while_running": len(early),
        "those_jobs_1s_later": early_later,
        "elapsed_s": elapsed,
        "remo_jobs_per_s": count / elapsed,
        "asyncio_jobs_per_s": count / base_elapsed,
        "before": before,
        "after": after,
        "after_1s": settled,
        "rss_samples_kib": rss,
        "fd_samples": fds,
        "rss_slope_kib_per_1000_jobs": slope([x for x, _ in rss], [y for _, y in rss]) * 1000,
    }


# -- report ----------------------------------------------------------------------------------


def f2(x: float) -> str:
    return f"{x:.2f}"


def rows(r: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []

    def row(
        figure: str,
        remo: float,
        base: float | None,
        unit: str,
        target: str,
        met: bool | None,
        higher_is_better: bool = False,
    ) -> None:
        ratio = "" if not base else f"{(remo / base):.2f}x"
        out.append(
            [
                figure,
                f"{f2(remo)} {unit}",
                "" if base is None else f"{f2(base)} {unit}",
                ratio,
                target,
                "" if met is None else ("yes" if met else "**no**"),
            ]
        )

    s = r["start"]["start_returned_ms"]
    fb = r["start"]["first_byte_ms"]
    row(
        "start() returns, median (PID+mount ns)",
        s["remo_ns"]["median"],
        s["popen_true"]["median"],
        "ms",
        "<= 5 ms",
        s["remo_ns"]["median"] <= 5,
    )
    row(
        "start() returns, p90 (PID+mount ns)",
        s["remo_ns"]["p90"],
        s["popen_true"]["p90"],
        "ms",
        "",
        None,
    )
    row(
        "start() returns, median (no namespaces)",
        s["remo_no_ns"]["median"],
        s["popen_true"]["median"],
        "ms",
        "<= 5 ms",
        s["remo_no_ns"]["median"] <= 5,
    )
    row(
        "start() returns, p90 (no namespaces)",
        s["remo_no_ns"]["p90"],
        s["popen_true"]["p90"],
        "ms",
        "",
        None,
    )
    ns_ratio = s["remo_ns"]["median"] / s["remo_no_ns"]["median"]
    out.append(
        [
            "start() median, namespaced vs not",
            f"{f2(s['remo_ns']['median'])} ms",
            f"{f2(s['remo_no_ns']['median'])} ms (no ns)",
            f"{ns_ratio:.2f}x",
            "<= 2x",
            "yes" if ns_ratio <= 2 else "**no**",
        ]
    )
    refused = sum(r["start"]["start_failed"].values()) + sum(r["churn"]["start_failed"].values())
    attempts = r["start"]["rounds"] + r["start"]["warmup_rounds"]
    attempts = attempts * sum(1 for k in s if k.startswith("remo")) + r["churn"]["jobs"]
    out.append(
        [
            "starts refused with StartFailed",
            f"{refused} of {attempts}",
            "",
            "",
            "0",
            "yes" if refused == 0 else "**no**",
        ]
    )
    row(
        f"start() returns, median after {IDLE_BEFORE_START * 1000:.0f} ms idle (ns)",
        s["remo_ns_after_idle"]["median"],
        s["popen_true"]["median"],
        "ms",
        "<= 5 ms",
        s["remo_ns_after_idle"]["median"] <= 5,
    )
    if "remo_ns_alt_dir" in s:
        row(
            f"start() returns, median (ns, state dir under {r['state_dirs']['alt_parent']})",
            s["remo_ns_alt_dir"]["median"],
            s["remo_ns"]["median"],
            "ms",
            f"(baseline: ns, state dir under {r['state_dirs']['parent']})",
            None,
        )
    row(
        "start() returns, median (ns + network none)",
        s["remo_ns_network_none"]["median"],
        s["remo_ns"]["median"],
        "ms",
        "(baseline: ns, network host)",
        None,
    )
    row(
        "first output byte, median (PID+mount ns)",
        fb["remo_ns"]["median"],
        fb["popen_sh"]["median"],
        "ms",
        "",
        None,
    )
    row(
        "first output byte, p90 (PID+mount ns)",
        fb["remo_ns"]["p90"],
        fb["popen_sh"]["p90"],
        "ms",
        "",
        None,
    )
    row(
        "first output byte, median (no namespaces)",
        fb["remo_no_ns"]["median"],
        fb["popen_sh"]["median"],
        "ms",
        "",
        None,
    )
    row(
        "first output byte, median (asyncio baseline)",
        fb["remo_ns"]["median"],
        fb["asyncio_sh"]["median"],
        "ms",
        "",
        None,
    )
    f = r["follow"]
    row(
        "follow latency, median",
        f["remo_follow_ms"]["median"],
        f["pipe_ms"]["median"],
        "ms",
        "<= 5 ms",
        f["remo_follow_ms"]["median"] <= 5,
    )
    row("follow latency, p99", f["remo_follow_ms"]["p99"], f["pipe_ms"]["p99"], "ms", "", None)
    g = r["big_output"]
    row(
        "read finished 1 GiB output",
        g["remo_median_gb_per_s"],
        g["os_read_median_gb_per_s"],
        "GB/s",
        ">= 1 GB/s",
        g["remo_median_gb_per_s"] >= 1,
    )
    c = r["churn"]
    row(
        f"{c['jobs']} `true` jobs, {c['in_flight']} in flight",
        c["remo_jobs_per_s"],
        c["asyncio_jobs_per_s"],
        "jobs/s",
        "",
        None,
    )
    out.append(
        [
            "wait() returned while status said running",
            str(c["wait_returned_while_running"]),
            "",
            "",
            "0",
            "yes" if c["wait_returned_while_running"] == 0 else "**no**",
        ]
    )
    # Compared once settled: the spawner refills its pool of waiting inits (each with a
    # socket here and a cgroup) in the background after the last start.
    cg_b, cg_a = c["before"]["cgroup_dirs"], c["after_1s"]["cgroup_dirs"]
    out.append(
        [
            "job cgroup dirs under every .../remo/: this instance's (all instances')",
            f"{cg_a['this_instance']} ({cg_a['all']}) after",
            f"{cg_b['this_instance']} ({cg_b['all']}) before",
            "",
            "back to start",
            "yes" if cg_a["this_instance"] == cg_b["this_instance"] else "**no**",
        ]
    )
    out.append(
        [
            "supervisor open fds",
            f"{c['after_1s']['supervisor_fds']} after",
            f"{c['before']['supervisor_fds']} before",
            "",
            "back to start",
            "yes" if c["after_1s"]["supervisor_fds"] == c["before"]["supervisor_fds"] else "**no**",
        ]
    )
    zb = c["before"]["supervisor_children"].get("Z", 0)
    za = c["after"]["supervisor_children"].get("Z", 0)
    out.append(
        [
            "zombie children of the supervisor",
            f"{za} after",
            f"{zb} before",
            "",
            "0",
            "yes" if za == 0 else "**no**",
        ]
    )
    rss = c["rss_samples_kib"]
    out.append(
        [
            "supervisor RSS, first vs last sample",
            f"{rss[-1][1] / 1024:.1f} MiB",
            f"{rss[0][1] / 1024:.1f} MiB",
            f"{rss[-1][1] / rss[0][1]:.2f}x",
            "",
            "",
        ]
    )
    out.append(
        [
            "supervisor RSS slope",
            f"{c['rss_slope_kib_per_1000_jobs']:.0f} KiB/1000 jobs",
            "",
            "",
            "",
            "",
        ]
    )
    return out


def markdown(table: list[list[str]]) -> str:
    head = ["figure", "remo", "baseline", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    return "\n".join(lines)


def detail(r: dict[str, Any]) -> str:
    out = []
    s = r["start"]
    out.append(f"start latency ({s['rounds']} rounds, argv {shlex.join(s['argv'])}), ms:")
    out.append(f"  {'case':<42}{'min':>8}{'median':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for kind, key in (("start() returned", "start_returned_ms"), ("first byte", "first_byte_ms")):
        for name, st in s[key].items():
            out.append(
                f"  {kind + ' ' + name:<42}{st['min']:8.2f}{st['median']:8.2f}"
                f"{st['p90']:8.2f}{st['p99']:8.2f}{st['max']:8.2f}"
            )
    if s["start_failure_messages"] or r["churn"]["start_failed"]:
        out.append(
            f"  starts refused: {s['start_failed']} in the latency rounds, "
            f"{r['churn']['start_failed']} in start-and-reap; messages "
            f"{s['start_failure_messages']}"
        )
    f = r["follow"]
    out.append(f"follow latency ({f['lines']} lines every {f['interval_ms']} ms), ms:")
    for name in ("remo_follow_ms", "pipe_ms"):
        st = f[name]
        out.append(
            f"  {name:<42}{st['min']:8.2f}{st['median']:8.2f}{st['p90']:8.2f}"
            f"{st['p99']:8.2f}{st['max']:8.2f}"
        )
    g = r["big_output"]
    out.append(
        "1 GiB output, GB/s per rep: remo "
        + ", ".join(f2(x) for x in g["remo_gb_per_s"])
        + "; os.read "
        + ", ".join(f2(x) for x in g["os_read_gb_per_s"])
        + f"; the job wrote it at {f2(g['job_write_gb_per_s'])} GB/s"
    )
    c = r["churn"]
    out.append(
        f"churn: {c['jobs']} jobs in {c['elapsed_s']:.2f} s, states {c['job_states']}, "
        f"wait() returned early {c['wait_returned_while_running']} times "
        f"(1 s later: {c['those_jobs_1s_later']}); "
        f"RSS KiB by jobs done {c['rss_samples_kib']}; fds {c['fd_samples']}"
    )
    for when in ("before", "after", "after_1s"):
        out.append(f"  {when}: {c[when]}")
    return "\n".join(out)


def dump_tasks() -> None:
    """SIGUSR1: print where every task of the benchmark is waiting (to debug a hang)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def our_ticks() -> int:
    """CPU jiffies of this benchmark: this process, the supervisors, and every child
    reaped by either (the baselines' processes; the jobs, through their inits)."""
    t = os.times()
    ticks = (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")
    for pid in SUPERVISORS:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ticks += sum(int(v) for v in stat[stat.rindex(")") + 2 :].split()[11:15])
    return round(ticks)


MACHINE: dict[str, dict[str, float]] = {}
SUPERVISORS: list[int] = []


async def phase(name: str, seconds: float, work: Awaitable[Any]) -> Any:
    """Run one benchmark; on a hang, show where every task waits and fail.

    Records how busy the machine was meanwhile (all processes: remo's, the baselines'
    and anything else running), to judge the noise.
    """
    print(f"{name}...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    busy0, total0 = cpu_ticks()
    ours0 = our_ticks()
    try:
        async with asyncio.timeout(seconds):
            result = await work
    except TimeoutError:
        print(f"{name} did not finish in {seconds} s; tasks:", file=sys.stderr)
        dump_tasks()
        raise
    busy1, total1 = cpu_ticks()
    ours1 = our_ticks()
    elapsed = time.perf_counter() - t0
    total = max(total1 - total0, 1)
    MACHINE[name] = {
        "seconds": elapsed,
        "cpu_busy_fraction": (busy1 - busy0) / total,
        "cpu_busy_fraction_not_this_benchmark": max(busy1 - busy0 - (ours1 - ours0), 0) / total,
        "loadavg_1min_after": os.getloadavg()[0],
    }
    print(
        f"{name}: {elapsed:.1f} s; CPU busy {MACHINE[name]['cpu_busy_fraction'] * 100:.0f}% "
        f"of {os.cpu_count()} cores, of which other processes "
        f"{MACHINE[name]['cpu_busy_fraction_not_this_benchmark'] * 100:.0f}%",
        file=sys.stderr,
        flush=True,
    )
    return result


async def run(quick: bool, parent: str, alt_parent: str, only: str = "") -> dict[str, Any]:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    base = Path(tempfile.mkdtemp(prefix="remo-bench-", dir=parent))
    alt = Path(tempfile.mkdtemp(prefix="remo-bench-", dir=alt_parent)) if alt_parent else None
    try:
        async with Bench(base, alt).open() as b:
            info = {"ns": b.ns._info, "no_ns": b.plain._info}
            SUPERVISORS[:] = b.sup_pids
            if only == "big-output":
                big = await phase("1 GiB output", 300, bench_big_output(b, reps=5))
                return {
                    "state_dirs": {"parent": parent, "alt_parent": alt_parent or None},
                    "supervisors": info,
                    "big_output": big,
                    "machine_during_phases": MACHINE,
                }
            start = await phase(
                "start latency", 900, bench_start(b, rounds=50 if quick else 200, warmup=10)
            )
            follow = await phase(
                "follow latency", 120, bench_follow(b, lines=150 if quick else 400, skip=10)
            )
            big = await phase("1 GiB output", 300, bench_big_output(b, reps=3))
            churn = await phase(
                "start and reap",
                900,
                bench_churn(b, count=200 if quick else 1000, in_flight=8, every=100),
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if alt is not None:
            shutil.rmtree(alt, ignore_errors=True)
    return {
        "state_dirs": {"parent": parent, "alt_parent": alt_parent or None},
        "supervisors": info,
        "start": start,
        "follow": follow,
        "big_output": big,
        "churn": churn,
        "machine_during_phases": MACHINE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument(
        "--state-parent", default="/tmp", help="where the temporary state dirs go (/tmp)"
    )
    parser.add_argument(
        "--alt-state-parent",
        default="/var/tmp",
        help="parent of one more state dir, for a start-latency comparison ('' for none)",
    )
    parser.add_argument(
        "--only",
        choices=["big-output"],
        default="",
        help="run one figure alone (big-output: reading a finished 1 GiB output, 5 reps)",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.quick, args.state_parent, args.alt_state_parent, args.only))
    results["meta"] = {
        "command": shlex.join([".venv/bin/python", "bench/worker_bench.py", *sys.argv[1:]]),
        "quick": args.quick,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "euid": os.geteuid(),
        "loadavg_end": list(os.getloadavg()),
    }
    if args.only:
        g = results["big_output"]
        print(
            "\n1 GiB output, GB/s per rep: remo "
            + ", ".join(f2(x) for x in g["remo_gb_per_s"])
            + "; os.read "
            + ", ".join(f2(x) for x in g["os_read_gb_per_s"])
            + f"; the job wrote it at {f2(g['job_write_gb_per_s'])} GB/s"
        )
        met = "yes" if g["remo_median_gb_per_s"] >= 1 else "**no**"
        print(
            f"read finished 1 GiB output, median: remo {f2(g['remo_median_gb_per_s'])} GB/s, "
            f"os.read {f2(g['os_read_median_gb_per_s'])} GB/s (target >= 1 GB/s: {met})"
        )
        RESULTS_BIG_OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_BIG_OUTPUT.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {RESULTS_BIG_OUTPUT.relative_to(HERE.parent)}")
        return
    table = rows(results)
    results["table"] = [
        dict(zip(["figure", "remo", "baseline", "ratio", "target", "met"], t, strict=True))
        for t in table
    ]
    print()
    print(detail(results))
    print()
    print(markdown(table))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()

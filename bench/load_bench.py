"""Load and reliability benchmarks of a real remo server (gRPC, mutual TLS 1.3, real jobs).

Run as root (jobs run under cgroups and in namespaces, as their owner's account)::

    .venv/bin/python bench/load_bench.py            # every scenario, full size
    .venv/bin/python bench/load_bench.py --quick    # every scenario, CI-sized
    .venv/bin/python bench/load_bench.py --kill9 --sigterm --quick   # a selection

Each scenario gets its own ``remo server --state-dir <tmp> --listen 127.0.0.1:<free
port>`` subprocess (the console script from .venv/bin, stderr to
``bench/results/load-<scenario>-server.log``), and an admin credential issued from the
server's CA exactly as ``remo admin issue`` does. Clients are grpc.aio channels with that
credential; every channel has its own TCP+TLS connection.

1. ``--load``: N concurrent clients (200 for 60 s; quick 50 for 10 s), in several
   worker processes, mixing Start (short jobs), Status (GetJob), List (ListJobs), Output follow and
   Remove; in rounds (3; quick 2), so that memory kept after the first round can be
   told from memory growing with every round. Errors must be zero. Server and
   supervisor RSS: before, peak during, ~10 s after each round. The server's event-loop
   lag (``remo.server.looplag``: how late a 10 ms timer ran) p50/p99/max per round, and,
   on the idle server beforehand, one client's Status and List round trips.
2. ``--lifecycles``: 10,000 start+wait+remove (quick 1,000), 8 in flight. Before and
   after: server and supervisor fds and RSS, this instance's cgroup directories,
   zombies under the supervisor, job directories left on disk. The server's asyncio
   task count is not observable from outside the process and is not reported.
3. ``--slow-follower``: a job writes 50 MiB as fast as it can while 5 fast followers
   and one slow follower (1 KiB/s: read a message, sleep len/1024 s) read it.
   Compared, over interleaved runs (5 of each kind; quick 3), with the job alone and
   with only the fast followers: the job's own write time, the fast followers'
   completion time, the server's RSS, and what the server sent the slow follower.
4. ``--many-followers``: 1,000 jobs (quick 200) printing 1..10 once a second, each
   followed by its own client connection; all followers must get exactly the 10
   lines. Time to start all, peak server/supervisor RSS and fds, peak running jobs;
   3 rounds (quick 1). ``--many-seconds 60`` makes the jobs long enough to all overlap.
5. ``--kill9``: 20 jobs print a counter every 100 ms for 5 s and exit 3; one follower
   per job. SIGKILL the server mid-stream, start it again on the same port and state
   dir; followers resume from their byte offset. Every follower must have the exact
   output, every job must be ``failed`` with exit code 3.
6. ``--sigterm``: the same with SIGTERM: the server must exit within a few seconds,
   jobs keep running, streams end cleanly or with UNAVAILABLE and resume.

``--trim-probe`` (needs gdb) calls ``malloc_trim(0)`` in the server after each round of
scenarios 1 and 4 and reports the RSS again: memory the allocator keeps after a peak
goes away, memory in use does not.

``--src DIR`` runs the servers (and their supervisors) from another source tree, e.g. a
``git worktree`` of an older commit, for before/after comparisons; the bench itself and
its clients use this tree's code.

Results: a table on stdout and ``bench/results/load.json`` (scenarios run are merged
into the existing file, each with its own timestamp, load average, and a digest of
``src/remo``; quick runs are stored as ``<scenario>-quick``). Exit status 1 when a
check failed. docs/RELIABILITY.md has the results and what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import fcntl
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS = RESULTS_DIR / "load.json"
#: The source tree the servers run (``--src``); the bench's own code is this tree's.
SERVER_SRC = h.ROOT / "src"
#: ``--tag``: also in the servers' log names, so that tagged runs may overlap.
TAG = ""


# -- one server per scenario ----------------------------------------------------------------


class Env:
    """A fresh state dir, a ``remo server`` on a free loopback port, an admin credential."""

    def __init__(self, name: str, user: str) -> None:
        self.name = name
        self.user = user
        self.tmp = Path(tempfile.mkdtemp(prefix=f"remo-load-{name}-")).resolve()
        self.state = self.tmp / "state"
        self.port = h.free_port()
        self.log_name = f"load-{name}-{TAG}" if TAG else f"load-{name}"
        log = RESULTS_DIR / f"{self.log_name}-server.log"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        self.server = h.ServerProcess(self.state, self.port, log)
        #: Where the server writes its event-loop lag samples (remo.server.looplag).
        self.loop_lag = self.tmp / "loop-lag.txt"
        self.cred = self.tmp / "admin.remo"
        self._sup: int | None = None
        self.tag = ""
        self.cleanup_report: dict[str, Any] = {}

    def __enter__(self) -> Env:
        from remo.core.paths import StatePaths
        from remo.supervisor.service import instance_tag

        # The server (and its restarts) inherit the bench's environment.
        os.environ["REMO_LOOP_LAG_FILE"] = str(self.loop_lag)
        self.start_s = self.server.start()
        h.issue_admin(self.state, self.server.address, self.cred, self.user)
        self.tag = instance_tag(StatePaths(self.state))
        return self

    def sup_pid(self) -> int | None:
        if self._sup is None or not h.pid_alive(self._sup):
            self._sup = h.find_supervisor(self.state)
        return self._sup

    def server_pid(self) -> int | None:
        return self.server.pid

    def snapshot(self) -> dict[str, Any]:
        snap = h.snapshot(self.server_pid(), self.sup_pid(), self.tag)
        snap["job_dirs"] = _count_job_dirs(self.state)
        return snap

    def __exit__(self, *exc: object) -> None:
        """SIGTERM the server, wait for the supervisor to finish its jobs and exit."""
        report = self.cleanup_report
        sup = self.sup_pid()
        report["server_stop_s"] = self.server.stop()
        if sup is not None:
            gone = h.wait_pid_gone(sup, 180)
            report["supervisor_exited"] = gone
        report["cgroup_dirs_left"] = h.cgroup_dirs(self.tag) if self.tag else None
        from remo.pki.register import register_socket_path

        sock = register_socket_path(self.state)
        report["register_socket_left"] = sock.exists()
        with contextlib.suppress(OSError):
            shutil.copyfile(
                self.state / "supervisor.log", RESULTS_DIR / f"{self.log_name}-supervisor.log"
            )
        if sup is None or report.get("supervisor_exited"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            report["kept_state_dir"] = str(self.tmp)  # jobs still running there


def src_digest() -> dict[str, Any]:
    """What code ran: a digest of src/remo/**/*.py and the newest change among them."""
    import hashlib

    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted((SERVER_SRC / "remo").rglob("*.py")):
        digest.update(str(path.relative_to(SERVER_SRC.parent)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {
        "tree": str(SERVER_SRC),
        "sha256": digest.hexdigest()[:16],
        "newest_change": datetime.datetime.fromtimestamp(newest, datetime.UTC).isoformat(
            timespec="seconds"
        ),
    }


def _count_job_dirs(state: Path) -> int:
    jobs = state / "jobs"
    n = 0
    with contextlib.suppress(OSError):
        for owner in os.listdir(jobs):
            with contextlib.suppress(OSError):
                n += len(os.listdir(jobs / owner))
    return n


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


# -- scenario 1: mixed load ---------------------------------------------------------------


async def _warm_up(cred: str) -> None:
    """A few calls of every kind, so that 'before' is not a never-called server."""
    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    channel = h.open_channel(cred)
    stub = pb_grpc.JobServiceStub(channel)
    for argv, _ in h.SHORT_JOBS * 4:
        job = (await stub.Start(pb.StartRequest(argv=argv))).job.id
        await stub.GetJob(pb.GetJobRequest(id=job))
        await stub.ListJobs(pb.ListJobsRequest(page_size=100))
        async for _ in stub.Output(pb.OutputRequest(id=job, follow=True)):
            pass
        await stub.Remove(pb.RemoveRequest(id=job))
    await channel.close()


def loop_lag(path: Path, since: float, until: float) -> dict[str, Any]:
    """The server's event-loop lag samples (remo.server.looplag) taken between two unix
    times: how late a timer due every 10 ms ran, in ms."""
    ms: list[float] = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and since <= float(fields[0]) <= until:
                ms.append(float(fields[1]))
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(h.pct(ms, 50), 2),
        "p90_ms": round(h.pct(ms, 90), 2),
        "p99_ms": round(h.pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "over_20_ms": sum(1 for x in ms if x > 20),
    }


async def _round_trips(cred: str, n: int, list_limit: int) -> dict[str, Any]:
    """One client's Status (GetJob) and List (ListJobs) round trips on the idle server, one call
    at a time, alternating (after 20 of each to warm up)."""
    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    channel = h.open_channel(cred)
    stub = pb_grpc.JobServiceStub(channel)
    job = (await stub.Start(pb.StartRequest(argv=["true"]))).job.id
    await stub.Wait(pb.WaitRequest(id=job))
    lat: dict[str, list[float]] = {"Status": [], "List": []}
    for i in range(n + 20):
        t0 = time.perf_counter()
        await stub.GetJob(pb.GetJobRequest(id=job))
        t1 = time.perf_counter()
        await stub.ListJobs(pb.ListJobsRequest(page_size=list_limit))
        t2 = time.perf_counter()
        if i >= 20:
            lat["Status"].append(t1 - t0)
            lat["List"].append(t2 - t1)
    await stub.Remove(pb.RemoveRequest(id=job))
    await channel.close()
    return {op: h.lat_summary(v) for op, v in lat.items()}


def scenario_load(args: argparse.Namespace) -> dict[str, Any]:
    clients, duration = (50, 10.0) if args.quick else (args.clients, args.duration)
    procs = min(args.procs, clients)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    out: dict[str, Any] = {
        "clients": clients,
        "duration_s": duration,
        "worker_processes": procs,
        "think_ms_mean": args.think * 1000,
        "list_limit": args.list_limit,
        "op_weights": h.OPS,
        "rounds": [],
    }
    ctx = mp.get_context("spawn")
    with Env("load", args.user) as env:
        asyncio.run(_warm_up(str(env.cred)))
        out["idle_round_trips"] = asyncio.run(
            _round_trips(str(env.cred), 100 if args.quick else 500, args.list_limit)
        )
        t_idle = time.time()
        time.sleep(1)
        before = env.snapshot()
        out["before"] = before
        out["idle_loop_lag"] = loop_lag(env.loop_lag, t_idle, time.time())
        for rnd in range(args.rounds):
            ready, results = ctx.Queue(), ctx.Queue()
            go = ctx.Event()
            workers = [
                ctx.Process(
                    target=h.mixed_load_worker,
                    args=(
                        i,
                        str(env.cred),
                        per[i],
                        duration,
                        args.think,
                        args.list_limit,
                        ready,
                        go,
                        results,
                    ),
                )
                for i in range(procs)
            ]
            for w in workers:
                w.start()
            for _ in workers:
                ready.get(timeout=180)
            start_snap = env.snapshot()
            with h.Sampler(env.server_pid, env.sup_pid, interval=1.0) as sampler:
                t0 = time.monotonic()
                t_go = time.time()
                go.set()
                parts = [results.get(timeout=duration + 600) for _ in workers]
                wall = time.monotonic() - t0
                t_done = time.time()
            for w in workers:
                w.join(30)
            time.sleep(args.settle)  # (also lets the server write its last lag samples)
            after = env.snapshot()
            rnd_out = _merge_load(parts, wall)
            rnd_out["loop_lag"] = loop_lag(env.loop_lag, t_go, t_done)
            for who in ("server", "supervisor"):
                a, b = start_snap.get(f"{who}_cpu_s"), after.get(f"{who}_cpu_s")
                if a is not None and b is not None:
                    # CPU used from "go" to the "after" sample, over the run time
                    rnd_out[f"{who}_cpu_percent"] = round(100 * (b - a) / rnd_out["elapsed_s"], 1)
            rnd_out.update(
                {
                    "round": rnd + 1,
                    "connected_idle": start_snap,
                    "during_peak": {
                        "server_rss_kib": sampler.peak("server_rss_kib"),
                        "supervisor_rss_kib": sampler.peak("sup_rss_kib"),
                        "server_fds": sampler.peak("server_fds"),
                        "supervisor_fds": sampler.peak("sup_fds"),
                        "server_threads": sampler.peak("server_threads"),
                    },
                    "after": after,
                    "after_settle_s": args.settle,
                }
            )
            if args.trim_probe:
                rnd_out["server_malloc_trim"] = h.malloc_trim_probe(env.server_pid())
                rnd_out["supervisor_malloc_trim"] = h.malloc_trim_probe(env.sup_pid())
            out["rounds"].append(rnd_out)
        if args.trim_probe:
            out["server_malloc_trim"] = out["rounds"][-1]["server_malloc_trim"]
            out["supervisor_malloc_trim"] = out["rounds"][-1]["supervisor_malloc_trim"]
    out["cleanup"] = env.cleanup_report
    rounds = out["rounds"]
    last = rounds[-1]
    b_srv, a_srv = before["server_rss_kib"], last["after"]["server_rss_kib"]
    b_sup, a_sup = before["supervisor_rss_kib"], last["after"]["supervisor_rss_kib"]
    out["server_rss_after_over_before"] = round(a_srv / b_srv, 3)
    out["supervisor_rss_after_over_before"] = round(a_sup / b_sup, 3) if b_sup and a_sup else None
    srv_trend = rss_trend([r["after"]["server_rss_kib"] for r in rounds])
    sup_trend = rss_trend([r["after"]["supervisor_rss_kib"] for r in rounds])
    out["server_rss_after_rounds_kib"] = srv_trend
    out["supervisor_rss_after_rounds_kib"] = sup_trend
    errors = sum(sum(r["errors"].values()) for r in rounds)
    # "Flat afterwards" is judged against the server once warmed up: the first round
    # fills bounded caches (SQLite's page cache is up to 2 MiB per connection), so the
    # baseline is the RSS after round 1; the cold ratio above is reported as a figure.
    warm = rounds[0]["after"] if len(rounds) > 1 else before
    w_srv, w_sup = warm["server_rss_kib"], warm["supervisor_rss_kib"]
    out["server_rss_after_over_warm"] = round(a_srv / w_srv, 3)
    out["supervisor_rss_after_over_warm"] = round(a_sup / w_sup, 3) if w_sup and a_sup else None
    out["checks"] = {
        "zero errors": errors == 0,
        "no fatal worker error": not any(r.get("fatal") for r in rounds),
        "server RSS flat afterwards (after last / after first round <= 1.10)": (
            a_srv <= 1.10 * w_srv
        ),
        "supervisor RSS flat afterwards (after last / after first round <= 1.10)": bool(
            w_sup and a_sup and a_sup <= 1.10 * w_sup
        ),
        "server RSS: no growth across rounds (slope <= 2% per round)": srv_trend["flat"],
        "supervisor RSS: no growth across rounds (slope <= 2% per round)": sup_trend["flat"],
        **trimmed_checks(out, rounds),
        "fds back to before (server, supervisor)": (
            last["after"]["server_fds"] <= before["server_fds"]
            and last["after"]["supervisor_fds"] <= before["supervisor_fds"]
        ),
        "no zombies, no cgroup dirs left": last["after"]["zombies"] == 0
        and last["after"]["cgroup_dirs"] == 0,
    }
    return out


def trimmed_checks(
    out: dict[str, Any],
    rounds: list[dict[str, Any]],
    who: tuple[str, ...] = ("server", "supervisor"),
) -> dict[str, bool]:
    """The trend of RSS after malloc_trim(0), round by round (with --trim-probe)."""
    checks: dict[str, bool] = {}
    for name in who:
        trims = [r.get(f"{name}_malloc_trim") for r in rounds]
        if len(trims) < 2 or not all(trims):
            continue
        trend = rss_trend([t["rss_after_trim_kib"] for t in trims if t])
        out[f"{name}_rss_after_trim_rounds_kib"] = trend
        checks[f"{name} RSS after malloc_trim: no growth across rounds (slope <= 2%)"] = trend[
            "flat"
        ]
    return checks


def rss_trend(afters: list[int]) -> dict[str, Any]:
    """RSS after each round and its least-squares slope per round.

    Memory a process keeps after a peak (allocator arenas, caches) shows as a first
    round higher than "before" and later rounds level with it; a leak shows as a slope.
    """
    xs = list(range(1, len(afters) + 1))
    slope = h.slope(xs, afters) if len(afters) >= 2 else 0.0
    return {
        "values": afters,
        "slope_per_round": round(slope, 1),
        "flat": len(afters) < 2 or slope <= 0.02 * afters[0],
    }


def _merge_load(parts: list[tuple[int, dict[str, Any]]], wall: float) -> dict[str, Any]:
    lat: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    samples: list[str] = []
    fatal = [p["fatal"] for _, p in parts if "fatal" in p]
    elapsed = []
    for _, p in parts:
        if "fatal" in p:
            continue
        for op, vals in p["lat"].items():
            lat.setdefault(op, []).extend(vals)
        errors.update(p["errors"])
        notes.update(p["notes"])
        samples.extend(p["error_samples"])
        elapsed.append(p["elapsed"])
    calls = sum(len(v) for v in lat.values())
    run_s = max(elapsed) if elapsed else wall
    return {
        "fatal": fatal,
        "calls_ok": calls,
        "errors": dict(errors),
        "error_samples": samples[:10],
        "notes": dict(notes),
        "elapsed_s": round(run_s, 2),
        "rps": round(calls / run_s, 1) if run_s else None,
        "latency": {op: h.lat_summary(v) for op, v in lat.items()},
    }


# -- scenario 2: job lifecycles -------------------------------------------------------------


def scenario_lifecycles(args: argparse.Namespace) -> dict[str, Any]:
    n = 1000 if args.quick else args.lifecycles
    warm = 50 if args.quick else 200
    with Env("lifecycles", args.user) as env:
        out = asyncio.run(_lifecycles(env, n, args.concurrency, warm))
    out["cleanup"] = env.cleanup_report
    return out


async def _lifecycles(env: Env, n: int, conc: int, warm: int) -> dict[str, Any]:
    import grpc

    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    channel = h.open_channel(str(env.cred))
    stub = pb_grpc.JobServiceStub(channel)
    errors: Counter[str] = Counter()
    bad_state: Counter[str] = Counter()
    lat: dict[str, list[float]] = {"Start": [], "Wait": [], "Remove": [], "lifecycle": []}

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            job = (await stub.Start(pb.StartRequest(argv=["true"]), timeout=60)).job.id
            t1 = time.perf_counter()
            st = (await stub.Wait(pb.WaitRequest(id=job), timeout=60)).job
            t2 = time.perf_counter()
            await stub.Remove(pb.RemoveRequest(id=job), timeout=60)
            t3 = time.perf_counter()
        except grpc.aio.AioRpcError as err:
            errors[f"{err.code().name}: {err.details()}"[:120]] += 1
            return
        if h.state_of(st) != "succeeded" or st.exit_code != 0:
            bad_state[h.state_of(st)] += 1
        lat["Start"].append(t1 - t0)
        lat["Wait"].append(t2 - t1)
        lat["Remove"].append(t3 - t2)
        lat["lifecycle"].append(t3 - t0)

    async def run(count: int, marks: list[dict[str, Any]] | None) -> float:
        sem = asyncio.Semaphore(conc)
        done = 0
        step = max(count // 10, 1)
        t0 = time.monotonic()

        async def bounded() -> None:
            nonlocal done
            async with sem:
                await one()
            done += 1
            if marks is not None and done % step == 0:
                snap = await asyncio.to_thread(env.snapshot)
                snap["done"] = done
                snap["t_s"] = round(time.monotonic() - t0, 2)
                marks.append(snap)

        await asyncio.gather(*(bounded() for _ in range(count)))
        return time.monotonic() - t0

    await run(warm, None)
    for v in lat.values():
        v.clear()
    await asyncio.sleep(2)
    before = env.snapshot()
    marks: list[dict[str, Any]] = []
    elapsed = await run(n, marks)
    await asyncio.sleep(3)
    after = env.snapshot()
    await channel.close()
    growth = {
        k: after[k] - before[k]
        for k in before
        if isinstance(before[k], int) and isinstance(after.get(k), int)
    }
    xs = [m["done"] for m in marks]
    srv_slope = h.slope(xs, [m["server_rss_kib"] for m in marks]) * 1000
    sup_slope = h.slope(xs, [m["supervisor_rss_kib"] for m in marks]) * 1000
    return {
        "lifecycles": n,
        "in_flight": conc,
        "warm_up_lifecycles": warm,
        "elapsed_s": round(elapsed, 1),
        "lifecycles_per_s": round(n / elapsed, 1),
        "errors": dict(errors),
        "wrong_final_state": dict(bad_state),
        "latency": {k: h.lat_summary(v) for k, v in lat.items()},
        "before": before,
        "after": after,
        "growth": growth,
        "progress": marks,
        "server_rss_slope_kib_per_1000_jobs": round(srv_slope, 1),
        "supervisor_rss_slope_kib_per_1000_jobs": round(sup_slope, 1),
        "server_asyncio_tasks": "not observable from outside the process; not measured",
        "checks": {
            "zero errors, every job succeeded": not errors and not bad_state,
            "server fds: no growth": growth["server_fds"] <= 0,
            "supervisor fds: no growth": growth["supervisor_fds"] <= 0,
            "cgroup dirs: none left": after["cgroup_dirs"] == 0,
            "zombies: none": after["zombies"] == 0,
            "job dirs: none left": after["job_dirs"] == 0,
            "server RSS growth < 10 MiB": growth["server_rss_kib"] < 10 * 1024,
            "supervisor RSS growth < 10 MiB": growth["supervisor_rss_kib"] < 10 * 1024,
        },
    }


# -- scenario 3: a slow follower ------------------------------------------------------------

BIG_MIB = 50
BIG_ARGV = [
    "sh",
    "-c",
    "t0=$(date +%s%N); dd if=/dev/zero bs=1M count="
    + str(BIG_MIB)
    + " status=none; t1=$(date +%s%N); echo; echo elapsed_ns=$((t1-t0))",
]
SLOW_BPS = 1024


def scenario_slow(args: argparse.Namespace) -> dict[str, Any]:
    repeat = args.slow_repeats or (3 if args.quick else 5)
    hold = args.slow_hold if args.slow_hold is not None else (3.0 if args.quick else 15.0)
    with Env("slow", args.user) as env:
        out = asyncio.run(_slow(env, repeat, hold))
    out["cleanup"] = env.cleanup_report
    return out


async def _slow(env: Env, repeat: int, hold: float) -> dict[str, Any]:
    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    await _warm_up(str(env.cred))
    runs: list[dict[str, Any]] = []
    idle = env.snapshot()
    await _slow_once(env, False, 0, pb, pb_grpc)  # not recorded: first use of the code paths
    # Interleaved, so that changes in the machine's load hit every kind of run alike.
    kinds = [("alone", 0, False), ("without_slow", 5, False), ("with_slow", 5, True)]
    for _ in range(repeat):
        for kind, n_fast, with_slow in kinds:
            run = await _slow_once(env, with_slow, hold, pb, pb_grpc, n_fast=n_fast)
            run["kind"] = kind
            runs.append(run)

    def spread(kind: str, key: str) -> dict[str, float]:
        vals = [r[key] for r in runs if r["kind"] == kind]
        return {
            "min": round(min(vals), 1),
            "median": round(statistics.median(vals), 1),
            "max": round(max(vals), 1),
        }

    base = [r for r in runs if r["kind"] == "without_slow"]
    slow = [r for r in runs if r["kind"] == "with_slow"]
    out: dict[str, Any] = {
        "job_bytes": BIG_MIB << 20,
        "fast_followers": 5,
        "slow_follower_bytes_per_s": SLOW_BPS,
        "slow_held_for_s_after_fast_done": hold,
        "repeats_each": repeat,
        "server_rss_idle_kib": idle["server_rss_kib"],
        "runs": runs,
        "job_write_ms": {k: spread(k, "job_write_ms") for k, _, _ in kinds},
        "job_run_ms": {k: spread(k, "job_run_ms") for k, _, _ in kinds},
        "fast_done_ms": {k: spread(k, "fast_done_max_ms") for k, _, _ in kinds[1:]},
        "max_server_rss_kib": {
            "without_slow": max(r["server_rss_max_kib"] for r in base),
            "with_slow": max(r["server_rss_max_kib"] for r in slow),
            "with_slow_while_lagging": max(r["server_rss_max_lagging_kib"] for r in slow),
        },
    }
    jw, fd = out["job_write_ms"], out["fast_done_ms"]
    rss = out["max_server_rss_kib"]
    out["checks"] = {
        "every fast follower got every byte": all(r["fast_ok"] == r["n_fast"] for r in runs),
        "job write time unaffected (median with slow within the range without)": (
            jw["with_slow"]["median"] <= jw["without_slow"]["max"]
        ),
        "fast followers unaffected (median with slow within the range without)": (
            fd["with_slow"]["median"] <= fd["without_slow"]["max"]
        ),
        "server RSS bounded while lagging (<= without + 32 MiB)": rss["with_slow_while_lagging"]
        <= rss["without_slow"] + 32 * 1024,
        "zero errors": not any(r["errors"] for r in runs),
    }
    return out


async def _slow_once(
    env: Env, with_slow: bool, hold: float, pb: Any, pb_grpc: Any, n_fast: int = 5
) -> dict[str, Any]:
    import grpc

    control = h.open_channel(str(env.cred))
    fast_ch = [h.open_channel(str(env.cred), unique=i) for i in range(n_fast)]
    slow_ch = h.open_channel(str(env.cred), unique=99)
    chans = [control, *fast_ch, slow_ch]
    await asyncio.gather(*(c.channel_ready() for c in chans))
    stub = pb_grpc.JobServiceStub(control)
    errors: list[str] = []
    expect_min = BIG_MIB << 20
    fast_done: list[float] = []
    fast_ok = 0
    slow_got = 0
    lagging = asyncio.Event()

    conns: list[dict[str, Any]] = []
    bench_rss_start = h.rss_kib(os.getpid())
    bench_rss_lagging = None
    sampler = h.Sampler(
        env.server_pid,
        env.sup_pid,
        interval=0.1,
        extra=lambda: {**h.tcp_queues(env.port), "lagging": lagging.is_set()},
    )
    with sampler:
        t0 = time.perf_counter()
        job = (await stub.Start(pb.StartRequest(argv=BIG_ARGV))).job.id

        async def fast(ch: Any) -> None:
            nonlocal fast_ok
            got = 0
            tail = b""
            try:
                async for chunk in pb_grpc.JobServiceStub(ch).Output(
                    pb.OutputRequest(id=job, follow=True)
                ):
                    if chunk.offset != got:
                        errors.append(f"fast: offset {chunk.offset} != {got}")
                    got += len(chunk.data)
                    tail = (tail + chunk.data)[-64:]
            except grpc.aio.AioRpcError as err:
                errors.append(f"fast: {err.code().name}: {err.details()}")
                return
            fast_done.append((time.perf_counter() - t0) * 1000)
            if got > expect_min and b"elapsed_ns=" in tail:
                fast_ok += 1
            else:
                errors.append(f"fast: got {got} bytes, tail {tail!r}")

        async def slow(ch: Any) -> None:
            nonlocal slow_got
            try:
                async for chunk in pb_grpc.JobServiceStub(ch).Output(
                    pb.OutputRequest(id=job, follow=True)
                ):
                    slow_got += len(chunk.data)
                    await asyncio.sleep(len(chunk.data) / SLOW_BPS)
            except grpc.aio.AioRpcError as err:
                if err.code() is not grpc.StatusCode.CANCELLED:
                    errors.append(f"slow: {err.code().name}: {err.details()}")

        slow_task = asyncio.create_task(slow(slow_ch)) if with_slow else None
        await asyncio.gather(*(fast(c) for c in fast_ch))
        final = (await stub.Wait(pb.WaitRequest(id=job))).job
        tail_out = b""
        async for chunk in stub.Output(pb.OutputRequest(id=job, offset=max(0, expect_min - 8))):
            tail_out += chunk.data
        if slow_task is not None:
            lagging.set()
            t_lag = time.monotonic()
            await asyncio.sleep(hold)
            lag_s = time.monotonic() - t_lag
            conns = await asyncio.to_thread(h.conn_bytes, env.port)
            bench_rss_lagging = h.rss_kib(os.getpid())
            slow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow_task
            lagging.clear()
        await asyncio.sleep(1.0)
    rss_after = h.rss_kib(env.server_pid())
    await stub.Remove(pb.RemoveRequest(id=job))
    for c in chans:
        await c.close()
    line = tail_out.rsplit(b"elapsed_ns=", 1)[-1].strip()
    lag_samples = [s for s in sampler.samples if s.extra.get("lagging")]
    return {
        "slow": with_slow,
        "n_fast": n_fast,
        "job_state": h.state_of(final),
        "job_write_ms": round(int(line) / 1e6, 1) if line.isdigit() else float("nan"),
        "job_run_ms": round(
            (h.seconds_of(final.end_time) - h.seconds_of(final.start_time)) * 1000, 1
        ),
        "fast_done_ms": [round(x, 1) for x in sorted(fast_done)],
        "fast_done_max_ms": round(max(fast_done), 1) if fast_done else float("nan"),
        "fast_ok": fast_ok,
        "slow_bytes_received": slow_got if with_slow else None,
        "slow_lag_s": round(lag_s, 1) if with_slow else None,
        "server_rss_max_kib": sampler.peak("server_rss_kib"),
        "server_rss_max_lagging_kib": max((s.server_rss_kib or 0) for s in lag_samples)
        if lag_samples
        else None,
        "server_rss_after_kib": rss_after,
        "server_tx_queue_max_while_lagging": max(
            (s.extra["tx_queue_max"] for s in lag_samples), default=None
        ),
        # What the server had sent on each connection when the slow follower was
        # cancelled (ss -ti bytes_acked): 5 fast followers have the whole output; if the
        # slow follower's connection has it too, the server did not hold back for it.
        "server_sent_mib_per_connection_while_lagging": sorted(
            round(c["bytes_acked"] / (1 << 20), 2) for c in conns
        ),
        "connections_sent_whole_output": sum(1 for c in conns if c["bytes_acked"] >= expect_min),
        "bench_process_rss_kib": {"start": bench_rss_start, "lagging": bench_rss_lagging},
        "errors": errors,
    }


# -- scenario 4: many concurrently followed jobs --------------------------------------------

TEN_LINES = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 1; done"]
TEN_EXPECT = b"".join(f"{i}\n".encode() for i in range(1, 11))


def lines_job(n: int) -> tuple[list[str], bytes]:
    """The scenario-4 job with ``n`` lines, one a second (10 is the specified one)."""
    if n == 10:
        return TEN_LINES, TEN_EXPECT
    seq = " ".join(str(i) for i in range(1, n + 1))
    argv = ["sh", "-c", f"for i in {seq}; do echo $i; sleep 1; done"]
    return argv, b"".join(f"{i}\n".encode() for i in range(1, n + 1))


def scenario_many(args: argparse.Namespace) -> dict[str, Any]:
    n = 200 if args.quick else args.jobs
    procs = min(args.procs, n)
    argv, expect = lines_job(args.many_seconds)
    out: dict[str, Any] = {
        "jobs": n,
        "job_argv": argv,
        "job_seconds": args.many_seconds,
        "worker_processes": procs,
        "start_in_flight": args.start_conc * procs,
        "rounds": [],
    }
    with Env("many", args.user) as env:
        asyncio.run(_warm_up(str(env.cred)))
        out["before"] = env.snapshot()
        out["server_nofile_limit"] = h.nofile_limit(env.server_pid() or 0)
        out["supervisor_nofile_limit"] = h.nofile_limit(env.sup_pid() or 0)
        for rnd in range(args.many_rounds):
            res = _many_round(env, n, procs, argv, expect, args.start_conc)
            time.sleep(args.settle)
            res["after"] = env.snapshot()
            res["round"] = rnd + 1
            if args.trim_probe:
                res["server_malloc_trim"] = h.malloc_trim_probe(env.server_pid())
            out["rounds"].append(res)
        if args.trim_probe:
            out["server_malloc_trim"] = out["rounds"][-1]["server_malloc_trim"]
    out["cleanup"] = env.cleanup_report
    first, last = out["rounds"][0], out["rounds"][-1]
    # The figures of the first round at top level; every round in "rounds".
    out.update({k: v for k, v in first.items() if k not in ("round",)})
    out["after"] = last["after"]
    limit = out["server_nofile_limit"] or 0
    rounds = out["rounds"]
    checks = {
        f"every follower got exactly the {args.many_seconds} lines": all(
            r["followers_exact"] == n and r["followers_wrong"] == 0 for r in rounds
        ),
        "zero errors": all(not r["errors"] and not r["fatal"] for r in rounds),
        f"all {n} jobs running at once": all((r["peak"]["running_jobs"] or 0) >= n for r in rounds),
        "server stayed below its fd limit": all(
            (r["peak"]["server_fds"] or 0) < limit for r in rounds
        ),
        "no cgroup dirs, zombies or fds left after": last["after"]["cgroup_dirs"] == 0
        and last["after"]["zombies"] == 0
        and last["after"]["server_fds"] <= out["before"]["server_fds"] + 2,
    }
    if len(rounds) >= 2:
        trend = rss_trend([r["after"]["server_rss_kib"] for r in rounds])
        out["server_rss_after_rounds_kib"] = trend
        checks["server RSS: no growth across rounds (slope <= 2% per round)"] = trend["flat"]
        checks.update(trimmed_checks(out, rounds, ("server",)))
    out["checks"] = checks
    return out


def _many_round(
    env: Env, n: int, procs: int, argv: list[str], expect: bytes, start_conc: int
) -> dict[str, Any]:
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    workers = [
        ctx.Process(
            target=h.follow_many_worker,
            args=(i, str(env.cred), per[i], argv, expect, start_conc, ready, go, results),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=600)
    connected = env.snapshot()

    def extra() -> dict[str, Any]:
        tree = h.supervisor_tree(env.sup_pid())
        return {"running_jobs": tree["children"], "zombies": tree["zombies"]}

    with h.Sampler(env.server_pid, env.sup_pid, interval=1.0, extra=extra) as sampler:
        go.set()
        parts = [results.get(timeout=1800)[1] for _ in workers]
    for w in workers:
        w.join(30)
    fatal = [p["fatal"] for p in parts if "fatal" in p]
    parts = [p for p in parts if "fatal" not in p]
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p["errors"])
    go_wall = min(p["go_wall"] for p in parts) if parts else 0
    last = max((p["last_start_wall"] or 0) for p in parts) if parts else 0
    done = [d for p in parts for d in p["done_wall"]]
    return {
        "connected": connected,
        "fatal": fatal,
        "connect_s_max": round(max((p["connect_s"] for p in parts), default=0), 1),
        "time_to_start_all_s": round(last - go_wall, 2),
        "start_latency": h.lat_summary([x for p in parts for x in p["start_lat"]]),
        "all_followers_done_s": round(max(done) - go_wall, 2) if done else None,
        "followers_exact": sum(p["ok"] for p in parts),
        "followers_wrong": sum(p["wrong"] for p in parts),
        "errors": dict(errors),
        "error_samples": [s for p in parts for s in p["error_samples"]][:10],
        "peak": {
            "running_jobs": sampler.peak_extra("running_jobs"),
            "server_rss_kib": sampler.peak("server_rss_kib"),
            "supervisor_rss_kib": sampler.peak("sup_rss_kib"),
            "server_fds": sampler.peak("server_fds"),
            "supervisor_fds": sampler.peak("sup_fds"),
            "server_threads": sampler.peak("server_threads"),
            "zombies": sampler.peak_extra("zombies"),
        },
    }


# -- scenarios 5 and 6: the server dies mid-stream ------------------------------------------

COUNTER_ARGV = [
    "sh",
    "-c",
    "i=0; while [ $i -lt 50 ]; do echo $i; i=$((i+1)); sleep 0.1; done; exit 3",
]
COUNTER_EXPECT = b"".join(f"{i}\n".encode() for i in range(50))


def scenario_restart(args: argparse.Namespace, sig: int) -> dict[str, Any]:
    repeat = 1 if args.quick else args.repeat
    name = "kill9" if sig == signal.SIGKILL else "sigterm"
    with Env(name, args.user) as env:
        asyncio.run(_warm_up(str(env.cred)))
        iterations = [
            asyncio.run(_restart_once(env, sig, args.restart_jobs)) for _ in range(repeat)
        ]
    out: dict[str, Any] = {
        "signal": signal.Signals(sig).name,
        "jobs": args.restart_jobs,
        "iterations": iterations,
        "cleanup": env.cleanup_report,
    }
    exact = sum(it["followers_exact"] for it in iterations)
    total = sum(it["jobs"] for it in iterations)
    checks = {
        "every follower got the exact output (no dup, no loss)": exact == total,
        "every job failed with exit code 3 (none died)": all(
            it["jobs_failed_3"] == it["jobs"] for it in iterations
        ),
        "no offset anomalies": all(it["offset_anomalies"] == 0 for it in iterations),
        "no unexpected errors": all(not it["fatal_errors"] for it in iterations),
        "supervisor survived the server": all(it["supervisor_same"] for it in iterations),
    }
    if sig == signal.SIGTERM:
        checks["server exited within 5 s of SIGTERM"] = all(
            it["server_exit_s"] <= 5 for it in iterations
        )
    out["checks"] = checks
    return out


async def _restart_once(env: Env, sig: int, n_jobs: int) -> dict[str, Any]:
    import grpc

    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    control = h.open_channel(str(env.cred), unique=1)
    poll_ch = h.open_channel(str(env.cred), unique=2)
    chans = [h.open_channel(str(env.cred), unique=100 + i) for i in range(n_jobs)]
    await asyncio.gather(*(c.channel_ready() for c in [control, poll_ch, *chans]))
    stub = pb_grpc.JobServiceStub(control)
    sup_before = env.sup_pid()
    jobs = [(await stub.Start(pb.StartRequest(argv=COUNTER_ARGV))).job.id for _ in range(n_jobs)]
    t_started = time.monotonic()
    fatal: list[str] = []
    interruptions: Counter[str] = Counter()
    anomalies = 0
    missing_after_clean_end = 0

    async def call_retrying(make: Any) -> Any:
        delay = 0.05
        while True:
            try:
                return await make()
            except grpc.aio.AioRpcError as err:
                if not h.retryable(err):
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def follower(job: str, ch: Any) -> bytes:
        nonlocal anomalies, missing_after_clean_end
        fstub = pb_grpc.JobServiceStub(ch)
        got = bytearray()
        delay = 0.05
        while True:
            try:
                async for chunk in fstub.Output(
                    pb.OutputRequest(id=job, offset=len(got), follow=True)
                ):
                    data = chunk.data
                    if chunk.offset != len(got):
                        anomalies += 1
                        if chunk.offset < len(got):  # overlap: keep only new bytes
                            data = data[len(got) - chunk.offset :]
                    got += data
                    delay = 0.05
            except grpc.aio.AioRpcError as err:
                if not h.retryable(err):
                    fatal.append(f"Output {job}: {err.code().name}: {err.details()}")
                    return bytes(got)
                interruptions[f"{err.code().name}: {err.details()}"[:100]] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            # A clean end: the job ended, or the server ended the stream while going away.
            st = (
                await call_retrying(lambda: fstub.GetJob(pb.GetJobRequest(id=job), timeout=2))
            ).job
            if h.state_of(st) == "running":
                interruptions["clean end while the job was still running"] += 1
                continue
            at = len(got)
            rest = b"".join(
                await call_retrying(
                    lambda at=at: _collect(fstub.Output(pb.OutputRequest(id=job, offset=at)))
                )
            )
            if rest:
                missing_after_clean_end += 1
                interruptions["clean end before the last bytes (found afterwards)"] += 1
                got += rest
            return bytes(got)

    outage: list[tuple[float, bool]] = []
    stop_poll = asyncio.Event()

    async def poller() -> None:
        pstub = pb_grpc.JobServiceStub(poll_ch)
        while not stop_poll.is_set():
            try:
                await pstub.GetJob(pb.GetJobRequest(id=jobs[0]), timeout=0.5)
                outage.append((time.monotonic(), True))
            except grpc.aio.AioRpcError:
                outage.append((time.monotonic(), False))
            await asyncio.sleep(0.05)

    followers = [asyncio.create_task(follower(j, c)) for j, c in zip(jobs, chans, strict=True)]
    poll_task = asyncio.create_task(poller())
    await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - t_started)))
    running_before = h.supervisor_tree(env.sup_pid())["children"]
    t_kill = time.monotonic()
    exit_s = await asyncio.to_thread(env.server.signal, sig)
    running_during = h.supervisor_tree(env.sup_pid())["children"]
    restart_s = await asyncio.to_thread(env.server.start)
    t_up = time.monotonic()
    results = await asyncio.gather(*followers)
    stop_poll.set()
    await poll_task
    finals = [(await stub.GetJob(pb.GetJobRequest(id=j))).job for j in jobs]
    sup_after = env.sup_pid()
    # Status calls may still succeed for a moment after the signal (SIGTERM's grace):
    # the outage runs from the signal to the first success after the first failure.
    first_fail = next((t for t, ok in outage if not ok and t >= t_kill), None)
    back = (
        next((t for t, ok in outage if ok and t > first_fail), None)
        if first_fail is not None
        else t_kill
    )
    exact = sum(1 for r in results if r == COUNTER_EXPECT)
    wrong = [
        {"job": j, "len": len(r), "want": len(COUNTER_EXPECT)}
        for j, r in zip(jobs, results, strict=True)
        if r != COUNTER_EXPECT
    ]
    for j in jobs:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.Remove(pb.RemoveRequest(id=j))
    for c in [control, poll_ch, *chans]:
        await c.close()
    return {
        "jobs": n_jobs,
        "killed_after_s": round(t_kill - t_started, 2),
        "jobs_running_at_kill": running_before,
        "jobs_running_while_server_down": running_during,
        "server_exit_s": round(exit_s, 3),
        "server_restart_s": round(restart_s, 2),
        "rpc_outage_s": round(back - t_kill, 2) if back is not None else None,
        "rpc_failing_window_s": round(back - first_fail, 2)
        if back is not None and first_fail is not None
        else 0.0,
        "followers_exact": exact,
        "wrong_outputs": wrong[:5],
        "offset_anomalies": anomalies,
        "clean_ends_missing_bytes": missing_after_clean_end,
        "interruptions_seen": dict(interruptions),
        "fatal_errors": fatal[:5],
        "job_states": dict(
            Counter(
                f"{h.state_of(s)}/{s.exit_code if s.HasField('exit_code') else '-'}" for s in finals
            )
        ),
        "jobs_failed_3": sum(1 for s in finals if h.state_of(s) == "failed" and s.exit_code == 3),
        "supervisor_same": sup_before is not None and sup_before == sup_after,
        "after_restart_s": round(time.monotonic() - t_up, 2),
    }


async def _collect(call: Any) -> list[bytes]:
    return [chunk.data async for chunk in call]


# -- output ---------------------------------------------------------------------------------


def _load(avg: Any) -> str:
    return f"{avg[0]:.1f}" if avg else "?"


def _slash(*values: object) -> str:
    return " / ".join(str(v) for v in values)


def _fmt_lat(lat: dict[str, Any]) -> str:
    if not lat or not lat.get("n"):
        return "-"
    return f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms (n={lat['n']})"


def _fmt_lag(lag: dict[str, Any]) -> str:
    if not lag.get("n"):
        return "- (no samples: a server without remo.server.looplag?)"
    return (
        f"p50 {lag['p50_ms']:.2f} ms, p99 {lag['p99_ms']:.2f} ms, max {lag['max_ms']:.1f} ms"
        f" (n={lag['n']}, {lag['over_20_ms']} over 20 ms)"
    )


def table_rows(name: str, r: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    name = name.split("-", maxsplit=1)[0]
    if name == "load":
        rows.append(
            (
                "clients x duration",
                f"{r['clients']} x {r['duration_s']:.0f} s, {r['worker_processes']} procs, "
                f"{len(r['rounds'])} rounds",
            )
        )
        for op, lat in r.get("idle_round_trips", {}).items():
            rows.append((f"idle: {op} round trip", _fmt_lat(lat)))
        if r.get("idle_loop_lag"):
            rows.append(("idle: server loop lag", _fmt_lag(r["idle_loop_lag"])))
        for rnd in r["rounds"]:
            k = f"round {rnd['round']}"
            rows.append(
                (
                    f"{k}: RPS / errors",
                    f"{rnd['rps']} / {sum(rnd['errors'].values())} {rnd['errors'] or ''}",
                )
            )
            rows.append(
                (
                    f"{k}: CPU % server / supervisor",
                    f"{rnd.get('server_cpu_percent')} / {rnd.get('supervisor_cpu_percent')}",
                )
            )
            for op in ("Start", "Status", "List", "Output", "Remove"):
                rows.append((f"{k}: {op}", _fmt_lat(rnd["latency"].get(op, {}))))
            if "loop_lag" in rnd:
                rows.append((f"{k}: server loop lag", _fmt_lag(rnd["loop_lag"])))
            rows.append(
                (
                    f"{k}: RSS server before/peak/after MiB",
                    _slash(
                        mib(r["before"]["server_rss_kib"]),
                        mib(rnd["during_peak"]["server_rss_kib"]),
                        mib(rnd["after"]["server_rss_kib"]),
                    ),
                )
            )
            rows.append(
                (
                    f"{k}: RSS supervisor before/peak/after MiB",
                    _slash(
                        mib(r["before"]["supervisor_rss_kib"]),
                        mib(rnd["during_peak"]["supervisor_rss_kib"]),
                        mib(rnd["after"]["supervisor_rss_kib"]),
                    ),
                )
            )
        for who in ("server", "supervisor"):
            t = r.get(f"{who}_rss_after_rounds_kib")
            if t:
                rows.append(
                    (
                        f"{who} RSS after each round MiB (slope/round)",
                        f"{_slash(*(mib(v) for v in t['values']))} ({mib(t['slope_per_round'])})",
                    )
                )
    elif name == "lifecycles":
        rows.append(
            (
                "lifecycles / rate",
                f"{r['lifecycles']} in {r['elapsed_s']} s "
                f"({r['lifecycles_per_s']}/s, {r['in_flight']} in flight)",
            )
        )
        rows.append(("lifecycle latency", _fmt_lat(r["latency"]["lifecycle"])))
        rows.append(("Start latency", _fmt_lat(r["latency"]["Start"])))
        for k in (
            "server_fds",
            "supervisor_fds",
            "cgroup_dirs",
            "zombies",
            "job_dirs",
            "server_rss_kib",
            "supervisor_rss_kib",
        ):
            rows.append(
                (
                    f"{k} before -> after",
                    f"{r['before'][k]} -> {r['after'][k]} ({r['growth'].get(k, 0):+d})",
                )
            )
        rows.append(
            (
                "RSS slope KiB/1000 jobs srv/sup",
                _slash(
                    r["server_rss_slope_kib_per_1000_jobs"],
                    r["supervisor_rss_slope_kib_per_1000_jobs"],
                ),
            )
        )
    elif name == "slow":

        def trio(d: dict[str, float]) -> str:
            return f"{d['median']} [{d['min']}-{d['max']}]"

        for key, label in (
            ("job_write_ms", "job write ms"),
            ("job_run_ms", "job run ms (server)"),
            ("fast_done_ms", "5 fast followers done ms"),
        ):
            for kind, d in r[key].items():
                rows.append((f"{label}: {kind}", trio(d)))
        m = r["max_server_rss_kib"]
        rows.append(
            (
                "server RSS max MiB idle/w-o/with/lagging",
                _slash(
                    mib(r["server_rss_idle_kib"]),
                    mib(m["without_slow"]),
                    mib(m["with_slow"]),
                    mib(m["with_slow_while_lagging"]),
                ),
            )
        )
        slow_runs = [x for x in r["runs"] if x["slow"]]
        rows.append(
            (
                "slow follower received (bytes)",
                ", ".join(str(x["slow_bytes_received"]) for x in slow_runs),
            )
        )
        rows.append(
            (
                "server tx queue max while lagging",
                ", ".join(str(x["server_tx_queue_max_while_lagging"]) for x in slow_runs),
            )
        )
    elif name == "many":
        rows.append(("job", f"{r.get('job_seconds', 10)} lines, one a second"))
        for rnd in r.get("rounds", [r]):
            k = f"round {rnd.get('round', 1)}"
            p = rnd["peak"]
            errs = f"{sum(rnd['errors'].values())} {rnd['errors'] or ''} {rnd['fatal'] or ''}"
            rows += [
                (
                    f"{k}: followers exact / errors",
                    f"{rnd['followers_exact']}/{r['jobs']} / {errs}",
                ),
                (
                    f"{k}: time to start all",
                    f"{rnd['time_to_start_all_s']} s (Start {_fmt_lat(rnd['start_latency'])})",
                ),
                (f"{k}: all followers done after", f"{rnd['all_followers_done_s']} s"),
                (f"{k}: peak running jobs", str(p["running_jobs"])),
                (
                    f"{k}: peak RSS MiB server / supervisor",
                    _slash(mib(p["server_rss_kib"]), mib(p["supervisor_rss_kib"])),
                ),
                (
                    f"{k}: peak fds server / supervisor (limit)",
                    f"{p['server_fds']} / {p['supervisor_fds']} ({r['server_nofile_limit']})",
                ),
                (
                    f"{k}: server RSS MiB before / after",
                    _slash(mib(r["before"]["server_rss_kib"]), mib(rnd["after"]["server_rss_kib"])),
                ),
            ]
        t = r.get("server_rss_after_rounds_kib")
        if t:
            rows.append(
                (
                    "server RSS after each round MiB (slope/round)",
                    f"{_slash(*(mib(v) for v in t['values']))} ({mib(t['slope_per_round'])})",
                )
            )
    elif name in ("kill9", "sigterm"):
        for i, it in enumerate(r["iterations"], 1):
            rows.append(
                (
                    f"#{i} exact followers / jobs failed(3)",
                    f"{it['followers_exact']}/{it['jobs']} / "
                    f"{it['jobs_failed_3']}/{it['jobs']} {it['job_states']}",
                )
            )
            rows.append(
                (
                    f"#{i} server exit / restart / RPC outage s",
                    f"{it['server_exit_s']} / {it['server_restart_s']} / {it['rpc_outage_s']}",
                )
            )
            rows.append(
                (
                    f"#{i} jobs running at kill / while down",
                    f"{it['jobs_running_at_kill']} / {it['jobs_running_while_server_down']}",
                )
            )
            rows.append(
                (
                    f"#{i} interruptions",
                    "; ".join(f"{k} x{v}" for k, v in it["interruptions_seen"].items()) or "none",
                )
            )
    for who in ("server", "supervisor"):
        t = r.get(f"{who}_rss_after_trim_rounds_kib")
        if t:
            rows.append(
                (
                    f"{who} RSS after malloc_trim, each round MiB (slope)",
                    f"{_slash(*(mib(v) for v in t['values']))} ({mib(t['slope_per_round'])})",
                )
            )
        trim = r.get(f"{who}_malloc_trim")
        if trim:
            rows.append(
                (
                    f"{who} RSS MiB before / after malloc_trim(0)",
                    _slash(mib(trim["rss_before_trim_kib"]), mib(trim["rss_after_trim_kib"])),
                )
            )
    for check, ok in r.get("checks", {}).items():
        rows.append((("PASS " if ok else "FAIL ") + check, ""))
    cl = r.get("cleanup", {})
    if cl:
        rows.append(
            (
                "cleanup",
                f"server stop {cl.get('server_stop_s') and round(cl['server_stop_s'], 2)} s, "
                f"supervisor exited {cl.get('supervisor_exited')}, "
                f"cgroup dirs left {cl.get('cgroup_dirs_left')}",
            )
        )
    return rows


def print_table(results: dict[str, dict[str, Any]]) -> None:
    for name, r in results.items():
        src = r.get("src", {})
        print(
            f"\n== {name} ({r.get('elapsed_total_s', '?')} s; src {src.get('sha256', '?')}, "
            f"changed {src.get('newest_change', '?')}; load avg "
            f"{_load(r.get('loadavg_at_start'))} -> {_load(r.get('loadavg_at_end'))}) =="
        )
        rows = table_rows(name, r)
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k.ljust(width)}  {v}")


SCENARIOS = {
    "load": scenario_load,
    "lifecycles": scenario_lifecycles,
    "slow": scenario_slow,
    "many": scenario_many,
    "kill9": lambda a: scenario_restart(a, signal.SIGKILL),
    "sigterm": lambda a: scenario_restart(a, signal.SIGTERM),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized versions")
    p.add_argument("--load", action="store_true", help="1. mixed load of many clients")
    p.add_argument(
        "--lifecycles",
        nargs="?",
        const=-1,
        type=int,
        default=None,
        metavar="N",
        help="2. N start+wait+remove (default 10000)",
    )
    p.add_argument("--slow-follower", dest="slow", action="store_true", help="3. one slow follower")
    p.add_argument(
        "--many-followers",
        dest="many",
        nargs="?",
        const=-1,
        type=int,
        default=None,
        metavar="N",
        help="4. N followed jobs at once (default 1000)",
    )
    p.add_argument("--kill9", action="store_true", help="5. SIGKILL the server mid-stream")
    p.add_argument("--sigterm", action="store_true", help="6. SIGTERM the server mid-stream")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=None, help="load rounds (scenario 1; 3, quick 2)")
    p.add_argument(
        "--think", type=float, default=0.1, help="mean think time between a client's calls, s"
    )
    p.add_argument("--list-limit", type=int, default=100)
    p.add_argument(
        "--settle", type=float, default=10.0, help="idle seconds before the 'after' sample"
    )
    p.add_argument("--procs", type=int, default=4, help="client worker processes")
    p.add_argument("--concurrency", type=int, default=8, help="lifecycles in flight (scenario 2)")
    p.add_argument(
        "--start-conc", type=int, default=8, help="Starts in flight per worker process (scenario 4)"
    )
    p.add_argument(
        "--many-seconds", type=int, default=10, help="lines (= seconds) of each scenario-4 job"
    )
    p.add_argument(
        "--many-rounds", type=int, default=None, help="rounds of scenario 4 (3, quick 1)"
    )
    p.add_argument(
        "--trim-probe",
        action="store_true",
        help="after scenarios 1 and 4, call malloc_trim(0) in the server via gdb and "
        "report RSS again (tells allocator-kept memory from memory in use)",
    )
    p.add_argument("--slow-repeats", type=int, default=None, help="scenario 3 runs of each kind")
    p.add_argument(
        "--slow-hold", type=float, default=None, help="s the slow follower lags after the rest"
    )
    p.add_argument("--tag", help="store results under <scenario>-<tag> in load.json")
    p.add_argument(
        "--src",
        type=Path,
        help="source tree the servers run (its src/ directory, or a checkout containing "
        "one); default: this repository's",
    )
    p.add_argument("--restart-jobs", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3, help="kill/restart iterations (scenarios 5, 6)")
    p.add_argument(
        "--user", default="root", help="account of the admin credential (jobs run as it)"
    )
    args = p.parse_args()
    global SERVER_SRC, TAG
    TAG = args.tag or ""
    if args.src is not None:
        tree = args.src.resolve()
        SERVER_SRC = tree / "src" if (tree / "src" / "remo").is_dir() else tree
        if not (SERVER_SRC / "remo").is_dir():
            p.error(f"--src: no remo package in {SERVER_SRC}")
        # The console script's interpreter puts PYTHONPATH before the editable install.
        os.environ["PYTHONPATH"] = str(SERVER_SRC)
    chosen = [
        name
        for name, on in (
            ("load", args.load),
            ("lifecycles", args.lifecycles is not None),
            ("slow", args.slow),
            ("many", args.many is not None),
            ("kill9", args.kill9),
            ("sigterm", args.sigterm),
        )
        if on
    ] or list(SCENARIOS)
    args.lifecycles = 10000 if args.lifecycles in (None, -1) else args.lifecycles
    args.jobs = 1000 if args.many in (None, -1) else args.many
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.many_rounds is None:
        args.many_rounds = 1 if args.quick else 3
    nofile = h.raise_nofile()
    meta = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/load_bench.py", *sys.argv[1:]]),
        "quick": args.quick,
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "bench_nofile": nofile,
        "python": platform.python_version(),
    }
    with contextlib.suppress(Exception):
        import grpc

        from remo import __version__

        meta["grpcio"] = grpc.__version__
        meta["remo"] = __version__
    results: dict[str, dict[str, Any]] = {}
    t_all = time.monotonic()
    for name in chosen:
        t0 = time.monotonic()
        code_before = src_digest()
        loadavg_start = os.getloadavg()
        print(f"-- {name} ...", flush=True)
        try:
            res = SCENARIOS[name](args)
        except Exception as err:  # report and go on with the other scenarios
            import traceback

            traceback.print_exc()
            res = {
                "crashed": f"{type(err).__name__}: {err}",
                "checks": {"scenario ran to the end": False},
            }
        res["elapsed_total_s"] = round(time.monotonic() - t0, 1)
        res["loadavg_at_end"] = os.getloadavg()
        res["src"] = code_before
        if src_digest() != code_before:
            # src/ changed while the scenario ran: servers started at different
            # moments may have run different code.
            res["src_changed_during_run"] = True
            res.setdefault("checks", {})["src/ unchanged during the scenario"] = False
        res["quick"] = args.quick
        res["when"] = meta["when"]
        res["command"] = meta["command"]
        res["loadavg_at_start"] = loadavg_start
        key = name
        if name == "many" and args.many_seconds != 10:
            key = f"many-{args.many_seconds}s"  # a variant: keep the specified run's entry
        if args.tag:
            key = f"{key}-{args.tag}"
        if args.quick:
            key = f"{key}-quick"  # never replaces a full run's entry
        results[key] = res
        print(f"   {name}: {res['elapsed_total_s']} s", flush=True)
    meta["elapsed_total_s"] = round(time.monotonic() - t_all, 1)
    print_table(results)
    stored: dict[str, Any] = {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:  # runs may overlap (--tag)
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(RESULTS.read_text())
        stored.setdefault("scenarios", {}).update(results)
        stored["last_run"] = meta
        RESULTS.write_text(json.dumps(stored, indent=2, default=str) + "\n")
    print(f"\nresults: {RESULTS} (total {meta['elapsed_total_s']} s)")
    failed = [n for n, r in results.items() if not all(r.get("checks", {}).values())]
    if failed:
        print("FAILED checks in: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Chaos under load: faults while many clients follow jobs of every kind, then a full audit.

Run as root (jobs run under cgroups, in namespaces, as their owners' accounts; the state
dir is a tmpfs this script mounts)::

    .venv/bin/python bench/chaos.py --short              # CI-sized, one seed (~45 s)
    .venv/bin/python bench/chaos.py                      # default size (~3 min)
    .venv/bin/python bench/chaos.py --runs 3 --seed 7    # seeds 7, 8, 9, one after the other

What one run does (everything is drawn from ``--seed``: the jobs, their sizes and exit
codes, when each client stops its jobs, the fault schedule):

* **Server.** A real ``remo server`` (the ``.venv/bin/remo`` console script, as
  ``bench/load_bench.py`` runs it: ``--state-dir <tmp>/state --listen 127.0.0.1:<free
  port>``), its state dir a tmpfs mounted for the run (128 MiB short, 1 GiB default:
  room for every job's output) so that it can be filled. Credentials are issued from
  the server's CA as ``remo admin issue`` does: an admin for ``root`` and, where the
  account exists and can run the jobs' interpreter, an operator for ``nobody``, so
  that jobs have two owners.
* **Clients.** N clients (8 short, 20 default), each with its own two mTLS connections,
  start jobs one after the other for the workload phase (25 s short, 150 s default)
  and follow each live from byte 0 (about half of the jobs get a second follower on a
  shared connection). Every Start carries a ``request_id``; a Start that raises
  UNAVAILABLE is retried with the same id until it returns, or (15 % of them, at the
  first UNAVAILABLE) abandoned; one refused with RESOURCE_EXHAUSTED (full disk) is
  retried with the same id later. A follower whose stream breaks resumes from its
  byte offset, as ``bench/load_bench.py --kill9`` does. A job that prints until it is
  stopped is stopped (with its grace period) once it has printed, a few seconds later.
  Jobs of every kind, each printing a sequence drawn from its own tag (so what it
  printed can be recomputed byte for byte):
  ``text`` (python lines, then exit code c), ``sh-text`` (sh ``echo`` lines, exit c),
  ``binary`` (seeded bytes of every value, in pieces with pauses), ``bulk`` (2-8 MiB
  as fast as it can), ``selfkill`` (python lines, then ``os.kill(getpid(), SIGKILL /
  SEGV / ABRT / TERM)``), ``sh-selfkill`` (``kill -9 $$``), ``termignore`` (ignores
  SIGTERM: stopped with a grace, must end ``stopped`` by SIGKILL), ``stopterm``
  (default SIGTERM: ``stopped`` by SIGTERM), ``sh-trap`` (traps TERM, prints a last
  line and exits 7: ``stopped`` with exit code 7). Before printing, every job creates
  a marker file named by its request id outside the state dir, so the bench knows
  how many processes a request id really started, recorded or not.
* **Faults**, on a seeded schedule during the workload: SIGKILL and SIGTERM of the
  server (the process this script started, by its Popen handle), restarted at once on
  the same port and state dir (in the background: the next faults keep their times);
  SIGKILL of the supervisor (the holder of the state dir's ``supervisor.lock``, its
  command line checked, signalled through a pidfd), once while the server is down and
  at least once while a job's stop is in its grace period (chosen from ``jobs.db``:
  ``stop_requested`` with ``kill_at`` ahead); the state disk filled to the last byte
  for 8 s (1 window short, 3 default), with a supervisor kill and then a server kill
  early in the first window.
* **Audit**, after the clients are done: every job the state dir knows (``jobs.db``,
  read-only) and every Start the clients made are reconciled: for each request id at
  most one job, exactly one when a Start returned (the same id each time), no job
  nobody asked for, at most one marker (a job that ran without being recorded would
  leave a second), and ``List`` agrees per owner. For every job: the stored output
  (``jobs/<owner>/<n>/{stdout,stderr,records}`` read from the disk, the streams joined
  in their records' order), ``Output`` from offset 0 and every
  follower's bytes are the same; the stored output is exactly what the job printed,
  except that output dropped on the full disk must be counted in the status
  (``output_dropped_bytes``, ``output_dropped_disk_full``), the job's life must
  overlap a disk-full window, and what is stored must be what was printed minus
  exactly that many bytes (whole runs cut out, order kept), followed by remo's notice
  (which a still-full disk may cut short). Jobs whose length is not known in advance
  (the stopped ones) print whole lines, so printed = stored + dropped must end at a
  line boundary. State, exit code and signal must be what the job did (never
  ``lost``); a Stop's reply must be the final status. Then the server gets SIGTERM
  and the supervisor must leave by itself: no process of the run may be left (every
  supervisor, spawner, init and job seen by a sampler every 0.5 s, by pid and start
  time; every process in a cgroup of this instance), no zombie of theirs, no cgroup
  directory of this instance; the server's and supervisor's descriptor counts, idle
  after the same small exercise (a job of each owner started, followed, listed and
  removed), are not above those after the warm-up; the register socket is gone; the
  tmpfs unmounts.

Output: a table of figures per run (jobs by kind, followers, bytes checked, faults of
each kind, disk-full windows, Starts that raised, mismatches by kind with every
mismatch's details) and ``bench/results/chaos.json`` (``--results``), one entry per
mode and seed, with the command, load average and a digest of the ``remo`` package
that ran (``src/remo``, or what ``PYTHONPATH`` puts first). The
server log and the supervisor log of each run are kept next to it
(``chaos-<mode>-seed<N>-{server,supervisor}.log``). Exit status 1 when any run found
a mismatch. Loopback only; every process it signals is its own child or one it
identified by this run's state dir. docs/RELIABILITY.md ("Chaos under load") has
results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import errno
import functools
import glob
import hashlib
import importlib
import json
import os
import platform
import pwd
import random
import select
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

# (before grpc is imported: its core logs connection events at INFO otherwise)
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc

from remo.core import output_format

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: bench/_harness.py (imported by name, so that its own typing stays its own business).
h: Any = importlib.import_module("_harness")

from remo.api.jobs import duration, seconds_of  # noqa: E402
from remo.v1 import jobs_pb2 as pb  # noqa: E402
from remo.v1 import jobs_pb2_grpc as pb_grpc  # noqa: E402

RESULTS_DIR = HERE / "results"
RESULTS = RESULTS_DIR / "chaos.json"
#: A server that does not listen this long after it was started counts as one that
#: does not start (generous: the machine may be shared and loaded).
START_TIMEOUT = 180.0


# -- sizes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    clients: int
    workload_s: float
    kill9: int
    sigterm: int
    supervisor_kills: int
    disk_windows: int
    disk_s: float
    tmpfs_mib: int
    bulk_mib: tuple[int, int]
    #: How long, after the workload, the clients may take to finish their last jobs.
    drain_s: float


SHORT = Size(
    clients=8,
    workload_s=25.0,
    kill9=2,
    sigterm=1,
    supervisor_kills=2,
    disk_windows=1,
    disk_s=8.0,
    tmpfs_mib=128,
    bulk_mib=(2, 4),
    drain_s=45.0,
)
LONG = Size(
    clients=20,
    workload_s=150.0,
    kill9=6,
    sigterm=3,
    supervisor_kills=6,
    disk_windows=3,
    disk_s=8.0,
    tmpfs_mib=1024,
    bulk_mib=(2, 8),
    drain_s=90.0,
)


# -- the jobs: what they print, how they end ---------------------------------------------

#: What a job prints, as functions of its tag. The jobs run this very source, and the
#: bench runs it too to know what they printed.
GEN_SOURCE = r'''
import hashlib


def line(tag, i):
    """Line i of a python job: unique, so that a cut can be found again."""
    digest = hashlib.sha256(b"%s/%d" % (tag.encode(), i)).hexdigest()[:16]
    return b"%s %07d %s\n" % (tag.encode(), i, digest.encode())


def sh_line(tag, i):
    """Line i of an sh job (what `echo "$TAG $i"` prints)."""
    return b"%s %d\n" % (tag.encode(), i)


def blob(tag, size):
    """``size`` bytes of every value, drawn from the tag."""
    return hashlib.shake_256(tag.encode()).digest(size)
'''

JOB_MAIN = r"""
import os, resource, signal, sys, time


def put(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def main():
    kind, marker, tag = sys.argv[1:4]
    p = sys.argv[4:]
    if kind == "termignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The marker says that this process ran (and, for stops, that it is ready for them).
    os.close(os.open("%s.%d.%s" % (marker, time.time_ns(), os.urandom(4).hex()),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    if kind == "text":
        n, pause, code = int(p[0]), float(p[1]), int(p[2])
        for i in range(n):
            put(line(tag, i))
            time.sleep(pause)
        os._exit(code)
    if kind in ("binary", "bulk"):
        size, piece, pause = int(p[0]), int(p[1]), float(p[2])
        data = blob(tag, size)
        for at in range(0, size, piece):
            put(data[at:at + piece])
            if pause:
                time.sleep(pause)
        os._exit(0)
    if kind == "selfkill":
        n, pause, sig = int(p[0]), float(p[1]), int(p[2])
        for i in range(n):
            put(line(tag, i))
            time.sleep(pause)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), sig)
        time.sleep(30)
        os._exit(99)
    if kind in ("termignore", "stopterm"):
        pause = float(p[0])
        i = 0
        while True:
            put(line(tag, i))
            i += 1
            time.sleep(pause)
    os._exit(100)


main()
"""

JOB_PROGRAM = GEN_SOURCE + JOB_MAIN

_GEN: dict[str, Any] = {}
exec(compile(GEN_SOURCE, "<chaos job output>", "exec"), _GEN)  # our own source


def line(tag: str, i: int) -> bytes:
    return bytes(_GEN["line"](tag, i))


def sh_line(tag: str, i: int) -> bytes:
    return bytes(_GEN["sh_line"](tag, i))


def blob(tag: str, size: int) -> bytes:
    return bytes(_GEN["blob"](tag, size))


SH_TEXT = (
    'mktemp "$0.XXXXXXXX" >/dev/null; i=0; while [ $i -lt {n} ]; do echo "{tag} $i"; '
    "i=$((i+1)); sleep {pause}; done; exit {code}"
)
SH_SELFKILL = (
    'mktemp "$0.XXXXXXXX" >/dev/null; i=0; while [ $i -lt {n} ]; do echo "{tag} $i"; '
    "i=$((i+1)); sleep {pause}; done; kill -9 $$"
)
SH_TRAP = (
    "trap 'echo caught TERM; exit 7' TERM; mktemp \"$0.XXXXXXXX\" >/dev/null; i=0; "
    'while :; do echo "{tag} $i"; i=$((i+1)); sleep {pause}; done'
)
#: (sh's "Terminated" goes to stderr, "caught TERM" to stdout: written microseconds
#: apart, the init may read them in either order, see docs/CLI.md "Output streams")
TRAP_TAILS = (b"caught TERM\n", b"Terminated\ncaught TERM\n", b"caught TERM\nTerminated\n")

#: Kinds and how often clients pick them.
KINDS: dict[str, float] = {
    "text": 3.0,
    "sh-text": 2.0,
    "binary": 2.0,
    "bulk": 1.0,
    "selfkill": 1.5,
    "sh-selfkill": 0.7,
    "termignore": 1.5,
    "stopterm": 1.2,
    "sh-trap": 1.2,
}
STOPPED_KINDS = frozenset({"termignore", "stopterm", "sh-trap"})
SELF_SIGNALS = (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM)
EXIT_CODES = (0, 0, 0, 1, 3, 42, 255)


@dataclass(frozen=True)
class Expected:
    state: str
    exit_code: int | None = None
    signal: int | None = None

    def __str__(self) -> str:
        how = f"exit {self.exit_code}" if self.exit_code is not None else f"signal {self.signal}"
        return f"{self.state} ({how})"


@dataclass
class JobPlan:
    """One Start a client makes: the job, what it prints, how it must end."""

    kind: str
    owner: str
    request_id: str
    tag: str
    argv: list[str]
    end: Expected
    #: Finite jobs: lines they print, or bytes (binary, bulk).
    count: int = 0
    #: Stopped jobs: seconds after the job is ready, and the stop's grace period.
    stop_after: float = 0.0
    grace: float = 0.0

    def printed(self) -> bytes:
        """Everything a finite job prints."""
        if self.kind in ("text", "selfkill"):
            return b"".join(line(self.tag, i) for i in range(self.count))
        if self.kind in ("binary", "bulk"):
            return blob(self.tag, self.count)
        if self.kind in ("sh-text", "sh-selfkill"):
            return b"".join(sh_line(self.tag, i) for i in range(self.count))
        raise ValueError(f"{self.kind} jobs print until they are stopped")

    def tails(self) -> tuple[bytes, ...]:
        """What a stopped job may print last: sh prints "Terminated" when TERM ends the
        ``sleep`` it waits for, not when it arrives between commands."""
        return TRAP_TAILS if self.kind == "sh-trap" else (b"",)

    def stream(self, length: int, tail: bytes) -> bytes | None:
        """A stopped job's output if it printed ``length`` bytes in all: whole lines of
        its endless sequence, then ``tail``; None if no number of lines fits."""
        make = sh_line if self.kind == "sh-trap" else line
        want = length - len(tail)
        out = bytearray()
        i = 0
        while len(out) < want:
            out += make(self.tag, i)
            i += 1
        if len(out) != want:
            return None
        return bytes(out) + tail


def plan_job(
    rng: random.Random,
    kind: str,
    owner: str,
    request_id: str,
    markers: Path,
    python: str,
    size: Size,
) -> JobPlan:
    tag = f"t{rng.getrandbits(40):010x}"
    marker = str(markers / request_id)
    py = [python, "-I", "-S", "-c", JOB_PROGRAM]
    if kind in ("text", "selfkill"):
        n, pause = rng.randint(5, 120), rng.uniform(0.01, 0.06)
        if kind == "text":
            code = rng.choice(EXIT_CODES)
            end = Expected("succeeded" if code == 0 else "failed", exit_code=code)
            last = code
        else:
            sig = rng.choice(SELF_SIGNALS)
            end, last = Expected("killed", signal=sig), int(sig)
        argv = [*py, kind, marker, tag, str(n), f"{pause:.3f}", str(last)]
        return JobPlan(kind, owner, request_id, tag, argv, end, n)
    if kind in ("binary", "bulk"):
        if kind == "binary":
            total = rng.randint(16 << 10, 512 << 10)
            piece, pause = rng.randint(1 << 10, 32 << 10), rng.uniform(0.005, 0.03)
        else:
            total = rng.randint(size.bulk_mib[0] << 20, size.bulk_mib[1] << 20)
            piece, pause = 64 << 10, 0.0
        argv = [*py, kind, marker, tag, str(total), str(piece), f"{pause:.3f}"]
        return JobPlan(kind, owner, request_id, tag, argv, Expected("succeeded", 0), total)
    if kind in ("sh-text", "sh-selfkill"):
        n, nap = rng.randint(10, 80), rng.choice(("0.02", "0.05", "0.1"))
        code = rng.choice(EXIT_CODES)
        script = (SH_TEXT if kind == "sh-text" else SH_SELFKILL).format(
            n=n, tag=tag, pause=nap, code=code
        )
        end = (
            Expected("succeeded" if code == 0 else "failed", exit_code=code)
            if kind == "sh-text"
            else Expected("killed", signal=signal.SIGKILL)
        )
        return JobPlan(kind, owner, request_id, tag, ["sh", "-c", script, marker], end, n)
    # the stopped kinds: they print until a client stops them
    stop_after = rng.uniform(0.5, 6.0)
    if kind in ("termignore", "stopterm"):
        pause = rng.uniform(0.02, 0.08)
        argv = [*py, kind, marker, tag, f"{pause:.3f}"]
        if kind == "termignore":
            end, grace = Expected("stopped", signal=signal.SIGKILL), rng.uniform(1.5, 4.0)
        else:
            end, grace = Expected("stopped", signal=signal.SIGTERM), rng.uniform(2.0, 5.0)
    else:
        script = SH_TRAP.format(tag=tag, pause=rng.choice(("0.02", "0.05", "0.1")))
        argv = ["sh", "-c", script, marker]
        end, grace = Expected("stopped", exit_code=7), rng.uniform(2.0, 5.0)
    return JobPlan(kind, owner, request_id, tag, argv, end, 0, stop_after, grace)


# -- checking stored output ----------------------------------------------------------------


def common_prefix(a: memoryview, i: int, b: memoryview, j: int) -> int:
    """Length of the common prefix of ``a[i:]`` and ``b[j:]``."""
    limit = min(len(a) - i, len(b) - j)
    n = 0
    while n < limit:
        step = min(1 << 16, limit - n)
        if a[i + n : i + n + step] == b[j + n : j + n + step]:
            n += step
            continue
        lo, hi = 0, step  # a prefix of lo bytes matches, one of hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if a[i + n : i + n + mid] == b[j + n : j + n + mid]:
                lo = mid
            else:
                hi = mid
        return n + lo
    return n


def cut_runs(body: bytes, printed: bytes) -> list[tuple[int, int]] | str:
    """The runs ``(offset in printed, length)`` to cut out of ``printed`` to get ``body``
    (order kept), or why there are none. The jobs' output never repeats 64 bytes, so
    where ``body`` goes on after a cut is found unambiguously."""
    a, b = memoryview(body), memoryview(printed)
    i = j = 0
    runs: list[tuple[int, int]] = []
    while i < len(a):
        n = common_prefix(a, i, b, j)
        i += n
        j += n
        if i >= len(a):
            break
        probe = bytes(a[i : i + 64])
        k = printed.find(probe, j + 1)
        if k < 0:
            return (
                f"stored byte {i} ({bytes(a[i : i + 24])!r}) is nowhere after byte {j} of "
                f"what the job printed ({bytes(b[j : j + 24])!r} there)"
            )
        runs.append((j, k - j))
        j = k
    if j < len(b):
        runs.append((j, len(b) - j))
    return runs


def stored_output(job_dir: Path) -> bytes:
    """The job's output as stored, both streams in the order the records give
    (remo.core.output_format), read here independently of remo's reader."""
    records = (job_dir / output_format.RECORDS_FILE).read_bytes()
    streams = {
        output_format.STDOUT: (job_dir / output_format.STDOUT_FILE).read_bytes(),
        output_format.STDERR: (job_dir / output_format.STDERR_FILE).read_bytes(),
    }
    merged = bytearray()
    for record in output_format.unpack_many(records):
        data = streams[record.stream][record.stream_offset : record.stream_offset + record.length]
        if len(data) != record.length:
            raise OSError(f"record at {record.offset} runs past the end of its stream's file")
        merged += data
    return bytes(merged)


def notice(dropped: int) -> bytes:
    """What the init appends when output was dropped on a full disk
    (remo.supervisor.init.Relay.finish)."""
    return f"\n[remo: the server's disk was full; {dropped} bytes were dropped]\n".encode()


@dataclass
class Verdict:
    problem: str | None = None
    #: bytes the job printed (as far as the stored output tells)
    printed: int = 0
    #: runs of bytes cut out of what it printed
    runs: int = 0
    #: bytes of remo's notice found after the output
    notice: int = 0


def check_stored(plan: JobPlan, stored: bytes, dropped: int) -> Verdict:
    """Whether ``stored`` is what the job printed, less exactly ``dropped`` bytes (whole
    runs cut out, the order kept), and then as much of remo's notice of the drop as was
    written. Every way of reading the end of ``stored`` is tried (the notice may be cut
    short; an sh job's last words may or may not include sh's "Terminated")."""
    tail = notice(dropped) if dropped else b""
    first: Verdict | None = None
    finite = None if plan.kind in STOPPED_KINDS else plan.printed()
    for k in range(len(tail), -1, -1):
        if not stored.endswith(tail[:k]):
            continue
        body = stored[: len(stored) - k]
        length = len(body) + dropped
        if finite is not None:
            candidates: list[bytes] = [finite]
        else:
            candidates = [c for c in (plan.stream(length, t) for t in plan.tails()) if c]
        if not candidates and first is None:
            first = Verdict(
                f"stored {len(body)} + dropped {dropped} bytes is not what the job can print "
                f"(whole lines and its last words; the stored output ends {body[-60:]!r})"
            )
        for printed in candidates:
            verdict = compare(body, printed, dropped)
            if verdict.problem is None:
                verdict.notice = k
                return verdict
            first = first or verdict
    assert first is not None
    return first


def compare(body: bytes, printed: bytes, dropped: int) -> Verdict:
    if len(printed) != len(body) + dropped:
        return Verdict(
            f"the job printed {len(printed)} bytes; stored {len(body)} + dropped {dropped} = "
            f"{len(body) + dropped}"
        )
    if not dropped:
        if body != printed:
            at = common_prefix(memoryview(body), 0, memoryview(printed), 0)
            return Verdict(
                f"stored {len(body)} bytes as printed, but they differ from byte {at}: "
                f"{body[at : at + 24]!r}, printed {printed[at : at + 24]!r}"
            )
        return Verdict(printed=len(printed))
    runs = cut_runs(body, printed)
    if isinstance(runs, str):
        return Verdict(runs)
    return Verdict(printed=len(printed), runs=len(runs))


# -- faults ---------------------------------------------------------------------------------


@dataclass
class Event:
    at: float
    kind: str  # kill9 | sigterm | supervisor | disk
    #: supervisor: wait for a stop in its grace period; server kills: also kill the
    #: supervisor while the server is down.
    aim: bool = False
    report: dict[str, Any] = field(default_factory=dict)


def schedule(rng: random.Random, size: Size) -> list[Event]:
    """The faults of one run: disk windows first, a server kill and a supervisor kill
    inside one of them, the rest spread over the workload."""
    span = size.workload_s
    events: list[Event] = []
    windows: list[float] = []
    slot = (span - 6.0) / size.disk_windows
    for k in range(size.disk_windows):
        lo = 3.0 + k * slot
        windows.append(rng.uniform(lo, max(lo, lo + slot - size.disk_s - 1.0)))
    for w in windows:
        events.append(Event(w, "disk"))
    # Inside the first window: a supervisor kill (the server starts a new one, on the
    # full disk), then a server kill (its restart meets the full disk).
    first = windows[0]
    events.append(Event(first + size.disk_s * 0.15, "supervisor"))
    events.append(Event(first + size.disk_s * 0.3, rng.choice(("kill9", "sigterm"))))
    kinds = ["kill9"] * size.kill9 + ["sigterm"] * size.sigterm
    kinds += ["supervisor"] * size.supervisor_kills
    kinds.remove(events[-1].kind)
    kinds.remove("supervisor")
    rng.shuffle(kinds)
    for kind in kinds:
        events.append(Event(rng.uniform(2.0, span - 2.0), kind))
    sup = [e for e in events if e.kind == "supervisor" and e.at > first + size.disk_s]
    if sup:
        sup[0].aim = True  # during a stop's grace period
    kills = [e for e in events if e.kind in ("kill9", "sigterm") and e.at > first + size.disk_s]
    if kills:
        rng.choice(kills).aim = True  # the supervisor too, while the server is down
    events.sort(key=lambda e: e.at)
    return events


# -- /proc --------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, str, int, str] | None:
    """(ppid, state, start time in clock ticks, comm) of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19]), comm


def all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def supervisor_of(pid: int, state: Path) -> bool:
    """Whether ``pid`` is ``python -m remo.supervisor --state-dir <state>``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    if "remo.supervisor" not in argv or "--state-dir" not in argv:
        return False
    i = argv.index("--state-dir")
    return i + 1 < len(argv) and argv[i + 1] == str(state)


def in_our_cgroup(pid: int, tag: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/remo/{tag}-" in f.read()
    except OSError:
        return False


def cgroup_dirs(tag: str) -> list[str]:
    """Every cgroup directory of this instance (``**/remo/<tag>-*``), waiting inits too."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(top) == "remo":
            found += [os.path.join(top, d) for d in dirs if d.startswith(f"{tag}-")]
            dirs.clear()
        elif top.count("/") > 8:
            dirs.clear()
    return sorted(found)


def signal_pid(pid: int, start: int | None, sig: int, check: Callable[[int], bool]) -> bool:
    """Signal ``pid`` through a pidfd, once it is pinned and still the process we mean
    (same start time, ``check`` passes). False if it is not (any more)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        st = proc_stat(pid)
        if st is None or (start is not None and st[2] != start) or not check(pid):
            return False
        signal.pidfd_send_signal(fd, sig)
        if sig == signal.SIGKILL:
            select.select([fd], [], [], 10)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class Tracker:
    """Remembers every process of the run: each supervisor of the state dir and all its
    descendants (spawner, helpers, inits, jobs), sampled every ``interval`` seconds."""

    def __init__(self, state: Path, interval: float = 0.5) -> None:
        self.state = state
        self.interval = interval
        self.seen: dict[tuple[int, int], str] = {}
        self.supervisors: dict[tuple[int, int], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        table: dict[int, tuple[int, str, int, str]] = {}
        for pid in all_pids():
            st = proc_stat(pid)
            if st is not None:
                table[pid] = st
        kids: dict[int, list[int]] = {}
        for pid, st in table.items():
            kids.setdefault(st[0], []).append(pid)
        roots = [
            pid for pid in table if "python" in table[pid][3] and supervisor_of(pid, self.state)
        ]
        for root in roots:
            key = (root, table[root][2])
            self.supervisors.setdefault(key, time.time())
            self.seen[key] = "supervisor"
            todo = list(kids.get(root, []))
            while todo:
                pid = todo.pop()
                if pid in table:
                    self.seen.setdefault((pid, table[pid][2]), table[pid][3])
                    todo.extend(kids.get(pid, []))

    def current_supervisor(self) -> int | None:
        """The supervisor of the state dir: the holder of its lock (``supervisor.lock``,
        flock), not a launcher of one that is about to fork and leave."""
        try:
            lock = os.stat(self.state / "supervisor.lock")
        except OSError:
            return None
        with contextlib.suppress(OSError), open("/proc/locks") as f:
            for text in f:
                parts = text.split()
                if len(parts) < 6 or "->" in parts or parts[1] != "FLOCK":
                    continue
                major, minor, inode = parts[5].split(":")
                dev = (int(major, 16), int(minor, 16))
                if int(inode) == lock.st_ino and dev == (
                    os.major(lock.st_dev),
                    os.minor(lock.st_dev),
                ):
                    pid = int(parts[4])
                    return pid if supervisor_of(pid, self.state) else None
        return None

    def __enter__(self) -> Tracker:
        def run() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    self.sample()
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, name="tracker", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def alive(self) -> list[tuple[int, int, str, str]]:
        """Tracked processes that still exist: (pid, start, comm, state letter)."""
        out = []
        for (pid, start), comm in self.seen.items():
            st = proc_stat(pid)
            if st is not None and st[2] == start:
                out.append((pid, start, comm, st[1]))
        return out


# -- one run ------------------------------------------------------------------------------


@dataclass
class Follow:
    """What one follower received."""

    length: int = 0
    digest: str = ""
    done: bool = False
    resumes: int = 0
    interruptions: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


@dataclass
class Record:
    """One Start and the job it led to."""

    plan: JobPlan
    client: int
    job_id: str = ""
    pid: int = 0
    attempts: list[str] = field(default_factory=list)
    abandoned: bool = False
    #: the Start that returned was a retry, and the job it returned had started before
    #: that retry was sent (the first attempt's job)
    found_by_retry: bool = False
    follows: list[Follow] = field(default_factory=list)
    stop_reply: Any = None
    stop_attempts: int = 0
    #: when the first Stop was sent (unix time)
    stop_sent: float = 0.0
    final: Any = None


class Mismatches:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, kind: str, what: str, detail: str) -> None:
        self.items.append({"kind": kind, "what": what, "detail": detail})
        print(f"   MISMATCH [{kind}] {what}: {detail}", flush=True)

    def counts(self) -> dict[str, int]:
        return dict(Counter(m["kind"] for m in self.items))


def job_python() -> tuple[str, bool]:
    """An interpreter for python jobs, and whether every account can run it."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK) and _world_executable(candidate):
            return candidate, True
    return os.path.realpath(sys.executable), _world_executable(os.path.realpath(sys.executable))


def _world_reachable(path: Path) -> bool:
    """Whether every account can reach ``path`` (search permission on it and above)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _world_executable(path: str) -> bool:
    real = Path(os.path.realpath(path))
    if not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)


def issue(state: Path, address: str, out: Path, user: str, role: str) -> Path:
    """A credential file, as ``remo admin issue`` writes one."""
    from remo.pki import package
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state)
    issued = ca.issue_client(user, role, validity=timedelta(days=1))
    registry = Registry.open(state, ca.certificate)
    try:
        registry.record(issued.certificate)
    finally:
        registry.close()
    package.save(out, [address], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return out


def stub_for(channel: Any) -> Any:
    return pb_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]


def code_of(err: grpc.aio.AioRpcError) -> str:
    return str(err.code().name)


class Run:
    """One seed: a server on a tmpfs, clients, faults, the audit, the clean-up."""

    def __init__(
        self, seed: int, size: Size, mode: str, base: Path | None, keep: bool, logs: Path
    ) -> None:
        #: where the server's and supervisor's logs are kept (next to the results)
        self.logs = logs
        self.seed = seed
        self.size = size
        self.mode = mode
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"remo-chaos-{seed}-", dir=base)).resolve()
        os.chmod(self.tmp, 0o711)  # jobs of other accounts reach their marker directory
        self.state = self.tmp / "state"
        self.markers = self.tmp / "markers"
        if not _world_reachable(self.tmp):
            # (under a private parent, such as pytest's): where jobs of any account reach
            self.markers = Path(tempfile.mkdtemp(prefix=f"remo-chaos-{seed}-markers-"))
        else:
            self.markers.mkdir()
        os.chmod(self.markers, 0o1777)
        self.port = h.free_port()
        self.name = f"chaos-{mode}-seed{seed}"
        self.log = self.tmp / "server.log"
        self.server: Any = h.ServerProcess(self.state, self.port, self.log)
        self.mm = Mismatches()
        self.records: list[Record] = []
        self.events: list[Event] = []
        self.windows: list[tuple[float, float]] = []  # unix times the disk was full
        self.tracker = Tracker(self.state)
        self.fig: Counter[str] = Counter()
        self.starts_raised: Counter[str] = Counter()
        self.restart_s: list[float] = []
        self.mounted = False
        self.tag = ""
        self.owners: list[tuple[str, Path]] = []
        self.python, self.shared_python = job_python()
        self.baseline: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.disk_full = False
        self.server_down = False
        self.t0 = time.monotonic()
        #: when the workload began and ends (monotonic)
        self.t0w = 0.0
        self.t0w_wall = 0.0
        self.workload_end = 0.0
        self._disk_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._kind_cycle = list(KINDS)

    def say(self, text: str) -> None:
        print(f"   [{time.monotonic() - (self.t0w or self.t0):6.1f} s] {text}", flush=True)

    # -- set-up -------------------------------------------------------------------------

    def setup(self) -> None:
        from remo.core.paths import StatePaths
        from remo.supervisor.service import instance_tag

        self.state.mkdir()
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size.tmpfs_mib}m",
                "remo-chaos",
                str(self.state),
            ],
            check=True,
        )
        self.mounted = True
        self.tag = instance_tag(StatePaths(self.state))
        self.baseline["cgroup_dirs"] = cgroup_dirs(self.tag)
        self.restart_s.append(self.server.start())
        admin = issue(self.state, self.server.address, self.tmp / "root.remo", "root", "admin")
        self.owners.append(("root", admin))
        self.admin = admin
        try:
            pwd.getpwnam("nobody")
            if self.shared_python and _world_reachable(self.markers):
                cred = issue(
                    self.state, self.server.address, self.tmp / "nobody.remo", "nobody", "operator"
                )
                self.owners.append(("nobody", cred))
        except KeyError:
            pass

    async def exercise(self) -> None:
        """One job of each owner, started, followed, listed and removed, on connections
        of its own: before the baseline (a server and supervisor that have done each
        thing once) and again before the final counts, so that both count the same."""
        for owner, cred in self.owners:
            channel = h.open_channel(str(cred))
            stub = stub_for(channel)
            started = await stub.Start(pb.StartRequest(argv=["sh", "-c", "echo warm"]), timeout=60)
            job = f"{owner}/{started.job.id.rpartition('/')[2]}"
            call = stub.Output(pb.OutputRequest(id=job, follow=True), timeout=60)
            got = b"".join(await _collect(call))
            if got != b"warm\n":
                self.mm.add("output", f"warm-up job {job}", f"got {got!r}")
            await stub.GetJob(pb.GetJobRequest(id=job), timeout=30)
            await stub.ListJobs(pb.ListJobsRequest(page_size=10), timeout=30)
            await stub.Remove(pb.RemoveRequest(id=job), timeout=30)
            await channel.close()

    async def warm_up(self) -> None:
        await self.exercise()
        self.baseline.update(await self.idle_fds(settle=True))

    async def idle_fds(self, settle: bool) -> dict[str, Any]:
        """The server's and supervisor's descriptors once their counts stop changing:
        the counts, and what they are (for the report of a difference)."""
        last: tuple[int | None, int | None] = (None, None)
        stable = 0
        deadline = time.monotonic() + (15 if settle else 0)
        while True:
            now = (h.fd_count(self.server.pid), h.fd_count(self.tracker.current_supervisor()))
            stable = stable + 1 if now == last else 0
            last = now
            if stable >= 4 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        return {
            "server_fds": last[0],
            "supervisor_fds": last[1],
            "server_fd_kinds": _fd_kinds(self.server.pid),
            "supervisor_fd_kinds": _fd_kinds(self.tracker.current_supervisor()),
        }

    # -- the clients --------------------------------------------------------------------

    def pick_kind(self, rng: random.Random) -> str:
        if self._kind_cycle:  # every kind at least once, early
            return self._kind_cycle.pop(0)
        return rng.choices(list(KINDS), weights=list(KINDS.values()))[0]

    async def client(self, index: int, owner: str, cred: Path, watchers: list[Any]) -> None:
        rng = random.Random(f"{self.seed}/client/{index}")
        control = h.open_channel(str(cred), unique=index * 10 + 1)
        follow_ch = h.open_channel(str(cred), unique=index * 10 + 2)
        stub, fstub = stub_for(control), stub_for(follow_ch)
        await asyncio.sleep(rng.uniform(0, 1.5))
        k = 0
        try:
            while time.monotonic() < self.workload_end:
                k += 1
                rid = f"s{self.seed}-c{index}-{k}-{rng.getrandbits(48):012x}"
                plan = plan_job(
                    rng, self.pick_kind(rng), owner, rid, self.markers, self.python, self.size
                )
                record = Record(plan, index)
                self.records.append(record)
                self.fig[f"planned {plan.kind}"] += 1
                try:
                    await self.one_job(stub, fstub, record, rng, watchers)
                except grpc.aio.AioRpcError as err:
                    self.mm.add(
                        "client",
                        record.job_id or plan.request_id,
                        f"{plan.kind}: {code_of(err)}: {err.details()}",
                    )
        finally:
            await control.close()
            await follow_ch.close()

    async def one_job(
        self, stub: Any, fstub: Any, record: Record, rng: random.Random, watchers: list[Any]
    ) -> None:
        """Start, follow (once or twice), stop if it is a stopped kind, last Status."""
        if not await self.start(stub, record, rng):
            return
        tasks = [asyncio.create_task(self.follow(fstub, record, Follow()))]
        if rng.random() < 0.5 and watchers:
            watcher = stub_for(rng.choice(watchers))
            await asyncio.sleep(rng.uniform(0, 0.5))
            tasks.append(asyncio.create_task(self.follow(watcher, record, Follow())))
        if record.plan.kind in STOPPED_KINDS:
            tasks.append(asyncio.create_task(self.stop_later(stub, record)))
        await asyncio.gather(*tasks)
        record.final = (
            await self.retrying(
                lambda: stub.GetJob(pb.GetJobRequest(id=record.job_id), timeout=10), "Status"
            )
        ).job

    async def retrying(
        self, make: Callable[[], Awaitable[Any]], what: str, limit: float = 120.0
    ) -> Any:
        """A call that is safe to repeat, repeated while the connection breaks."""
        delay, deadline = 0.05, time.monotonic() + limit
        while True:
            try:
                return await make()
            except grpc.aio.AioRpcError as err:
                retry = h.retryable(err) or err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                if not retry or time.monotonic() > deadline:
                    raise
                self.fig[f"{what} retried"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def start(self, stub: Any, record: Record, rng: random.Random) -> bool:
        """Start the plan's job, with its request id, retried as a careful client would."""
        plan = record.plan
        request = pb.StartRequest(argv=plan.argv, request_id=plan.request_id)
        delay = 0.05
        while True:
            sent = time.time()
            try:
                reply = await stub.Start(request, timeout=60)
            except grpc.aio.AioRpcError as err:
                code = code_of(err)
                record.attempts.append(code)
                self.starts_raised[code] += 1
                if code == "RESOURCE_EXHAUSTED":  # the disk is full: later, same id
                    if time.monotonic() > self.workload_end:
                        record.abandoned = True
                        return False
                    await asyncio.sleep(rng.uniform(0.3, 1.0))
                    continue
                if h.retryable(err) or code == "DEADLINE_EXCEEDED":
                    first = sum(1 for a in record.attempts if a != "RESOURCE_EXHAUSTED") == 1
                    if first and rng.random() < 0.15:
                        record.abandoned = True  # the audit finds out whether it ran
                        return False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                self.mm.add("start", plan.request_id, f"{plan.kind}: {code}: {err.details()}")
                return False
            record.attempts.append("OK")
            job = reply.job
            record.job_id = f"{plan.owner}/{job.id.rpartition('/')[2]}"
            record.pid = job.pid
            if len(record.attempts) > 1 and seconds_of(job.start_time) < sent:
                record.found_by_retry = True
            return True

    async def follow(self, stub: Any, record: Record, out: Follow) -> None:
        """Follow from byte 0 to the end, resuming at the byte offset after a break."""
        record.follows.append(out)
        digest = hashlib.sha256()
        delay = 0.05
        job = record.job_id
        while True:
            try:
                call = stub.Output(pb.OutputRequest(id=job, offset=out.length, follow=True))
                async for chunk in call:
                    data = chunk.data
                    if chunk.offset != out.length:
                        if chunk.offset > out.length:
                            out.problems.append(
                                f"chunk at {chunk.offset} after {out.length} bytes (a hole)"
                            )
                            return
                        out.problems.append(
                            f"chunk at {chunk.offset} after {out.length} bytes (overlap)"
                        )
                        data = data[out.length - chunk.offset :]
                    digest.update(data)
                    out.length += len(data)
                    delay = 0.05
            except grpc.aio.AioRpcError as err:
                if not h.retryable(err):
                    out.problems.append(f"Output: {code_of(err)}: {err.details()}")
                    return
                out.interruptions[code_of(err)] += 1
                out.resumes += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            # A clean end must mean: the job has ended and every byte was sent.
            status = (
                await self.retrying(
                    lambda: stub.GetJob(pb.GetJobRequest(id=job), timeout=10), "Status"
                )
            ).job
            if status.state == pb.JOB_STATE_RUNNING:
                out.problems.append(
                    f"the stream ended cleanly at byte {out.length} while the job ran"
                )
                continue
            at = out.length
            rest = await self.retrying(functools.partial(_read_output, stub, job, at), "Output")
            if rest:
                out.problems.append(
                    f"the stream ended cleanly at byte {at}, but {len(rest)} more bytes were there"
                )
                digest.update(rest)
                out.length += len(rest)
            out.digest = digest.hexdigest()
            out.done = True
            return

    async def stop_later(self, stub: Any, record: Record) -> None:
        """Stop a job that prints until it is stopped, once it is ready (its signal
        handling is in place: it has printed, or, while the disk is full and its output
        may be dropped, it has made its marker) and ``stop_after`` seconds later."""
        plan = record.plan
        deadline = time.monotonic() + 60
        marker = glob.escape(str(self.markers / plan.request_id)) + ".*"
        while not any(f.length for f in record.follows) and not (
            self.disk_full and glob.glob(marker)
        ):
            if time.monotonic() > deadline:
                self.mm.add("stop", record.job_id, "the job printed nothing for 60 s")
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(plan.stop_after)
        self.fig["stops"] += 1
        request = pb.StopRequest(id=record.job_id, grace=duration(plan.grace))

        async def stop() -> Any:
            record.stop_attempts += 1
            if not record.stop_sent:
                record.stop_sent = time.time()
            return await stub.Stop(request, timeout=plan.grace + 90)

        record.stop_reply = (await self.retrying(stop, "Stop", limit=300)).job

    # -- faults ---------------------------------------------------------------------------

    async def watch_space(self) -> None:
        """The least free space on the state disk outside the disk-full windows: the
        jobs' own output must not fill it (or every end waits for space)."""
        while True:
            if not self.disk_full:
                free = _free_mib(self.state)
                least = self.after.get("least_free_mib_outside_windows", free)
                self.after["least_free_mib_outside_windows"] = min(least, free)
            await asyncio.sleep(0.5)

    async def controller(self, events: list[Event]) -> None:
        ready = 0.0
        for event in events:
            # (a fault that comes late, after a long one, still comes 1 s after it)
            await asyncio.sleep(
                max(0.0, self.t0w + event.at - time.monotonic(), ready - time.monotonic())
            )
            if event.kind in ("kill9", "sigterm") and self._restart_task is not None:
                await self._restart_task  # a server that is not up cannot be killed
            event.report["late_s"] = round(time.monotonic() - self.t0w - event.at, 2)
            event.report["free_mib"] = _free_mib(self.state)
            if event.kind in ("kill9", "sigterm"):
                await self.kill_server(event)
                # (restarted in the background: the next faults keep their times)
                self._restart_task = asyncio.create_task(self.restart_server(event))
            elif event.kind == "supervisor":
                await self.kill_supervisor(event)
            elif event.kind == "disk":
                self._disk_task = asyncio.create_task(self.fill_disk(event))
            self.events.append(event)
            ready = time.monotonic() + 1.0
        for task in (self._restart_task, self._disk_task):
            if task is not None:
                await task

    async def kill_server(self, event: Event) -> None:
        sig = signal.SIGKILL if event.kind == "kill9" else signal.SIGTERM
        event.report["disk_full"] = self.disk_full
        event.report["stops_in_flight"] = sum(
            1 for r in self.records if r.stop_attempts and r.stop_reply is None
        )
        pid = self.server.pid
        self.server_down = True
        exit_s = await asyncio.to_thread(self.server.signal, sig)
        event.report.update(pid=pid, exit_s=round(exit_s, 3))
        self.fig[f"server {signal.Signals(sig).name}"] += 1
        if self.disk_full:
            self.fig["server killed while the disk was full"] += 1
        if event.aim:
            killed = await asyncio.to_thread(self._kill_supervisor_now)
            event.report["supervisor_killed_while_down"] = killed
            if killed:
                self.fig["supervisor SIGKILL"] += 1
                self.fig["supervisor SIGKILL while the server was down"] += 1
        self.say(
            f"{signal.Signals(sig).name} server pid {pid} (exit {exit_s:.2f} s)"
            + (", disk full" if self.disk_full else "")
        )

    async def restart_server(self, event: Event) -> None:
        """Start the server again at once, and again every 0.5 s until it listens; a
        start that fails is a mismatch (once per fault): a server must come back."""
        t0 = time.monotonic()
        failures = 0
        while True:
            attempt = time.time()
            try:
                took = await asyncio.to_thread(self.server.start, START_TIMEOUT)
                break
            except (RuntimeError, TimeoutError) as err:
                if self.server.pid is not None:  # it did not listen in time: ours, end it
                    self.server.proc.kill()
                    self.server.proc.wait()
                failures += 1
                if failures == 1:
                    lines = self.log.read_text(errors="replace").strip().splitlines()
                    said = [ln for ln in lines[-40:] if ln.startswith("remo:")][-1:] or lines[-1:]
                    full = any(a <= time.time() and attempt <= b for a, b in self.windows)
                    self.mm.add(
                        "server restart",
                        f"restart after {event.kind} at {event.at:.1f} s",
                        f"{str(err).partition(';')[0]}; the disk was full meanwhile: {full}; "
                        f"the server said: {' '.join(said)} (log: {self.name}-server.log)",
                    )
                if time.monotonic() - t0 > 3 * START_TIMEOUT:
                    raise RuntimeError("remo server does not start again") from err
                await asyncio.sleep(0.5)
        self.server_down = False
        self.restart_s.append(took)
        event.report.update(
            restart_s=round(took, 2),
            failed_restarts=failures,
            down_s=round(time.monotonic() - t0, 2),
        )

    def _kill_supervisor_now(self) -> int | None:
        pid = self.tracker.current_supervisor()
        if pid is None:
            return None
        if not signal_pid(pid, None, signal.SIGKILL, lambda p: supervisor_of(p, self.state)):
            return None
        return pid

    def grace_in_progress(self) -> str | None:
        """A running job whose stop waits for its grace period (for at least 0.7 s)."""
        uri = f"file:{self.state / 'jobs.db'}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=5)
            try:
                row = db.execute(
                    "SELECT owner, seq FROM jobs WHERE state='running' AND stop_requested=1"
                    " AND kill_at > ? LIMIT 1",
                    (time.time() + 0.7,),
                ).fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            return None
        return f"{row[0]}/{row[1]}" if row else None

    async def kill_supervisor(self, event: Event) -> None:
        event.report["disk_full"] = self.disk_full
        if event.aim:
            deadline = time.monotonic() + 20
            while (job := self.grace_in_progress()) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            event.report["during_grace_of"] = job
            if job is not None:
                self.fig["supervisor SIGKILL during a grace period"] += 1
        pid = await asyncio.to_thread(self._kill_supervisor_now)
        event.report["pid"] = pid
        if pid is None:
            event.report["skipped"] = "no supervisor running"
            self.say("no supervisor to kill")
            return
        self.fig["supervisor SIGKILL"] += 1
        event.report["server_down"] = self.server_down
        if self.server_down:
            self.fig["supervisor SIGKILL while the server was down"] += 1
        if self.disk_full:
            self.fig["supervisor SIGKILL while the disk was full"] += 1
        t0 = time.monotonic()
        while not self.server_down and time.monotonic() - t0 < 30:
            new = self.tracker.current_supervisor()
            if new is not None and new != pid:
                event.report["new_supervisor_s"] = round(time.monotonic() - t0, 2)
                break
            await asyncio.sleep(0.05)
        else:
            if not self.server_down:
                self.mm.add(
                    "supervisor",
                    f"SIGKILL at {event.at:.1f} s",
                    "no new supervisor within 30 s of the kill",
                )
        self.say(
            f"SIGKILL supervisor pid {pid}"
            + (f" (grace of {event.report.get('during_grace_of')})" if event.aim else "")
            + (", disk full" if self.disk_full else "")
        )

    async def fill_disk(self, event: Event) -> None:
        filler = self.state / "chaos-filler"
        start = time.time()
        self.windows.append((start, start + 3600))  # the end is set below
        self.disk_full = True
        self.say("filling the state disk")
        written = await asyncio.to_thread(_fill, filler)
        deadline = time.monotonic() + self.size.disk_s
        while time.monotonic() < deadline:
            written += await asyncio.to_thread(_fill, filler)  # keep it full
            await asyncio.sleep(0.2)
        filler.unlink()
        self.disk_full = False
        self.windows[-1] = (start, time.time())
        self.fig["disk-full windows"] += 1
        event.report.update(
            filled_mib=round(written / (1 << 20), 1), held_s=round(time.time() - start, 2)
        )
        self.say(f"state disk free again ({written >> 20} MiB filler)")

    # -- the run ----------------------------------------------------------------------------

    async def workload(self) -> None:
        watchers = [h.open_channel(str(self.admin), unique=900 + i) for i in range(3)]
        owners = self.owners
        clients = []
        for i in range(self.size.clients):
            owner, cred = owners[0] if len(owners) == 1 or i % 4 else owners[1]
            clients.append(asyncio.create_task(self.client(i, owner, cred, watchers)))
        self.t0w = time.monotonic()
        self.t0w_wall = time.time()
        self.workload_end = self.t0w + self.size.workload_s
        events = schedule(random.Random(f"{self.seed}/faults"), self.size)
        chaos = asyncio.create_task(self.controller(events))
        watch = asyncio.create_task(self.watch_space())
        await chaos
        try:
            async with asyncio.timeout(
                max(0.0, self.workload_end - time.monotonic()) + self.size.drain_s
            ):
                await asyncio.gather(*clients)
        except TimeoutError:
            hung = [r for r in self.records if r.job_id and r.final is None]
            for r in hung:
                self.mm.add(
                    "hang",
                    r.job_id,
                    f"{r.plan.kind}: client not done {self.size.drain_s:.0f} s after the "
                    f"workload (follows done {[f.done for f in r.follows]}, stop reply "
                    f"{r.stop_reply is not None})",
                )
            for c in clients:
                c.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        watch.cancel()
        for c in watchers:
            await c.close()
        least = self.after.get("least_free_mib_outside_windows")
        if least is not None and least < 32:
            self.mm.add(
                "bench",
                "tmpfs size",
                f"only {least} MiB were free outside the disk-full windows: the jobs' output "
                "filled the state disk (a bigger tmpfs is needed for this run to tell anything)",
            )

    async def list_all(self, stub: Any) -> list[Any]:
        """Every user's jobs, page after page (ListJobs pages hold at most 1000)."""
        jobs: list[Any] = []
        token = ""
        while True:
            request = pb.ListJobsRequest(all_users=True, page_size=1000, page_token=token)
            page = await self.retrying(
                functools.partial(stub.ListJobs, request, timeout=30), "List"
            )
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                return jobs

    async def audit(self) -> None:
        channel = h.open_channel(str(self.admin), unique=999)
        stub = stub_for(channel)
        try:
            await self._audit(stub)
        finally:
            await channel.close()

    def jobs_rows(self) -> list[sqlite3.Row]:
        db = sqlite3.connect(f"file:{self.state / 'jobs.db'}?mode=ro", uri=True, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            return list(
                db.execute(
                    "SELECT owner, seq, request_id, state, pid, init_pid FROM jobs"
                    " ORDER BY owner, seq"
                )
            )
        finally:
            db.close()

    async def _audit(self, stub: Any) -> None:
        rows = self.jobs_rows()
        by_rid: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            by_rid.setdefault(row["request_id"], []).append(row)
        known = {r.plan.request_id: r for r in self.records}
        for rid, found in by_rid.items():
            if rid not in known:
                ids = [f"{x['owner']}/{x['seq']}" for x in found]
                self.mm.add("starts", f"request id {rid!r}", f"jobs nobody asked for: {ids}")
        # Starts: one job per request id that got a reply, at most one for the others.
        for record in self.records:
            plan = record.plan
            found = by_rid.get(plan.request_id, [])
            ids = [f"{x['owner']}/{x['seq']}" for x in found]
            markers = glob.glob(glob.escape(str(self.markers / plan.request_id)) + ".*")
            raised = [a for a in record.attempts if a != "OK"]
            if raised:
                self.fig["Starts that raised"] += 1
            if len(found) > 1:
                self.mm.add(
                    "starts", plan.request_id, f"{len(found)} jobs for one request id: {ids}"
                )
            if record.job_id:
                if ids != [record.job_id]:
                    self.mm.add(
                        "starts",
                        plan.request_id,
                        f"Start returned {record.job_id}, the state dir has {ids}",
                    )
            elif found:
                # abandoned after a Start raised: its job ran; check it like the others
                record.job_id = ids[0]
                self.fig["abandoned Starts whose job exists"] += 1
            elif record.attempts and record.attempts[-1] != "OK":
                self.fig["abandoned Starts with no job"] += 1
            if len(markers) > 1 or (markers and not found):
                when = sorted(os.stat(m).st_mtime - self.t0w_wall for m in markers)
                self.mm.add(
                    "starts",
                    plan.request_id,
                    f"{plan.kind}: {len(markers)} processes ran for this request id (their "
                    f"markers made at {', '.join(f'{t:.2f}' for t in when)} s), {len(found)} "
                    f"job(s) recorded {ids} (Start attempts {record.attempts})",
                )
            if raised and record.job_id:
                self.fig["Starts that raised, then found their one job"] += 1
            if record.found_by_retry:
                self.fig["retries that got the first attempt job"] += 1
        # List agrees with the state dir, per owner.
        listed = await self.list_all(stub)
        per_owner_api = Counter(j.owner for j in listed)
        per_owner_db = Counter(row["owner"] for row in rows)
        if per_owner_api != per_owner_db:
            self.mm.add(
                "starts", "List", f"per owner {dict(per_owner_api)}, jobs.db {dict(per_owner_db)}"
            )
        self.fig["jobs"] = len(rows)
        self.after["jobs_per_owner"] = dict(per_owner_db)
        self.after["starts_per_owner"] = dict(Counter(r.plan.owner for r in self.records))
        self.after["starts_answered_per_owner"] = dict(
            Counter(r.plan.owner for r in self.records if "OK" in r.attempts)
        )
        # Every job: stop the ones left running by abandoned Starts, then check.
        for record in self.records:
            if (
                record.job_id
                and record.final is None
                and record.plan.kind in STOPPED_KINDS
                and record.stop_reply is None
            ):
                self.fig["stops"] += 1
                try:
                    record.stop_reply = (
                        await self.retrying(
                            functools.partial(
                                stub.Stop,
                                pb.StopRequest(id=record.job_id, grace=duration(record.plan.grace)),
                                timeout=120,
                            ),
                            "Stop",
                        )
                    ).job
                except grpc.aio.AioRpcError as err:
                    self.mm.add("audit", record.job_id, f"Stop: {code_of(err)}: {err.details()}")
        for record in self.records:
            if not record.job_id:
                continue
            self.fig[f"jobs {record.plan.kind}"] += 1
            try:
                status = (
                    await self.retrying(
                        functools.partial(stub.Wait, pb.WaitRequest(id=record.job_id), timeout=120),
                        "Wait",
                    )
                ).job
                await self.check_job(stub, record, status)
            except grpc.aio.AioRpcError as err:
                self.mm.add("audit", record.job_id, f"{code_of(err)}: {err.details()}")

    def timeline(self, record: Record, status: Any) -> str:
        """When things happened to the job (s from the start of the workload), and what
        the supervisors logged about it: for the report of a mismatch."""

        def at(t: float) -> str:
            return f"{t - self.t0w_wall:.2f}"

        started = seconds_of(status.start_time)
        ended = seconds_of(status.end_time) if status.HasField("end_time") else None
        parts = [f"started {at(started)}"]
        if record.stop_sent:
            parts.append(f"stop sent {at(record.stop_sent)} (grace {record.plan.grace:.2f})")
        if ended is not None:
            parts.append(f"ended {at(ended)}")
        faults = [
            f"{e.kind}@{e.at + e.report.get('late_s', 0):.1f}"
            for e in self.events
            if started - 1 <= self.t0w_wall + e.at + e.report.get("late_s", 0)
            and (ended is None or self.t0w_wall + e.at <= ended + 1)
        ]
        parts.append(f"faults meanwhile {faults}")
        with contextlib.suppress(OSError):
            key = f" {record.job_id} "
            lines = (self.state / "supervisor.log").read_text(errors="replace").splitlines()
            mine = [ln[11:] for ln in lines if key in f"{ln} "][:6]
            if mine:
                parts.append(f"supervisor log: {mine}")
        return "; ".join(parts)

    async def check_job(self, stub: Any, record: Record, status: Any) -> None:
        plan, job = record.plan, record.job_id
        what = f"{job} ({plan.kind})"
        # -- state
        got = Expected(
            h.state_of(status),
            status.exit_code if status.HasField("exit_code") else None,
            status.signal if status.HasField("signal") else None,
        )
        if got != plan.end:
            self.mm.add(
                "state",
                what,
                f"ended {got}, must be {plan.end}; reason {status.reason!r}; "
                + self.timeline(record, status),
            )
        self.fig[f"ended {got}"] += 1
        for label, other in (
            ("the Stop's reply", record.stop_reply),
            ("the client's last Status", record.final),
        ):
            if other is None:
                continue
            seen = (
                h.state_of(other),
                other.exit_code if other.HasField("exit_code") else None,
                other.signal if other.HasField("signal") else None,
            )
            if seen != (got.state, got.exit_code, got.signal):
                self.mm.add("state", what, f"{label} said {seen}, the final status is {got}")
        # -- output: the file, the API, the followers
        owner, _, seq = job.partition("/")
        path = self.state / "jobs" / owner / seq
        try:
            stored = stored_output(path)
        except OSError as err:
            self.mm.add("output", what, f"cannot read {path}: {err}")
            return
        if not (path / "exit").exists():
            self.mm.add("output", what, "no exit marker although the job has ended")
        api = await self.retrying(functools.partial(_read_output, stub, job), "Output")
        if api != stored:
            self.mm.add(
                "output",
                what,
                f"Output gave {len(api)} bytes, the file holds {len(stored)} (they differ "
                f"from byte {common_prefix(memoryview(api), 0, memoryview(stored), 0)})",
            )
        digest = hashlib.sha256(stored).hexdigest()
        self.fig["bytes stored, checked"] += len(stored)
        for n, f in enumerate(record.follows):
            self.fig["followers"] += 1
            self.fig["follower resumes"] += f.resumes
            for p in f.problems:
                self.mm.add("follower", f"{what} follower {n}", p)
            if not f.done:
                if not f.problems:
                    self.mm.add(
                        "follower", f"{what} follower {n}", f"did not finish ({f.length} bytes)"
                    )
                continue
            self.fig["bytes followed, checked"] += f.length
            if (f.length, f.digest) != (len(stored), digest):
                self.mm.add(
                    "follower",
                    f"{what} follower {n}",
                    f"got {f.length} bytes, stored {len(stored)}; the bytes differ",
                )
        # -- what was stored vs what was printed
        dropped = status.output_dropped_bytes
        if dropped:
            self.fig["jobs with output dropped on the full disk"] += 1
            self.fig["bytes dropped (counted)"] += dropped
            if not status.output_dropped_disk_full:
                self.mm.add(
                    "output", what, f"{dropped} bytes dropped, output_dropped_disk_full is false"
                )
            end = seconds_of(status.end_time) if status.HasField("end_time") else time.time()
            started = seconds_of(status.start_time)
            if not any(a - 1 <= end and started <= b + 1 for a, b in self.windows):
                self.mm.add(
                    "output", what, f"{dropped} bytes dropped, the disk was never full while it ran"
                )
        elif status.output_dropped_disk_full:
            self.mm.add("output", what, "output_dropped_disk_full without dropped bytes")
        verdict = check_stored(plan, stored, dropped)
        if verdict.problem is not None:
            self.mm.add("output", what, verdict.problem)
            return
        self.fig["bytes printed, recomputed"] += verdict.printed
        self.fig["runs of dropped bytes"] += verdict.runs
        if dropped and verdict.notice < len(notice(dropped)):
            # The notice is written when the job has ended: not when the disk is still
            # full then, nor when remo's SIGKILL ended the job (the init dies with it).
            ended = seconds_of(status.end_time) if status.HasField("end_time") else time.time()
            if any(a - 1 <= ended <= b + 1 for a, b in self.windows):
                self.fig["notices cut short by the full disk"] += 1
            elif got == Expected("stopped", signal=signal.SIGKILL):
                self.fig["notices not written: the init was killed with the job"] += 1
            else:
                self.mm.add(
                    "output",
                    what,
                    f"{dropped} bytes were dropped, and the notice saying so is missing "
                    f"({verdict.notice} of its {len(notice(dropped))} bytes stored)",
                )

    # -- the end ------------------------------------------------------------------------------

    async def wind_down(self) -> None:
        """Idle descriptor counts, then SIGTERM the server and wait for the supervisor to
        leave; then nothing of the run may be left."""
        await self.exercise()
        self.after.update(await self.idle_fds(settle=True))
        for who in ("server", "supervisor"):
            before, after = self.baseline.get(f"{who}_fds"), self.after.get(f"{who}_fds")
            if before is None or after is None or after <= before:
                continue
            more = Counter(self.after[f"{who}_fd_kinds"]) - Counter(
                self.baseline[f"{who}_fd_kinds"]
            )
            self.mm.add(
                "fds",
                who,
                f"{before} descriptors after the warm-up, {after} at the end (same exercise "
                f"just before); more: {dict(more)}",
            )
        sup = self.tracker.current_supervisor()
        self.tracker.sample()
        self.after["server_stop_s"] = await asyncio.to_thread(self.server.stop)
        if sup is not None and not await asyncio.to_thread(h.wait_pid_gone, sup, 30):
            self.mm.add(
                "processes",
                f"supervisor {sup}",
                "still running 30 s after the server stopped (no jobs left)",
            )

    def leftovers(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            alive = self.tracker.alive()
            in_cgroups = [pid for pid in all_pids() if in_our_cgroup(pid, self.tag)]
            dirs = cgroup_dirs(self.tag)
            if not alive and not in_cgroups and not dirs:
                break
            if time.monotonic() > deadline:
                for pid, _, comm, state in alive:
                    self.mm.add(
                        "zombies" if state == "Z" else "processes",
                        f"pid {pid} ({comm})",
                        f"left behind, state {state}",
                    )
                for pid in in_cgroups:
                    self.mm.add("processes", f"pid {pid}", "left in a cgroup of this instance")
                for d in dirs:
                    self.mm.add("cgroups", d, "left behind")
                # ours: end them, so the next run starts clean
                for pid, start, _, _ in alive:
                    signal_pid(pid, start, signal.SIGKILL, lambda p: True)
                break
            time.sleep(0.2)
        # zombies whose parent is one of ours
        ours = {pid for pid, _ in self.tracker.seen}
        for pid in all_pids():
            st = proc_stat(pid)
            if st is not None and st[1] == "Z" and st[0] in ours:
                self.mm.add("zombies", f"pid {pid} ({st[3]})", f"a zombie of pid {st[0]}")
        from remo.pki.register import register_socket_path

        if register_socket_path(self.state).exists():
            self.mm.add(
                "processes", "register socket", f"{register_socket_path(self.state)} left behind"
            )
        self.after["processes_tracked"] = len(self.tracker.seen)
        self.after["supervisors_seen"] = len(self.tracker.supervisors)
        self.after["cgroup_dirs"] = len(cgroup_dirs(self.tag))

    def kill_everything(self) -> None:
        """After a crash of the run: end every process of it (the server, supervisors,
        whatever the tracker saw, whatever is in this instance's cgroups), so that jobs
        that print until stopped do not outlive it, and remove its cgroups."""
        if self.server.pid is not None:
            self.server.proc.kill()
            self.server.proc.wait()
        for pid in all_pids():
            if supervisor_of(pid, self.state):
                signal_pid(pid, None, signal.SIGKILL, lambda p: supervisor_of(p, self.state))
        for pid, start, _, _ in self.tracker.alive():
            signal_pid(pid, start, signal.SIGKILL, lambda p: True)
        if self.tag:
            for pid in all_pids():
                signal_pid(pid, None, signal.SIGKILL, lambda p: in_our_cgroup(p, self.tag))
            deadline = time.monotonic() + 10
            for d in sorted(cgroup_dirs(self.tag), key=len, reverse=True):
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.1)

    def cleanup(self, crashed: bool) -> None:
        """Always: the filler, the logs, the tmpfs, the temporary directory."""
        with contextlib.suppress(OSError):
            (self.state / "chaos-filler").unlink()
        if crashed:
            self.kill_everything()
        elif self.server.pid is not None:
            self.server.stop()
        self.logs.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log, self.logs / f"{self.name}-server.log")
        with contextlib.suppress(OSError):
            shutil.copyfile(
                self.state / "supervisor.log", self.logs / f"{self.name}-supervisor.log"
            )
        if self.mounted:
            deadline = time.monotonic() + 20
            while True:
                r = subprocess.run(
                    ["umount", str(self.state)], capture_output=True, text=True, check=False
                )
                if r.returncode == 0 or not os.path.ismount(self.state):
                    break
                if time.monotonic() > deadline:
                    self.mm.add(
                        "mount",
                        str(self.state),
                        f"busy 20 s after the run: {r.stderr.strip()}; unmounted lazily",
                    )
                    subprocess.run(["umount", "-l", str(self.state)], check=False)
                    break
                time.sleep(0.2)
            self.mounted = False
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
            shutil.rmtree(self.markers, ignore_errors=True)

    async def go(self) -> None:
        await self.warm_up()
        with self.tracker:
            await self.workload()
            self.say(f"workload done: {len(self.records)} Starts; auditing")
            await self.audit()
            await self.wind_down()
        self.leftovers()


def _free_mib(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_bavail * st.f_frsize) >> 20


def _fill(filler: Path) -> int:
    """Write to ``filler`` until the disk is full; bytes written."""
    written = 0
    with open(filler, "ab", buffering=0) as f:
        for block in (1 << 20, 4096):
            data = b"\0" * block
            while True:
                try:
                    written += f.write(data) or 0
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    return written


def _fd_kinds(pid: int | None) -> dict[str, int]:
    """What a process has open, by kind (socket, anon_inode, file name)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return {}
    return dict(Counter(_fd_kind(pid, fd) for fd in fds))


def _fd_kind(pid: int | None, fd: str) -> str:
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "?"
    return target.split(":")[0] if ":" in target else target.rsplit("/", 1)[-1]


async def _collect(call: Any) -> list[bytes]:
    return [chunk.data async for chunk in call]


async def _read_output(stub: Any, job: str, offset: int = 0) -> bytes:
    """A job's output from ``offset`` as it is now (no follow)."""
    return b"".join(
        await _collect(stub.Output(pb.OutputRequest(id=job, offset=offset), timeout=60))
    )


# -- results --------------------------------------------------------------------------------


def src_digest() -> dict[str, Any]:
    """What code ran: a digest of the ``remo`` package this process imports (the servers
    and supervisors import the same: ``src/remo``, or what ``PYTHONPATH`` puts first),
    and the newest change in it."""
    import remo

    package = Path(remo.__file__).resolve().parent
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {
        "path": str(package),
        "sha256": digest.hexdigest()[:16],
        "newest_change": datetime.datetime.fromtimestamp(newest, datetime.UTC).isoformat(
            timespec="seconds"
        ),
    }


def run_one(
    seed: int, size: Size, mode: str, base: Path | None, keep: bool, logs: Path
) -> dict[str, Any]:
    t0 = time.monotonic()
    loadavg = os.getloadavg()
    code = src_digest()
    run = Run(seed, size, mode, base, keep, logs)
    print(
        f"-- {run.name}: state {run.state} (tmpfs {size.tmpfs_mib} MiB), port {run.port}",
        flush=True,
    )
    crashed = None
    completed = False
    try:
        run.setup()
        asyncio.run(run.go())
        completed = True
    except Exception as err:  # report, clean up, and fail the run
        import traceback

        traceback.print_exc()
        crashed = f"{type(err).__name__}: {err}"
        run.mm.add("crash", "the run", crashed)
    finally:
        run.cleanup(crashed=not completed)
    changed = src_digest() != code
    if changed:
        print("   NOTE: src/remo changed while the run ran: servers may have run different code")
    fig = dict(sorted(run.fig.items()))
    return {
        "seed": seed,
        "mode": mode,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "loadavg_at_start": loadavg,
        "loadavg_at_end": os.getloadavg(),
        "src": code,
        "size": size.__dict__,
        "figures": fig,
        "starts_raised": dict(run.starts_raised),
        "starts": len(run.records),
        "server_restart_s": [round(s, 2) for s in run.restart_s],
        "events": [
            {"at_s": round(e.at, 1), "kind": e.kind, "aim": e.aim, **e.report} for e in run.events
        ],
        "disk_full_windows_s": [round(b - a, 1) for a, b in run.windows],
        "baseline": run.baseline,
        "after": run.after,
        "owners": [o for o, _ in run.owners],
        "mismatch_counts": run.mm.counts(),
        "mismatches": run.mm.items,
        "crashed": crashed,
        "src_changed_during_run": changed,
    }


def print_table(key: str, r: dict[str, Any]) -> None:
    fig = r["figures"]

    def g(name: str) -> int:
        return int(fig.get(name, 0))

    restarts = r["server_restart_s"][1:] or [0.0]
    kinds = ", ".join(f"{k[5:]} {v}" for k, v in fig.items() if k[5:] in KINDS)
    ended = ", ".join(f"{k[6:]} x{v}" for k, v in fig.items() if k.startswith("ended "))
    rows = [
        (
            "seed / mode",
            f"{r['seed']} / {r['mode']} ({r['elapsed_s']} s, load "
            f"{r['loadavg_at_start'][0]:.1f} -> {r['loadavg_at_end'][0]:.1f}, "
            f"src {r['src']['sha256']})",
        ),
        (
            "Starts / jobs recorded",
            f"{r['starts']} / {g('jobs')}; per owner: "
            + ", ".join(
                f"{o} {r['after'].get('starts_per_owner', {}).get(o, 0)} made, "
                f"{r['after'].get('starts_answered_per_owner', {}).get(o, 0)} answered, "
                f"{r['after'].get('jobs_per_owner', {}).get(o, 0)} jobs"
                for o in r["owners"]
            ),
        ),
        ("jobs by kind", kinds),
        ("ended", ended),
        ("followers (resumes)", f"{g('followers')} ({g('follower resumes')})"),
        (
            "bytes checked",
            f"stored {g('bytes stored, checked'):,}, followed {g('bytes followed, checked'):,}, "
            f"printed (recomputed) {g('bytes printed, recomputed'):,}",
        ),
        (
            "server SIGKILL / SIGTERM",
            f"{g('server SIGKILL')} / {g('server SIGTERM')}, "
            f"{g('server killed while the disk was full')} of them while the disk was full "
            f"(restarts {min(restarts):.2f}-{max(restarts):.2f} s)",
        ),
        (
            "supervisor SIGKILL",
            f"{g('supervisor SIGKILL')}: {g('supervisor SIGKILL during a grace period')} "
            f"during a stop's grace period, {g('supervisor SIGKILL while the server was down')} "
            f"while the server was down, {g('supervisor SIGKILL while the disk was full')} "
            "while the disk was full",
        ),
        (
            "disk-full windows",
            f"{g('disk-full windows')} ({', '.join(str(s) for s in r['disk_full_windows_s'])} s); "
            f"{g('jobs with output dropped on the full disk')} jobs dropped "
            f"{g('bytes dropped (counted)'):,} bytes in {g('runs of dropped bytes')} runs",
        ),
        (
            "Starts that raised",
            f"{g('Starts that raised')} {r['starts_raised']}; then found their one job "
            f"{g('Starts that raised, then found their one job')} (the first attempt's "
            f"{g('retries that got the first attempt job')}); abandoned: with a job "
            f"{g('abandoned Starts whose job exists')}, without "
            f"{g('abandoned Starts with no job')}",
        ),
        ("stops", str(g("stops"))),
        (
            "fds server / supervisor",
            f"{r['baseline'].get('server_fds')} -> {r['after'].get('server_fds')} / "
            f"{r['baseline'].get('supervisor_fds')} -> {r['after'].get('supervisor_fds')}",
        ),
        (
            "processes tracked",
            f"{r['after'].get('processes_tracked')} ({r['after'].get('supervisors_seen')} "
            "supervisors)",
        ),
        ("MISMATCHES", f"{sum(r['mismatch_counts'].values())} {r['mismatch_counts'] or ''}"),
    ]
    print(f"\n== {key} ==")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")
    for m in r["mismatches"]:
        print(f"    - [{m['kind']}] {m['what']}: {m['detail']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1, help="seed of the first run (default 1)")
    p.add_argument("--runs", type=int, default=1, help="runs, with seeds seed, seed+1, ...")
    p.add_argument("--short", action="store_true", help="CI-sized (about 45 s a run)")
    p.add_argument("--clients", type=int, help="clients (8 short, 20 default)")
    p.add_argument("--duration", type=float, help="seconds of workload (25 short, 150 default)")
    p.add_argument(
        "--results", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})"
    )
    p.add_argument(
        "--tmp", type=Path, help="parent of the temporary directories (default: the system's)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (markers, logs)"
    )
    args = p.parse_args()
    if os.geteuid() != 0:
        print("chaos.py needs root (tmpfs mount, cgroups, jobs as their owners)", file=sys.stderr)
        return 2
    size = SHORT if args.short else LONG
    if args.clients is not None:
        size = Size(**{**size.__dict__, "clients": args.clients})
    if args.duration is not None:
        size = Size(**{**size.__dict__, "workload_s": args.duration})
    mode = "short" if args.short else "long"
    h.raise_nofile()
    command = " ".join([".venv/bin/python", "bench/chaos.py", *sys.argv[1:]])
    results: dict[str, dict[str, Any]] = {}
    for k in range(args.runs):
        seed = args.seed + k
        r = run_one(seed, size, mode, args.tmp, args.keep, args.results.parent)
        r["command"] = command
        r["when"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        r["host"] = platform.node()
        r["kernel"] = platform.release()
        r["cpus"] = os.cpu_count()
        r["python"] = platform.python_version()
        r["grpcio"] = grpc.__version__
        results[f"{mode}-seed{seed}"] = r
    for key, r in results.items():
        print_table(key, r)
    stored: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads(args.results.read_text())
    stored.setdefault("runs", {}).update(results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(stored, indent=2, default=str) + "\n")
    total = sum(sum(r["mismatch_counts"].values()) for r in results.values())
    print(f"\nresults: {args.results}; {total} mismatch(es) in {len(results)} run(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())

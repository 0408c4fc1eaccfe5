"""Many running jobs, each followed: follow latency, stop-all time and remo's memory per
job, against one real server.

Run as root::

    .venv/bin/python bench/many_jobs_bench.py --jobs 1000 --many
    .venv/bin/python bench/many_jobs_bench.py --jobs 300
    .venv/bin/python bench/many_jobs_bench.py --jobs 1000 --no-follow

Each job prints its line number and the time ten times a second. ``--job bash`` (the
default) is a bash loop printing ``$EPOCHREALTIME`` without forking (it sleeps in ``read
-t`` on a FIFO nobody writes); it still costs ~60 µs of CPU a line, 0.6 of a core for
1,000 jobs, more than remo's server and client together. ``--job c`` is a C program
compiled for the run (``cc``; ~25 µs a line, what a wake-up, a write and a sleep cost):
the machine's work is then mostly remo's. One ``AsyncClient`` follows every job: with
``--many`` through ``output_many(follow=True)``, one OutputMany stream per 1,000 jobs;
otherwise with an ``output(follow=True)`` per job. A line's latency is its arrival time
minus the time it carries. The window starts once every follower has read its job's
backlog (the steady state, not the catch-up after the jobs' start) and counts the lines
printed in it, however late they arrive. Then every job is stopped at once
(``stop``, grace 5 s: bash ends at SIGTERM) and the time until all are recorded is
measured. The CPU time the server, this client, the jobs' inits and the jobs used in the
measured window is printed too, per line followed for the first two: each thread's
run time from ``/proc/PID/task/TID/schedstat``, exact where ``/proc/PID/stat``'s ticks
miss a process that runs for microseconds after each timer and sleeps before the next
tick (it counted 0.0 for 200 such loops). remo's memory is
the proportional set size (PSS, /proc/PID/smaps_rollup) of the server, the supervisor,
the spawner and the jobs' inits, minus the same with no job, divided by the jobs. Lines
lost are counted (each job's numbers must be gapless).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (
    ServerProcess,
    descendants,
    find_supervisor,
    free_port,
    issue_admin,
    pct,
    remove_cgroups,
    wait_pid_gone,
)
from remo.client import AsyncClient
from remo.core.paths import StatePaths
from remo.supervisor.service import instance_tag

LOOP = (
    'f=$(mktemp -u); mkfifo "$f"; exec 9<>"$f"; rm "$f"; n=0; '
    'while :; do n=$((n+1)); echo "$n $EPOCHREALTIME"; read -t 0.1 -u 9; done'
)
#: ``--job c``: the same lines from a compiled program.
PRINTER_C = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    struct timespec now, period = {0, 100000000};
    char line[64];
    for (unsigned long n = 1;; n++) {
        clock_gettime(CLOCK_REALTIME, &now);
        int len = snprintf(line, sizeof line, "%lu %ld.%06ld\n", n, (long)now.tv_sec,
                           now.tv_nsec / 1000);
        if (write(1, line, (size_t)len) != len) return 1;
        nanosleep(&period, NULL);
    }
}
"""


def job_command(kind: str, where: Path) -> list[str]:
    """The command of each job: the bash loop, or the printer compiled into ``where``
    (a directory of its own that every job can read). Its first word is what the CPU
    and memory figures tell the jobs from remo's processes by."""
    if kind == "bash":
        return ["bash", "-c", LOOP]
    where.mkdir(mode=0o755)
    source = where / "printer.c"
    source.write_text(PRINTER_C)
    program = where / "remo-bench-printer"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise SystemExit("--job c needs a C compiler (cc)")
    subprocess.run([compiler, "-O2", "-o", str(program), str(source)], check=True)
    return [str(program)]


def pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def remo_pss_kib(server_pid: int, state: Path, job: bytes) -> tuple[int, int]:
    """PSS of remo's processes (the server, the supervisor and what it forked, but not
    the jobs, whose command lines start with ``job``), and their count."""
    total = pss_kib(server_pid)
    count = 1
    supervisor = find_supervisor(state)
    others = [supervisor, *descendants(supervisor)] if supervisor else []
    for pid in others:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(job):
            continue
        total += pss_kib(pid)
        count += 1
    return total, count


def cpu_seconds(server_pid: int, state: Path, job: bytes) -> dict[str, float]:
    """CPU time so far of the server, this client, the jobs' inits (with the spawner and
    its waiting inits) and the jobs (command lines starting with ``job``): where the
    machine's work goes while they are followed. Threads are summed as they are now:
    one that ended in between drops out (remo's relays and the jobs here have one)."""

    def of(pid: int) -> float:
        total = 0
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        return total / 1e9

    found = {"server": of(server_pid), "client": of(os.getpid()), "inits": 0.0, "jobs": 0.0}
    supervisor = find_supervisor(state)
    for pid in descendants(supervisor) if supervisor else {}:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        # (the jobs; the rest: their inits, and the spawner and its few waiting ones)
        found["jobs" if command.startswith(job) else "inits"] += of(pid)
    return found


class Received:
    """What the followers received: each line's print time and latency, each job's next
    expected line number (gaps are lines lost), and when each job's backlog was read.
    A chunk's first line also splits its latency in two at the time the chunk carries
    (when its relay recorded it): the job and its relay, then the server, the wire and
    this client."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, float]] = []  # (printed at, latency)
        self.split: list[tuple[float, float, float]] = []  # (printed, to recorded, after)
        self.lost = 0
        self.caught_up: set[str] = set()
        self.since = time.time()  # lines printed after this are live, not backlog
        self._expected: dict[str, int] = {}
        self._pending: dict[str, bytes] = {}

    def take(self, job_id: str, data: bytes, recorded: float | None = None) -> None:
        now = time.time()
        first = not self._pending.get(job_id)
        *lines, self._pending[job_id] = (self._pending.get(job_id, b"") + data).split(b"\n")
        for line in lines:
            number, _, stamp = line.decode().partition(" ")
            printed = float(stamp.replace(",", "."))
            expected = self._expected.get(job_id, 1)
            self.lost += max(0, int(number) - expected)
            self._expected[job_id] = int(number) + 1
            self.lines.append((printed, now - printed))
            if first and recorded is not None:
                self.split.append((printed, recorded - printed, now - recorded))
                first = False
            if printed >= self.since:
                self.caught_up.add(job_id)

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies of the lines printed between ``start`` and ``end``."""
        return [latency for printed, latency in self.lines if start <= printed < end]

    def halves(self, start: float, end: float) -> str:
        """The two parts of the latency of chunks' first lines printed in the window."""
        inside = [(b, a) for printed, b, a in self.split if start <= printed < end]
        if not inside:
            return ""
        before = [b for b, _ in inside]
        after = [a for _, a in inside]
        return (
            f" (printed to recorded by its relay: median {pct(before, 50) * 1e3:.2f}, p99 "
            f"{pct(before, 99) * 1e3:.2f} ms; recorded to received: median "
            f"{pct(after, 50) * 1e3:.2f}, p99 {pct(after, 99) * 1e3:.2f} ms)"
        )


async def follow(remo: AsyncClient, job_id: str, received: Received) -> None:
    async for chunk in remo.output(job_id, follow=True):
        received.take(job_id, chunk.data, chunk.time)


async def follow_many(remo: AsyncClient, job_ids: list[str], received: Received) -> None:
    """As :func:`follow`, for every job of ``job_ids`` through one OutputMany stream."""
    async for item in remo.output_many(job_ids, follow=True):
        if item.chunk is not None:
            received.take(item.job_id, item.chunk.data, item.chunk.time)


#: ``--other-client``: another process's calls while the jobs are followed (40 lists of
#: one job, 0.2 s apart, after one warm-up call): how fast the server answers the rest.
OTHER_CLIENT = """
import statistics, sys, time
from remo.client import Client
with Client.from_file(sys.argv[1]) as remo:
    remo.whoami()
    took = []
    for _ in range(40):
        began = time.perf_counter()
        remo.list(limit=1)
        took.append((time.perf_counter() - began) * 1e3)
        time.sleep(0.2)
took.sort()
print(f"another client's list(limit=1) meanwhile: median {statistics.median(took):.1f} ms, "
      f"p90 {took[35]:.1f} ms, max {took[-1]:.1f} ms")
"""


async def run(
    credential: Path,
    server_pid: int,
    state: Path,
    jobs: int,
    seconds: float,
    followed: bool,
    many: bool,
    other_client: bool = False,
    command: list[str] | None = None,
) -> None:
    command = command or ["bash", "-c", LOOP]
    job = command[0].encode()
    base_kib, base_count = remo_pss_kib(server_pid, state, job)
    async with AsyncClient.from_file(credential, timeout=120) as remo:
        began = time.monotonic()
        ids: list[str] = []
        for first in range(0, jobs, 50):
            started = await asyncio.gather(
                *(remo.start(command) for _ in range(first, min(jobs, first + 50)))
            )
            ids += [s.job.id for s in started if s.job is not None]
        what = Path(command[0]).name
        print(f"{len(ids)} jobs ({what}) started in {time.monotonic() - began:.1f} s", flush=True)
        received = Received()
        if not followed:
            tasks = []
        elif many:  # one OutputMany stream per 1,000 jobs
            tasks = [
                asyncio.create_task(follow_many(remo, ids[k : k + 1000], received))
                for k in range(0, len(ids), 1000)
            ]
        else:
            tasks = [asyncio.create_task(follow(remo, i, received)) for i in ids]
        # Measured once every follower has read its job's backlog (a line printed after
        # the follows began came), plus a second: the steady state, not the catch-up.
        settle = time.monotonic()
        while tasks and len(received.caught_up) < len(ids) and time.monotonic() - settle < 60:
            await asyncio.sleep(0.1)
        if tasks:
            print(f"backlogs read in {time.monotonic() - settle:.1f} s", flush=True)
        await asyncio.sleep(1.0)
        # (/proc of some 2,000 processes is read in a thread, and half a second away
        # from the window: read on this loop, it held the followers up by ~0.3 s)
        cpu_before = await asyncio.to_thread(cpu_seconds, server_pid, state, job)
        cpu_from = time.time()
        await asyncio.sleep(0.5)
        start = time.time()
        other = (
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", OTHER_CLIENT, str(credential)
            )
            if other_client
            else None
        )
        await asyncio.sleep(seconds)
        end = time.time()
        if other is not None:
            await other.wait()
        await asyncio.sleep(0.5)
        cpu_after = await asyncio.to_thread(cpu_seconds, server_pid, state, job)
        cpu_to = time.time()
        cpu = {k: (v - cpu_before[k]) / (cpu_to - cpu_from) for k, v in cpu_after.items()}
        lines_per_second = len(received.latencies(cpu_from, cpu_to)) / (cpu_to - cpu_from)
        await asyncio.sleep(0.5)  # lines printed in the window may still be on their way
        window = received.latencies(start, end)
        kib, count = remo_pss_kib(server_pid, state, job)
        began = time.monotonic()
        stopped = await asyncio.gather(*(remo.stop(i, grace=5) for i in ids))
        stop_seconds = time.monotonic() - began
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
    states = {s.state.value for s in stopped}
    how = " followed in one OutputMany stream" if many else ", each followed by its own Output"
    print(
        f"{len(ids)} jobs{how if followed else ''}: "
        + (
            f"follow latency median {pct(window, 50) * 1e3:.2f} ms, p99 "
            f"{pct(window, 99) * 1e3:.2f} ms, max {max(window) * 1e3:.1f} ms over "
            f"{len(window)} lines printed in {seconds:.0f} s{received.halves(start, end)}; "
            f"lines lost {received.lost} | "
            if followed and window
            else ""
        )
        + f"stop all {stop_seconds:.2f} s ({', '.join(sorted(states))}) | remo's PSS "
        f"{(kib - base_kib) / 1024 / len(ids):.2f} MiB per job ({count - base_count} more "
        f"remo processes; {base_kib / 1024:.0f} MiB with no job)"
    )
    cores = ", ".join(f"{kind} {used:.2f}" for kind, used in cpu.items())
    per_line = (
        f"; per line followed: server {cpu['server'] / lines_per_second * 1e6:.0f} µs, client "
        f"{cpu['client'] / lines_per_second * 1e6:.0f} µs"
        if followed and lines_per_second
        else ""
    )
    print(f"CPU around those {seconds:g} s, in cores: {cores}{per_line}")


def end_leftovers(state: Path) -> None:
    """Jobs outlive their server by design: a run that failed before its stop would
    leave a thousand loops on the machine. The supervisor of a run whose jobs were
    stopped leaves by itself (with their cgroups): wait for it (30 s); one still there
    is SIGKILLed with everything under it (this bench's own state dir only), and the
    cgroups it leaves are removed."""
    supervisor = find_supervisor(state)
    if supervisor is None:
        return
    if wait_pid_gone(supervisor, 30):
        return
    doomed = [supervisor, *descendants(supervisor)]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in doomed:
        wait_pid_gone(pid, 30)
    remove_cgroups(instance_tag(StatePaths(state.resolve())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-follow", action="store_true")
    parser.add_argument(
        "--job",
        choices=("bash", "c"),
        default="bash",
        help="each job: a bash loop (default) or a compiled printer (needs cc)",
    )
    parser.add_argument(
        "--other-client",
        action="store_true",
        help="another process lists a job 40 times during the window; its latencies",
    )
    parser.add_argument(
        "--many",
        action="store_true",
        help="follow through OutputMany (one stream for up to 1,000 jobs), not one Output each",
    )
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="remo-many-") as tmp:
        state = Path(tmp) / "state"
        server = ServerProcess(state, free_port(), Path(tmp) / "server.log")
        server.start()
        try:
            credential = issue_admin(state, server.address, Path(tmp) / "admin.remo")
            assert server.pid is not None
            asyncio.run(
                run(
                    credential,
                    server.pid,
                    state,
                    args.jobs,
                    args.seconds,
                    not args.no_follow,
                    args.many,
                    args.other_client,
                    job_command(args.job, Path(tmp) / "printer"),
                )
            )
        except BaseException:
            log = (Path(tmp) / "server.log").read_text(errors="replace").splitlines()
            print("server log, last lines:", *log[-30:], sep="\n", file=sys.stderr)
            raise
        finally:
            server.stop()
            end_leftovers(state)


if __name__ == "__main__":
    main()

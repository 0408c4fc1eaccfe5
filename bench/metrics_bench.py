"""What a Prometheus scrape costs the server: ms of server CPU per ``GET /metrics``.

Run as root::

    .venv/bin/python bench/metrics_bench.py                      # 1,000 stored, 200 running
    .venv/bin/python bench/metrics_bench.py --running 1000       # the target case

A real ``remo server --metrics-listen`` subprocess, its ``jobs.db`` filled beforehand
with ``--stored`` finished jobs of ``--users`` accounts (rows as the supervisor writes
them), then ``--running`` ``sleep`` jobs started through the API. The server's CPU
(utime + stime from /proc/PID/stat) is read before and after ``--scrapes`` scrapes,
back to back, and over the same wall time with no scrape (the idle cost: the loop-lag
timer, keepalives), which is subtracted. Target: at most 50 ms of server CPU per scrape
with 1,000 running jobs. docs/OPERATIONS.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import LISTENING, REMO, cpu_seconds, free_port, issue_admin
from remo.client import Client


def fill(state: Path, count: int, users: int) -> None:
    """``count`` finished jobs spread over ``users`` accounts, in ``state``'s jobs.db."""
    from remo.store.jobs import JobStore

    state.mkdir(parents=True, exist_ok=True)
    JobStore(state / "jobs.db").close()  # the schema
    now = time.time()
    owners = [f"user{n:03d}" for n in range(users)]
    db = sqlite3.connect(state / "jobs.db")
    with db:
        rows = []
        for seq in range(1, count + 1):
            owner = owners[seq % users]
            spec = json.dumps({"argv": ["true"], "owner": owner})
            state_name = ("succeeded", "failed", "stopped")[seq % 3]
            rows.append((owner, seq, spec, state_name, now - count + seq, now - count + seq + 0.5))
        db.executemany(
            "INSERT INTO jobs(owner, seq, spec, state, exit_code, started_at, ended_at)"
            " VALUES(?, ?, ?, ?, 0, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT INTO sequences(owner, next) VALUES(?, ?)", ((o, count + 1) for o in owners)
        )
    db.close()


def start_server(state: Path, port: int, metrics_port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(REMO), "server", "--state-dir", str(state),
                "--listen", f"127.0.0.1:{port}", "--metrics-listen", str(metrics_port),
            ],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            env={k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"},
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while LISTENING.encode() not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"remo server did not start; see {log}")
        time.sleep(0.05)
    return proc


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        return bytes(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=1000, help="finished jobs on record")
    parser.add_argument("--running", type=int, default=200, help="sleep jobs running")
    parser.add_argument("--users", type=int, default=20, help="owners of the stored jobs")
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-metrics-bench-") as tmp:
        state = Path(tmp) / "state"
        fill(state, args.stored, args.users)
        port, metrics_port = free_port(), free_port()
        proc = start_server(state, port, metrics_port, Path(tmp) / "server.log")
        try:
            credential = issue_admin(state, f"127.0.0.1:{port}", Path(tmp) / "admin.remo")
            ids = []
            with Client.from_file(credential, timeout=60) as remo:
                began = time.monotonic()
                for _ in range(args.running):
                    started = remo.start(["sleep", "3600"]).job
                    assert started is not None
                    ids.append(started.id)
                print(
                    f"{args.stored} stored jobs of {args.users} users, {args.running} running "
                    f"(started in {time.monotonic() - began:.1f} s)",
                    flush=True,
                )
                time.sleep(2)  # let the starts settle
                page = scrape(metrics_port)
                series = sum(1 for line in page.splitlines() if line and not line.startswith(b"#"))
                for _ in range(5):
                    scrape(metrics_port)
                walls = []
                before = cpu_seconds(proc.pid)
                t0 = time.monotonic()
                for _ in range(args.scrapes):
                    s0 = time.perf_counter()
                    scrape(metrics_port)
                    walls.append(time.perf_counter() - s0)
                wall = time.monotonic() - t0
                after = cpu_seconds(proc.pid)
                idle_before, idle_t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(wall)
                idle_after = cpu_seconds(proc.pid)
                idle_wall = time.monotonic() - idle_t0
                assert before is not None and after is not None
                assert idle_before is not None and idle_after is not None
                raw = (after - before) / args.scrapes * 1000
                idle = (idle_after - idle_before) * (wall / idle_wall) / args.scrapes * 1000
                print(f"page: {len(page)} bytes, {series} samples")
                print(
                    f"server CPU per scrape: {raw:.2f} ms raw, {raw - idle:.2f} ms net of idle "
                    f"({idle:.2f} ms idle over the same time); {args.scrapes} scrapes in "
                    f"{wall:.1f} s, latency median {statistics.median(walls) * 1000:.1f} ms, "
                    f"max {max(walls) * 1000:.1f} ms (CPU clock ticks are 10 ms: "
                    "use >= 100 scrapes)"
                )
                for job_id in ids:
                    remo.stop(job_id, grace=0)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()

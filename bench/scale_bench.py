"""How cost grows with stored jobs: a server with many against a small reference server.

Run as root::

    .venv/bin/python bench/scale_bench.py                 # 100,000 against 1,000 jobs
    .venv/bin/python bench/scale_bench.py --jobs 20000    # quicker

Two servers run side by side (``remo server`` subprocesses), their ``jobs.db`` filled
beforehand with finished jobs of one user (rows as the supervisor writes them, in one
transaction). Calls alternate between the two servers, so both see the same machine:

- restart: from ``remo server`` starting to the first answer of a ``GetJob``;
- ``ListJobs(page_size=10)``: median and p99 of 300 calls to each;
- ``GetJob`` p99 while another process pages through every job (page_size 1000), and
  how long that paging took, on the large server; the same on the small one.

It prints the large/small ratios; docs/BENCHMARKS.md "How cost grows" has the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import ServerProcess, free_port, issue_admin, pct
from remo.client import Client

USER = "root"


def fill(state: Path, count: int) -> None:
    """``count`` finished jobs of USER in ``state``'s jobs.db (created as the store does)."""
    from remo.store.jobs import JobStore

    state.mkdir(parents=True, exist_ok=True)
    JobStore(state / "jobs.db").close()  # the schema
    now = time.time()
    spec = json.dumps({"argv": ["true"], "owner": USER})
    db = sqlite3.connect(state / "jobs.db")
    with db:
        db.executemany(
            "INSERT INTO jobs(owner, seq, spec, state, exit_code, started_at, ended_at)"
            " VALUES(?, ?, ?, 'succeeded', 0, ?, ?)",
            (
                (USER, seq, spec, now - count + seq, now - count + seq + 0.5)
                for seq in range(1, count + 1)
            ),
        )
        db.execute("INSERT INTO sequences(owner, next) VALUES(?, ?)", (USER, count + 1))
    db.close()


def first_answer(server: ServerProcess, credential: Path) -> float:
    """Seconds from starting the server to its first answer of a GetJob."""
    began = time.monotonic()
    server.start()
    with Client.from_file(credential, timeout=30) as remo:
        remo.status("1")
    return time.monotonic() - began


def page_through(credential: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    began = time.monotonic()
    seen = 0
    with Client.from_file(credential) as remo:
        token = ""
        while True:
            page = remo.list_page(page_size=1000, page_token=token)
            seen += len(page.jobs)
            token = page.next_page_token
            if not token:
                break
    out.put((seen, time.monotonic() - began))


def status_while_paging(credential: Path) -> tuple[float, float, int, float]:
    """GetJob p50/p99 (ms) while another process pages through every job; the jobs it
    saw and the seconds it took."""
    # spawn, not fork: this process runs gRPC threads, which a fork would copy mid-call.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    pager = context.Process(target=page_through, args=(str(credential), queue))
    times: list[float] = []
    with Client.from_file(credential) as remo:
        remo.status("1")
        pager.start()
        while pager.is_alive() or not times:
            t0 = time.perf_counter()
            remo.status("1")
            times.append(time.perf_counter() - t0)
    pager.join()
    seen, took = queue.get()
    return pct(times, 50) * 1e3, pct(times, 99) * 1e3, seen, took


def main() -> None:
    # Servers cache their bytecode, as on users' machines (a restart would otherwise
    # compile remo's modules again: ~0.3 s).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-scale-") as tmp:
        servers: dict[str, tuple[ServerProcess, Path]] = {}
        for name, count in (("small", args.small), ("large", args.jobs)):
            state = Path(tmp) / name
            began = time.monotonic()
            fill(state, count)
            print(f"{name}: {count} jobs stored in {time.monotonic() - began:.1f} s", flush=True)
            server = ServerProcess(state, free_port(), Path(tmp) / f"{name}.log")
            server.start()
            credential = issue_admin(state, server.address, Path(tmp) / f"{name}.remo", USER)
            server.stop()
            servers[name] = (server, credential)
        try:
            restart = {n: first_answer(s, c) for n, (s, c) in servers.items()}
            lists: dict[str, list[float]] = {"small": [], "large": []}
            clients = {n: Client.from_file(c) for n, (_, c) in servers.items()}
            for client in clients.values():
                client.list_page(page_size=10)
            for _ in range(300):
                for name, client in clients.items():
                    t0 = time.perf_counter()
                    client.list_page(page_size=10)
                    lists[name].append(time.perf_counter() - t0)
            for client in clients.values():
                client.close()
            paging = {n: status_while_paging(c) for n, (_, c) in servers.items()}
        finally:
            for server, _ in servers.values():
                server.stop()
    for name in ("small", "large"):
        p50, p99, seen, took = paging[name]
        print(
            f"{name}: restart to first answer {restart[name]:.2f} s | ListJobs(10) median "
            f"{pct(lists[name], 50) * 1e3:.2f} ms p99 {pct(lists[name], 99) * 1e3:.2f} ms | "
            f"GetJob while paging p50 {p50:.2f} ms p99 {p99:.2f} ms | paged {seen} jobs in "
            f"{took:.2f} s"
        )
    ratio = pct(lists["large"], 50) / pct(lists["small"], 50)
    print(f"ListJobs(page_size=10) at {args.jobs} / at {args.small} jobs: {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""Two probes of where the API server's memory goes as jobs and connections come and go.

Run (as root, like the other benchmarks)::

    .venv/bin/python bench/memory_probes.py sqlite        # page cache vs rows in jobs.db
    .venv/bin/python bench/memory_probes.py connections   # server RSS vs fresh mTLS connections

``sqlite``: one process with two ``JobStore`` connections on a new ``jobs.db`` (one writes
rows as the supervisor does, the other reads each back as the server does), 12 rounds
of 500 rows; prints the process's RSS growth after each round. SQLite's page cache is
bounded (2 MiB per connection by default), so the growth must level off.

``connections``: a real ``remo server`` on 127.0.0.1 and an admin credential (as
``bench/load_bench.py`` makes them); 50 warm-up connections, then 6 rounds of 1,000
fresh connections (each its own TCP + TLS 1.3 handshake and one List RPC, 20 at a
time); prints the server's RSS 6 s after each round (after its periodic trim).

Together with ``MALLOC_ARENA_MAX=2 bench/load_bench.py --many-followers 500
--many-rounds 5`` these split the creep described in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

from remo.core.spec import JobSpec
from remo.store.jobs import JobStore
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc as pb_grpc


def own_rss_kib() -> int:
    rss = h.rss_kib(os.getpid())
    assert rss is not None
    return rss


def probe_sqlite(tmp: Path) -> None:
    db = tmp / "jobs.db"
    writer, reader = JobStore(db), JobStore(db)
    spec = JobSpec(
        ["python3", "-c", "import time\nfor i in range(10):\n print(i, flush=True); time.sleep(1)"],
        env={"A": "b" * 50},
        owner="root",
    )
    base, seq = own_rss_kib(), 0
    for round_ in range(1, 13):
        for _ in range(500):
            seq += 1
            writer.insert_running("root", seq, spec, seq, seq, time.time(), ("pid",), None, "g")
            reader.get(f"root/{seq}")
        kib = db.stat().st_size >> 10
        print(f"round {round_:2}: {seq:5} rows, db {kib} KiB, RSS +{own_rss_kib() - base} KiB")


async def probe_connections(tmp: Path) -> None:
    server = h.ServerProcess(tmp / "state", h.free_port(), tmp / "server.log")
    server.start()
    cred = str(h.issue_admin(tmp / "state", server.address, tmp / "admin.remo"))

    async def one(i: int) -> None:
        channel = h.open_channel(cred, unique=i)
        await pb_grpc.JobServiceStub(channel).ListJobs(pb.ListJobsRequest(page_size=1))
        await channel.close()

    try:
        for i in range(50):
            await one(i)
        await asyncio.sleep(6)
        print(f"after 50 warm-up connections: server RSS {h.rss_kib(server.pid)} KiB")
        done, gate = 50, asyncio.Semaphore(20)

        async def gated(i: int) -> None:
            async with gate:
                await one(i)

        for _ in range(6):
            await asyncio.gather(*(gated(done + i) for i in range(1000)))
            done += 1000
            await asyncio.sleep(6)
            print(f"after {done} connections: server RSS {h.rss_kib(server.pid)} KiB")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=["sqlite", "connections"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-memprobe-") as tmp:
        if args.probe == "sqlite":
            probe_sqlite(Path(tmp))
        else:
            asyncio.run(probe_connections(Path(tmp)))


if __name__ == "__main__":
    main()

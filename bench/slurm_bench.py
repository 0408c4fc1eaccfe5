"""remo in front of Slurm against Slurm on its own, in the same run, on the test cluster
(tests/slurm/cluster.py: one node, 2 CPUs, started and ended here).

Run as root::

    .venv/bin/python bench/slurm_bench.py             # 200 jobs each way, ~2-3 minutes
    .venv/bin/python bench/slurm_bench.py --jobs 40   # shorter

Figures:

1. ``--jobs`` trivial jobs (``true``) submitted 8 at a time, then waited for: through
   remo (Start over mTLS as ``remo-alice``, then Wait) against ``sbatch --wrap=true``
   as the same account (then squeue until Slurm has finished them all). Wall time.
2. Submission to the first output line (``echo hi``), 5 times each way, interleaved:
   remo's Start then a follow of Output, against ``sbatch --output=FILE`` then polling
   FILE every 5 ms (what a user without remo does: ``tail -f``).
3. Follow latency: a job prints a line every 200 ms; the time from the line's record
   (written by the init on the node) to its arrival at the client, with the polling
   follower (``slurm.inotify = false``, for NFS) and with inotify.

The node runs two 1-CPU jobs at a time, and Slurm's scheduler starts jobs in cycles:
both ways wait for the same scheduler. Results: stdout and bench/results/slurm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from remo.server.tls import ensure_tls13_only_env  # noqa: E402

ensure_tls13_only_env()
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from remo.v1 import jobs_pb2 as pb  # noqa: E402
from tests.e2e.conftest import Server, serve  # noqa: E402
from tests.slurm.cluster import Cluster, start_cluster  # noqa: E402
from tests.slurm.conftest import slurm_settings  # noqa: E402

USER = "remo-alice"
RESULTS = HERE / "results" / "slurm.json"
PARALLEL = 8
#: Waits open at once on the one connection (the server allows 32 calls per connection).
WAITS = 24


def ensure_user() -> bool:
    """Make the account if it is missing; whether it was made (and is to be removed)."""
    try:
        pwd.getpwnam(USER)
        return False
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        return True


async def through_remo(server: Server, count: int) -> float:
    channel, stub = server.stub(server.credential(USER, "operator"))
    async with channel:
        limit = asyncio.Semaphore(PARALLEL)
        waits = asyncio.Semaphore(WAITS)

        async def one() -> None:
            async with limit:
                job = (await stub.Start(pb.StartRequest(argv=["true"]))).job
            async with waits:  # (all submitted at once; waited for a few dozen at a time)
                ended = (await stub.Wait(pb.WaitRequest(id=job.id))).job
            assert ended.state == pb.JOB_STATE_SUCCEEDED, ended

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return time.monotonic() - began


def sbatch(cluster: Cluster, *options: str) -> int:
    done = cluster.command("sbatch", "--parsable", *options, user=USER)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().split(";")[0])


async def direct(cluster: Cluster, count: int) -> float:
    limit = asyncio.Semaphore(PARALLEL)

    async def one() -> int:
        async with limit:
            return await asyncio.to_thread(sbatch, cluster, "--output=/dev/null", "--wrap=true")

    began = time.monotonic()
    ids = await asyncio.gather(*(one() for _ in range(count)))
    jobs = "--jobs=" + ",".join(map(str, ids))
    while True:
        shown = cluster.command("squeue", "--noheader", "--states=all", "--format=%T", jobs)
        states = shown.stdout.split()
        if len(states) == count and all(s == "COMPLETED" for s in states):
            return time.monotonic() - began
        await asyncio.sleep(0.05)


async def first_line_remo(server: Server) -> float:
    channel, stub = server.stub(server.credential(USER, "operator"))
    async with channel:
        began = time.monotonic()
        job = (await stub.Start(pb.StartRequest(argv=["echo", "hi"]))).job
        async for _ in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
            return time.monotonic() - began
    raise AssertionError("no output")


async def first_line_sbatch(cluster: Cluster, out_dir: Path) -> float:
    path = out_dir / f"direct-{time.monotonic_ns()}.out"
    began = time.monotonic()
    await asyncio.to_thread(sbatch, cluster, f"--output={path}", "--wrap=echo hi")
    while not (path.exists() and path.read_bytes()):
        await asyncio.sleep(0.005)
    return time.monotonic() - began


async def follow_latency(server: Server, lines: int = 15) -> list[float]:
    channel, stub = server.stub(server.credential(USER, "operator"))
    loop = f"for i in $(seq {lines}); do echo line $i; sleep 0.2; done"
    delays = []
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", loop]))).job
        async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True, timestamps=True)):
            delays.append(time.time() - chunk.time.ToNanoseconds() / 1e9)
    return delays


def summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def main(count: int) -> dict[str, Any]:
    cluster = start_cluster()
    made = ensure_user()
    results: dict[str, Any] = {"jobs": count}
    try:
        with tempfile.TemporaryDirectory(prefix="remo-slurm-bench-") as tmp:
            async with serve(
                Path(tmp) / "poll", backend="slurm", slurm=slurm_settings(cluster, "poll")
            ) as server:
                results["remo_s"] = round(await through_remo(server, count), 2)
                results["sbatch_s"] = round(await direct(cluster, count), 2)
                out_dir = cluster.shared / "direct"
                out_dir.mkdir()
                entry = pwd.getpwnam(USER)
                os.chown(out_dir, entry.pw_uid, entry.pw_gid)
                remo_first, direct_first = [], []
                for _ in range(5):
                    remo_first.append(await first_line_remo(server))
                    direct_first.append(await first_line_sbatch(cluster, out_dir))
                results["first_line_remo"] = summary(remo_first)
                results["first_line_sbatch"] = summary(direct_first)
                results["follow_poll"] = summary(await follow_latency(server))
            inotify = slurm_settings(cluster, "inotify", inotify=True)
            async with serve(Path(tmp) / "ino", backend="slurm", slurm=inotify) as server:
                results["follow_inotify"] = summary(await follow_latency(server))
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        if made:
            subprocess.run(["userdel", "--remove", USER], check=False, capture_output=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    found = asyncio.run(main(args.jobs))
    print(json.dumps(found, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")

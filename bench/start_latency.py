"""A quick look at JobManager.start() latency alone: start `true`, wait, remove; repeat.

    .venv/bin/python bench/start_latency.py [ROUNDS]

Prints the median and p90 with and without namespaces, the supervisor's RSS, and the
memory of a running job's init (averaged over 50 running ``sleep`` jobs).
bench/worker_bench.py is the full benchmark; this one takes a few seconds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from remo.core.spec import JobSpec
from remo.worker import JobManager


async def measure(state: Path, namespaces: bool, rounds: int) -> None:
    async with JobManager.open(state, namespaces=namespaces) as jobs:
        samples = []
        for _ in range(rounds):
            began = time.perf_counter()
            job = await jobs.start(JobSpec(["true"]))
            samples.append(time.perf_counter() - began)
            await jobs.wait(job)
            await jobs.remove(job)
        samples.sort()
        status = Path(f"/proc/{jobs._info['pid']}/status").read_text()
        rss = status.split("VmRSS:")[1].split("\n")[0].strip()
        label = "namespaces" if namespaces else "no namespaces"
        print(
            f"{label:14} median {statistics.median(samples) * 1e3:6.2f} ms"
            f"  p90 {samples[int(len(samples) * 0.9)] * 1e3:6.2f} ms  supervisor RSS {rss}"
        )


async def init_memory(state: Path, jobs_running: int = 50) -> None:
    """What each running job's init costs: PSS and private dirty memory (smaps_rollup)."""
    async with JobManager.open(state) as jobs:
        ids = [await jobs.start(JobSpec(["sleep", "30"])) for _ in range(jobs_running)]
        try:
            totals = {"Pss": 0, "Private_Dirty": 0}
            for job_id in ids:
                pid = (await jobs.status(job_id)).pid
                init = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                for line in Path(f"/proc/{init}/smaps_rollup").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in totals:
                        totals[key] += int(value.split()[0])
            print(
                f"a running job's init: PSS {totals['Pss'] / jobs_running / 1024:.1f} MiB, "
                f"private dirty {totals['Private_Dirty'] / jobs_running / 1024:.1f} MiB"
                f" ({jobs_running} jobs)"
            )
        finally:
            for job_id in ids:
                await jobs.stop(job_id, grace=0)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    with tempfile.TemporaryDirectory(prefix="remo-start-") as tmp:
        for namespaces in (True, False):
            asyncio.run(measure(Path(tmp) / str(namespaces), namespaces, rounds))
        asyncio.run(init_memory(Path(tmp) / "memory"))


if __name__ == "__main__":
    main()

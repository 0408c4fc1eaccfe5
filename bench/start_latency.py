"""A quick look at JobManager.start() latency alone: start `true`, wait, remove; repeat.

    .venv/bin/python bench/start_latency.py [ROUNDS]

Prints the median and p90 with and without namespaces, and the supervisor's RSS.
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


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    with tempfile.TemporaryDirectory(prefix="remo-start-") as tmp:
        for namespaces in (True, False):
            asyncio.run(measure(Path(tmp) / str(namespaces), namespaces, rounds))


if __name__ == "__main__":
    main()

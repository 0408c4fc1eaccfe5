"""Does removing a large output delay other clients? A start+wait measured while a job
with a 4 GiB output is removed, against the same start+wait with nothing else going on.

Run as root::

    .venv/bin/python bench/remove_bench.py            # 4 GiB, 5 rounds
    .venv/bin/python bench/remove_bench.py --gib 1 --rounds 3

Each round: a job writes GIB of zeros to its output and ends; then, interleaved, the
start+wait of `true` alone (the baseline) and the start+wait of `true` sent right as the
large job's Remove is sent (the supervisor deletes the files in a worker thread, so its
loop should not notice). Prints the medians and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import ServerProcess, free_port, issue_admin
from remo.client import AsyncClient
from remo.core.spec import Limits


async def start_and_wait(remo: AsyncClient) -> float:
    began = time.perf_counter()
    job = (await remo.start(["true"])).job
    assert job is not None
    await remo.wait(job.id)
    return time.perf_counter() - began


async def rounds(credential: Path, gib: int, count: int) -> None:
    alone: list[float] = []
    during: list[float] = []
    removes: list[float] = []
    async with AsyncClient.from_file(credential, timeout=300) as remo:
        for _ in range(3):
            await start_and_wait(remo)  # warm
        for _ in range(count):
            big = (
                await remo.start(
                    ["head", "-c", str(gib << 30), "/dev/zero"],
                    limits=Limits(output_bytes=(gib + 1) << 30),
                )
            ).job
            assert big is not None
            await remo.wait(big.id)
            alone.append(await start_and_wait(remo))
            began = time.perf_counter()
            remove = asyncio.create_task(remo.remove(big.id))
            during.append(await start_and_wait(remo))
            await remove
            removes.append(time.perf_counter() - began)
    base, busy = statistics.median(alone), statistics.median(during)
    print(
        f"start+wait alone: median {base * 1e3:.1f} ms ({min(alone) * 1e3:.1f}-"
        f"{max(alone) * 1e3:.1f}) | while a {gib} GiB output is removed: median "
        f"{busy * 1e3:.1f} ms ({min(during) * 1e3:.1f}-{max(during) * 1e3:.1f}) | "
        f"difference {(busy - base) * 1e3:+.1f} ms | the removes took "
        f"{statistics.median(removes):.2f} s (median)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="remo-remove-", dir="/var/tmp") as tmp:
        state = Path(tmp) / "state"
        server = ServerProcess(state, free_port(), Path(tmp) / "server.log")
        server.start()
        try:
            credential = issue_admin(state, server.address, Path(tmp) / "admin.remo")
            asyncio.run(rounds(credential, args.gib, args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()

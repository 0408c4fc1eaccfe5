"""Many jobs from one program: AsyncClient against threads sharing one Client.

Run as root::

    .venv/bin/python bench/sdk_bench.py            # 200 jobs, 3 interleaved rounds
    .venv/bin/python bench/sdk_bench.py --jobs 50 --rounds 1

Each job is ``sh -c 'echo job I; exit I%7'``; each round runs all of them to their end
(start, collect the output, wait) once with one ``AsyncClient`` (``asyncio.gather``) and
once with one ``Client`` shared by 32 threads, against one real server
(``remo server`` subprocess, admin credential), and checks every exit status and output.
The OS floor of the same work is the same command run locally by ``asyncio`` subprocesses
(no remo): the ratios say what remo adds to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import ServerProcess, free_port, issue_admin
from remo.client import AsyncClient, Client

THREADS = 32


def command(i: int) -> list[str]:
    return ["sh", "-c", f"echo job {i}; exit {i % 7}"]


def check(results: list[tuple[int | None, bytes]]) -> None:
    for i, (status, output) in enumerate(results):
        assert status == i % 7 and output == f"job {i}\n".encode(), (i, status, output)


async def with_async_client(credential: Path, jobs: int) -> float:
    began = time.monotonic()
    async with AsyncClient.from_file(credential) as remo:
        runs = await asyncio.gather(*(remo.run(command(i)) for i in range(jobs)))
    took = time.monotonic() - began
    check([(r.exit_status, r.output) for r in runs])
    return took


def with_threads(credential: Path, jobs: int) -> float:
    began = time.monotonic()
    with Client.from_file(credential) as remo, ThreadPoolExecutor(THREADS) as pool:
        runs = list(pool.map(lambda i: remo.run(command(i)), range(jobs)))
    took = time.monotonic() - began
    check([(r.exit_status, r.output) for r in runs])
    return took


async def locally(jobs: int) -> float:
    began = time.monotonic()

    async def one(i: int) -> tuple[int | None, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *command(i), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return proc.returncode, out

    check(list(await asyncio.gather(*(one(i) for i in range(jobs)))))
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-sdk-bench-") as tmp:
        state = Path(tmp) / "state"
        server = ServerProcess(state, free_port(), Path(tmp) / "server.log")
        server.start()
        try:
            credential = issue_admin(state, server.address, Path(tmp) / "admin.remo")
            rows = []
            for _ in range(args.rounds):
                floor = asyncio.run(locally(args.jobs))
                aio = asyncio.run(with_async_client(credential, args.jobs))
                threaded = with_threads(credential, args.jobs)
                rows.append((floor, aio, threaded))
                print(
                    f"{args.jobs} jobs: local subprocesses {floor:.2f} s | AsyncClient "
                    f"{aio:.2f} s ({aio / floor:.1f}x) | Client x{THREADS} threads "
                    f"{threaded:.2f} s ({threaded / floor:.1f}x)",
                    flush=True,
                )
            best = [min(column) for column in zip(*rows, strict=True)]
            print(
                f"best of {args.rounds}: local {best[0]:.2f} s, AsyncClient {best[1]:.2f} s, "
                f"threads {best[2]:.2f} s; AsyncClient/threads {best[1] / best[2]:.2f}"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()

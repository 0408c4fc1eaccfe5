"""How long a stop of many running jobs takes: the supervisor's work at each job's end.

Run as root::

    .venv/bin/python bench/stop_all_bench.py [--jobs 400] [--rounds 2] [--base DIR]

Each round starts ``--jobs`` jobs (``sleep 1000``) through the library (a
``JobManager`` on a state dir of its own, its own supervisor), then stops them all at
once (``stop`` with a 5-s grace: they end on SIGTERM) and prints how long until every
stop returned, i.e. every end was recorded. With ``--base DIR`` each round runs again
with the code of ``DIR/src`` (on ``PYTHONPATH``; make it with ``git archive REV src``,
see ``bench/run_end_bench.py``), the two alternating, each in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def one_round(jobs: int) -> float:
    from remo.worker import JobManager, JobSpec

    with tempfile.TemporaryDirectory(prefix="remo-stop-all-") as tmp:
        async with JobManager.open(Path(tmp) / "state") as manager:
            ids = [await manager.start(JobSpec(["sleep", "1000"])) for _ in range(jobs)]
            began = time.perf_counter()
            await asyncio.gather(*(manager.stop(job_id, grace=5) for job_id in ids))
            return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base", type=Path, help="a tree to compare with (see above)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{asyncio.run(one_round(args.jobs)):.3f}")
        return
    trees: dict[str, str | None] = {"this tree": None}
    if args.base is not None:
        if not (args.base / "src" / "remo").is_dir():
            raise SystemExit(f"{args.base}/src/remo: no remo tree there")
        trees[f"base {args.base}"] = str(args.base.resolve() / "src")
    took: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, path in trees.items():
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            if path is not None:
                env["PYTHONPATH"] = path
            command = [sys.executable, __file__, "--one", "--jobs", str(args.jobs)]
            try:
                out = subprocess.run(
                    command, env=env, check=True, capture_output=True, text=True, timeout=600
                )
            except subprocess.TimeoutExpired:
                # (a tree whose supervisor loses exits: its stops never return; that
                # supervisor and its jobs are left for the caller to end)
                raise SystemExit(f"{name}: the stops did not return within 10 minutes") from None
            took[name].append(float(out.stdout.split()[-1]))
    for name, seconds in took.items():
        shown = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{name}: stop of {args.jobs} running jobs, all at once: {shown} s")


if __name__ == "__main__":
    main()

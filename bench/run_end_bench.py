"""What the final status on the followed output saves a job run to its end.

Run as root::

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python bench/run_end_bench.py [--runs 400]

One warm ``Client`` against one real server runs ``true`` to its end again and again, two
ways taken in turn (so that load from elsewhere hits both alike): ``follow`` (the server
ends the follow with the job's final status, ``OutputRequest.final_status``) and, as
before it, ``output(follow=True)`` and then a GetJob (``status``). It prints the median
time from the Start to the final status of each, and the difference: the round trip a
``remo run`` no longer makes after the last byte; and the Start call's own median (its
reply comes once the job is spawned), to split a run between the Start and the rest.
The OS floor of a run is measured elsewhere (``bench/start_latency.py``,
``bench/agent_bench.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import ServerProcess, free_port, issue_admin
from remo.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="runs in all, half each way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-run-end-") as tmp:
        state = Path(tmp) / "state"
        server = ServerProcess(state, free_port(), Path(tmp) / "server.log")
        server.start()
        try:
            credential = issue_admin(state, server.address, Path(tmp) / "admin.remo")
            with Client.from_file(credential) as remo:
                for _ in range(20):  # warm: connections, threads, bytecode
                    remo.run(["true"])
                followed: list[float] = []
                then_asked: list[float] = []
                starts: list[float] = []
                for n in range(args.runs):
                    began = time.perf_counter()
                    job = remo.start(["true"]).job
                    starts.append(time.perf_counter() - began)
                    assert job is not None
                    if n % 2:
                        for _ in remo.output(job.id, follow=True):
                            pass
                        final = remo.status(job.id)
                        then_asked.append(time.perf_counter() - began)
                    else:
                        following = remo.follow(job.id)
                        for _ in following:
                            pass
                        final = following.status  # type: ignore[assignment]
                        followed.append(time.perf_counter() - began)
                    assert final is not None and final.ended
        finally:
            server.stop()
    a, b = statistics.median(followed) * 1e3, statistics.median(then_asked) * 1e3
    print(
        f"run of `true` to its status, median of {len(followed)} each: follow with the final "
        f"status {a:.2f} ms; output, then GetJob {b:.2f} ms; saved {b - a:.2f} ms; "
        f"the Start alone {statistics.median(starts) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()

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

``--base DIR`` compares this tree with another instead: a second server runs the code of
``DIR/src`` (on ``PYTHONPATH``; this tree's interpreter and dependencies), and the runs
(``follow`` with the final status) alternate between the two servers sample by sample.
It prints each tree's median Start and run to the final status. For a commit::

    mkdir -p /tmp/remo-base && git archive REV src | tar -x -C /tmp/remo-base
    cp src/remo/supervisor/remo-relay /tmp/remo-base/src/remo/supervisor/  # same relay.c
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python bench/run_end_bench.py --base /tmp/remo-base
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--base", type=Path, help="a tree to compare with (see above)")
    args = parser.parse_args()
    if args.base is not None:
        compare(args.base, args.runs)
        return
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


def compare(base: Path, runs: int) -> None:
    """This tree's server against ``base``'s, runs alternating between them."""
    if not (base / "src" / "remo").is_dir():
        raise SystemExit(f"{base}/src/remo: no remo tree there")
    trees = {"this tree": None, f"base {base}": str(base.resolve() / "src")}
    with tempfile.TemporaryDirectory(prefix="remo-run-end-") as tmp:
        servers: dict[str, ServerProcess] = {}
        try:
            for n, (name, path) in enumerate(trees.items()):
                where = Path(tmp) / str(n)
                server = ServerProcess(where / "state", free_port(), where / "server.log")
                if path is not None:
                    os.environ["PYTHONPATH"] = path  # the server and its supervisor
                try:
                    server.start()
                finally:
                    os.environ.pop("PYTHONPATH", None)
                servers[name] = server
            clients = {
                name: Client.from_file(
                    issue_admin(s.state_dir, s.address, s.state_dir.parent / "admin.remo")
                )
                for name, s in servers.items()
            }
            for remo in clients.values():
                for _ in range(20):  # warm: connections, threads, bytecode
                    remo.run(["true"])
            runs_of: dict[str, list[float]] = {name: [] for name in clients}
            starts_of: dict[str, list[float]] = {name: [] for name in clients}
            order = list(clients)
            for n in range(runs // 2):
                for name in order if n % 2 else order[::-1]:
                    remo = clients[name]
                    began = time.perf_counter()
                    job = remo.start(["true"]).job
                    starts_of[name].append(time.perf_counter() - began)
                    assert job is not None
                    following = remo.follow(job.id)
                    for _ in following:
                        pass
                    assert following.status is not None and following.status.ended
                    runs_of[name].append(time.perf_counter() - began)
            for remo in clients.values():
                remo.close()
        finally:
            for server in servers.values():
                server.stop()
    for name in trees:
        run, start = statistics.median(runs_of[name]), statistics.median(starts_of[name])
        print(
            f"{name}: run of `true` to its final status {run * 1e3:.2f} ms, the Start alone"
            f" {start * 1e3:.2f} ms (median of {len(runs_of[name])})"
        )


if __name__ == "__main__":
    main()

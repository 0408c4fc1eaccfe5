"""Ctrl-C at random moments: how often the CLI fails to end after it.

Run as root::

    .venv/bin/python bench/interrupt_bench.py              # 400 interruptions
    .venv/bin/python bench/interrupt_bench.py --count 100 --busy 0

Two jobs print a line every 10 ms; ``remo logs -f`` of one of them, or of both (in
turn), runs on its own (``REMO_NO_AGENT=1``) and gets SIGINT 0.15-0.8 s after it
started, while ``--busy`` shell loops (2 by default) keep the machine's cores busy. A
CLI still running 10 s after its SIGINT counts as hung: its stacks are printed
(``py-spy dump``, when py-spy is on PATH) and it is killed. Exit codes other than 130
are printed too. The hang it looks for is a rare race (docs/RELIABILITY.md, "Ctrl-C
could leave the CLI hanging").
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import REMO, ServerProcess, free_port, issue_admin

PRINTER = "while :; do echo x; sleep 0.01; done"
BUSY = "while :; do :; done"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--busy", type=int, default=2, help="busy shell loops beside it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-interrupt-") as tmp:
        server = ServerProcess(Path(tmp) / "state", free_port(), Path(tmp) / "server.log")
        server.start()
        busy = [
            subprocess.Popen(["sh", "-c", BUSY], start_new_session=True) for _ in range(args.busy)
        ]
        try:
            credential = issue_admin(server.state_dir, server.address, Path(tmp) / "a.remo")
            env = {**os.environ, "REMO_PROFILE": str(credential), "REMO_NO_AGENT": "1"}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            return interrupt_many(env, args.count)
        finally:
            for loop in busy:
                loop.kill()
                loop.wait()
            server.stop()


def interrupt_many(env: dict[str, str], count: int) -> int:
    def remo(*argv: str, check: bool = True) -> str:
        done = subprocess.run([str(REMO), *argv], check=check, env=env, capture_output=True)
        return done.stdout.decode().strip()

    jobs = [remo("run", "-d", "--", "sh", "-c", PRINTER) for _ in range(2)]
    hung = other = 0
    began = time.monotonic()
    try:
        for n in range(count):
            followed = jobs if n % 2 else jobs[:1]
            cli = subprocess.Popen(
                [str(REMO), "logs", "-f", *followed],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(random.uniform(0.15, 0.8))
            cli.send_signal(signal.SIGINT)
            try:
                cli.wait(10)
            except subprocess.TimeoutExpired:
                hung += 1
                print(f"hung: {n}, logs -f of {len(followed)} job(s)", flush=True)
                if shutil.which("py-spy"):
                    subprocess.run(["py-spy", "dump", "--pid", str(cli.pid)], check=False)
                cli.kill()
                cli.wait()
                continue
            finally:
                assert cli.stderr is not None
                err = cli.stderr.read().decode(errors="replace")
                cli.stderr.close()
            if cli.returncode != 130:
                other += 1
                print(f"exit {cli.returncode} at {n}: {err.strip()[-200:]}", flush=True)
    finally:
        for job in jobs:
            remo("stop", "--grace", "0", job, check=False)
    print(
        f"{count} interruptions of remo logs -f in {time.monotonic() - began:.0f} s: "
        f"{hung} hung, {other} ended otherwise than interrupted (130)"
    )
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())

"""The first command of a profile, against the CLI as it was before it had an agent, in
the same run: does starting the agent cost the first command anything, and is that
command as fast as a fresh CLI was?

The CLI issue asked for the first call at or under "today's 103 ms-equivalent": a fresh
``remo run -- true`` took 103 ms when it was written, on a faster machine. Measured by
ratio to ssh that is not a fair yardstick across machines (Python's start-up and imports
suffer more from a slow machine's page faults than ssh's C client does), so the tree of
that time is installed and timed here beside this one.

Run as root (it starts a ``remo server``)::

    .venv/bin/python bench/first_call_bench.py            # 10 rounds, ~1 minute
    .venv/bin/python bench/first_call_bench.py --rounds 20 --base f1e9d48^

Both CLIs are installed as ``scripts/install`` installs remo (``_harness.user_install``:
Debian's ``/usr/bin/python3``, bytecode compiled and cached). The base is
``f1e9d48^``, the last commit before the agent (2026-12-06 11:49 UTC). Each round, one
after the other: the base's fresh ``remo run -- true``; this tree's with no agent
(``REMO_NO_AGENT=1``); this tree's as the first command of a new profile directory
(``XDG_RUNTIME_DIR``: no agent there yet, so the command runs on its own and starts one
beside it), whose agent is stopped afterwards. All the rounds of ``run``, then all
those of ``remo status ID``.
All against one server of this tree. Medians and the ratios to the base are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import remote_bench as rb  # noqa: E402 - bench/ is not a package
from _harness import user_install  # noqa: E402

#: The last commit before the CLI had an agent.
BASE = "f1e9d48^"


def _rounds(
    base: str, this: str, verb: tuple[str, ...], direct: dict[str, str], tmp: Path, rounds: int
) -> dict[str, list[float]]:
    """``rounds`` times, one after the other: the base's fresh command, this tree's on its
    own, this tree's as the first command of a profile (whose agent is then stopped)."""
    times: dict[str, list[float]] = {
        "base, fresh": [],
        "this tree, on its own": [],
        "this tree, first command (starts the agent)": [],
    }
    names = list(times)
    for _ in range(rounds):
        runtime = Path(tempfile.mkdtemp(prefix="runtime-", dir=tmp))
        first = {**direct, "XDG_RUNTIME_DIR": str(runtime), "REMO_AGENT_IDLE": "600"}
        first.pop("REMO_NO_AGENT")
        times[names[0]].append(rb.timed([base, *verb], direct, stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        times[names[1]].append(rb.timed([this, *verb], direct, stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        times[names[2]].append(rb.timed([this, *verb], first, stdout=subprocess.DEVNULL))
        time.sleep(1.5)  # (the agent it started is up: stopped, not left importing)
        _stop_agents(this, direct, tmp)
        time.sleep(0.5)
    return times


def _stop_agents(this: str, direct: dict[str, str], tmp: Path) -> None:
    """Stop the agent of every profile directory made so far (none is left behind)."""
    for runtime in tmp.glob("runtime-*"):
        env = {**direct, "XDG_RUNTIME_DIR": str(runtime)}
        env.pop("REMO_NO_AGENT", None)
        subprocess.run([this, "agent", "stop"], env=env, capture_output=True, check=False)
        shutil.rmtree(runtime, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--base", default=BASE, help="the revision to compare with")
    parser.add_argument("--python", default="/usr/bin/python3")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="remo-first-"))
    remo = rb.RemoSide(tmp)
    this = ""
    direct: dict[str, str] = {}
    try:
        base = str(user_install(tmp / "base", args.python, revision=args.base))
        this = str(user_install(tmp / "this", args.python))
        remo.start()
        direct = dict(remo.env)
        direct.pop("PYTHONDONTWRITEBYTECODE", None)  # (cached, as on a user's machine)
        for cli in (base, this):  # warm-ups: the page cache, the server's first start
            rb.out([cli, "run", "--", "true"], direct)
        job = rb.out([this, "run", "-d", "--", "true"], direct).strip()
        rb.out([this, "wait", job], direct)
        for verb in (("run", "--", "true"), ("status", job)):
            times = _rounds(base, this, verb, direct, tmp, args.rounds)
            reference = statistics.median(times["base, fresh"])
            print(f"`remo {' '.join(verb)}`, {args.rounds} rounds, load {rb.loadavg()}:")
            for name, samples in times.items():
                median = statistics.median(samples)
                spread = ", ".join(f"{x * 1e3:.0f}" for x in sorted(samples))
                ratio = median / reference
                print(f"  {name}: median {median * 1e3:.1f} ms ({ratio:.2f}x) [{spread}]")
    finally:
        if this:
            _stop_agents(this, direct, tmp)
        remo.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    main()

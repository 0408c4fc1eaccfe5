"""The CLI through the profile's agent, next to the CLI on its own and ssh (with and
without a ControlMaster connection), in the same run on 127.0.0.1.

Run as root (it starts a ``remo server`` and an sshd, as bench/remote_bench.py does,
whose set-up it reuses)::

    .venv/bin/python bench/agent_bench.py            # about 3 minutes
    .venv/bin/python bench/agent_bench.py --quick    # fewer samples, 256 MiB output
    .venv/bin/python bench/agent_bench.py --commands # figure 1 only, ~1 minute

The commands run remo as a user's machine has it: installed as ``scripts/install``
installs it (uv.lock's runtime dependencies, remo as a wheel, bytecode compiled) into a
temporary prefix, on Debian's ``/usr/bin/python3`` as that script uses (``--python``),
with bytecode cached (``PYTHONDONTWRITEBYTECODE`` is removed from every command's
environment). The development ``.venv`` differs: grpcio-tools brings setuptools, whose
``.pth`` hook runs at every interpreter start, and its Python is pyenv's shared-library
build; ``remo run -- true`` through its agent is measured beside the installed one
(``--dev`` measures everything with ``.venv/bin/remo``). Figures, each interleaved
sample by sample:

1. ``remo run -- true`` and ``remo status ID``: the agent warm, the CLI on its own
   (``REMO_NO_AGENT=1``), ``ssh host true`` and the same over a ControlMaster
   connection; median of 20 after warm-ups (40 for the agent's commands and the
   ControlMaster anchor, interleaved with each other apart from the slow ones). And
   the first command of a profile (no agent yet: it runs on its own and starts one),
   5 times. ssh logs in twice over: as root, whose remote shell here is bash reading
   ~/.bashrc (pyenv's set-up: ~100 ms), and as ``remo-bench``, an account made for
   this (``/bin/sh``, an empty home, no rc file), which measures ssh itself; ``remo
   run -- true`` is compared with the latter.
2. 200 times ``remo run -- true``, 8 at a time, through the agent, against 200 times
   ``ssh host true`` (fresh and over ControlMaster), total wall time.
3. ``remo logs`` of a 1 GiB output through the agent and on its own, against
   ``ssh -c aes128-gcm@openssh.com host 'head -c 1G /dev/zero'``: MiB/s, median of 3.
4. follow latency through the agent against ssh (bench/remote_bench.py's method).

Results: a table on stdout and ``bench/results/agent.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import remote_bench as rb  # noqa: E402 - bench/ is not a package
from _harness import user_install  # noqa: E402

RESULTS = HERE / "results" / "agent.json"
CIPHER = ("-c", "aes128-gcm@openssh.com")


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p10_ms": round(rb.pct(values, 10) * 1000, 2),
        "p90_ms": round(rb.pct(values, 90) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--commands", action="store_true", help="only figure 1 (one command), ~1 minute"
    )
    parser.add_argument(
        "--python", default="/usr/bin/python3", help="the interpreter of the install measured"
    )
    parser.add_argument(
        "--dev", action="store_true", help="measure .venv/bin/remo, not an install of the tree"
    )
    args = parser.parse_args()
    samples = 8 if args.quick else 20
    size_spec, size = ("256M", 256 << 20) if args.quick else ("1G", 1 << 30)
    tmp = Path(tempfile.mkdtemp(prefix="remo-agent-bench-"))
    runtime = Path(tempfile.mkdtemp(prefix="rab-"))
    remo = rb.RemoSide(tmp)
    ssh: rb.SshSide | None = None
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    cli = rb.REMO
    if not args.dev:
        cli = str(user_install(tmp / "install", args.python))
    results["cli"] = cli
    dev_runtime = Path(tempfile.mkdtemp(prefix="rab-dev-"))
    try:
        remo.start()
        skipped = rb.ensure_sshd()
        if skipped is None:
            ssh = rb.SshSide(tmp)
            ssh.start()
        direct = {**remo.env}
        direct.pop("PYTHONDONTWRITEBYTECODE", None)
        agent = {**direct, "XDG_RUNTIME_DIR": str(runtime), "REMO_AGENT_IDLE": "600"}
        agent.pop("REMO_NO_AGENT", None)
        master = ("-o", "ControlMaster=auto", "-o", f"ControlPath={tmp}/cm-%C",
                  "-o", "ControlPersist=120")  # fmt: skip

        def run(env: dict[str, str], *argv: str, remo_cli: str = cli) -> Callable[[], float]:
            return lambda: rb.timed([remo_cli, *argv], env, stdout=subprocess.DEVNULL)

        job = rb.out([cli, "run", "-d", "--", "true"], direct).strip()
        rb.out([cli, "wait", job], direct)
        # Two groups, each interleaved sample by sample: the commands of a few ms, and
        # those of a few hundred (whose leftovers, a remote bash tearing down or grpc's
        # threads, would otherwise land on the next fast sample of this 2-core machine).
        fast: dict[str, Callable[[], float]] = {
            "remo run, agent": run(agent, "run", "--", "true"),
            "remo status, agent": run(agent, "status", job),
        }
        if not args.dev:  # (an agent of its own: another build's would decline)
            dev_agent = {**agent, "XDG_RUNTIME_DIR": str(dev_runtime)}
            fast["remo run, agent, .venv"] = run(dev_agent, "run", "--", "true", remo_cli=rb.REMO)
        slow: dict[str, Callable[[], float]] = {
            "remo run, on its own": run(direct, "run", "--", "true"),
            "remo status, on its own": run(direct, "status", job),
        }
        if ssh is not None:
            plain = PlainLogin(ssh, tmp)
            fast["ssh remo-bench true, ControlMaster"] = lambda: rb.timed(
                plain.cmd("true", options=master), stdout=subprocess.DEVNULL
            )
            slow["ssh remo-bench true"] = lambda: rb.timed(
                plain.cmd("true"), stdout=subprocess.DEVNULL
            )
            slow["ssh true"] = lambda: rb.timed(ssh.cmd("true"), stdout=subprocess.DEVNULL)
            slow["ssh true, ControlMaster"] = lambda: rb.timed(
                ssh.cmd("true", options=master), stdout=subprocess.DEVNULL
            )
        results["load before"] = rb.loadavg()
        raw = rb.interleaved(fast, warmups=5, samples=samples * 2)
        raw |= rb.interleaved(slow, warmups=2, samples=samples)
        results["load after"] = rb.loadavg()
        results["one command"] = {name: stats(v) for name, v in raw.items()}
        anchor = results["one command"].get("ssh remo-bench true, ControlMaster")
        if anchor is not None:
            results["x ssh ControlMaster (remo-bench)"] = {
                name: round(figure["median_ms"] / anchor["median_ms"], 2)
                for name, figure in results["one command"].items()
                if name.startswith("remo")
            }
        if args.commands:
            return _finish(results)

        first = []
        for _ in range(5):
            rb.out([cli, "agent", "stop"], agent)
            time.sleep(0.5)  # (the old agent lets go of its socket)
            first.append(run(agent, "run", "--", "true")())
            time.sleep(1.5)  # (the new agent is up before the next stop)
        results["first command (starts the agent)"] = stats(first)

        def burst(make: Callable[[], float]) -> float:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: make(), range(200)))
            return time.perf_counter() - t0

        bursts: dict[str, Callable[[], float]] = {
            "remo run, agent": run(agent, "run", "--", "true")
        }
        if ssh is not None:
            bursts["ssh true"] = lambda: rb.timed(ssh.cmd("true"), stdout=subprocess.DEVNULL)
            bursts["ssh true, ControlMaster"] = lambda: rb.timed(
                ssh.cmd("true", options=master), stdout=subprocess.DEVNULL
            )
            bursts["ssh remo-bench true"] = lambda: rb.timed(
                plain.cmd("true"), stdout=subprocess.DEVNULL
            )
            bursts["ssh remo-bench true, ControlMaster"] = lambda: rb.timed(
                plain.cmd("true", options=master), stdout=subprocess.DEVNULL
            )
        results["200 commands, 8 at a time (s)"] = {
            name: round(burst(make), 2) for name, make in bursts.items()
        }

        big = rb.out([cli, "run", "-d", "--", "head", "-c", size_spec, "/dev/zero"], direct)
        rb.out([cli, "wait", big.strip()], direct)
        for env in (agent, direct):
            got = rb.count_bytes([cli, "logs", big.strip()], env)
            assert got == size, f"remo logs gave {got} bytes"
        reads: dict[str, Callable[[], float]] = {
            "remo logs, agent": run(agent, "logs", big.strip()),
            "remo logs, on its own": run(direct, "logs", big.strip()),
        }
        if ssh is not None:
            reads["ssh aes128-gcm"] = lambda: rb.timed(
                ssh.cmd(f"head -c {size_spec} /dev/zero", options=CIPHER),
                stdout=subprocess.DEVNULL,
            )
        raw = rb.interleaved(reads, warmups=1, samples=3)
        results["logs MiB/s"] = {
            name: round(size / (1 << 20) / statistics.median(v), 1) for name, v in raw.items()
        }

        follow = rb.follow_latency(_AgentSide(cli, agent), ssh, 4.0 if args.quick else 6.0)
        results["follow latency"] = {k: follow.get(k) for k in ("remo", "ssh")}
    finally:
        for where, remo_cli in ((runtime, cli), (dev_runtime, rb.REMO)):
            with_agent = {**remo.env, "XDG_RUNTIME_DIR": str(where)}
            with_agent.pop("REMO_NO_AGENT", None)
            subprocess.run(
                [remo_cli, "agent", "stop"], env=with_agent, capture_output=True, check=False
            )
        remo.stop()
        if ssh is not None:
            ssh.stop()
        shutil.rmtree(tmp / "install", ignore_errors=True)
    return _finish(results)


def _finish(results: dict[str, Any]) -> int:
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


#: The account ssh logs in to for the anchor of ssh itself: its shell is /bin/sh (dash
#: on Debian: no rc file read for a command), its home empty.
PLAIN_USER = "remo-bench"
PLAIN_HOME = "/var/lib/remo-bench"


class PlainLogin:
    """``ssh remo-bench@127.0.0.1`` through the bench's sshd (made if missing)."""

    def __init__(self, ssh: rb.SshSide, tmp: Path) -> None:
        self._ssh = ssh
        _ensure_plain_account()
        # sshd reads AuthorizedKeysFile as the account that logs in: let it read the
        # bench's public key (the directory is traversable, not listable).
        tmp.chmod(0o711)
        ssh.authorized.chmod(0o644)

    def cmd(self, *remote: str, options: Sequence[str] = ()) -> list[str]:
        argv = self._ssh.cmd(*remote, options=options)
        host = argv.index("127.0.0.1")
        argv[host] = f"{PLAIN_USER}@127.0.0.1"
        return argv


def _ensure_plain_account() -> None:
    try:
        pwd.getpwnam(PLAIN_USER)
    except KeyError:
        rb.out(["useradd", "--system", "--no-create-home", "--home-dir", PLAIN_HOME,
                "--shell", "/bin/sh", "--user-group", PLAIN_USER])  # fmt: skip
    # With UsePAM no, sshd refuses an account whose password is locked ("!"); "*" is
    # no password at all, and not locked: keys only.
    rb.out(["usermod", "--password", "*", PLAIN_USER])
    entry = pwd.getpwnam(PLAIN_USER)
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o755, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    found = sorted(p.name for p in home.iterdir())
    if found:
        raise RuntimeError(f"{home} should be empty (no rc file), holds {found}")


class _AgentSide:
    """A RemoSide whose commands go through the agent (for rb.follow_latency)."""

    def __init__(self, cli: str, env: dict[str, str]) -> None:
        self.env = env
        self._cli = cli

    def cmd(self, *args: str) -> list[str]:
        return [self._cli, *args]


if __name__ == "__main__":
    sys.exit(main())

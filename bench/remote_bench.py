"""remo over the network, end to end through the ``remo`` CLI, next to ssh on the same host.

Run as root (the remo server runs jobs under cgroups as their owners' accounts, and sshd
needs root to start)::

    .venv/bin/python bench/remote_bench.py            # full run (about 4 minutes)
    .venv/bin/python bench/remote_bench.py --quick    # fewer samples, 256 MiB output
    .venv/bin/python bench/remote_bench.py --only streams   # figures 2-5 alone

One run sets up both sides itself, on 127.0.0.1 only:

- remo: ``remo server --state-dir <tmp> --listen 127.0.0.1:<free port>`` (a subprocess;
  ready when its stderr says "remo server listening"), a credential from
  ``remo register --state-dir <tmp> -o <file>``, and ``REMO_PROFILE=<file>`` for every
  ``remo`` command, each a fresh CLI process with its own connection
  (``REMO_NO_AGENT=1``, ``REMO_AGENT_IDLE=0``: no profile agent is used or started).
- ssh: ``/usr/sbin/sshd -D -f <cfg>`` on a free port with a fresh host key and a fresh
  ed25519 client key in a temp dir (openssh-server is installed with apt-get when
  ``sshd`` is missing; when that fails the ssh column is left empty). The client is
  ``ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o BatchMode=yes -i <key> -p <port> 127.0.0.1``: no ControlMaster, so every ssh is a
  fresh connection with a full key exchange, as every ``remo`` is a fresh process with
  a fresh TLS connection. Cipher and MAC are OpenSSH's defaults.

Figures (remo and ssh are interleaved sample by sample, so that load from elsewhere on
the machine hits both alike):

1. ``remo run -- true`` end to end vs ``ssh 127.0.0.1 true``: median of 20 after 2
   warm-ups each. Target: remo at least 2x faster.
2. ``remo logs <id>`` of a finished job that wrote 1 GiB (``head -c 1G /dev/zero``,
   started with ``remo run -d`` and awaited with ``remo wait``), stdout to /dev/null,
   and ``remo logs --stdout <id>`` of the same job (one stream read alone), vs
   ``ssh 127.0.0.1 'head -c 1G /dev/zero' > /dev/null``: throughput (median of 5,
   interleaved). Targets: ``remo logs`` at least 616 MiB/s and 2x ssh's throughput.
3. stdin: ``head -c 1G /dev/zero | remo run -- wc -c`` vs the same into
   ``ssh 127.0.0.1 wc -c`` (OpenSSH's default cipher, and ``-c aes128-gcm@openssh.com``):
   throughput over the whole command (median of 5, interleaved); every sample checks
   that the job counted all 1073741824 bytes; and, remo only, ``remo run -- wc -c <
   file`` of a 1 GiB file. Target: comparable to ``remo logs`` (at least 0.8x its
   figure of 2.). Once: a 1 GiB non-constant pattern (1 MiB blocks of seeded random
   bytes, each starting with its index) written here into ``remo run -- sha256sum``'s
   stdin; the job's digest must equal the one computed here. The same into a local
   ``sha256sum`` is its speed's baseline (sha256 bounds both).
4. ``remo logs --tail 3 <id>`` of a finished job that wrote 1 GiB of lines
   (``yes 0123456789abcdef | head -c 1G``), median of 10 fresh CLI processes, next to
   ``remo status <id>`` (the floor: a fresh CLI's connection and one call), and for
   ssh ``ssh 127.0.0.1 tail -n 3 <file>`` on a local file of the same 1 GiB next to
   ``ssh 127.0.0.1 true``; all interleaved, with local ``tail -n 3 <file>`` as context.
   The three lines must equal local ``tail -n 3``'s. Target: well under a second
   (at most 0.5 s).
5. follow latency: a job prints ``time.time_ns()`` on stdout every 20 ms for 6 s (after
   a 1.5 s pause, so that the follower is attached before the first line);
   ``remo logs -f <id>`` runs as a subprocess whose stdout is a pipe read here;
   latency = arrival - embedded timestamp. Baseline: the same program streamed by
   ``ssh 127.0.0.1 python3 -c ...``. Targets: remo median at most 20 ms, and at most
   1 ms.

Context (no target): ``python -X importtime -c "import remo.cli.main"`` (sum of the self
times), the same for what ``remo run`` imports, ``remo --help`` wall time, bare
``python -c pass``, and the phases of one ``remo run -- true`` measured inside a fresh
process that does what the CLI does (interpreter start, imports, credential, connection
and TLS handshake, Start, Output, Wait).

Results: a table on stdout and ``bench/results/remote.json`` (``--only streams``:
``bench/results/remote-streams.json``). Jobs are removed with
``remo rm``; the server gets SIGTERM and sshd is stopped by its PID; temp dirs are
removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = ROOT / ".venv" / "bin"
REMO = str(VENV_BIN / "remo")
PYTHON = str(VENV_BIN / "python")
RESULTS = HERE / "results" / "remote.json"
LISTENING = "remo server listening"
SSHD = "/usr/sbin/sshd"
JOB_PYTHON = "/usr/bin/python3"
#: The line the 1 GiB log of the --tail figure repeats (``yes`` prints it).
TAIL_LINE = "0123456789abcdef"
#: ssh's cipher besides its default, for the stdin figure.
SSH_AES = "aes128-gcm@openssh.com"

#: The follow-latency job: a 1.5 s pause, then a timestamped line every 20 ms for 6 s.
FOLLOW_SCRIPT = (
    "import sys, time\n"
    "time.sleep({pause})\n"
    "end = time.time() + {seconds}\n"
    "while time.time() < end:\n"
    "    sys.stdout.write(str(time.time_ns()) + '\\n')\n"
    "    sys.stdout.flush()\n"
    "    time.sleep(0.02)\n"
)


# -- small helpers -----------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Percentile ``p`` (0-100), linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(argv: Sequence[str], env: dict[str, str] | None = None, **kw: Any) -> float:
    """Seconds ``argv`` took, start to exit; raises if it failed."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, check=False, env=env, stdin=subprocess.DEVNULL, **kw)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}")
    return elapsed


def out(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}: {proc.stderr}")
    return proc.stdout


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# -- the remo side -----------------------------------------------------------------------


class RemoSide:
    """A ``remo server`` subprocess on a free loopback port, and a credential for it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.port = free_port()
        self.log = tmp / "server.log"
        self.credential = tmp / "bench.remo"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ)
        self.env.pop("REMO_DEBUG", None)
        self.env["REMO_PROFILE"] = str(self.credential)
        # Every command on its own, with its own connection (as every ssh here is):
        # never through a profile's agent, and none started for later commands.
        self.env["REMO_NO_AGENT"] = "1"
        self.env["REMO_AGENT_IDLE"] = "0"

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    REMO,
                    "server",
                    "--state-dir",
                    str(self.state),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while LISTENING not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"remo server exited:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"remo server did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        out([REMO, "register", "--state-dir", str(self.state), "-o", str(self.credential)])

    def cmd(self, *args: str) -> list[str]:
        return [REMO, *args]

    def remove_all_jobs(self) -> int:
        jobs = json.loads(out([REMO, "ps", "--all-pages", "--json"], self.env) or "[]")
        removed = 0
        for job in jobs:
            job_id = str(job["id"])
            if (
                subprocess.run(
                    [REMO, "rm", "--stop", job_id], env=self.env, capture_output=True, check=False
                ).returncode
                == 0
            ):
                removed += 1
        return removed

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the ssh side ------------------------------------------------------------------------


def ensure_sshd() -> str | None:
    """None when sshd is there (installing it if needed), else why the ssh side is skipped."""
    if os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen"):
        return None
    print("sshd not found: apt-get install -y openssh-server ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(
        ["apt-get", "install", "-y", "openssh-server", "openssh-client"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not os.path.exists(SSHD):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return f"could not install openssh-server (apt-get exit {proc.returncode}): " + " | ".join(
            tail
        )
    return None


class SshSide:
    """``sshd -D`` on a free loopback port with throw-away keys; ``ssh`` argv for it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.host_key = tmp / "ssh_host_ed25519_key"
        self.client_key = tmp / "id_ed25519"
        self.authorized = tmp / "authorized_keys"
        self.config = tmp / "sshd_config"
        self.pidfile = tmp / "sshd.pid"
        self.log = tmp / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for key in (self.host_key, self.client_key):
            out(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "remo-bench", "-f", str(key)])
        shutil.copyfile(f"{self.client_key}.pub", self.authorized)
        os.chmod(self.authorized, 0o600)
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            f"PidFile {self.pidfile}\n"
            "LogLevel ERROR\n"
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        out([SSHD, "-t", "-f", str(self.config)])
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not start listening")
            time.sleep(0.05)
        out(self.cmd("true"))

    def cmd(self, *remote: str, options: Sequence[str] = ()) -> list[str]:
        return [
            "ssh",
            *options,
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-i",
            str(self.client_key),
            "-p",
            str(self.port),
            "127.0.0.1",
            *remote,
        ]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# -- figures -----------------------------------------------------------------------------


def interleaved(
    fns: dict[str, Callable[[], float]], warmups: int, samples: int
) -> dict[str, list[float]]:
    """Run each function ``warmups`` times, then ``samples`` times, alternating."""
    for _ in range(warmups):
        for fn in fns.values():
            fn()
    result: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            result[name].append(fn())
    return result


def run_true(remo: RemoSide, ssh: SshSide | None, samples: int) -> dict[str, Any]:
    fns: dict[str, Callable[[], float]] = {
        "remo": lambda: timed(remo.cmd("run", "--", "true"), remo.env, stdout=subprocess.DEVNULL),
    }
    if ssh is not None:
        fns["ssh"] = lambda: timed(ssh.cmd("true"), stdout=subprocess.DEVNULL)
    raw = interleaved(fns, warmups=2, samples=samples)
    return {
        name: {
            "n": len(v),
            "median_ms": round(statistics.median(v) * 1000, 1),
            "p10_ms": round(pct(v, 10) * 1000, 1),
            "p90_ms": round(pct(v, 90) * 1000, 1),
            "min_ms": round(min(v) * 1000, 1),
            "samples_ms": [round(x * 1000, 1) for x in v],
        }
        for name, v in raw.items()
    }


def count_bytes(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Bytes ``argv`` writes on stdout (read here in 1 MiB pieces)."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
    proc.wait()
    return total


def mib_per_s(size: int, seconds: Sequence[float]) -> dict[str, Any]:
    med = statistics.median(seconds)
    return {
        "n": len(seconds),
        "median_s": round(med, 3),
        "samples_s": [round(x, 3) for x in seconds],
        "mib_per_s": round(size / med / (1 << 20), 1),
    }


def job_files(remo: RemoSide, job_id: str) -> dict[str, int]:
    """Sizes of the job's output files on the server (``records``: its index)."""
    for job_dir in sorted(remo.state.glob(f"**/jobs/*/{job_id}")):
        if (job_dir / "records").exists():
            return {f.name: f.stat().st_size for f in job_dir.iterdir() if f.is_file()}
    return {}


def big_output(
    remo: RemoSide, ssh: SshSide | None, size_spec: str, size: int, repeats: int
) -> dict[str, Any]:
    job_id = out(
        remo.cmd("run", "-d", "--", "head", "-c", size_spec, "/dev/zero"), remo.env
    ).strip()
    t0 = time.perf_counter()
    out(remo.cmd("wait", job_id), remo.env)
    job_seconds = time.perf_counter() - t0
    for args in (("logs", job_id), ("logs", "--stdout", job_id)):
        got = count_bytes(remo.cmd(*args), remo.env)
        if got != size:
            raise RuntimeError(f"remo {shlex.join(args)} gave {got} bytes, expected {size}")
    got = count_bytes(remo.cmd("logs", "--stderr", job_id), remo.env)
    if got != 0:
        raise RuntimeError(f"remo logs --stderr {job_id} gave {got} bytes, expected none")
    fns: dict[str, Callable[[], float]] = {
        "remo": lambda: timed(remo.cmd("logs", job_id), remo.env, stdout=subprocess.DEVNULL),
        "remo_stdout": lambda: timed(
            remo.cmd("logs", "--stdout", job_id), remo.env, stdout=subprocess.DEVNULL
        ),
    }
    if ssh is not None:
        got = count_bytes(ssh.cmd(f"head -c {size_spec} /dev/zero"))
        if got != size:
            raise RuntimeError(f"ssh gave {got} bytes, expected {size}")
        fns["ssh"] = lambda: timed(
            ssh.cmd(f"head -c {size_spec} /dev/zero"), stdout=subprocess.DEVNULL
        )
    raw = interleaved(fns, warmups=0, samples=repeats)
    result: dict[str, Any] = {
        "bytes": size,
        "job_id": job_id,
        "job_write_s": round(job_seconds, 2),
        "job_files": job_files(remo, job_id),
    }
    for name, v in raw.items():
        result[name] = mib_per_s(size, v)
    return result


# -- stdin -------------------------------------------------------------------------------


def piped(
    producer: Sequence[str], argv: Sequence[str], env: dict[str, str] | None = None
) -> tuple[float, str]:
    """``producer | argv``: seconds from the start until both exited, and argv's stdout."""
    t0 = time.perf_counter()
    src = subprocess.Popen(producer, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert src.stdout is not None
    try:
        proc = subprocess.Popen(argv, env=env, stdin=src.stdout, stdout=subprocess.PIPE)
    finally:
        src.stdout.close()
    output, _ = proc.communicate()
    src.wait()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or src.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(producer)} | {shlex.join(argv)} exited with "
            f"{src.returncode} | {proc.returncode}"
        )
    return elapsed, output.decode(errors="replace")


def from_file(path: Path, argv: Sequence[str], env: dict[str, str] | None) -> tuple[float, str]:
    """``argv < path``: seconds from the start until it exited, and its stdout."""
    with open(path, "rb") as source:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdin=source, capture_output=True, check=False)
        elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} < {path} exited with {proc.returncode}")
    return elapsed, proc.stdout.decode(errors="replace")


def stdin_throughput(
    remo: RemoSide, ssh: SshSide | None, tmp: Path, size_spec: str, size: int, repeats: int
) -> dict[str, Any]:
    """``head -c SIZE /dev/zero | X wc -c``: every sample checks the job's count. Also
    ``remo run -- wc -c < file`` (a file: the CLI reads it in 256 KiB pieces, where a
    pipe gives at most what it holds, 64 KiB by default)."""
    producer = ["head", "-c", size_spec, "/dev/zero"]
    zeros = tmp / "zeros"
    out(["sh", "-c", f"{shlex.join(producer)} > {shlex.quote(str(zeros))}"])
    counts: dict[str, list[str]] = {}

    def sample(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> float:
        if name == "remo_file":
            elapsed, text = from_file(zeros, argv, env)
        else:
            elapsed, text = piped(producer, argv, env)
        counts.setdefault(name, []).append(text.strip())
        if text.strip() != str(size):
            raise RuntimeError(f"{name}: the job counted {text.strip()!r}, expected {size}")
        return elapsed

    fns: dict[str, Callable[[], float]] = {
        "remo": lambda: sample("remo", remo.cmd("run", "--", "wc", "-c"), remo.env),
        "remo_file": lambda: sample("remo_file", remo.cmd("run", "--", "wc", "-c"), remo.env),
    }
    if ssh is not None:
        fns["ssh"] = lambda: sample("ssh", ssh.cmd("wc -c"))
        fns["ssh_aes128_gcm"] = lambda: sample(
            "ssh_aes128_gcm", ssh.cmd("wc -c", options=("-c", SSH_AES))
        )
    raw = interleaved(fns, warmups=0, samples=repeats)
    zeros.unlink()
    result: dict[str, Any] = {"bytes": size, "producer": shlex.join(producer), "job": "wc -c"}
    for name, v in raw.items():
        result[name] = mib_per_s(size, v)
        result[name]["counts_ok"] = all(c == str(size) for c in counts[name])
    return result


def pattern(size: int, block: int = 1 << 20) -> Iterator[bytes]:
    """``size`` bytes that repeat nowhere: seeded random 1 MiB blocks, each starting with
    its own index."""
    base = random.Random(20261206).randbytes(block)
    for index in range(size // block):
        yield index.to_bytes(8, "little") + base[8:]


def through(argv: Sequence[str], env: dict[str, str] | None, size: int) -> tuple[str, str, float]:
    """The pattern written here into ``argv``'s stdin: (sha256 computed here, argv's
    first word of output, seconds)."""
    local = hashlib.sha256()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for block in pattern(size):
                local.update(block)
                proc.stdin.write(block)
        finally:
            proc.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    text = proc.stdout.read().decode(errors="replace")
    proc.wait()
    writer.join()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}")
    return local.hexdigest(), (text.split() or [""])[0], elapsed


def stdin_exact(remo: RemoSide, size: int) -> dict[str, Any]:
    """The pattern into ``remo run -- sha256sum``: the digests must match. Baseline: the
    same into a local ``sha256sum`` (sha256 and the generator bound both)."""
    local, remote, seconds = through(remo.cmd("run", "--", "sha256sum"), remo.env, size)
    base_local, base_job, base_seconds = through(["sha256sum"], None, size)
    return {
        "bytes": size,
        "local_sha256": local,
        "job_sha256": remote,
        "equal": remote == local,
        "seconds": round(seconds, 3),
        "mib_per_s": round(size / seconds / (1 << 20), 1),
        "local_sha256sum_equal": base_job == base_local == local,
        "local_sha256sum_seconds": round(base_seconds, 3),
        "local_sha256sum_mib_per_s": round(size / base_seconds / (1 << 20), 1),
    }


# -- the last lines of a big log ---------------------------------------------------------


def tail_time(
    remo: RemoSide, ssh: SshSide | None, tmp: Path, size_spec: str, size: int, samples: int
) -> dict[str, Any]:
    """``remo logs --tail 3`` of a finished job that wrote ``size`` bytes of lines."""
    script = f"yes {TAIL_LINE} | head -c {size_spec}"
    job_id = out(remo.cmd("run", "-d", "--", "sh", "-c", script), remo.env).strip()
    t0 = time.perf_counter()
    out(remo.cmd("wait", job_id), remo.env)
    job_seconds = time.perf_counter() - t0
    local = tmp / "lines"
    out(["sh", "-c", f"{script} > {shlex.quote(str(local))}"])
    if local.stat().st_size != size:
        raise RuntimeError(f"{local}: {local.stat().st_size} bytes, expected {size}")
    expected = out(["tail", "-n", "3", str(local)])
    got = out(remo.cmd("logs", "--tail", "3", job_id), remo.env)
    if got != expected:
        raise RuntimeError(f"remo logs --tail 3 {job_id} gave {got!r}, expected {expected!r}")
    fns: dict[str, Callable[[], float]] = {
        "remo_tail": lambda: timed(
            remo.cmd("logs", "--tail", "3", job_id), remo.env, stdout=subprocess.DEVNULL
        ),
        "remo_status": lambda: timed(
            remo.cmd("status", job_id), remo.env, stdout=subprocess.DEVNULL
        ),
        "local_tail": lambda: timed(["tail", "-n", "3", str(local)], stdout=subprocess.DEVNULL),
    }
    if ssh is not None:
        if out(ssh.cmd("tail", "-n", "3", shlex.quote(str(local)))) != expected:
            raise RuntimeError("ssh tail -n 3 gave other lines than local tail -n 3")
        fns["ssh_tail"] = lambda: timed(
            ssh.cmd("tail", "-n", "3", shlex.quote(str(local))), stdout=subprocess.DEVNULL
        )
        fns["ssh_true"] = lambda: timed(ssh.cmd("true"), stdout=subprocess.DEVNULL)
    raw = interleaved(fns, warmups=1, samples=samples)
    local.unlink()
    result: dict[str, Any] = {
        "bytes": size,
        "job": script,
        "job_id": job_id,
        "job_write_s": round(job_seconds, 2),
        "job_files": job_files(remo, job_id),
        "lines": expected.count("\n") + (0 if expected.endswith("\n") else 1),
    }
    for name, v in raw.items():
        result[name] = {
            "n": len(v),
            "median_ms": round(statistics.median(v) * 1000, 2),
            "p90_ms": round(pct(v, 90) * 1000, 2),
            "min_ms": round(min(v) * 1000, 2),
            "samples_ms": [round(x * 1000, 2) for x in v],
        }
    return result


def _read_lines(proc: subprocess.Popen[bytes], sink: list[tuple[int, int]]) -> None:
    """Append (arrival ns, embedded ns) for every line ``proc`` writes on stdout."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    while True:
        chunk = os.read(fd, 65536)
        now = time.time_ns()
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                sink.append((now, int(line)))


def _follow(argv: Sequence[str], env: dict[str, str] | None, timeout: float) -> dict[str, Any]:
    lines: list[tuple[int, int]] = []
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    lat = [(arrival - stamp) / 1e6 for arrival, stamp in lines]
    if not lat:
        return {"n": 0}
    return {
        "n": len(lat),
        "median_ms": round(statistics.median(lat), 2),
        "p90_ms": round(pct(lat, 90), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "max_ms": round(max(lat), 2),
        "min_ms": round(min(lat), 2),
        "exit": proc.returncode,
    }


def follow_latency(remo: RemoSide, ssh: SshSide | None, seconds: float) -> dict[str, Any]:
    pause = 1.5
    script = FOLLOW_SCRIPT.format(pause=pause, seconds=seconds)
    result: dict[str, Any] = {"interval_ms": 20, "seconds": seconds, "pause_s": pause}
    job_id = out(remo.cmd("run", "-d", "--", JOB_PYTHON, "-c", script), remo.env).strip()
    result["job_id"] = job_id
    result["remo"] = _follow(remo.cmd("logs", "-f", job_id), remo.env, seconds + 60)
    if ssh is not None:
        result["ssh"] = _follow(ssh.cmd(JOB_PYTHON, "-c", shlex.quote(script)), None, seconds + 60)
    return result


# -- context: start-up cost and where the time of one ``remo run -- true`` goes -----------


#: Packages whose cumulative import time is reported (wherever in the tree they load).
IMPORT_WATCH = (
    "click",
    "grpc",
    "asyncio",
    "cryptography.x509",
    "remo.pki.package",
    "remo.v1.jobs_pb2",
    "google.protobuf.descriptor_pool",
    "remo.client.profiles",
    "remo.core",
)


def import_time(statement: str) -> dict[str, Any]:
    """Sum of ``-X importtime`` self times (ms), and the cumulative time of some packages."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    )
    total_us = 0
    cumulative: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line[len("import time:") :].split("|")
        self_us, cumulative_us, name = int(fields[0]), int(fields[1]), fields[2].strip()
        total_us += self_us
        if name in IMPORT_WATCH:
            cumulative[name] = max(cumulative.get(name, 0), cumulative_us)
    return {
        "total_ms": round(total_us / 1000, 1),
        "cumulative_ms": {name: round(us / 1000, 1) for name, us in cumulative.items()},
    }


def median_of_median(fn: Callable[[], dict[str, Any]], key: str, runs: int) -> dict[str, Any]:
    """The run of ``fn`` whose ``key`` is the median of ``runs`` runs."""
    results = sorted((fn() for _ in range(runs)), key=lambda r: r[key])
    return results[len(results) // 2]


#: Run in a fresh interpreter: what ``remo run -- true`` does, with a clock between steps.
PHASES_SCRIPT = r"""
import os, sys, time
marks = [("interpreter start", int(os.environ["BENCH_T0_NS"])), ("script start", time.time_ns())]
def mark(label): marks.append((label, time.time_ns()))
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
import click, remo.cli.main
mark("import click + remo.cli.main")
import remo.cli.run
mark("import remo.cli.run")
import grpc
mark("import grpc")
from remo.client import Client
mark("import remo.client.sync (rest)")
client = Client.from_profile(None)
mark("load credential + channel object")
grpc.channel_ready_future(client._channel).result(timeout=30)
mark("TCP + TLS 1.3 handshake + HTTP/2 (channel ready)")
job = client.start(["true"]).job
mark("Start RPC (server starts the job)")
for chunk in client.output(job.id, follow=True):
    pass
mark("Output follow RPC until the end")
final = client.wait(job.id)
mark("Wait RPC")
sys.stdout.write("\n".join(f"{label}\t{ns}" for label, ns in marks) + "\n")
sys.stdout.flush()
os._exit(0)
"""


def run_phases(remo: RemoSide, runs: int) -> dict[str, Any]:
    """Median duration of each step of one ``remo run -- true`` done by hand (ms)."""
    per_step: dict[str, list[float]] = {}
    totals: list[float] = []
    for _ in range(runs + 1):
        env = dict(remo.env, BENCH_T0_NS=str(time.time_ns()))
        t0 = time.perf_counter()
        text = out([PYTHON, "-c", PHASES_SCRIPT], env)
        total = time.perf_counter() - t0
        marks = [(line.split("\t")[0], int(line.split("\t")[1])) for line in text.splitlines()]
        if _ == 0:
            continue  # warm-up
        totals.append(total * 1000)
        for (_, prev), (label, now) in itertools.pairwise(marks):
            per_step.setdefault(label, []).append((now - prev) / 1e6)
        per_step.setdefault("exit (os._exit, reaped)", []).append(
            total * 1000 - (marks[-1][1] - marks[0][1]) / 1e6
        )
    steps = {label: round(statistics.median(v), 1) for label, v in per_step.items()}
    return {"runs": runs, "steps_ms": steps, "total_median_ms": round(statistics.median(totals), 1)}


#: In one process: RPC round trips on a finished job, to tell per-call cost from follow cost.
RPC_SCRIPT = r"""
import json, statistics, sys, time
import grpc
from remo.client import Client
client = Client.from_profile(None)
grpc.channel_ready_future(client._channel).result(timeout=30)
job = client.start(["true"]).job
client.wait(job.id)
def ms(fn, n):
    v = []
    for _ in range(n + 3):
        t0 = time.perf_counter(); fn(); v.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(v[3:]), 2)
n = int(sys.argv[1])
print(json.dumps({
    "job_id": job.id,
    "status_ms": ms(lambda: client.status(job.id), n),
    "wait_finished_ms": ms(lambda: client.wait(job.id), n),
    "output_finished_ms": ms(lambda: list(client.output(job.id)), n),
    "output_follow_finished_ms": ms(lambda: list(client.output(job.id, follow=True)), n),
}))
"""


def context(remo: RemoSide, runs: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    result["importtime_remo_cli_main"] = median_of_median(
        lambda: import_time("import remo.cli.main"), "total_ms", 5
    )
    result["importtime_remo_run_path"] = median_of_median(
        lambda: import_time("import remo.cli.main, remo.cli.run, remo.client.sync"),
        "total_ms",
        5,
    )
    help_times = [timed([REMO, "--help"], stdout=subprocess.DEVNULL) for _ in range(runs + 2)]
    result["remo_help_ms"] = round(statistics.median(help_times[2:]) * 1000, 1)
    bare = [timed([PYTHON, "-c", "pass"]) for _ in range(runs + 2)]
    result["python_c_pass_ms"] = round(statistics.median(bare[2:]) * 1000, 1)
    result["run_true_phases"] = run_phases(remo, runs)
    result["rpc_on_finished_job"] = json.loads(
        out([PYTHON, "-c", RPC_SCRIPT, str(runs * 3)], remo.env)
    )
    return result


# -- report ------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def both(*checks: tuple[str, bool | None]) -> str:
    """Several targets of one row: "yes" / "NO" per target, labelled."""
    return "; ".join(
        f"{label}: {'-' if met is None else ('yes' if met else 'NO')}" for label, met in checks
    )


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    f1 = results.get("run_true")
    f2 = results.get("big_output")
    fin = results.get("stdin")
    exact = results.get("stdin_exact")
    ft = results.get("tail")
    f3 = results.get("follow")
    if f1 is not None:
        remo_ms = f1["remo"]["median_ms"]
        ssh_ms = f1["ssh"]["median_ms"] if "ssh" in f1 else None
        speedup = ratio(ssh_ms, remo_ms)
        rows.append(
            {
                "figure": f"`run -- true` end to end, median of {f1['remo']['n']} (ms)",
                "remo": remo_ms,
                "ssh": ssh_ms,
                "ratio": f"{speedup}x faster" if speedup else "-",
                "target": ">= 2x faster",
                "met": speedup is not None and speedup >= 2,
            }
        )
    logs_tp = None
    if f2 is not None:
        size_gib = f2["bytes"] / (1 << 30)
        logs_tp = f2["remo"]["mib_per_s"]
        ssh_tp = f2["ssh"]["mib_per_s"] if "ssh" in f2 else None
        tp_ratio = ratio(logs_tp, ssh_tp)
        rows.append(
            {
                "figure": f"`logs` of a finished {size_gib:g} GiB output, median of "
                f"{f2['remo']['n']} (MiB/s)",
                "remo": logs_tp,
                "ssh": ssh_tp,
                "ratio": f"{tp_ratio}x" if tp_ratio else "-",
                "target": ">= 616 MiB/s; >= 2x ssh",
                "met": both(
                    ("616", logs_tp >= 616),
                    ("2x", None if tp_ratio is None else tp_ratio >= 2),
                ),
            }
        )
        stdout_tp = f2["remo_stdout"]["mib_per_s"]
        rows.append(
            {
                "figure": "`logs --stdout` of the same output (MiB/s)",
                "remo": stdout_tp,
                "ssh": ssh_tp,
                "ratio": f"{ratio(stdout_tp, ssh_tp)}x" if ssh_tp else "-",
                "target": "-",
                "met": None,
            }
        )
    if fin is not None:
        size_gib = fin["bytes"] / (1 << 30)
        in_tp = fin["remo"]["mib_per_s"]
        of_logs = ratio(in_tp, logs_tp)
        for key, cipher in (("ssh", "default cipher"), ("ssh_aes128_gcm", SSH_AES)):
            ssh_tp = fin[key]["mib_per_s"] if key in fin else None
            rows.append(
                {
                    "figure": f"stdin: `head -c {size_gib:g}G /dev/zero \\| run -- wc -c`, "
                    f"median of {fin['remo']['n']} (MiB/s; ssh {cipher})",
                    "remo": in_tp,
                    "ssh": ssh_tp,
                    "ratio": f"{ratio(in_tp, ssh_tp)}x" if ssh_tp else "-",
                    "target": ">= 0.8x `logs`" if key == "ssh" else "-",
                    "met": (of_logs is not None and of_logs >= 0.8) if key == "ssh" else None,
                }
            )
        if of_logs is not None:
            rows[-2]["ratio"] += f" ({of_logs}x `logs`)"
        file_tp = fin["remo_file"]["mib_per_s"]
        rows.append(
            {
                "figure": f"stdin from a file: `run -- wc -c < {size_gib:g} GiB file` (MiB/s)",
                "remo": file_tp,
                "ssh": None,
                "ratio": f"{ratio(file_tp, logs_tp)}x `logs`" if logs_tp else "-",
                "target": "-",
                "met": None,
            }
        )
    if exact is not None:
        rows.append(
            {
                "figure": f"stdin: {exact['bytes'] / (1 << 30):g} GiB pattern through "
                "`run -- sha256sum`, digest equal (MiB/s)",
                "remo": f"{'equal' if exact['equal'] else 'DIFFERENT'} ({exact['mib_per_s']})",
                "ssh": None,
                "ratio": f"local `sha256sum` {exact['local_sha256sum_mib_per_s']}",
                "target": "equal",
                "met": exact["equal"],
            }
        )
    if ft is not None:
        size_gib = ft["bytes"] / (1 << 30)
        tail_ms = ft["remo_tail"]["median_ms"]
        ssh_tail = ft["ssh_tail"]["median_ms"] if "ssh_tail" in ft else None
        rows.append(
            {
                "figure": f"`logs --tail 3` of a {size_gib:g} GiB log, median of "
                f"{ft['remo_tail']['n']} (ms; ssh: `tail -n 3` of the file)",
                "remo": tail_ms,
                "ssh": ssh_tail,
                "ratio": f"{ratio(ssh_tail, tail_ms)}x faster" if ssh_tail else "-",
                "target": "<= 500 ms",
                "met": tail_ms <= 500,
            }
        )
        status_ms = ft["remo_status"]["median_ms"]
        ssh_true = ft["ssh_true"]["median_ms"] if "ssh_true" in ft else None
        rows.append(
            {
                "figure": "`status` of that job: the floor of a CLI call (ms; ssh: `true`)",
                "remo": status_ms,
                "ssh": ssh_true,
                "ratio": f"{ratio(ssh_true, status_ms)}x faster" if ssh_true else "-",
                "target": "-",
                "met": None,
            }
        )
    if f3 is not None:
        has_ssh = "ssh" in f3
        median = f3["remo"].get("median_ms")
        rows.append(
            {
                "figure": f"`logs -f` latency, median (ms, n={f3['remo'].get('n')})",
                "remo": median,
                "ssh": f3["ssh"].get("median_ms") if has_ssh else None,
                "ratio": f"{ratio(median, f3['ssh'].get('median_ms'))}x" if has_ssh else "-",
                "target": "<= 20 ms; <= 1 ms",
                "met": both(
                    ("20", median is not None and median <= 20),
                    ("1", median is not None and median <= 1),
                ),
            }
        )
        rows.append(
            {
                "figure": "`logs -f` latency, p99 (ms)",
                "remo": f3["remo"].get("p99_ms"),
                "ssh": f3["ssh"].get("p99_ms") if has_ssh else None,
                "ratio": f"{ratio(f3['remo'].get('p99_ms'), f3['ssh'].get('p99_ms'))}x"
                if has_ssh
                else "-",
                "target": "-",
                "met": None,
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    head = ["figure", "remo", "ssh", "ratio", "target", "met?"]
    body = [
        [
            r["figure"],
            str(r["remo"]),
            "-" if r["ssh"] is None else str(r["ssh"]),
            r["ratio"],
            r["target"],
            r["met"]
            if isinstance(r["met"], str)
            else ("-" if r["met"] is None else ("yes" if r["met"] else "NO")),
        ]
        for r in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def print_context(ctx: dict[str, Any]) -> None:
    print()
    print(
        f"import remo.cli.main: {ctx['importtime_remo_cli_main']['total_ms']} ms "
        f"(-X importtime, sum of self times); what `remo run` imports: "
        f"{ctx['importtime_remo_run_path']['total_ms']} ms"
    )
    print(
        "  cumulative: "
        + ", ".join(f"{k} {v}" for k, v in ctx["importtime_remo_run_path"]["cumulative_ms"].items())
    )
    print(f"remo --help: {ctx['remo_help_ms']} ms; python -c pass: {ctx['python_c_pass_ms']} ms")
    print("one `remo run -- true` done by hand in a fresh process, median per step (ms):")
    for label, ms in ctx["run_true_phases"]["steps_ms"].items():
        print(f"  {ms:8.1f}  {label}")
    print(f"  {ctx['run_true_phases']['total_median_ms']:8.1f}  total (wall, as seen here)")
    rpc = ctx["rpc_on_finished_job"]
    print(
        f"RPCs on a finished job (one process, median): Status {rpc['status_ms']} ms, "
        f"Wait {rpc['wait_finished_ms']} ms, Output {rpc['output_finished_ms']} ms, "
        f"Output with follow {rpc['output_follow_finished_ms']} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 256 MiB output")
    parser.add_argument("--no-ssh", action="store_true", help="remo only")
    parser.add_argument(
        "--only",
        choices=["streams"],
        default="",
        help="streams: figures 2-5 alone (logs, stdin, --tail, follow); no `run -- true`, "
        "no start-up context",
    )
    args = parser.parse_args()
    samples = 8 if args.quick else 20
    size_spec, size = ("256M", 256 << 20) if args.quick else ("1G", 1 << 30)
    repeats = 2 if args.quick else 5
    follow_s = 4.0 if args.quick else 6.0
    tail_samples = 5 if args.quick else 10

    if os.geteuid() != 0:
        print("run as root: the remo server and sshd need it", file=sys.stderr)
        return 2

    results: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": ("quick" if args.quick else "full") + (f", only {args.only}" if args.only else ""),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        meta["grpcio"] = version("grpcio")
        meta["protobuf"] = version("protobuf")
        meta["cryptography"] = version("cryptography")
    ssh_skip = "disabled with --no-ssh" if args.no_ssh else ensure_sshd()
    if ssh_skip:
        print(f"ssh baseline skipped: {ssh_skip}", flush=True)
        meta["ssh_skipped"] = ssh_skip
    else:
        meta["openssh"] = subprocess.run(
            ["ssh", "-V"], capture_output=True, text=True, check=False
        ).stderr.strip()

    tmp = Path(tempfile.mkdtemp(prefix="remo-remote-bench."))
    remo = RemoSide(tmp / "remo")
    ssh: SshSide | None = None
    remo.tmp.mkdir()
    try:
        print(f"starting remo server on 127.0.0.1:{remo.port} ...", flush=True)
        remo.start()
        if not ssh_skip:
            (tmp / "ssh").mkdir()
            ssh = SshSide(tmp / "ssh")
            print(f"starting sshd on 127.0.0.1:{ssh.port} ...", flush=True)
            try:
                ssh.start()
            except Exception as err:
                print(f"ssh baseline skipped: {err}", flush=True)
                meta["ssh_skipped"] = str(err)
                ssh.stop()
                ssh = None

        everything = not args.only
        if everything:
            print(f"1/7 run -- true, {samples} samples each ...", flush=True)
            results["run_true"] = run_true(remo, ssh, samples)
            results["run_true"]["loadavg_after"] = loadavg()
        print(f"2/7 logs of a finished {size_spec} output, {repeats} each ...", flush=True)
        results["big_output"] = big_output(remo, ssh, size_spec, size, repeats)
        results["big_output"]["loadavg_after"] = loadavg()
        print(f"3/7 stdin: {size_spec} into wc -c, {repeats} each ...", flush=True)
        results["stdin"] = stdin_throughput(remo, ssh, tmp, size_spec, size, repeats)
        results["stdin"]["loadavg_after"] = loadavg()
        print(f"4/7 stdin: {size_spec} pattern into sha256sum, once ...", flush=True)
        results["stdin_exact"] = stdin_exact(remo, size)
        print(f"5/7 logs --tail 3 of {size_spec} of lines, {tail_samples} each ...", flush=True)
        results["tail"] = tail_time(remo, ssh, tmp, size_spec, size, tail_samples)
        results["tail"]["loadavg_after"] = loadavg()
        print(f"6/7 follow latency, {follow_s:g} s each ...", flush=True)
        results["follow"] = follow_latency(remo, ssh, follow_s)
        results["follow"]["loadavg_after"] = loadavg()
        if everything:
            print("7/7 start-up context ...", flush=True)
            results["context"] = context(remo, 10 if not args.quick else 5)
        meta["jobs_removed"] = remo.remove_all_jobs()
    finally:
        if ssh is not None:
            ssh.stop()
        remo.stop()
        meta["loadavg_end"] = loadavg()
        server_log = remo.log.read_text(errors="replace") if remo.log.exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
    if ssh is None and "ssh_skipped" not in meta:
        meta["ssh_skipped"] = "sshd did not start"

    results["meta"] = meta
    rows = table(results)
    results["table"] = rows
    print()
    print(render(rows))
    print()
    ft, fin, exact = results["tail"], results["stdin"], results["stdin_exact"]
    print(
        f"--tail 3 of {ft['bytes']} bytes of lines ({ft['job_files']}): remo logs --tail 3 "
        f"{ft['remo_tail']['median_ms']} ms, remo status {ft['remo_status']['median_ms']} ms "
        f"(difference {round(ft['remo_tail']['median_ms'] - ft['remo_status']['median_ms'], 2)}"
        f" ms), local tail -n 3 {ft['local_tail']['median_ms']} ms"
    )
    per_sample = {
        name: [round(fin["bytes"] / x / (1 << 20)) for x in fin[name]["samples_s"]]
        for name in ("remo", "remo_file")
    }
    print(
        f"logs job files: {results['big_output']['job_files']}; stdin MiB/s per sample: remo "
        f"{per_sample['remo']}, from a file {per_sample['remo_file']}"
    )
    print(
        f"sha256 through stdin: local {exact['local_sha256']}, job {exact['job_sha256']} "
        f"({'equal' if exact['equal'] else 'DIFFERENT'}), {exact['seconds']} s"
    )
    ctx = results.get("context")
    if ctx is not None:
        print_context(ctx)
    print(f"\nload average: start {meta['loadavg_start']}, end {meta['loadavg_end']}")
    if "error" in server_log.lower() or "traceback" in server_log.lower():
        print("note: the server log mentions errors; first lines:")
        print("\n".join(server_log.splitlines()[:20]))
    path = RESULTS.with_name(f"remote-{args.only}.json") if args.only else RESULTS
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

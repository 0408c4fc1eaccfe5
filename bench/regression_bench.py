"""Same-run comparison of ``remo logs`` between this tree (HEAD) and an older tree (BASE).

Proves, or disproves, that a refactoring did not make ``remo logs`` slower. Each tree
runs its own code end to end, so that API differences between the trees do not matter:
its own ``remo server`` (``<tree>/.venv/bin/remo server --state-dir <tmp> --listen
127.0.0.1:<free port>``), an admin credential written by its own ``remo admin issue``,
and its own CLI (``<tree>/.venv/bin/remo --profile FILE ...``) for every command, each a
fresh process. Run as root (the servers run jobs under cgroups)::

    mkdir -p /tmp/remo-base && git archive 3d332b1 | tar -x -C /tmp/remo-base
    (cd /tmp/remo-base && /work/main/.tools/bin/uv sync -q --locked --extra dev)
    .venv/bin/python bench/regression_bench.py --base /tmp/remo-base           # 1 GiB
    .venv/bin/python bench/regression_bench.py --base /tmp/remo-base --quick   # 256 MiB

Figures (BASE and HEAD alternate sample by sample, so that load from elsewhere on the
machine hits both alike; one measurement at a time):

1. ``remo logs ID > /dev/null`` of a finished job that wrote 1 GiB
   (``head -c 1073741824 /dev/zero``, the same in both trees): wall time of the CLI
   process, start to exit, as MiB/s; 5 samples each (``--quick``: 256 MiB, 3 each).
   ``PYTHONDONTWRITEBYTECODE`` is unset for every process started here (users' machines
   cache bytecode), and each tree's CLI reads the whole output once before the samples
   (checking the byte count), so that its bytecode is written.
2. follow latency: a job prints ``"ready"``, waits until this script creates a file
   (which it does when the follower has passed the ``ready`` line on, i.e. the follower
   is attached and live), then prints ``time.time_ns()`` every 20 ms, 500 lines;
   ``remo logs -f ID`` runs with its stdout a pipe read here, each read stamped with
   ``time.time_ns()``; latency = arrival - embedded stamp. Median and p99 per run;
   3 runs each (``--quick``: 2 runs of 200 lines).
3. HEAD's SDK on the same output: a fresh HEAD Python process that imports
   ``remo.client``, opens ``Client.from_file(credential)`` and iterates
   ``Client.output(id)`` discarding the chunks; its wall time (start to exit, like the
   CLI's) and the time of the read loop alone. Interleaved with the samples of 1, so
   that HEAD's CLI/SDK ratio (a target elsewhere: CLI >= 0.9x SDK) is same-run too.

No thresholds: it prints a table and writes every sample to
``bench/results/regression.json``. The servers get SIGTERM by PID (any supervisor of
their state dirs still alive afterwards gets SIGTERM by PID too) and the temp dirs are
removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "regression.json"
LISTENING = "remo server listening"
JOB_PYTHON = "/usr/bin/python3"
MIB = 1 << 20

#: The follow job: "ready", wait for the go file (argv[1], at most 60 s), then N stamps.
FOLLOW_SCRIPT = (
    "import os, sys, time\n"
    "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    "end = time.time() + 60\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < end:\n"
    "    time.sleep(0.002)\n"
    "for _ in range({lines}):\n"
    "    sys.stdout.write(str(time.time_ns()) + '\\n')\n"
    "    sys.stdout.flush()\n"
    "    time.sleep(0.02)\n"
)

#: HEAD's SDK reading a whole output; prints the read loop's seconds and the byte count.
SDK_SCRIPT = (
    "import sys, time\n"
    "from remo.client import Client\n"
    "with Client.from_file(sys.argv[1]) as c:\n"
    "    n = 0\n"
    "    t0 = time.perf_counter()\n"
    "    for chunk in c.output(sys.argv[2]):\n"
    "        n += len(chunk.data)\n"
    "    print(time.perf_counter() - t0, n)\n"
)


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


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "REMO_PROFILE", "REMO_DEBUG", "GRPC_SSL_CIPHER_SUITES"):
        env.pop(name, None)
    return env


def run_out(argv: Sequence[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}: {proc.stderr}")
    return proc.stdout


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds ``argv`` took, start to exit, stdout to /dev/null; raises if it failed."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}")
    return elapsed


def count_bytes(argv: Sequence[str], env: dict[str, str]) -> int:
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, MIB):
        total += len(chunk)
    if proc.wait() != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}")
    return total


# -- one tree: its server, its credential, its CLI ------------------------------------------


class Tree:
    def __init__(self, name: str, root: Path, tmp: Path) -> None:
        self.name = name
        self.root = root
        self.remo = str(root / ".venv" / "bin" / "remo")
        self.python = str(root / ".venv" / "bin" / "python")
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.state = self.tmp / "state"
        self.port = free_port()
        self.log = self.tmp / "server.log"
        self.credential = self.tmp / "admin.remo"
        self.env = child_env()
        self.proc: subprocess.Popen[bytes] | None = None
        for path in (self.remo, self.python):
            if not os.access(path, os.X_OK):
                raise SystemExit(f"{path} missing: run `uv sync --locked --extra dev` in {root}")

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.remo,
                    "server",
                    "--state-dir",
                    str(self.state),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while LISTENING not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        run_out(
            [
                *(self.remo, "admin", "issue", "--state-dir", str(self.state)),
                *("--user", "root", "--role", "admin", "--days", "1"),
                *("-o", str(self.credential), "--address", f"127.0.0.1:{self.port}"),
            ],
            self.env,
        )

    def cli(self, *args: str) -> list[str]:
        return [self.remo, "--profile", str(self.credential), *args]

    def start_job(self, *argv: str) -> str:
        return run_out(self.cli("run", "-d", "--", *argv), self.env).strip()

    def finished_job(self, *argv: str) -> str:
        job_id = self.start_job(*argv)
        run_out(self.cli("wait", job_id), self.env)
        return job_id

    def remove(self, job_id: str) -> None:
        subprocess.run(self.cli("rm", job_id), env=self.env, capture_output=True, check=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # the supervisor double-forks (nobody's child): find it by its --state-dir
        for pid in supervisors(self.state):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def supervisors(state_dir: Path) -> list[int]:
    want = str(state_dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--state-dir" in argv:
            i = argv.index("--state-dir")
            if i + 1 < len(argv) and argv[i + 1] == want:
                found.append(int(entry))
    return found


# -- figures -----------------------------------------------------------------------------


def interleaved(fns: dict[str, Callable[[], Any]], samples: int) -> dict[str, list[Any]]:
    """Each function once per round, in the given order, ``samples`` rounds."""
    result: dict[str, list[Any]] = {name: [] for name in fns}
    for i in range(samples):
        for name, fn in fns.items():
            value = fn()
            result[name].append(value)
            print(f"  round {i + 1} {name}: {value}  (load {loadavg()[0]:.2f})", flush=True)
    return result


def sdk_read(head: Tree, job_id: str, size: int) -> dict[str, float]:
    argv = [head.python, "-c", SDK_SCRIPT, str(head.credential), job_id]
    t0 = time.perf_counter()
    text = run_out(argv, head.env)
    wall = time.perf_counter() - t0
    loop_s, n = text.split()
    if int(n) != size:
        raise RuntimeError(f"SDK read {n} bytes, expected {size}")
    return {"wall_s": round(wall, 3), "loop_s": round(float(loop_s), 3)}


def throughput(base: Tree, head: Tree, size: int, samples: int) -> dict[str, Any]:
    argv = ("head", "-c", str(size), "/dev/zero")
    ids = {t.name: t.finished_job(*argv) for t in (base, head)}
    for t in (base, head):  # checks the size, and writes the CLI's bytecode
        got = count_bytes(t.cli("logs", ids[t.name]), t.env)
        if got != size:
            raise RuntimeError(f"{t.name}: remo logs gave {got} bytes, expected {size}")
    sdk_read(head, ids["HEAD"], size)  # warm-up
    fns: dict[str, Callable[[], Any]] = {
        "BASE": lambda: round(timed(base.cli("logs", ids["BASE"]), base.env), 3),
        "HEAD": lambda: round(timed(head.cli("logs", ids["HEAD"]), head.env), 3),
        "HEAD SDK": lambda: sdk_read(head, ids["HEAD"], size),
    }
    raw = interleaved(fns, samples)
    for t in (base, head):
        t.remove(ids[t.name])

    def rates(seconds: list[float]) -> dict[str, Any]:
        mibs = [size / s / MIB for s in seconds]
        return {
            "median_mib_s": round(statistics.median(mibs), 1),
            "min_mib_s": round(min(mibs), 1),
            "max_mib_s": round(max(mibs), 1),
            "median_s": round(statistics.median(seconds), 3),
            "samples_s": seconds,
        }

    result: dict[str, Any] = {"bytes": size, "BASE": rates(raw["BASE"]), "HEAD": rates(raw["HEAD"])}
    result["HEAD SDK (process wall)"] = rates([x["wall_s"] for x in raw["HEAD SDK"]])
    result["HEAD SDK (read loop only)"] = rates([x["loop_s"] for x in raw["HEAD SDK"]])
    cli = result["HEAD"]["median_mib_s"]
    wall = result["HEAD SDK (process wall)"]["median_mib_s"]
    loop = result["HEAD SDK (read loop only)"]["median_mib_s"]
    result["HEAD CLI / SDK wall"] = round(cli / wall, 3)
    result["HEAD CLI / SDK loop"] = round(cli / loop, 3)
    result["HEAD / BASE"] = round(cli / result["BASE"]["median_mib_s"], 3)
    return result


def follow_once(tree: Tree, lines: int) -> dict[str, Any]:
    go = tree.tmp / f"go-{time.monotonic_ns()}"
    job_id = tree.start_job(JOB_PYTHON, "-c", FOLLOW_SCRIPT.format(lines=lines), str(go))
    stamps: list[tuple[int, int]] = []
    proc = subprocess.Popen(
        tree.cli("logs", "-f", job_id),
        env=tree.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    go_at: list[float] = []

    def reader() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            now = time.time_ns()
            if not chunk:
                return
            pending += chunk
            *done, pending = pending.split(b"\n")
            for line in done:
                if line == b"ready":
                    go.touch()
                    go_at.append(time.monotonic())
                else:
                    with contextlib.suppress(ValueError):
                        stamps.append((now, int(line)))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        proc.wait(timeout=120 + lines * 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    thread.join(timeout=5)
    tree.remove(job_id)
    go.unlink(missing_ok=True)
    if len(stamps) != lines or not go_at:
        raise RuntimeError(f"{tree.name}: follow got {len(stamps)} of {lines} lines")
    lat = [(arrival - stamp) / 1e6 for arrival, stamp in stamps]
    return {
        "n": len(lat),
        "median_ms": round(statistics.median(lat), 3),
        "p99_ms": round(pct(lat, 99), 3),
        "max_ms": round(max(lat), 3),
        "exit": proc.returncode,
    }


def follow(base: Tree, head: Tree, lines: int, runs: int) -> dict[str, Any]:
    raw = interleaved(
        {"BASE": lambda: follow_once(base, lines), "HEAD": lambda: follow_once(head, lines)}, runs
    )
    result: dict[str, Any] = {"lines": lines, "interval_ms": 20}
    for name, samples in raw.items():
        med = [s["median_ms"] for s in samples]
        p99 = [s["p99_ms"] for s in samples]
        result[name] = {
            "median_ms_median": round(statistics.median(med), 2),
            "median_ms_range": [min(med), max(med)],
            "p99_ms_median": round(statistics.median(p99), 2),
            "p99_ms_range": [min(p99), max(p99)],
            "runs": samples,
        }
    return result


def git_describe(root: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="root of the BASE tree")
    parser.add_argument("--head", type=Path, default=ROOT, help="root of the HEAD tree")
    parser.add_argument("--quick", action="store_true", help="256 MiB, fewer samples")
    args = parser.parse_args()
    size = (256 if args.quick else 1024) * MIB
    samples, runs, lines = (3, 2, 200) if args.quick else (5, 3, 500)

    started = datetime.datetime.now(datetime.UTC)
    result: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "base": str(args.base.resolve()),
        "head": f"{args.head.resolve()} ({git_describe(args.head)}, with its work tree)",
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
    }
    print(f"load average at start: {result['loadavg_start']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="remo-regression-") as tmp_name:
        tmp = Path(tmp_name)
        base = Tree("BASE", args.base.resolve(), tmp)
        head = Tree("HEAD", args.head.resolve(), tmp)
        try:
            for t in (base, head):
                t.start()
            print(f"1. remo logs of {size // MIB} MiB, {samples} samples each", flush=True)
            result["throughput"] = throughput(base, head, size, samples)
            result["loadavg_after_throughput"] = loadavg()
            print(f"2. remo logs -f, {lines} lines every 20 ms, {runs} runs each", flush=True)
            result["follow"] = follow(base, head, lines, runs)
        finally:
            for t in (base, head):
                t.stop()
            time.sleep(0.5)
            left = supervisors(base.state) + supervisors(head.state)
            result["processes_left"] = left
    result["loadavg_end"] = loadavg()
    result["finished_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    tp, fl = result["throughput"], result["follow"]
    print()
    print(f"{'figure':44} {'BASE':>22} {'HEAD':>22}")

    def rate(d: dict[str, Any]) -> str:
        return f"{d['median_mib_s']} ({d['min_mib_s']}-{d['max_mib_s']})"

    print(f"{'remo logs MiB/s, median (range)':44} {rate(tp['BASE']):>22} {rate(tp['HEAD']):>22}")
    for key in ("median", "p99"):
        cells = [
            f"{fl[n][f'{key}_ms_median']} ({fl[n][f'{key}_ms_range'][0]}-"
            f"{fl[n][f'{key}_ms_range'][1]})"
            for n in ("BASE", "HEAD")
        ]
        label = f"remo logs -f latency {key} ms, median of runs"
        print(f"{label:44} {cells[0]:>22} {cells[1]:>22}")
    print(
        f"HEAD SDK MiB/s, process wall: {rate(tp['HEAD SDK (process wall)'])}; "
        f"read loop only: {rate(tp['HEAD SDK (read loop only)'])}"
    )
    print(
        f"HEAD/BASE throughput {tp['HEAD / BASE']}x; HEAD CLI/SDK {tp['HEAD CLI / SDK wall']}x "
        f"(process wall), {tp['HEAD CLI / SDK loop']}x (SDK read loop only)"
    )
    print(
        f"load average: start {result['loadavg_start']}, end {result['loadavg_end']}; "
        f"processes left: {result['processes_left']}; results in {RESULTS}"
    )


if __name__ == "__main__":
    main()

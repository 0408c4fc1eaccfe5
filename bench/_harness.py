"""Plumbing for ``bench/load_bench.py``: a real ``remo server`` subprocess, credentials,
/proc inspection, statistics, and the client worker processes.

Nothing here knows about individual scenarios except the two worker entry points
(:func:`mixed_load_worker`, :func:`follow_many_worker`), which run in separate
processes started with the ``spawn`` method: one Python process cannot drive hundreds
of gRPC clients at speed, and ``spawn`` keeps grpc's threads out of any ``fork``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REMO = ROOT / ".venv" / "bin" / "remo"
LISTENING = "remo server listening"

# -- statistics --------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Percentile ``p`` (0-100), linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def lat_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Latency summary in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p90_ms": round(pct(ms, 90), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


# -- /proc -------------------------------------------------------------------------------


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the server and workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kib(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def threads(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of ``pid`` so far."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nofile_limit(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError):
        return None
    return None


def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state letter) for every process."""
    out: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), fields[0])
    return out


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> dict[int, str]:
    """Every descendant of ``root``: pid -> state letter."""
    table = proc_table() if table is None else table
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out: dict[int, str] = {}
    todo = list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = table[pid][1]
        todo.extend(kids.get(pid, []))
    return out


def supervisor_tree(sup: int | None) -> dict[str, int]:
    """Children (= job inits) and zombies among all descendants of the supervisor."""
    if not sup:
        return {"children": 0, "descendants": 0, "zombies": 0}
    table = proc_table()
    desc = descendants(sup, table)
    direct = sum(1 for pid, (ppid, _) in table.items() if ppid == sup)
    return {
        "children": direct,
        "descendants": len(desc),
        "zombies": sum(1 for s in desc.values() if s == "Z"),
    }


def find_supervisor(state_dir: Path) -> int | None:
    """The pid of ``python -m remo.supervisor --state-dir <state_dir>``.

    The supervisor double-forks and calls setsid, so it is nobody's child: it is found
    by its command line.
    """
    want = str(state_dir)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "remo.supervisor" in argv and "--state-dir" in argv:
            i = argv.index("--state-dir")
            if i + 1 < len(argv) and argv[i + 1] == want:
                return int(entry)
    return None


def _instance_cgroups(tag: str) -> Iterator[tuple[str, str]]:
    """(``remo`` group, name) of each cgroup directory of remo instance ``tag`` in every
    hierarchy (``**/remo/<tag>-*``, three levels deep at most)."""
    stack = [("/sys/fs/cgroup", 0)]
    while stack:
        path, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            if e.name == "remo":
                with contextlib.suppress(OSError):
                    yield from ((e.path, d) for d in os.listdir(e.path) if d.startswith(f"{tag}-"))
            elif depth < 3:
                stack.append((e.path, depth + 1))


def cgroup_dirs(tag: str) -> int:
    """Job cgroup directories of this remo instance in every hierarchy (``**/remo/<tag>-*``),
    but for those of inits that wait for a job (``<tag>-init-<pid>``, pid alive)."""
    return sum(1 for _, name in _instance_cgroups(tag) if not _waiting_init(tag, name))


def remove_cgroups(tag: str) -> int:
    """Remove the (empty) cgroup directories of remo instance ``tag`` in every hierarchy,
    as a supervisor killed with SIGKILL leaves them; how many went."""
    removed = 0
    for group, name in list(_instance_cgroups(tag)):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(group, name))
            removed += 1
    return removed


def _waiting_init(tag: str, name: str) -> bool:
    kind, _, pid = name[len(tag) + 1 :].partition("-")
    return kind == "init" and pid.isdigit() and os.path.exists(f"/proc/{pid}")


def tcp_queues(port: int) -> dict[str, int]:
    """Bytes queued in the kernel on the server side of every connection to ``port``."""
    tx_total = tx_max = conns = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                local = parts[1]
                if int(local.split(":")[1], 16) != port or parts[3] != "01":  # ESTABLISHED
                    continue
                tx = int(parts[4].split(":")[0], 16)
                conns += 1
                tx_total += tx
                tx_max = max(tx_max, tx)
    except OSError:
        pass
    return {"server_conns": conns, "tx_queue_total": tx_total, "tx_queue_max": tx_max}


def conn_bytes(port: int) -> list[dict[str, Any]]:
    """Per established connection to ``port`` (server side): bytes the server sent and the
    client acknowledged, and bytes it received (``ss -ti``)."""
    try:
        text = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            parts = line.split()
            current = {"peer": parts[-1] if parts else "", "bytes_acked": 0, "bytes_received": 0}
            out.append(current)
            continue
        if current is None:
            continue
        for token in line.split():
            key, _, value = token.partition(":")
            if key in ("bytes_acked", "bytes_received") and value.isdigit():
                current[key] = int(value)
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    import select

    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def malloc_trim_probe(pid: int | None) -> dict[str, Any] | None:
    """Ask glibc in ``pid`` to give free heap memory back (``malloc_trim(0)`` via gdb).

    Tells memory the allocator keeps after a peak (freed, not returned to the kernel)
    from memory still in use: only the first goes away. None when gdb is missing.
    """
    if not pid or shutil.which("gdb") is None:
        return None
    before = rss_kib(pid)
    subprocess.run(
        ["gdb", "-p", str(pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    time.sleep(0.5)
    return {"rss_before_trim_kib": before, "rss_after_trim_kib": rss_kib(pid)}


def user_install(
    prefix: Path, python: str = "/usr/bin/python3", revision: str | None = None
) -> Path:
    """remo installed into ``prefix`` as ``scripts/install`` installs it, from this tree
    (or from the commit ``revision`` names): uv.lock's runtime dependencies only (no
    grpcio-tools, so no setuptools and its ``.pth`` hook in every interpreter start),
    remo as a wheel rather than a link to the checkout, bytecode compiled. Returns its
    ``bin/remo``: what a user's command runs, where ``.venv/bin/remo`` is the
    development environment's."""
    uv = subprocess.run(
        ["bash", "-c", ". scripts/lib/env.sh && remo_uv"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stage = Path(tempfile.mkdtemp(prefix="remo-bench-stage-"))
    try:
        if revision is not None:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(stage)], input=archive, check=True)
        else:
            # (what scripts/install copies: the project, its lock, setup.py for the relay)
            for name in ("pyproject.toml", "uv.lock", "setup.py"):
                shutil.copy2(ROOT / name, stage / name)
            shutil.copytree(
                ROOT / "src", stage / "src",
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )  # fmt: skip
        subprocess.run(
            [uv, "sync", "-q", "--locked", "--no-dev", "--no-editable", "--compile-bytecode",
             "--python", python, "--project", str(stage)],
            env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(prefix)}, check=True,
        )  # fmt: skip
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return prefix / "bin" / "remo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the server ----------------------------------------------------------------------------


class ServerProcess:
    """``remo server --state-dir DIR --listen 127.0.0.1:PORT`` as a subprocess.

    stderr and stdout go to ``log_path`` (appended to across restarts).
    """

    def __init__(self, state_dir: Path, port: int, log_path: Path) -> None:
        self.state_dir = state_dir
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait for the "listening" line; returns seconds it took."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [
                    str(REMO),
                    "server",
                    "--state-dir",
                    str(self.state_dir),
                    "--listen",
                    self.address,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"},
                # Its own session, as a service has: where sessions are autogroups
                # (sched(7)), sharing the bench's would split one CPU share between
                # the server and the bench's clients.
                start_new_session=True,
            )
        finally:
            log.close()
        self.starts += 1
        while time.monotonic() - t0 < timeout:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if LISTENING.encode() in f.read():
                    return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"remo server exited with {self.proc.returncode} before listening; "
                    f"see {self.log_path}"
                )
            time.sleep(0.02)
        raise TimeoutError(f"remo server did not listen within {timeout}s; see {self.log_path}")

    def signal(self, sig: int) -> float:
        """Send ``sig`` and wait for the process to exit; seconds until it did."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait()
        return time.monotonic() - t0

    def stop(self, timeout: float = 30.0) -> float | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); seconds until exit."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - t0


def issue_admin(state_dir: Path, address: str, out: Path, user: str = "root") -> Path:
    """An admin credential file, exactly as ``remo admin issue`` writes one."""
    from remo.pki import package
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state_dir)
    issued = ca.issue_client(user, "admin", validity=timedelta(days=1))
    registry = Registry.open(state_dir, ca.certificate)
    try:
        registry.record(issued.certificate)
    finally:
        registry.close()
    package.save(out, [address], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return out


# -- sampling ----------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    server_rss_kib: int | None
    server_fds: int | None
    server_threads: int | None
    sup_rss_kib: int | None
    sup_fds: int | None
    extra: dict[str, Any] = field(default_factory=dict)


class Sampler:
    """Samples the server and supervisor from a thread every ``interval`` seconds."""

    def __init__(
        self,
        server_pid: Callable[[], int | None],
        sup_pid: Callable[[], int | None],
        interval: float = 1.0,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._server = server_pid
        self._sup = sup_pid
        self.interval = interval
        self._extra = extra
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = time.monotonic()

    def take(self) -> Sample:
        s, v = self._server(), self._sup()
        return Sample(
            time.monotonic() - self.t0,
            rss_kib(s),
            fd_count(s),
            threads(s),
            rss_kib(v),
            fd_count(v),
            self._extra() if self._extra else {},
        )

    def __enter__(self) -> Sampler:
        self.t0 = time.monotonic()

        def run() -> None:
            while not self._stop.is_set():
                self.samples.append(self.take())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak(self, attr: str) -> int | None:
        vals = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return max(vals) if vals else None

    def peak_extra(self, key: str) -> Any:
        vals = [s.extra[key] for s in self.samples if s.extra.get(key) is not None]
        return max(vals) if vals else None


def snapshot(server_pid: int | None, sup_pid: int | None, tag: str | None = None) -> dict[str, Any]:
    """Everything the leak checks look at, now."""
    tree = supervisor_tree(sup_pid)
    out: dict[str, Any] = {
        "server_rss_kib": rss_kib(server_pid),
        "server_fds": fd_count(server_pid),
        "server_threads": threads(server_pid),
        "supervisor_rss_kib": rss_kib(sup_pid),
        "supervisor_fds": fd_count(sup_pid),
        "server_cpu_s": cpu_seconds(server_pid),
        "supervisor_cpu_s": cpu_seconds(sup_pid),
        "supervisor_children": tree["children"],
        "zombies": tree["zombies"],
    }
    if tag is not None:
        out["cgroup_dirs"] = cgroup_dirs(tag)
    return out


# -- gRPC client side (imported lazily: the parent may fork before using it) ------------


def channel_options(unique: int | None = None) -> list[tuple[str, Any]]:
    opts: list[tuple[str, Any]] = [
        # A private subchannel pool: every channel is its own TCP+TLS connection, as
        # separate client machines would be.
        ("grpc.use_local_subchannel_pool", 1),
        # Quick reconnects after a server restart. (Not grpc.min_reconnect_backoff_ms:
        # grpc core uses it as the connect *timeout*, and at 100 ms TLS handshakes of a
        # burst of new connections time out on the client.)
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_receive_message_length", 16 << 20),
    ]
    if unique is not None:
        opts.append(("remo.bench.client", unique))
    return opts


def open_channel(cred_path: str, unique: int | None = None) -> Any:
    """A grpc.aio channel with the credential's certificate (mutual TLS)."""
    import grpc

    from remo.pki import package
    from remo.server import tls

    cred = package.load(cred_path)
    return grpc.aio.secure_channel(
        cred.addresses[0],
        tls.client_credentials(cred.ca_pem, cred.cert_pem, cred.key_pem),
        options=channel_options(unique),
    )


RETRYABLE_NAMES = frozenset({"UNAVAILABLE", "CANCELLED"})


def state_of(job: Any) -> str:
    """A remo.v1 ``Job``'s state as the results name it: ``succeeded``, ``running``..."""
    from remo.api.jobs import STATE_FROM_PB

    state = STATE_FROM_PB.get(job.state)
    return state.value if state is not None else f"state {job.state}"


def seconds_of(msg: Any) -> float:
    """A Timestamp as unix seconds, a Duration as seconds (remo.api.jobs.seconds_of)."""
    from remo.api.jobs import seconds_of as to_seconds

    return to_seconds(msg)


def retryable(err: Any) -> bool:
    """The SDK's rule (remo.client.calls.retryable): the connection broke, by the status
    code alone (UNAVAILABLE or CANCELLED), as opposed to an answer of the server."""
    from remo.client.calls import retryable as sdk_retryable

    return sdk_retryable(err)


# -- worker: scenario 1 (mixed load) ------------------------------------------------------

#: argv of the short jobs clients start, and the output each must produce.
SHORT_JOBS: list[tuple[list[str], bytes]] = [
    (["true"], b""),
    (["sleep", "0.1"], b""),
    (["sh", "-c", "echo start; sleep 0.1; echo end"], b"start\nend\n"),
]
#: Weights of the operations a mixed-load client picks from. (The labels are those of
#: the results recorded so far: "Status" is the GetJob RPC, "List" ListJobs.)
OPS = {"Start": 20, "Status": 40, "List": 15, "Output": 15, "Remove": 10}
KEEP_JOBS = 5


def mixed_load_worker(
    index: int,
    cred_path: str,
    n_clients: int,
    duration: float,
    think: float,
    list_limit: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Run ``n_clients`` clients (one channel each) for ``duration`` s; put results."""
    try:
        out = asyncio.run(
            _mixed_load(index, cred_path, n_clients, duration, think, list_limit, ready, go)
        )
    except BaseException as err:  # report, never hang the parent
        out = {"fatal": f"{type(err).__name__}: {err}"}
        ready.put(index)
    results.put((index, out))


async def _mixed_load(
    index: int,
    cred_path: str,
    n_clients: int,
    duration: float,
    think: float,
    list_limit: int,
    ready: Any,
    go: Any,
) -> dict[str, Any]:
    import grpc

    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    channels = [open_channel(cred_path, unique=index * 100000 + i) for i in range(n_clients)]
    await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 60) for c in channels))
    ready.put(index)
    await asyncio.to_thread(go.wait)
    lat: dict[str, list[float]] = {op: [] for op in OPS}
    errors: Counter[str] = Counter()
    samples: list[str] = []
    notes: Counter[str] = Counter()
    t_start = time.monotonic()
    deadline = t_start + duration
    timeout = 60.0

    async def client(k: int, channel: Any) -> None:
        rng = random.Random(index * 7919 + k)
        stub = pb_grpc.JobServiceStub(channel)
        jobs: deque[tuple[str, bytes]] = deque()
        await asyncio.sleep(rng.uniform(0, max(think, 0.05)))  # do not start in lockstep
        while time.monotonic() < deadline:
            op = rng.choices(list(OPS), weights=list(OPS.values()))[0]
            if op in ("Status", "Output", "Remove") and not jobs:
                op = "Start"
            if op == "Remove" and len(jobs) <= 1:
                op = "Status"
            t0 = time.perf_counter()
            try:
                if op == "Start":
                    argv, expect = rng.choice(SHORT_JOBS)
                    resp = await stub.Start(pb.StartRequest(argv=argv), timeout=timeout)
                    jobs.append((resp.job.id, expect))
                elif op == "Status":
                    job_id, _ = rng.choice(jobs)
                    await stub.GetJob(pb.GetJobRequest(id=job_id), timeout=timeout)
                elif op == "List":
                    await stub.ListJobs(pb.ListJobsRequest(page_size=list_limit), timeout=timeout)
                elif op == "Output":
                    job_id, expect = jobs[-1]
                    got = bytearray()
                    async for chunk in stub.Output(
                        pb.OutputRequest(id=job_id, follow=True), timeout=timeout
                    ):
                        if chunk.offset != len(got):
                            notes["output offset mismatch"] += 1
                        got += chunk.data
                    if bytes(got) != expect:
                        errors["Output: wrong bytes"] += 1
                        if len(samples) < 5:
                            samples.append(f"job {job_id}: got {bytes(got)!r} want {expect!r}")
                elif op == "Remove":
                    job_id, _ = jobs[0]
                    try:
                        await stub.Remove(pb.RemoveRequest(id=job_id), timeout=timeout)
                        jobs.popleft()
                    except grpc.aio.AioRpcError as err:
                        if err.code() is not grpc.StatusCode.FAILED_PRECONDITION:
                            raise
                        notes["Remove refused: job still running (correct answer)"] += 1
            except grpc.aio.AioRpcError as err:
                errors[f"{op}: {err.code().name}"] += 1
                if len(samples) < 5:
                    samples.append(f"{op}: {err.code().name}: {err.details()}")
            else:
                lat[op].append(time.perf_counter() - t0)
            while len(jobs) > KEEP_JOBS:
                job_id, _ = jobs[0]
                t0 = time.perf_counter()
                try:
                    await stub.Remove(pb.RemoveRequest(id=job_id), timeout=timeout)
                    jobs.popleft()
                    lat["Remove"].append(time.perf_counter() - t0)
                except grpc.aio.AioRpcError as err:
                    if err.code() is grpc.StatusCode.FAILED_PRECONDITION:
                        notes["Remove refused: job still running (correct answer)"] += 1
                        break
                    errors[f"Remove: {err.code().name}"] += 1
                    break
            if think > 0:
                await asyncio.sleep(rng.uniform(0, 2 * think))
        # leave nothing behind: wait for and remove this client's jobs
        for job_id, _ in jobs:
            try:
                await stub.Wait(pb.WaitRequest(id=job_id), timeout=timeout)
                await stub.Remove(pb.RemoveRequest(id=job_id), timeout=timeout)
            except grpc.aio.AioRpcError as err:
                errors[f"cleanup: {err.code().name}"] += 1

    await asyncio.gather(*(client(k, c) for k, c in enumerate(channels)))
    elapsed = time.monotonic() - t_start
    for c in channels:
        await c.close()
    return {
        "lat": lat,
        "errors": dict(errors),
        "error_samples": samples,
        "notes": dict(notes),
        "elapsed": elapsed,
    }


# -- worker: scenario 4 (many followed jobs) ----------------------------------------------


def follow_many_worker(
    index: int,
    cred_path: str,
    n_jobs: int,
    argv: list[str],
    expect: bytes,
    start_concurrency: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    try:
        out = asyncio.run(
            _follow_many(index, cred_path, n_jobs, argv, expect, start_concurrency, ready, go)
        )
    except BaseException as err:
        out = {"fatal": f"{type(err).__name__}: {err}"}
        ready.put(index)
    results.put((index, out))


async def _follow_many(
    index: int,
    cred_path: str,
    n_jobs: int,
    argv: list[str],
    expect: bytes,
    start_concurrency: int,
    ready: Any,
    go: Any,
) -> dict[str, Any]:
    import grpc

    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    t_conn = time.monotonic()
    starter = open_channel(cred_path, unique=index * 100000 + 99999)
    followers = [open_channel(cred_path, unique=index * 100000 + i) for i in range(n_jobs)]
    await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 120) for c in [starter, *followers]))
    connect_s = time.monotonic() - t_conn
    ready.put(index)
    await asyncio.to_thread(go.wait)
    stub = pb_grpc.JobServiceStub(starter)
    sem = asyncio.Semaphore(start_concurrency)
    start_lat: list[float] = []
    done_at: list[float] = []
    errors: Counter[str] = Counter()
    samples: list[str] = []
    wrong = 0
    ok = 0
    first_start = last_start = None
    tasks: list[asyncio.Task[None]] = []
    job_ids: list[str] = []

    async def follow(job_id: str, channel: Any) -> None:
        nonlocal wrong, ok
        fstub = pb_grpc.JobServiceStub(channel)
        got = bytearray()
        try:
            async for chunk in fstub.Output(pb.OutputRequest(id=job_id, follow=True), timeout=300):
                got += chunk.data
        except grpc.aio.AioRpcError as err:
            errors[f"Output: {err.code().name}"] += 1
            if len(samples) < 5:
                samples.append(f"Output {job_id}: {err.code().name}: {err.details()}")
            return
        done_at.append(time.time())
        if bytes(got) == expect:
            ok += 1
        else:
            wrong += 1
            if len(samples) < 5:
                samples.append(f"job {job_id}: got {bytes(got)!r}")

    async def start_one(i: int) -> None:
        nonlocal first_start, last_start
        async with sem:
            t0 = time.perf_counter()
            try:
                resp = await stub.Start(pb.StartRequest(argv=argv), timeout=120)
            except grpc.aio.AioRpcError as err:
                errors[f"Start: {err.code().name}"] += 1
                if len(samples) < 5:
                    samples.append(f"Start: {err.code().name}: {err.details()}")
                return
            start_lat.append(time.perf_counter() - t0)
            now = time.time()
            first_start = now if first_start is None else min(first_start, now)
            last_start = now if last_start is None else max(last_start, now)
            job_ids.append(resp.job.id)
            tasks.append(asyncio.create_task(follow(resp.job.id, followers[i])))

    go_wall = time.time()
    await asyncio.gather(*(start_one(i) for i in range(n_jobs)))
    all_started = time.time()
    await asyncio.gather(*tasks)
    # leave nothing behind
    for job_id in job_ids:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.Remove(pb.RemoveRequest(id=job_id), timeout=60)
    for c in [starter, *followers]:
        await c.close()
    return {
        "connect_s": connect_s,
        "go_wall": go_wall,
        "all_started_wall": all_started,
        "first_start_wall": first_start,
        "last_start_wall": last_start,
        "start_lat": start_lat,
        "done_wall": done_at,
        "ok": ok,
        "wrong": wrong,
        "errors": dict(errors),
        "error_samples": samples,
    }

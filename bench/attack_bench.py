"""Attacks before authentication against a real remo server: what each costs it.

Run as root (the register socket lives in /run/remo)::

    .venv/bin/python bench/attack_bench.py --label before   # store as "before"
    .venv/bin/python bench/attack_bench.py --label after
    .venv/bin/python bench/attack_bench.py --quick          # shorter attacks
    .venv/bin/python bench/attack_bench.py --only a,d       # a selection

One ``remo server --state-dir <tmp> --listen 127.0.0.1:<free port>`` subprocess (the
console script from .venv/bin, log in ``bench/results/attack-server.log``) serves the
whole run. Three credentials come from its CA as ``remo admin issue`` makes them: a good
admin one, and one for ``mallory`` that is recorded and then revoked, so that its TLS
handshake succeeds and every call is refused by the per-call registry check.

A good client (its own process, one connection kept open) calls GetJob on a finished
job every 50 ms the whole time, and every 0.5 s opens a fresh connection for one
GetJob, as a CLI invocation does. Its latency in each attack is compared with a quiet
baseline measured first in the same run. The attacks, one after the other:

a. 16 concurrent Start requests of 7.9 MiB on one connection with the revoked
   certificate, round after round for 20 s (quick: 8 s); then the same with 2 MiB
   requests (under the request limit, so they are read and refused by the registry
   check); then 100 concurrent 2 MiB requests on one connection (more than the
   per-connection stream limit). Server RSS: before, peak, and after a settling pause
   (the server trims its heap every 5 s).
b. 3,000 TCP connections that never send a byte: how long the server keeps each open
   (until it closes it or the observation ends, ``--hold-cap``), its fds.
c. 1,000 TLS handshakes that send a ClientHello and never finish: the same.
d. The register socket: one account asks for 200 credentials back to back (rows
   created, time); then 200 connections that never send their request (how many are
   turned away at once, how long the rest are held).

The bounds the server was configured with are read from ``remo.server.app`` and
``remo.pki.register`` (a bound missing there is grpc's default). Results: a table on
stdout and ``bench/results/attack.json`` (one entry per ``--label``, merged into the
file, each with its time, load average and a digest of ``src/remo``).
docs/RELIABILITY.md ("Before authentication") has the results and what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing as mp
import os
import platform
import select
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "attack.json"
MIB = 1 << 20
BIG_REQUEST = int(7.9 * MIB)
#: Under the request limit: read in full, then refused by the registry check.
LIMIT_REQUEST = 2 * MIB - 4096
ATTACKER = "mallory"


# -- the good client ----------------------------------------------------------------------


def good_client_worker(cred: str, stop: Any, ready: Any, out: Any) -> None:
    """GetJob every 50 ms on a kept connection, and on a fresh one every 0.5 s."""
    try:
        result = asyncio.run(_good_client(cred, stop, ready))
    except BaseException as err:  # report, never hang the parent
        result = {"fatal": f"{type(err).__name__}: {err}"}
        ready.set()
    out.put(result)


async def _good_client(cred: str, stop: Any, ready: Any) -> dict[str, Any]:
    import grpc

    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc as pb_grpc

    channel = h.open_channel(cred)
    stub = pb_grpc.JobServiceStub(channel)
    job = (await stub.Start(pb.StartRequest(argv=["true"]), timeout=60)).job.id
    await stub.Wait(pb.WaitRequest(id=job), timeout=60)
    kept: list[tuple[float, float, str]] = []
    fresh: list[tuple[float, float, str]] = []

    async def call(target: Any, sink: list[tuple[float, float, str]]) -> float:
        t0 = time.monotonic()
        try:
            await target.GetJob(pb.GetJobRequest(id=job), timeout=10)
            code = "OK"
        except grpc.aio.AioRpcError as err:
            code = err.code().name
        dt = time.monotonic() - t0
        sink.append((t0, dt, code))
        return dt

    async def keep() -> None:
        while not stop.is_set():
            dt = await call(stub, kept)
            await asyncio.sleep(max(0.0, 0.05 - dt))

    async def reconnect() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ch = h.open_channel(cred, unique=n)
            try:
                dt = await call(pb_grpc.JobServiceStub(ch), fresh)
            finally:
                await ch.close()
            await asyncio.sleep(max(0.0, 0.5 - dt))

    ready.set()
    await asyncio.gather(keep(), reconnect())
    await channel.close()
    return {"kept": kept, "fresh": fresh}


def latency(samples: Sequence[Sequence[Any]], t0: float, t1: float) -> dict[str, Any]:
    """Latency (ms) and failures of the good client's calls started in [t0, t1)."""
    inside = [(dt, code) for t, dt, code in samples if t0 <= t < t1]
    ok = [dt for dt, code in inside if code == "OK"]
    out: dict[str, Any] = {"calls": len(inside), "failed": len(inside) - len(ok)}
    if ok:
        out["p50_ms"] = round(h.pct(ok, 50) * 1000, 2)
        out["p99_ms"] = round(h.pct(ok, 99) * 1000, 2)
        out["max_ms"] = round(max(ok) * 1000, 2)
    failures = Counter(code for _, code in inside if code != "OK")
    if failures:
        out["failures"] = dict(failures)
    return out


# -- the attacker with a refused certificate ----------------------------------------------


def big_request_worker(cred: str, size: int, concurrency: int, seconds: float, out: Any) -> None:
    """``concurrency`` Start calls of ``size`` bytes at a time on one connection."""
    try:
        result = asyncio.run(_big_requests(cred, size, concurrency, seconds))
    except BaseException as err:
        result = {"fatal": f"{type(err).__name__}: {err}"}
    out.put(result)


async def _big_requests(cred: str, size: int, concurrency: int, seconds: float) -> dict[str, Any]:
    import grpc

    from remo.v1 import jobs_pb2 as pb

    channel = h.open_channel(cred)
    start = channel.unary_unary("/remo.v1.JobService/Start")  # bytes in, bytes out
    payload = pb.StartRequest(argv=["echo", "x" * (size - 16)]).SerializeToString()
    codes: Counter[str] = Counter()
    details: dict[str, str] = {}
    rounds = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        answers = await asyncio.gather(
            *(start(payload, timeout=60) for _ in range(concurrency)), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, grpc.aio.AioRpcError):
                code = answer.code().name
                details.setdefault(code, (answer.details() or "")[:160])
            else:
                code = "OK" if isinstance(answer, bytes) else type(answer).__name__
            codes[code] += 1
        rounds += 1
    await channel.close()
    return {
        "request_bytes": len(payload),
        "rounds": rounds,
        "requests": sum(codes.values()),
        "codes": dict(codes),
        "details": details,
    }


# -- sampling the server --------------------------------------------------------------------


class ServerWatch:
    """Server RSS, fds and established connections every 0.2 s, from a thread."""

    def __init__(self, pid: Callable[[], int | None], port: int) -> None:
        self._pid = pid
        self.port = port
        self.samples: list[tuple[float, int | None, int | None, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self._pid()
            conns = established(self.port)
            self.samples.append((time.monotonic(), h.rss_kib(pid), h.fd_count(pid), conns))
            self._stop.wait(0.2)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, t0: float, t1: float) -> dict[str, Any]:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        rss = [s[1] for s in inside if s[1] is not None]
        fds = [s[2] for s in inside if s[2] is not None]
        return {
            "rss_peak_mib": mib(max(rss)) if rss else None,
            "fds_peak": max(fds) if fds else None,
            "conns_peak": max((s[3] for s in inside), default=None),
        }


def established(port: int) -> int:
    """Established TCP connections whose local port is ``port`` (IPv4 and IPv6 tables:
    grpc may listen on a dual-stack socket)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                n += parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port
    return n


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


# -- attacks b and c: connections that never finish ---------------------------------------


def client_hello() -> bytes:
    """The bytes of a TLS 1.3 ClientHello (ALPN h2), made with Python's OpenSSL."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def hold_connections(
    address: tuple[str, int], count: int, first_bytes: bytes, cap: float
) -> dict[str, Any]:
    """Open ``count`` connections, send ``first_bytes`` on each (maybe nothing), then
    read and discard until the server closes each one or ``cap`` seconds pass."""
    socks: dict[int, socket.socket] = {}
    opened: dict[int, float] = {}
    received: Counter[int] = Counter()
    held: list[float] = []
    refused_connect = 0
    t_start = time.monotonic()
    ep = select.epoll()
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(address)
            if first_bytes:
                s.sendall(first_bytes)
        except OSError:
            refused_connect += 1  # a reset at once counts as not held at all
            held.append(0.0)
            s.close()
            continue
        s.setblocking(False)
        socks[s.fileno()] = s
        opened[s.fileno()] = time.monotonic()
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    connect_s = time.monotonic() - t_start
    deadline = t_start + cap
    while socks and time.monotonic() < deadline:
        for fd, _ in ep.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
            s = socks[fd]
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                received[fd] += len(data)
                continue
            held.append(time.monotonic() - opened.pop(fd))
            ep.unregister(fd)
            s.close()
            del socks[fd]
    still_open = len(socks)
    for fd, s in socks.items():
        held.append(time.monotonic() - opened[fd])
        s.close()
    ep.close()
    return {
        "connections": count,
        "connect_s": round(connect_s, 2),
        "refused_or_reset_at_connect": refused_connect,
        "closed_by_server_within_1s": sum(1 for x in held if x < 1.0),
        "still_open_at_cap": still_open,
        "observed_s": cap,
        "held_median_s": round(h.pct(held, 50), 1),
        "held_max_s": round(max(held), 1) if held else None,
        "server_bytes_median": int(h.pct(list(received.values()), 50)) if received else 0,
    }


# -- attack d: the register socket -----------------------------------------------------------


def register_flood(state: Path, sock: Path, count: int) -> dict[str, Any]:
    """One account asks for ``count`` credentials back to back."""
    from remo.pki.ca import CertificateAuthority
    from remo.pki.errors import RegisterError
    from remo.pki.register import request_credential
    from remo.pki.registry import Registry

    me = _my_name()
    ca = CertificateAuthority.load(state)
    with Registry.open(state, ca.certificate) as registry:
        rows_before = len(registry.list_records(user=me))
    ok = 0
    refusals: Counter[str] = Counter()
    t0 = time.monotonic()
    for _ in range(count):
        try:
            request_credential(sock)
            ok += 1
        except RegisterError as err:
            refusals[_shape(str(err))] += 1
    elapsed = time.monotonic() - t0
    with Registry.open(state, ca.certificate) as registry:
        rows_after = len(registry.list_records(user=me))
    return {
        "account": me,
        "requests": count,
        "issued": ok,
        "refused": sum(refusals.values()),
        "refusals": dict(refusals),
        "rows_created": rows_after - rows_before,
        "elapsed_s": round(elapsed, 2),
    }


def _shape(message: str) -> str:
    """A refusal without its varying numbers, to count refusals by kind."""
    return " ".join("N" if w.rstrip("s.;").isdigit() else w for w in message.split())


def _my_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def register_silent(sock: Path, count: int, cap: float) -> dict[str, Any]:
    """``count`` connections to the register socket that never send their request."""
    conns: list[socket.socket] = []
    answered_at_once = 0
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.fspath(sock))
        conns.append(s)
    t0 = time.monotonic()
    held: list[float] = []
    answers: Counter[str] = Counter()
    pending = {s.fileno(): s for s in conns}
    ep = select.epoll()
    for fd in pending:
        ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
    while pending and time.monotonic() < t0 + cap:
        for fd, _ in ep.poll(0.5):
            s = pending.pop(fd)
            ep.unregister(fd)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            dt = time.monotonic() - t0
            held.append(dt)
            if data:
                answers[_shape(data.decode(errors="replace").strip())] += 1
                answered_at_once += dt < 1.0
            s.close()
    for s in pending.values():
        held.append(time.monotonic() - t0)
        s.close()
    ep.close()
    return {
        "connections": count,
        "answered_within_1s": answered_at_once,
        "answers": dict(answers),
        "still_open_at_cap": len(pending),
        "held_median_s": round(h.pct(held, 50), 1),
        "held_max_s": round(max(held), 1),
    }


# -- the configured bounds ------------------------------------------------------------------


def configured_bounds() -> dict[str, Any]:
    """What the server under test was told, read from its modules (None: grpc default)."""
    from remo.pki import register
    from remo.server import app

    def get(module: Any, name: str) -> Any:
        return getattr(module, name, None)

    return {
        "max_request_bytes": get(app, "MAX_REQUEST") or get(app, "MAX_MESSAGE"),
        "max_concurrent_streams": get(app, "MAX_STREAMS"),
        "max_connections": get(app, "MAX_CONNECTIONS"),
        "handshake_timeout_s": _seconds(get(app, "HANDSHAKE_TIMEOUT_MS")) or 120.0,
        "idle_timeout_s": _seconds(get(app, "IDLE_TIMEOUT_MS")),
        "register_rate": _rate(get(register, "DEFAULT_RATE")),
        "register_connections_per_account": get(register, "MAX_CONNECTIONS_PER_ACCOUNT"),
        "register_connections": get(register, "MAX_CONNECTIONS"),
        "register_timeout_s": 10.0,
    }


def _rate(rate: tuple[int, float] | None) -> str | None:
    return None if rate is None else f"{rate[0]}/{rate[1]:g}s"


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


# -- the run --------------------------------------------------------------------------------


class Run:
    """The server, its credentials, the good client, the watcher, and phase marks."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp = tmp
        self.args = args
        self.state = tmp / "state"
        self.port = h.free_port()
        log = HERE / "results" / "attack-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        self.server = h.ServerProcess(self.state, self.port, log)
        self.phases: dict[str, tuple[float, float]] = {}
        self._sup: int | None = None

    def sup_pid(self) -> int | None:
        if self._sup is None or not h.pid_alive(self._sup):
            self._sup = h.find_supervisor(self.state)
        return self._sup

    def start(self) -> None:
        self.server.start()
        self.good = h.issue_admin(self.state, self.server.address, self.tmp / "good.remo")
        self.refused = self._revoked_credential()

    def _revoked_credential(self) -> Path:
        """Signed by the server's CA, recorded, then revoked: TLS accepts it, the
        per-call check refuses it."""
        from remo.pki import package
        from remo.pki.ca import CertificateAuthority
        from remo.pki.registry import Registry

        ca = CertificateAuthority.load(self.state)
        issued = ca.issue_client(ATTACKER, "operator", validity=timedelta(days=1))  # type: ignore[arg-type]
        with Registry.open(self.state, ca.certificate) as registry:
            registry.record(issued.certificate)
            registry.revoke(issued.serial)
        path = self.tmp / "revoked.remo"
        package.save(path, [self.server.address], ca.cert_pem, issued.cert_pem, issued.key_pem)
        return path

    @contextlib.contextmanager
    def phase(self, name: str) -> Any:
        print(f"  {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = (t0, time.monotonic())

    def stop(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        sup = self.sup_pid()
        report["server_stop_s"] = self.server.stop()
        if sup is not None:
            report["supervisor_exited"] = h.wait_pid_gone(sup, 120)
        return report


def run_attacks(run: Run, args: argparse.Namespace, only: set[str]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    quick = args.quick
    out: dict[str, Any] = {}
    server_pid = run.server.pid
    addr = ("127.0.0.1", run.port)
    with ServerWatch(lambda: server_pid, run.port) as watch:
        stop, ready, results = ctx.Event(), ctx.Event(), ctx.Queue()
        good = ctx.Process(target=good_client_worker, args=(str(run.good), stop, ready, results))
        good.start()
        ready.wait(120)
        time.sleep(2.0)  # first calls warm up the server's caches
        with run.phase("baseline"):
            time.sleep(5.0 if quick else 10.0)
        out["idle_rss_mib"] = mib(h.rss_kib(server_pid))
        out["idle_fds"] = h.fd_count(server_pid)

        if "a" in only:
            for key, size, streams in (
                ("a_big", BIG_REQUEST, 16),
                ("a_limit", LIMIT_REQUEST, 16),
                ("a_streams", LIMIT_REQUEST, 100),
            ):
                before = h.rss_kib(server_pid)
                q = ctx.Queue()
                seconds = 8.0 if quick else 20.0
                with run.phase(key):
                    p = ctx.Process(
                        target=big_request_worker,
                        args=(str(run.refused), size, streams, seconds, q),
                    )
                    p.start()
                    res = q.get(timeout=seconds + 300)
                    p.join()
                t0, t1 = run.phases[key]
                time.sleep(12.0)  # the server trims its heap every 5 s
                res.update(watch.peak(t0, t1))
                res["rss_before_mib"] = mib(before)
                res["rss_after_mib"] = mib(h.rss_kib(server_pid))
                res["seconds"] = seconds
                res["concurrent"] = streams
                out[key] = res

        cap = args.hold_cap
        if "b" in only:
            before = h.rss_kib(server_pid)
            with run.phase("b_silent_tcp"):
                res = hold_connections(addr, 1000 if quick else 3000, b"", cap)
            res.update(watch.peak(*run.phases["b_silent_tcp"]))
            res["rss_before_mib"] = mib(before)
            out["b_silent_tcp"] = res
            time.sleep(3.0)
        if "c" in only:
            before = h.rss_kib(server_pid)
            with run.phase("c_half_tls"):
                res = hold_connections(addr, 300 if quick else 1000, client_hello(), cap)
            res.update(watch.peak(*run.phases["c_half_tls"]))
            res["rss_before_mib"] = mib(before)
            out["c_half_tls"] = res
            time.sleep(3.0)
        if "d" in only:
            from remo.pki.register import register_socket_path

            sock = register_socket_path(run.state)
            with run.phase("d_register_flood"):
                res = register_flood(run.state, sock, 200)
            res.update(watch.peak(*run.phases["d_register_flood"]))
            out["d_register_flood"] = res
            with run.phase("d_register_silent"):
                res = register_silent(sock, 200, min(cap, 30.0))
            res.update(watch.peak(*run.phases["d_register_silent"]))
            out["d_register_silent"] = res
        with run.phase("baseline_end"):  # quiet again: how noisy the baseline is
            time.sleep(5.0)
        stop.set()
        samples = results.get(timeout=120)
        good.join(60)
    if "fatal" in samples:
        raise RuntimeError(f"the good client failed: {samples['fatal']}")
    for name, (t0, t1) in run.phases.items():
        entry = out.setdefault(name, {})
        entry["good_status"] = latency(samples["kept"], t0, t1)
        entry["good_fresh_connection"] = latency(samples["fresh"], t0, t1)
    return out


# -- the table ------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _size(n: int | None) -> str:
    return "grpc default" if n is None else f"{n / MIB:.2f} MiB"


def table(results: dict[str, Any]) -> list[dict[str, str]]:
    b = results["bounds"]
    base = results.get("baseline", {}).get("good_status", {})
    rows: list[dict[str, str]] = []

    def row(name: str, bound: str, measured: str) -> None:
        entry = results.get(name)
        if entry is None:
            return
        good = entry.get("good_status", {})
        fresh = entry.get("good_fresh_connection", {})
        rows.append(
            {
                "attack": name,
                "bound": bound,
                "measured": measured,
                "good Status p50/p99 ms": f"{good.get('p50_ms', '-')} / {good.get('p99_ms', '-')}",
                "vs baseline p50/p99": f"{ratio(good.get('p50_ms'), base.get('p50_ms'))} / "
                f"{ratio(good.get('p99_ms'), base.get('p99_ms'))}",
                "fresh conn ok/failed": f"{fresh.get('calls', 0) - fresh.get('failed', 0)}"
                f"/{fresh.get('failed', 0)}",
            }
        )

    row("baseline", "-", f"idle RSS {results.get('idle_rss_mib')} MiB")
    row("baseline_end", "-", "quiet again after the attacks")
    streams = b["max_concurrent_streams"] or "unlimited"
    for key in ("a_big", "a_limit", "a_streams"):
        a = results.get(key)
        if a:
            row(
                key,
                f"request <= {_size(b['max_request_bytes'])}, {streams} streams/conn",
                f"{a['requests']} x {a['request_bytes'] / MIB:.2f} MiB, {a['concurrent']} at "
                f"once: {a['codes']}; RSS "
                f"{a['rss_before_mib']} -> peak {a['rss_peak_mib']} -> {a['rss_after_mib']} MiB",
            )
    conns = b["max_connections"] or "unlimited"
    for key in ("b_silent_tcp", "c_half_tls"):
        c = results.get(key)
        if c:
            row(
                key,
                f"handshake {b['handshake_timeout_s']:g} s, {conns} conns",
                f"{c['connections']} held median {c['held_median_s']} s, max "
                f"{c['held_max_s']} s ({c['still_open_at_cap']} open at {c['observed_s']:g} s, "
                f"{c['closed_by_server_within_1s']} closed < 1 s); fds peak {c['fds_peak']}, "
                f"RSS {c['rss_before_mib']} -> peak {c['rss_peak_mib']} MiB",
            )
    d = results.get("d_register_flood")
    if d:
        row(
            "d_register_flood",
            f"rate {b['register_rate'] or 'none'}",
            f"{d['requests']} asked: {d['issued']} issued, {d['rows_created']} rows, "
            f"{d['refused']} refused, in {d['elapsed_s']} s",
        )
    s = results.get("d_register_silent")
    if s:
        row(
            "d_register_silent",
            f"{b['register_connections_per_account'] or 'unlimited'} conns/account, "
            f"{b['register_timeout_s']:g} s",
            f"{s['connections']}: {s['answered_within_1s']} turned away < 1 s, held median "
            f"{s['held_median_s']} s, max {s['held_max_s']} s",
        )
    return rows


def render(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(nothing measured)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def src_digest() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((h.ROOT / "src" / "remo").rglob("*.py")):
        digest.update(str(path.relative_to(h.ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter and smaller attacks")
    parser.add_argument("--label", default=None, help="store the run under this name")
    parser.add_argument("--only", default="a,b,c,d", help="attacks to run (default a,b,c,d)")
    parser.add_argument(
        "--hold-cap",
        type=float,
        default=130.0,
        help="seconds to watch held connections before giving up (default 130)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the server's register socket lives in /run/remo", file=sys.stderr)
        return 2
    only = set(args.only.split(","))
    label = args.label or ("quick" if args.quick else "full")
    h.raise_nofile()
    meta: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/attack_bench.py", *sys.argv[1:]]),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "src_digest": src_digest(),
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        meta["grpcio"] = version("grpcio")
    results: dict[str, Any] = {"meta": meta, "bounds": configured_bounds()}
    tmp = Path(tempfile.mkdtemp(prefix="remo-attack-")).resolve()
    run = Run(tmp, args)
    t0 = time.monotonic()
    try:
        print(f"starting remo server on 127.0.0.1:{run.port} ...", flush=True)
        run.start()
        results.update(run_attacks(run, args, only))
    finally:
        meta["cleanup"] = run.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_s"] = round(time.monotonic() - t0, 1)
    rows = table(results)
    results["table"] = rows
    print()
    print(render(rows))
    load = f"{meta['loadavg_start']} -> {meta['loadavg_end']}"
    print(f"\nwall {meta['wall_s']} s; load average {load}")
    stored: dict[str, Any] = {}
    if RESULTS.exists():
        with contextlib.suppress(ValueError):
            stored = json.loads(RESULTS.read_text())
    stored[label] = results
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(h.ROOT)} [{label}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

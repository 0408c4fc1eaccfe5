"""Assemble and run the remo server: CA, TLS 1.3 mTLS listener, register socket, jobs.

Import order matters: :func:`remo.server.tls.ensure_tls13_only_env` must run before
grpc is first imported (see that module), so ``remo server`` calls it before importing
this module, and this module calls it again, before its own ``import grpc``, to refuse
to start if someone imported grpc earlier.
"""

from __future__ import annotations

from remo.server.tls import ensure_tls13_only_env

ensure_tls13_only_env()

import asyncio  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha._async import ReflectionServicer  # noqa: E402

from remo.backend import JobBackend  # noqa: E402
from remo.core.files import write_file_atomic  # noqa: E402
from remo.core.memory import return_free_memory  # noqa: E402
from remo.core.spec import MAX_ARGV_BYTES  # noqa: E402
from remo.pki.ca import CertificateAuthority, Role  # noqa: E402
from remo.pki.errors import CertificateRejected  # noqa: E402
from remo.pki.register import RateLimit, RegisterServer, register_socket_path  # noqa: E402
from remo.pki.registry import DB_FILE as IDENTITIES_DB  # noqa: E402
from remo.pki.registry import Registry  # noqa: E402
from remo.schedule.store import ScheduleStore  # noqa: E402
from remo.schedule.timer import Scheduler  # noqa: E402
from remo.server import authn, looplag, streams, tls  # noqa: E402
from remo.server.config import ServerConfig  # noqa: E402
from remo.server.convert import NetworkPolicy  # noqa: E402
from remo.server.guard import RequireRegisteredCertificate  # noqa: E402
from remo.server.output_budget import OutputBudget, raise_fd_limit  # noqa: E402
from remo.server.servicer import JobsServicer  # noqa: E402
from remo.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402
from remo.worker import JobManager  # noqa: E402

log = logging.getLogger("remo.server")

# -- stopping (docs/RELIABILITY.md, "Restarts and shutdown"). A stop does not wait for
# follows (Output), Wait and health watches: they end only with their job or client, so a
# grace period for them was always spent in full (it was 2 s, after which every call was
# cancelled anyway). They are ended with UNAVAILABLE, which clients resume against the
# next server, as soon as the unary calls in progress have their answers.

#: How long unary calls in progress (but Wait) get to finish when the server stops. One
#: cut short is retried by the client (Start with its request id, the others idempotent).
SHUTDOWN_GRACE = 1.0
#: From the stop signal to the process's exit at the latest, whatever is still running
#: then (a thread exits the process, so a busy or stuck event loop cannot hold it up).
SHUTDOWN_LIMIT = 3.0
#: When the process exits after the stop: how long the handlers of the calls ended at
#: the stop get to finish unwinding. Clients have their UNAVAILABLE as soon as the calls
#: are cancelled; the handlers' clean-up (a follower closes its file and inotify watch)
#: is work for nothing then, and with hundreds of follows on a loaded machine it took
#: seconds.
SHUTDOWN_UNWIND = 0.5

# -- what a caller costs before the per-call certificate check (docs/RELIABILITY.md,
# "Before authentication"). The TLS handshake only proves a certificate chains to our
# CA; the registry check runs in each call's handler, after grpc has read the request.
# Until then a revoked or never-recorded certificate, or no certificate at all, costs
# what these bounds allow, each checked by tests/e2e/test_bounded.py and measured by
# bench/attack_bench.py.

#: Largest response (an output chunk, a job list). Unchanged: it bounds what we send.
MAX_MESSAGE = 8 << 20
#: Largest request grpc reads before a handler runs. StartRequest is the largest:
#: argv + env are capped at MAX_ARGV_BYTES (1 MiB) by JobSpec.validate, and on the wire
#: an argument costs at most twice what that cap counts (one byte of tag, one of length
#: for an empty one), so every argument list the server accepts fits, plus 64 KiB for
#: cwd, limits and schedule. (Only environment names in non-ASCII letters, which the cap
#: counts in characters, can go beyond: refused as RESOURCE_EXHAUSTED instead of
#: INVALID_ARGUMENT.) Was 8 MiB: 16 requests of 7.9 MiB took the server to 1 GiB.
MAX_REQUEST = 2 * MAX_ARGV_BYTES + (64 << 10)
#: Concurrent calls per connection: the CLI uses 1-3. A program with more calls open on
#: one channel (an SDK following many jobs) has grpc's client queue the rest until
#: streams end; as they end, the server may refuse a queued call that starts too soon
#: (REFUSED_STREAM, UNAVAILABLE to the caller: the remo client's follow retries it, a
#: unary call does not), so such a program wants a channel per 32 calls. With
#: MAX_REQUEST it bounds the request bytes one connection can have in flight before any
#: handler has checked the caller: 32 x 2.06 MiB (measured in-process, 100 refused 2 MiB
#: requests at a time on one connection took the server to 1.5 GiB, 16 to 0.46 GiB).
MAX_STREAMS = 32
#: Connections at once, handshaking or established, good or not: one over it is
#: closed as soon as it is accepted, before the TLS handshake. It bounds descriptors and
#: memory (measured, a connection that sends nothing costs ~40 KiB: all 4,096 ~170 MiB,
#: for HANDSHAKE_TIMEOUT_MS each); 1,000 followers on their own connections (the load
#: bench) fit four times over. While an attacker holds them all, new good connections are
#: refused too: no cap stops that, it only decides whether memory and descriptors run
#: out first.
MAX_CONNECTIONS = 4096
#: A connection must finish its TLS handshake (and send its HTTP/2 settings) in this
#: long, or it is closed: grpc's default, 120 s, let 3,000 silent connections sit for
#: two minutes. A handshake takes a few round trips; 10 s leaves room for slow links.
HANDSHAKE_TIMEOUT_MS = 10_000
#: A connection with no call for this long gets a GOAWAY and is closed; the client
#: reconnects on its next call. A call in progress (a `remo logs -f` of hours) keeps it
#: open whatever its age: there is deliberately no grpc.max_connection_age, which would
#: end long follows.
IDLE_TIMEOUT_MS = 5 * 60_000

#: The collector's thresholds (Python's: 700, 10, 10): a young pass every 20,000
#: allocations net instead of 700 (see _settle_garbage_collector).
GC_THRESHOLDS = (20_000, 10, 10)

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_REQUEST),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_concurrent_streams", MAX_STREAMS),
    ("grpc.max_allowed_incoming_connections", MAX_CONNECTIONS),
    ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
    ("grpc.max_connection_idle_ms", IDLE_TIMEOUT_MS),
    # Without BDP probing a stream's receive window starts at 64 KiB, not 4 MiB: an
    # oversized request is refused when its 5-byte length prefix arrives, after at most
    # 64 KiB instead of 4 MiB per stream. Requests near MAX_REQUEST take one more round
    # trip (measured, 1 MB over a 50 ms RTT: 154 -> 205 ms); responses are unaffected
    # (the client's window governs them).
    ("grpc.http2.bdp_probe", 0),
    # Pings every 30 s find dead peers of long calls (keepalive_timeout: 20 s default).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    # Clients ping every 60 s on long follows; accept pings that often.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]
#: Connections at once on the plaintext health port: probes connect, ask, and leave.
HEALTH_CONNECTIONS = 256


@dataclass
class RunningServer:
    """A started server: where it listens and what it hands out."""

    port: int
    addresses: list[str]
    register_socket: str
    protections_off: list[str]
    cgroup_mode: str
    server: grpc.aio.Server
    jobs: JobBackend
    #: Port of the plaintext health endpoint, when configured.
    health_port: int | None = None
    #: Port of the Prometheus metrics endpoint, when configured.
    metrics_port: int | None = None


def _banned_reason(registry: Registry) -> Callable[[str], str | None]:
    """For the scheduler: a banned account's schedules do not fire (each run is skipped
    and recorded with this reason) until an admin allows the account again."""

    def reason(owner: str) -> str | None:
        try:
            registry.refuse_if_banned(owner)
        except CertificateRejected as err:
            return str(err)
        return None

    return reason


@asynccontextmanager
async def running(config: ServerConfig, *, exiting: bool = False) -> AsyncIterator[RunningServer]:
    """Start everything; stop the listener (never the jobs) on exit. ``exiting``: the
    process exits right after (``remo server``), so the stop does not wait for every
    cancelled call's handler (:data:`SHUTDOWN_UNWIND`)."""
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o700)
    outputs = OutputBudget.for_fd_limit(raise_fd_limit(), config.max_outputs_per_user)
    ca = CertificateAuthority.load_or_create(config.state_dir)
    server_cert = ca.ensure_server_certificate(config.certificate_names())
    registry = Registry.open(config.state_dir, ca.certificate)
    stack = AsyncExitStack()
    try:
        async with (
            _open_jobs(config) as jobs,
            stack,  # exits first: the scheduler stops before the JobManager closes
        ):
            lag_probe = looplag.start_from_env()  # for benchmarks: see remo.server.looplag
            if lag_probe is not None:
                stack.callback(lag_probe.close)
            authenticate = authn.Authenticator(registry)
            calls = UnaryCallsInFlight()
            interceptors: list[grpc.aio.ServerInterceptor] = [
                RequireRegisteredCertificate(authenticate),
                calls,
                streams.OutputCodec(),  # innermost: Output's messages are sent as encoded
            ]
            observed = None
            if config.metrics_listen is not None:  # opt-in (docs/OPERATIONS.md)
                from remo.server import metrics, metrics_http

                observed = metrics.Metrics(jobs, config.state_dir, config.state_dir / IDENTITIES_DB)
                stack.callback(observed.close)
                observed.lag.start()
                interceptors.insert(0, observed.interceptor)  # outermost: sees every refusal
            server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
            schedules_db = config.state_dir / "schedules.db"
            schedules = (
                ScheduleStore(schedules_db)
                if observed is None
                else observed.schedule_store(schedules_db)
            )
            scheduler = Scheduler(schedules, jobs, _banned_reason(registry))
            await scheduler.start()
            stack.push_async_callback(scheduler.close)
            trimmer = asyncio.create_task(return_free_memory())
            stack.callback(trimmer.cancel)
            if config.retention is not None:
                purger = asyncio.create_task(_purge_forever(jobs, config.retention))
                stack.callback(purger.cancel)
            stack.callback(schedules.close)
            jobs_pb2_grpc.add_JobServiceServicer_to_server(  # type: ignore[no-untyped-call]
                JobsServicer(
                    jobs,
                    authenticate,
                    scheduler,
                    NetworkPolicy(config.network, config.force_network_none),
                    outputs,
                ),
                server,
            )
            health_servicer = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            _serve_reflection(server)
            credentials = tls.server_credentials(
                ca.cert_pem, server_cert.cert_pem, server_cert.key_pem
            )
            host, _ = config.listen_host_port()
            port = server.add_secure_port(config.listen, credentials)
            if port == 0:
                raise OSError(f"cannot listen on {config.listen}")
            await server.start()
            await health_servicer.set("remo.v1.JobService", health_pb2.HealthCheckResponse.SERVING)
            await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            probe_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            await asyncio.to_thread(tls.verify_tls13_only, probe_host, port)
            addresses = config.advertised_addresses(port)
            _write_addresses(config, addresses)
            socket_path = register_socket_path(config.state_dir, config.register_run_dir)
            register = RegisterServer(
                ca,
                registry,
                addresses,
                socket_path,
                roles={k: Role(v) for k, v in config.roles.items()},
                default_role=Role(config.default_role) if config.default_role else None,
                rate=RateLimit(*config.register_rate),
            )
            await register.start()
            plain = await _plaintext_health(config.health_listen, health_servicer)
            metrics_port = None
            if observed is not None and config.metrics_listen is not None:
                scrapes = metrics_http.MetricsServer(observed)
                stack.push_async_callback(scrapes.close)
                metrics_port = await scrapes.start(config.metrics_listen)
            try:
                yield RunningServer(
                    port,
                    addresses,
                    str(socket_path),
                    jobs.protections_off,
                    jobs.cgroup_mode,
                    server,
                    jobs,
                    plain[1] if plain is not None else None,
                    metrics_port,
                )
            finally:
                await register.close()
                await health_servicer.enter_graceful_shutdown()
                await _stop_serving(
                    [server] if plain is None else [server, plain[0]],
                    calls,
                    unwind=SHUTDOWN_UNWIND if exiting else None,
                )
    finally:
        registry.close()


class UnaryCallsInFlight(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts the unary calls in progress but Wait: the calls a stop lets finish. (Wait,
    Output and health's Watch end only with their job or their client.)"""

    ENDLESS = frozenset({"/remo.v1.JobService/Wait"})

    def __init__(self) -> None:
        self.count = 0
        self._none = asyncio.Event()
        self._none.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or details.method in self.ENDLESS:
            return handler
        inner = handler.unary_unary

        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.count += 1
            self._none.clear()
            # Counted until the call has ended on the wire, not when the handler returns:
            # a stop must not cancel a call whose answer has not left yet.
            context.add_done_callback(self._ended)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _ended(self, _context: Any) -> None:
        self.count -= 1
        if not self.count:
            self._none.set()

    async def finished(self, timeout: float) -> bool:
        """Wait until none is in progress, for ``timeout`` seconds at most."""
        try:
            await asyncio.wait_for(self._none.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def _stop_serving(
    servers: list[grpc.aio.Server], calls: UnaryCallsInFlight, *, unwind: float | None = None
) -> None:
    """Stop taking calls at once; let unary calls in progress finish for up to
    :data:`SHUTDOWN_GRACE`; then end every call left with UNAVAILABLE (grpc's
    "Cancelling all calls"), which clients take as "reconnect and resume". Wait for
    the handlers of those calls to end, for ``unwind`` seconds at most if given."""
    # stop(grace) closes the listeners and sends GOAWAY now; calls in progress go on.
    graceful = [asyncio.ensure_future(s.stop(SHUTDOWN_GRACE)) for s in servers]
    if not await calls.finished(SHUTDOWN_GRACE):
        log.warning("stopping: %d call(s) still in progress are cut short", calls.count)
    # stop(None) cancels what is left now and returns once every handler has ended.
    stopped = asyncio.gather(*(s.stop(None) for s in servers), *graceful)
    try:
        await asyncio.wait_for(asyncio.shield(stopped), unwind)
    except TimeoutError:
        log.info("stopping: not waiting any longer for cancelled calls to unwind")


async def _plaintext_health(
    listen: str | None, servicer: health.aio.HealthServicer
) -> tuple[grpc.aio.Server, int] | None:
    """The opt-in plaintext port for load balancers and probes that cannot present a
    client certificate: grpc.health.v1 and nothing else (the same servicer, so it tells
    the same status), small messages, few streams."""
    if listen is None:
        return None
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 4096),
            ("grpc.max_concurrent_streams", 4),
            ("grpc.max_allowed_incoming_connections", HEALTH_CONNECTIONS),
            ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
            ("grpc.max_connection_idle_ms", IDLE_TIMEOUT_MS),
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen} (health)")
    await server.start()
    return server, port


#: Reflection v1 is v1alpha under another package name, message for message on the wire
#: (grpcio-reflection serves v1alpha only; grpcurl and other current tools ask v1 first).
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _serve_reflection(server: grpc.aio.Server) -> None:
    """Serve reflection v1alpha and v1 (behind the same certificate check as the rest)."""
    servicer = ReflectionServicer(
        (
            jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
            REFLECTION_V1,
        )
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


#: Seconds a thread may hold the GIL while another waits for it (Python's default: 5 ms).
SWITCH_INTERVAL = 0.0002


async def serve_forever(config: ServerConfig, announce: Callable[[RunningServer], None]) -> None:
    """Run until SIGTERM or SIGINT, stop, and exit the process (it never returns then);
    jobs keep running."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    asked = 0.0

    def on_signal() -> None:
        nonlocal asked
        if stop.is_set():  # asked twice: leave now (jobs are the supervisor's, not ours)
            log.warning("second stop signal: exiting at once")
            os._exit(1)
        asked = time.monotonic()
        _exit_after(SHUTDOWN_LIMIT)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    # The loop and the reader threads take turns on the GIL; a thread building a page of
    # 1,000 jobs would otherwise hold it for 5 ms at a time, and a Status needs several
    # turns: its p99 while another client pages through 100,000 jobs was 39 ms with
    # Python's 5 ms, 11 ms with 0.5 ms, 8.5 ms with 0.2 ms (bench/scale_bench.py), the
    # paging itself ~10 % slower.
    sys.setswitchinterval(SWITCH_INTERVAL)
    async with running(config, exiting=True) as srv:
        _settle_garbage_collector()
        announce(srv)
        await stop.wait()
        log.info("stopping: no new calls; running jobs keep running")
    log.info("stopped in %.2f s", time.monotonic() - asked)
    # Everything of ours is closed. What the interpreter would still do on its way out
    # (full garbage collections of the heap, module teardown) helps no job and no client,
    # and it is CPU work: with 200 follows open on a loaded machine it took 10-23 s.
    _exit(0)


def _settle_garbage_collector() -> None:
    """Leave what start-up loaded out of the collector's passes (gc.freeze), and let
    it run less often. The server makes few reference cycles, but each full pass walked
    every object of grpc, protobuf and the modules: with 1,000 followed jobs
    (bench/many_jobs_bench.py --many), passes of up to 27 ms (timed once with
    gc.callbacks) stalled the loop several times a second."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _exit(code: int) -> NoReturn:
    """Leave now, after writing out what was logged and printed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _exit_after(seconds: float) -> None:
    """Exit the process ``seconds`` from now unless it has exited by itself. A thread, so
    that neither a busy event loop nor a stuck handler can hold the exit up."""

    def overdue() -> None:
        message = f"remo server: stopping took more than {seconds:g} s; exiting now\n"
        try:
            os.write(2, message.encode())
        finally:
            os._exit(1)

    timer = threading.Timer(seconds, overdue)
    timer.daemon = True
    timer.start()


def _open_jobs(config: ServerConfig) -> AbstractAsyncContextManager[JobBackend]:
    """The backend chosen at start: this machine's supervisor, or Slurm (docs/SLURM.md)."""
    if config.backend == "slurm":
        from remo.slurm.jobs import SlurmJobs

        return SlurmJobs.open(
            config.slurm,
            config.state_dir,
            default_limits=config.default_limits,
            max_limits=config.max_limits,
        )
    return JobManager.open(
        config.state_dir,
        default_limits=config.default_limits,
        max_limits=config.max_limits,
        namespaces=config.namespaces,
        exec_timeout=config.exec_timeout,
    )


async def _purge_forever(jobs: JobBackend, retention: float) -> None:
    """Apply the retention period now and then (a few times per period, at most hourly)."""
    while True:
        try:
            removed = await jobs.purge(retention)
            if removed:
                log.info("purged %d finished job(s) older than the retention period", removed)
        except Exception:  # a failed purge must not stop the server; retried next round
            log.exception("purge failed")
        await asyncio.sleep(min(max(retention / 4, 1.0), 3600.0))


ADDRESSES_FILE = "addresses"


def _write_addresses(config: ServerConfig, addresses: list[str]) -> None:
    """Remember where we listen, so `remo admin issue` can put it into packages."""
    path = config.state_dir / ADDRESSES_FILE
    text = "".join(f"{a}\n" for a in addresses).encode()
    with suppress(OSError):
        if path.read_bytes() == text:
            return  # no write: a restart must work on a full disk
    try:
        write_file_atomic(path, text, 0o644)
    except OSError as err:
        log.warning("cannot record the addresses in %s: %s", path, err.strerror or err)

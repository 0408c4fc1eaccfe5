"""Prometheus metrics of the remo server: opt-in (``metrics_listen``), plaintext HTTP.

What is measured (docs/OPERATIONS.md lists every series):

- on the event loop, as calls end, by :class:`RpcMetrics` (a grpc.aio interceptor, the
  outermost, so it sees the certificate guard's refusals too): calls by method and
  status code, unary latency by method, jobs started, start failures by stage (the
  ``stage`` of a START_FAILED ``ErrorInfo``), stops, refusals by ``ErrorInfo`` reason.
  Each costs a few microseconds of the call that is ending;
- schedule runs by outcome, as the scheduler records them (:class:`CountingScheduleStore`);
- the event loop's lag (:class:`LoopLag`: a timer due every 10 ms notes how late it runs,
  as :mod:`remo.server.looplag` does for benchmarks, kept in memory);
- at scrape time, by collectors that read SQLite and the disk: jobs by user and state
  (:meth:`remo.worker.JobManager.counts_blocking`), credentials issued, revoked, valid
  and the soonest expiry (a read-only connection of our own to ``identities.db``, so a
  scrape never holds the registry lock every call's certificate check takes), the state
  dir's free bytes, supervisor restarts, and the process (CPU, memory, descriptors).

Serving: a small HTTP/1.1 server on the server's own event loop answers ``GET /metrics``;
the page is built on one thread of its own (:class:`MetricsServer`), never on the loop,
and concurrent scrapes share the page being built. Requests are bounded (8 KiB of
head, 10 s to send it and read the answer, 16 connections at once).

Labels are bounded: users x states, methods x codes, stages, reasons, outcomes; no
series per job. Account names appear as label values (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import prometheus_client
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from remo import __version__
from remo.schedule.store import Run, Schedule, ScheduleStore
from remo.server import looplag
from remo.server.config import local_listen, split_listen
from remo.worker import JobManager

log = logging.getLogger("remo.server.metrics")

# No ``*_created`` series beside each counter: nothing here needs them, and they double
# the page. (Process-wide: this module is the server's only user of prometheus_client.)
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

JOB_SERVICE = "/remo.v1.JobService/"
START = JOB_SERVICE + "Start"
STOP = JOB_SERVICE + "Stop"
#: Status codes whose ``ErrorInfo.reason`` is counted as a refusal.
REFUSED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
#: Latency buckets of unary calls, seconds: a status takes ~1 ms, a start ~10-50 ms, a
#: Wait as long as its job.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
#: A label value taken from an error's metadata (a stage, a reason) must look like one.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_STATUS_DETAILS = "grpc-status-details-bin"
_CODES = {code.value[0]: code for code in grpc.StatusCode}

#: Bounds of the HTTP side.
MAX_HEAD = 8192
HTTP_TIMEOUT = 10.0
MAX_HTTP_CONNECTIONS = 16
#: Lag samples kept for the p99: 10 s at one per 10 ms.
LAG_WINDOW = 1000


def _label(value: str) -> str:
    return value if _LABEL_VALUE.fullmatch(value) else "other"


class Metrics:
    """Every metric of one server, in a registry of its own."""

    def __init__(self, jobs: JobManager, state_dir: Path, identities_db: Path) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.rpcs = Counter(
            "remo_rpcs", "RPCs handled, by method and status code.", ["method", "code"], registry=r
        )
        self.rpc_seconds = Histogram(
            "remo_rpc_duration_seconds",
            "Time to answer a unary RPC, by method (streams are counted, not timed).",
            ["method"],
            buckets=BUCKETS,
            registry=r,
        )
        self.started = Counter(
            "remo_jobs_started",
            "Jobs started by Start calls (schedules: see remo_schedule_runs_total).",
            registry=r,
        )
        self.start_failures = Counter(
            "remo_job_start_failures",
            "Start calls that failed to run the command (START_FAILED), by stage.",
            ["stage"],
            registry=r,
        )
        self.stopped = Counter("remo_jobs_stopped", "Jobs stopped by Stop calls.", registry=r)
        self.refused = Counter(
            "remo_calls_refused",
            "Calls refused with UNAUTHENTICATED or PERMISSION_DENIED, by ErrorInfo reason.",
            ["reason"],
            registry=r,
        )
        self.schedule_runs = Counter(
            "remo_schedule_runs",
            "Schedule runs recorded since the server started, by outcome "
            "(started, skipped, failed, caught-up).",
            ["outcome"],
            registry=r,
        )
        self.lag = LoopLag()
        self.interceptor = RpcMetrics(self)
        r.register(ProcessCollector(registry=None))
        r.register(_StateCollector(jobs, state_dir, self.lag))
        self._credentials = _CredentialCollector(identities_db)
        r.register(self._credentials)

    def schedule_store(self, path: Path) -> ScheduleStore:
        """The schedule store, counting each run it records."""
        return CountingScheduleStore(path, self.schedule_runs)

    def page(self) -> bytes:
        """The exposition text. Blocks (SQLite, /proc): never on the event loop."""
        return generate_latest(self.registry)

    def close(self) -> None:
        self.lag.close()
        self._credentials.close()


class CountingScheduleStore(ScheduleStore):
    """:class:`ScheduleStore` that counts the runs it records, by outcome."""

    def __init__(self, path: Path, runs: Counter) -> None:
        super().__init__(path)
        self._runs = runs

    def record(self, schedule: Schedule, run: Run) -> None:
        super().record(schedule, run)
        self._runs.labels(_label(run.outcome)).inc()


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every call as it ends: its method and code; unary calls' latency; and
    what Start, Stop and refused calls say about jobs and callers."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED, not counted
            return handler
        method: str = details.method
        done = self._done
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                began = time.perf_counter()
                response = None
                error: BaseException | None = None
                try:
                    response = await inner(request, context)
                except BaseException as err:
                    error = err
                    raise
                finally:
                    done(method, context, error, response, time.perf_counter() - began)
                return response

            return grpc.unary_unary_rpc_method_handler(unary, **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, method, done), **codec
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, method, done), **codec
            )
        return handler  # (no client-streaming method is served)

    def _done(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        error: BaseException | None,
        response: Any,
        seconds: float | None,
    ) -> None:
        try:
            code = _code_of(context, error)
            m = self._m
            m.rpcs.labels(method, code.name).inc()
            if seconds is not None:
                m.rpc_seconds.labels(method).observe(seconds)
            if code is grpc.StatusCode.OK:
                if method == START and response is not None and response.HasField("job"):
                    m.started.inc()
                elif method == STOP:
                    m.stopped.inc()
                return
            info = _error_info(context)
            if code in REFUSED:
                m.refused.labels(_label(info.reason if info else code.name)).inc()
            elif method == START and info is not None and info.reason == "START_FAILED":
                m.start_failures.labels(_label(info.metadata.get("stage", "") or "unknown")).inc()
        except Exception:  # a metric must never fail a call
            log.exception("cannot count a call of %s", method)


def _streaming(
    inner: Callable[..., Any],
    method: str,
    done: Callable[[str, Any, BaseException | None, Any, float | None], None],
) -> Callable[..., Any]:
    """Count a streaming behaviour of either kind grpc.aio accepts (see remo.server.guard)."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                async for response in inner(request, context):
                    yield response
            except BaseException as err:
                error = err
                raise
            finally:
                done(method, context, error, None, None)

        return generator

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        error: BaseException | None = None
        try:
            return await inner(request, context)
        except BaseException as err:
            error = err
            raise
        finally:
            done(method, context, error, None, None)

    return writer


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ends with: the one it aborted with or set; CANCELLED when it
    was cancelled (its client left, or the server stops); UNKNOWN for an exception."""
    code = context.code()
    if isinstance(code, int):
        code = _CODES.get(code, grpc.StatusCode.UNKNOWN)
    if isinstance(code, grpc.StatusCode) and (code is not grpc.StatusCode.OK or error is None):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _error_info(context: grpc.aio.ServicerContext) -> error_details_pb2.ErrorInfo | None:
    """The ``ErrorInfo`` of the call's ``google.rpc.Status`` trailer, if it has one."""
    for key, value in context.trailing_metadata() or ():
        if key != _STATUS_DETAILS or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None


class LoopLag:
    """The event loop's lateness, sampled every :data:`remo.server.looplag.INTERVAL`:
    the latest sample and the p99 of the last :data:`LAG_WINDOW`. Start it on the loop."""

    def __init__(self, interval: float = looplag.INTERVAL) -> None:
        self.interval = interval
        self._samples: deque[float] = deque(maxlen=LAG_WINDOW)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._samples.append(max(0.0, now - self._due))
        self._due = now + self.interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def figures(self) -> tuple[float, float] | None:
        """(latest, p99) in seconds, or None before the first sample. Any thread."""
        samples = self._samples.copy()  # (one C call: atomic beside the loop's appends)
        if not samples:
            return None
        ordered = sorted(samples)
        return samples[-1], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _StateCollector:
    """At scrape time: jobs by user and state, the state dir's disk, supervisor restarts,
    the loop's lag, the version."""

    def __init__(self, jobs: JobManager, state_dir: Path, lag: LoopLag) -> None:
        self._jobs = jobs
        self._state_dir = state_dir
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "remo_server_info", "The remo version serving.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        jobs = GaugeMetricFamily(
            "remo_jobs",
            "Jobs on record (not yet purged), by owner and state.",
            labels=["user", "state"],
        )
        for (owner, state), count in sorted(self._jobs.counts_blocking().items()):
            jobs.add_metric([owner, state], count)
        yield jobs
        yield CounterMetricFamily(
            "remo_supervisor_restarts",
            "Supervisors started again after the one in use was lost.",
            value=self._jobs.supervisor_restarts,
        )
        with contextlib.suppress(OSError):
            disk = os.statvfs(self._state_dir)
            yield GaugeMetricFamily(
                "remo_state_dir_free_bytes",
                "Bytes free for unprivileged use on the state dir's filesystem.",
                value=disk.f_bavail * disk.f_frsize,
            )
            yield GaugeMetricFamily(
                "remo_state_dir_size_bytes",
                "Size of the state dir's filesystem in bytes.",
                value=disk.f_blocks * disk.f_frsize,
            )
        figures = self._lag.figures()
        if figures is not None:
            latest, p99 = figures
            yield GaugeMetricFamily(
                "remo_event_loop_lag_seconds",
                "How late the event loop ran its latest 10 ms timer.",
                value=latest,
            )
            yield GaugeMetricFamily(
                "remo_event_loop_lag_p99_seconds",
                "p99 of the event loop's lateness over the last 10 s.",
                value=p99,
            )


class _CredentialCollector:
    """At scrape time, from ``identities.db`` through a read-only connection of its own:
    credentials issued and revoked (rows are kept for good, so these only grow), valid
    now, the soonest expiry among the valid, banned accounts."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(
                f"{self._path.as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=5.0
            )
        return self._db

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC).isoformat(timespec="seconds")  # as the registry writes times
        try:
            db = self._connection()
            issued, revoked, valid, soonest = db.execute(
                "SELECT count(*), count(revoked_at),"
                " coalesce(sum(revoked_at IS NULL AND not_before <= ?1 AND not_after > ?1), 0),"
                " min(CASE WHEN revoked_at IS NULL AND not_after > ?1 THEN not_after END)"
                " FROM certificates",
                (now,),
            ).fetchall()[0]  # (fetchall: no statement left open holding a read snapshot)
            ((banned,),) = db.execute("SELECT count(*) FROM banned_accounts").fetchall()
        except sqlite3.Error as err:
            log.warning("metrics: cannot read the identity registry: %s", err)
            return
        yield CounterMetricFamily(
            "remo_credentials_issued", "Client credentials ever issued.", value=issued
        )
        yield CounterMetricFamily(
            "remo_credentials_revoked", "Client credentials ever revoked.", value=revoked
        )
        yield GaugeMetricFamily(
            "remo_credentials_valid",
            "Client credentials valid now (not revoked or expired).",
            value=valid,
        )
        yield GaugeMetricFamily("remo_accounts_banned", "Accounts banned now.", value=banned)
        if soonest is not None:
            yield GaugeMetricFamily(
                "remo_credential_next_expiry_timestamp_seconds",
                "When the soonest-expiring valid client credential expires (Unix time).",
                value=datetime.fromisoformat(soonest).timestamp(),
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class MetricsServer:
    """``GET /metrics`` over plaintext HTTP/1.1 on the event loop; the page is built on
    a thread of its own. One request per connection (``Connection: close``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remo-metrics")
        self._building: asyncio.Future[bytes] | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self, listen: str) -> int:
        """Listen on ``listen`` (HOST:PORT); the port bound."""
        host, port = split_listen(local_listen(listen))
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown)

    async def page(self) -> bytes:
        """The page; scrapes that arrive while one is built get that one."""
        if self._building is None:
            loop = asyncio.get_running_loop()
            self._building = loop.run_in_executor(self._thread, self._metrics.page)
            self._building.add_done_callback(self._built)
        return await asyncio.shield(self._building)

    def _built(self, _: asyncio.Future[bytes]) -> None:
        self._building = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_HTTP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                await self._answer(head, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("metrics: the scrape failed")
            with contextlib.suppress(Exception):
                await _respond(writer, 500, b"cannot build the metrics page\n")
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        request = head.split(b"\r\n", 1)[0].split()
        if len(request) != 3 or not request[2].startswith(b"HTTP/1."):
            await _respond(writer, 400, b"bad request\n")
            return
        verb, target = request[0], request[1].split(b"?", 1)[0]
        if target != b"/metrics":
            await _respond(writer, 404, b"only /metrics is served here\n")
            return
        if verb not in (b"GET", b"HEAD"):
            await _respond(writer, 405, b"GET /metrics\n", [("Allow", "GET, HEAD")])
            return
        body = await self.page()
        await _respond(
            writer, 200, body, [("Content-Type", CONTENT_TYPE_LATEST)], head_only=verb == b"HEAD"
        )


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (("Content-Type", "text/plain; charset=utf-8"),),
    *,
    head_only: bool = False,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body))
    await writer.drain()

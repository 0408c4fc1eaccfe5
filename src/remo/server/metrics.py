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

Serving: :mod:`remo.server.metrics_http`. Before each page, the running jobs' usage
is read (:meth:`Metrics.refresh_live`: one call to the supervisor for all of them) and
summed by user.

Labels are bounded: users x states, methods x codes, stages, reasons, outcomes; no
series per job (running jobs' usage is summed by user). Account names appear as label
values (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from remo import __version__
from remo.backend import JobBackend
from remo.schedule.store import Run, Schedule, ScheduleStore
from remo.server import looplag
from remo.server.metrics_rpc import RpcMetrics, label

log = logging.getLogger("remo.server.metrics")

# No ``*_created`` series beside each counter: nothing here needs them, and they double
# the page. (Process-wide: this module is the server's only user of prometheus_client.)
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: Latency buckets of unary calls, seconds: a status takes ~1 ms, a start ~10-50 ms, a
#: Wait as long as its job.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)

#: Lag samples kept for the p99: 10 s at one per 10 ms.
LAG_WINDOW = 1000


class Metrics:
    """Every metric of one server, in a registry of its own."""

    def __init__(self, jobs: JobBackend, state_dir: Path, identities_db: Path) -> None:
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
        self.interceptor = RpcMetrics(self)  # (remo.server.metrics_rpc)
        r.register(ProcessCollector(registry=None))
        r.register(_StateCollector(jobs, state_dir, self.lag))
        self._jobs = jobs
        self._live = _LiveCollector()
        r.register(self._live)
        self._credentials = _CredentialCollector(identities_db)
        r.register(self._credentials)

    def schedule_store(self, path: Path) -> ScheduleStore:
        """The schedule store, counting each run it records."""
        return CountingScheduleStore(path, self.schedule_runs)

    async def refresh_live(self) -> None:
        """Read what every running job uses now, summed by user, for the next page."""
        usage = await self._jobs.live_usage(None)
        totals: dict[str, list[float]] = {}
        for job_id, live in usage.items():
            row = totals.setdefault(job_id.partition("/")[0], [0.0] * len(LIVE_SERIES))
            row[0] += 1
            sample = live.sample
            for index, value in enumerate(
                (
                    live.cpu_cores,
                    sample.cpu_seconds,
                    sample.memory_bytes,
                    live.io_read_bytes_per_second,
                    live.io_write_bytes_per_second,
                    sample.processes,
                ),
                start=1,
            ):
                row[index] += value or 0
        self._live.totals = totals

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
        self._runs.labels(label(run.outcome)).inc()


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

    def __init__(self, jobs: JobBackend, state_dir: Path, lag: LoopLag) -> None:
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
        dropped = GaugeMetricFamily(
            "remo_output_dropped_bytes",
            "Output bytes the jobs on record dropped (past their output cap, or while the "
            "state disk was full), by owner.",
            labels=["user"],
        )
        by_user: dict[str, int] = {}
        for (owner, state), (count, lost) in sorted(self._jobs.counts_blocking().items()):
            jobs.add_metric([owner, state], count)
            by_user[owner] = by_user.get(owner, 0) + lost
        for owner, lost in by_user.items():
            dropped.add_metric([owner], lost)
        yield jobs
        yield dropped
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


#: The series of running jobs' usage, summed by user: name, help.
LIVE_SERIES = (
    ("remo_running_jobs", "Running jobs, by user."),
    ("remo_running_jobs_cpu_cores", "CPU the user's running jobs use now, in cores."),
    ("remo_running_jobs_cpu_seconds", "CPU time the user's running jobs have used so far."),
    ("remo_running_jobs_memory_bytes", "Memory the user's running jobs hold now."),
    ("remo_running_jobs_io_read_bytes_per_second", "Bytes/s the user's running jobs read."),
    ("remo_running_jobs_io_write_bytes_per_second", "Bytes/s the user's running jobs write."),
    ("remo_running_jobs_processes", "Processes of the user's running jobs."),
)


class _LiveCollector:
    """Running jobs' usage by user, as :meth:`Metrics.refresh_live` last read it."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}

    def collect(self) -> Iterator[Metric]:
        totals = self.totals
        for index, (name, text) in enumerate(LIVE_SERIES):
            family = GaugeMetricFamily(name, text, labels=["user"])
            for user, row in sorted(totals.items()):
                family.add_metric([user], row[index])
            yield family


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

"""A connection to a remo server, and :class:`Client`, the synchronous SDK.

::

    from remo.client import Client

    with Client.from_profile() as remo:              # or Client.from_file("build01.remo")
        job = remo.start(["make", "-j8", "test"]).job
        for chunk in remo.output(job.id, follow=True):
            sys.stdout.buffer.write(chunk.data)
        print(remo.wait(job.id).exit_code)

Job ids are what users type: ``"12"`` is the caller's job 12, ``"alice/12"`` is alice's
(admins only); schedules are ``"s3"`` / ``"alice/s3"``.

The channel is gRPC over mutual TLS: the client presents the certificate of its
credential file and trusts only the CA in that file. The credential is loaded and checked
(readable, private, complete, valid now) before anything is sent.

:meth:`Client.output` and :meth:`Client.wait` survive server restarts and network
hiccups: on ``UNAVAILABLE`` or ``CANCELLED`` from the server (a broken connection, or a
stopping server ending its streams) they reconnect with backoff and carry on (``output``
resumes at the byte after the last one it yielded, so no byte is lost or repeated), and
give up with :class:`~remo.client.errors.ConnectionFailed` after ``reconnect_timeout``
seconds (60 by default) without a working connection. The calls that are safe to repeat
(reads, :meth:`Client.stop`, and :meth:`Client.start` of a job, which carries a request
id) are retried the same way within their timeout; gRPC retries the first few seconds
itself (:data:`SERVICE_CONFIG`). A client waits out an outage only once it has reached
the server: before that, a failure to connect is reported at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from remo import __version__
from remo.api.limits import limits_from_pb, limits_to_pb
from remo.api.v1 import jobs_pb2 as pb
from remo.api.v1 import jobs_pb2_grpc as pb_grpc
from remo.client.errors import ClientError, ConnectionFailed, UsageError, from_rpc_error
from remo.client.profiles import load_credential, select
from remo.core.spec import Limits
from remo.core.status import JobState, JobStatus
from remo.pki.credfile import Credential

__all__ = [
    "Client",
    "JobList",
    "JobState",
    "JobStatus",
    "Limits",
    "OutputChunk",
    "Schedule",
    "ScheduleRun",
    "StartResult",
    "WhoAmI",
    "job_exit_code",
]

#: Seconds a unary call may take before it fails with DEADLINE_EXCEEDED.
DEFAULT_TIMEOUT = 30.0
#: Seconds :meth:`Client.output` and :meth:`Client.wait` keep trying to reconnect.
DEFAULT_RECONNECT_TIMEOUT = 60.0
#: Interval of HTTP/2 keepalive pings while a call is open, so that a dead network path
#: under a long ``output(follow=True)`` or ``wait`` is noticed. The server must allow
#: pings this often (grpc.http2.min_ping_interval_without_data_ms).
KEEPALIVE_MS = 60_000

_RETRY_FIRST = 0.2
_RETRY_MAX = 2.0
#: A re-opened call that stayed up this long means the connection is back.
_HEALTHY_AFTER = 5.0
#: Seconds a failed call waits for grpc's news that the channel was connected.
_CONNECTED_NEWS = 0.25

#: Calls that are safe to repeat: reads, Stop (stopping a stopped job returns its status)
#: and Wait. gRPC retries them itself (gRFC A6, the channel's service config) when an
#: attempt fails with UNAVAILABLE before the server answered: 5 attempts, backoff from
#: 0.2 s doubling to 2 s (with jitter), about 3 s in all and never past the call's
#: deadline. Start is not among them: one that creates a schedule carries no request id
#: to deduplicate it, and a service config is per method (see :meth:`Client.start`);
#: Remove is not idempotent (a repeat says NOT_FOUND).
RETRIED_METHODS = ("Status", "List", "ScheduleStatus", "WhoAmI", "Stop", "Wait")
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": "remo.v1.Jobs", "method": m} for m in RETRIED_METHODS],
            "retryPolicy": {
                "maxAttempts": 5,  # gRPC's ceiling
                "initialBackoff": f"{_RETRY_FIRST}s",
                "maxBackoff": f"{_RETRY_MAX}s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.primary_user_agent", f"remo/{__version__}"),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    # Ours is the only service config: none from DNS (TXT records) replaces it.
    ("grpc.service_config_disable_resolution", 1),
]


# -- what the SDK returns ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """A piece of a job's combined output: ``data`` starts at byte ``offset``."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """The offset to resume at after this chunk."""
        return self.offset + len(self.data)


@dataclass(frozen=True)
class ScheduleRun:
    """One due time of a schedule and what happened then.

    ``outcome`` is ``started``, ``skipped`` (the previous run was still running),
    ``failed`` (could not start; ``detail`` says why) or ``caught-up`` (run at start-up
    for a time missed while the server was down).
    """

    due_at: float
    outcome: str
    job_id: str
    detail: str


@dataclass(frozen=True)
class Schedule:
    """A delayed or recurring job. ``every_seconds`` is 0 for a one-off."""

    id: str
    owner: str
    argv: tuple[str, ...]
    every_seconds: float
    next_run_at: float | None
    created_at: float
    active: bool
    recent_runs: tuple[ScheduleRun, ...] = ()


@dataclass(frozen=True)
class StartResult:
    """What :meth:`Client.start` created: a job (started now) or a schedule."""

    job: JobStatus | None = None
    schedule: Schedule | None = None


@dataclass(frozen=True)
class JobList:
    jobs: list[JobStatus] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)


@dataclass(frozen=True)
class WhoAmI:
    """Who the server thinks the caller is, and what it says about itself."""

    user: str
    role: str
    serial: str
    not_after: float
    server_version: str
    protections_off: tuple[str, ...]


def job_exit_code(job: JobStatus) -> int | None:
    """The shell-style exit code of a finished job: its exit code, or 128+N for signal N.

    ``None`` while the job runs, or when remo lost track of it (state ``lost``).
    """
    if job.exit_code is not None:
        return job.exit_code
    if job.signal is not None:
        return 128 + job.signal
    return None


# -- conversions -----------------------------------------------------------------------


def _job(msg: pb.JobStatus) -> JobStatus:
    reason = msg.reason
    try:
        state = JobState(msg.state)
    except ValueError:
        # A newer server may know more states; show the job rather than fail.
        state = JobState.RUNNING if not msg.HasField("ended_at") else JobState.LOST
        reason = reason or f"state {msg.state!r} reported by the server"
    return JobStatus(
        id=msg.id,
        owner=msg.owner,
        argv=tuple(msg.argv),
        state=state,
        pid=msg.pid or None,
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        signal=msg.signal if msg.HasField("signal") else None,
        started_at=msg.started_at,
        ended_at=msg.ended_at if msg.HasField("ended_at") else None,
        limits=limits_from_pb(msg.limits),
        cpu_seconds=msg.cpu_seconds if msg.HasField("cpu_seconds") else None,
        peak_memory_bytes=(msg.peak_memory_bytes if msg.HasField("peak_memory_bytes") else None),
        oom_killed=msg.oom_killed,
        oom_kills=msg.oom_kills,
        reason=reason,
        cwd=msg.cwd,
        output_truncated=msg.output_truncated,
        output_dropped_bytes=msg.output_dropped_bytes,
        output_dropped_disk_full=msg.output_dropped_disk_full,
        isolation=tuple(msg.isolation),
        schedule_id=msg.schedule_id or None,
    )


def _schedule(msg: pb.Schedule) -> Schedule:
    return Schedule(
        id=msg.id,
        owner=msg.owner,
        argv=tuple(msg.argv),
        every_seconds=msg.every_seconds,
        next_run_at=msg.next_run_at if msg.HasField("next_run_at") else None,
        created_at=msg.created_at,
        active=msg.active,
        recent_runs=tuple(
            ScheduleRun(r.due_at, r.outcome, r.job_id, r.detail) for r in msg.recent_runs
        ),
    )


# -- resilience ------------------------------------------------------------------------

#: The status codes of "the connection broke or the server went away", which are worth
#: trying again, as opposed to an answer of the server. UNAVAILABLE: no connection, a
#: broken one, or a server that is stopping (it ends its calls so). CANCELLED: the
#: server cancelled the call (this client cancels a call only after it is done with it).
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def _retryable(err: grpc.RpcError) -> bool:
    """Whether ``err`` means "the connection broke", not "the server said no": by its
    status code alone."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    return code in RETRYABLE_CODES


class _Reconnect:
    """Bookkeeping of one resilient call: when did the current outage start?

    An outage ends when a re-opened call yields data or stays open for
    :data:`_HEALTHY_AFTER` seconds; a call that fails faster than that (say, the server
    accepts the connection but fails the call at once) does not reset the clock, so
    the total time spent trying is bounded by the budget.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.outage_since: float | None = None
        self.opened_at = 0.0
        self.delay = _RETRY_FIRST

    def opened(self) -> None:
        self.opened_at = time.monotonic()

    def progressed(self) -> None:
        self.outage_since = None
        self.delay = _RETRY_FIRST

    def failed(self) -> float:
        """Record a failure; the seconds left in the budget (<= 0: give up)."""
        now = time.monotonic()
        if self.outage_since is None or now - self.opened_at >= _HEALTHY_AFTER:
            self.outage_since = now
            self.delay = _RETRY_FIRST
        return self.outage_since + self.budget - now

    def left(self) -> float:
        """The seconds left in the budget of the current outage."""
        if self.outage_since is None:
            return self.budget
        return self.outage_since + self.budget - time.monotonic()

    def backoff(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, _RETRY_MAX)
        return delay


# -- the client ----------------------------------------------------------------------

T = TypeVar("T")


class Client:
    """Synchronous client of one remo server. Use as a context manager, or call close().

    Every method raises a :class:`~remo.client.errors.ClientError` subclass on failure
    (never a raw ``grpc.RpcError``); its ``exit_code`` is what the CLI exits with.
    """

    def __init__(
        self,
        credential: Credential,
        *,
        address: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
    ) -> None:
        self.credential = credential
        self.address = address or credential.addresses[0]
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        creds = grpc.ssl_channel_credentials(
            root_certificates=credential.ca_pem,
            private_key=credential.key_pem,
            certificate_chain=credential.cert_pem,
        )
        self._channel = grpc.secure_channel(self.address, creds, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.JobsStub(self._channel)  # type: ignore[no-untyped-call]
        # Set once the channel has been connected (TLS accepted, HTTP/2 up), or a reply
        # came: from then on a lost connection is the server restarting or the network
        # failing, worth waiting out; before, there may be no server here that takes us,
        # and waiting would only hide why.
        self._connected = threading.Event()
        self._channel.subscribe(self._watch, try_to_connect=False)

    def _watch(self, state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            self._connected.set()
            self._channel.unsubscribe(self._watch)

    @property
    def reached(self) -> bool:
        """Whether this client has been connected to the server."""
        return self._connected.is_set()

    def _reached_server(self) -> bool:
        """:attr:`reached`, allowing a moment for news of the connection: grpc reports it
        from another thread, and a call can fail just after it, before the news is in."""
        return self._connected.wait(_CONNECTED_NEWS)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Client:
        """A client for the credential file at ``path`` (checked before use)."""
        return cls(load_credential(path), **kwargs)

    @classmethod
    def from_profile(
        cls, profile: str | None = None, *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Client:
        """A client for an installed profile (see :func:`remo.client.profiles.select`)."""
        return cls.from_file(select(profile, env).path, **kwargs)

    def close(self) -> None:
        self._channel.unsubscribe(self._watch)
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # helpers

    def _error(
        self, err: grpc.RpcError, what: str = "", timeout: float | None = None
    ) -> ClientError:
        return from_rpc_error(
            err,
            target=self.address,
            path=self.credential.path,
            what=what,
            timeout=timeout,
            reached=self.reached,
        )

    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        what: str = "",
        timeout: float | None = None,
        retried: bool = False,
    ) -> T:
        """One call, with ``timeout`` seconds (the client's timeout by default) in all.

        ``retried`` calls (:data:`RETRIED_METHODS`) are retried by gRPC for about 3 s;
        when that is not enough and this client had reached the server, the outage (a
        restart, say) is waited out here until the same deadline. This part is
        hand-written because gRPC's retries stop after 5 attempts whatever the deadline.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        pause = _RETRY_FIRST
        again = False
        while True:
            try:
                # Again after an outage, the attempt waits for the connection to be back
                # (wait_for_ready), up to the deadline, rather than fail at once.
                reply = method(
                    request,
                    timeout=max(0.0, deadline - time.monotonic()),
                    wait_for_ready=True if again else None,
                )
            except grpc.RpcError as err:
                if not (retried and _retryable(err) and self._reached_server()):
                    raise self._error(err, what, limit) from err
                if deadline - time.monotonic() <= pause:
                    raise self._error(err, what, limit) from err
                time.sleep(pause)
                pause = min(pause * 2, _RETRY_MAX)
                again = True
                continue
            self._connected.set()
            return reply

    def _server_back(self, within: float) -> bool:
        """Whether the server answers again within ``within`` seconds: a WhoAmI, retried
        as the reads are. Raises what the server answers instead (a revoked credential).
        (Not grpc.channel_ready_future: its connectivity polling thread can outlive a
        channel closed soon after, and then dies with a traceback.)"""
        try:
            self._call(self._stub.WhoAmI, pb.WhoAmIRequest(), timeout=within, retried=True)
        except ConnectionFailed:
            return False
        return True

    def _lost(self, err: grpc.RpcError, doing: str) -> ConnectionFailed:
        cause = self._error(err)
        try:
            # A fresh call says best why the server cannot be reached right now.
            self._stub.WhoAmI(pb.WhoAmIRequest(), timeout=5.0)
        except grpc.RpcError as probe:
            cause = self._error(probe, timeout=5.0)
        return ConnectionFailed(
            f"lost the connection to {self.address} while {doing} and could not get it "
            f"back within {self.reconnect_timeout:g}s: {cause}",
            code=cause.code,
        )

    # the API

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        limits: Limits | None = None,
        network: str | None = None,
        private_tmp: bool = False,
        delay: float | None = None,
        at: float | datetime | None = None,
        every: float | None = None,
    ) -> StartResult:
        """Start ``argv`` (no shell) now, or create a schedule.

        A schedule is created when any of ``delay`` (seconds from now), ``at`` (unix
        time or aware datetime of the first run) or ``every`` (period in seconds) is
        given. The command is checked at start: a missing executable or cwd raises
        :class:`~remo.client.errors.RemoteError` (FAILED_PRECONDITION) at once.
        """
        if isinstance(argv, str | bytes):
            raise UsageError("argv must be a list of strings, not a single string")
        request = pb.StartRequest(
            argv=list(argv),
            env=dict(env or {}),
            cwd=cwd or "",
            limits=limits_to_pb(limits or Limits()),
            network=network or "",
            private_tmp=private_tmp,
        )
        if delay is not None or at is not None or every is not None:
            when = pb.When(delay_seconds=float(delay or 0.0), every_seconds=float(every or 0.0))
            if at is not None:
                when.at_unix = at.timestamp() if isinstance(at, datetime) else float(at)
            request.when.CopyFrom(when)
        # One id for every attempt: the server starts the job at most once for it, so a
        # reply lost with a restarting server is safely asked for again. Schedules are
        # not deduplicated: one attempt only. (Hence Start is retried here, by request,
        # and not by gRPC's service config, which can only name the method.)
        request.request_id = uuid.uuid4().hex
        reply = self._call(
            self._stub.Start,
            request,
            timeout=max(self.timeout, 60.0),
            retried=not request.HasField("when"),
        )
        return StartResult(
            job=_job(reply.job) if reply.HasField("job") else None,
            schedule=_schedule(reply.schedule) if reply.HasField("schedule") else None,
        )

    def stop(self, job_id: str, *, grace: float | None = None) -> JobStatus:
        """SIGTERM the job's processes, SIGKILL after ``grace`` seconds; the final status.

        Stopping a job that has already ended returns its status unchanged.
        """
        request = pb.StopRequest(id=job_id)
        if grace is not None:
            request.grace_seconds = grace
        timeout = self.timeout + (grace if grace is not None else 30.0)
        return _job(
            self._call(
                self._stub.Stop, request, what=f"job {job_id}", timeout=timeout, retried=True
            )
        )

    def status(self, job_id: str) -> JobStatus:
        return _job(
            self._call(self._stub.Status, pb.JobRef(id=job_id), what=f"job {job_id}", retried=True)
        )

    def list(
        self, *, all_users: bool = False, running_only: bool = False, limit: int = 0
    ) -> JobList:
        """The caller's jobs and schedules (every user's with ``all_users``, admins only)."""
        request = pb.ListRequest(all_users=all_users, running_only=running_only, limit=limit)
        reply = self._call(self._stub.List, request, retried=True)
        return JobList(
            jobs=[_job(j) for j in reply.jobs],
            schedules=[_schedule(s) for s in reply.schedules],
        )

    def schedule_status(self, schedule_id: str) -> Schedule:
        return _schedule(
            self._call(
                self._stub.ScheduleStatus,
                pb.JobRef(id=schedule_id),
                what=f"schedule {schedule_id}",
                retried=True,
            )
        )

    def remove(self, job_id: str, *, stop_running: bool = False) -> None:
        """Remove a finished job's record and output, or cancel a schedule.

        For a schedule, ``stop_running`` also stops its runs that are still running.
        """
        request = pb.RemoveRequest(id=job_id, stop_running=stop_running)
        self._call(self._stub.Remove, request, what=f"job {job_id}")

    def whoami(self) -> WhoAmI:
        reply = self._call(self._stub.WhoAmI, pb.WhoAmIRequest(), retried=True)
        return WhoAmI(
            user=reply.user,
            role=reply.role,
            serial=reply.serial,
            not_after=reply.not_after,
            server_version=reply.server_version,
            protections_off=tuple(reply.protections_off),
        )

    def wait(self, job_id: str) -> JobStatus:
        """Block until the job has ended; its final status. Survives reconnections."""
        state = _Reconnect(self.reconnect_timeout)
        while True:
            state.opened()
            try:
                reply = self._stub.Wait(pb.JobRef(id=job_id))
            except grpc.RpcError as err:
                self._recover(state, err, f"job {job_id}", f"waiting for job {job_id}")
                continue
            return _job(reply)

    def output(
        self, job_id: str, *, offset: int = 0, follow: bool = False
    ) -> Iterator[OutputChunk]:
        """The job's combined stdout+stderr from byte ``offset``, in chunks.

        Without ``follow`` it ends at the current end of the output; with ``follow`` it
        goes on live until the job has ended and every byte was sent. A broken
        connection is re-established transparently and the stream resumes exactly where
        it stopped: every byte is yielded once, in order.
        """
        if offset < 0:
            raise UsageError(f"the output offset must be 0 or more, got {offset}")
        position = offset
        state = _Reconnect(self.reconnect_timeout)
        while True:
            state.opened()
            call = self._stub.Output(pb.OutputRequest(id=job_id, offset=position, follow=follow))
            try:
                for msg in call:
                    self._connected.set()
                    data: bytes = msg.data
                    start: int = msg.offset
                    if start < position:
                        # Overlaps what was already yielded: keep only the new bytes.
                        data = data[position - start :]
                        start = position
                    if not data:
                        continue
                    state.progressed()
                    position = start + len(data)
                    yield OutputChunk(start, data)
                return
            except grpc.RpcError as err:
                doing = f"reading the output of job {job_id} (at byte {position})"
                self._recover(state, err, f"job {job_id}", doing)
            finally:
                call.cancel()

    def _recover(self, state: _Reconnect, err: grpc.RpcError, what: str, doing: str) -> None:
        """After a failed call of :meth:`output` or :meth:`wait`: return when it is worth
        trying again, or raise. (Hand-written: an output resumes at a new offset, and a
        restart can outlast gRPC's own retries.)

        Raises the translated error when ``err`` is an answer of the server, or when this
        client never reached the server (there is nothing to wait for), and
        :class:`ConnectionFailed` when no working connection came back within the budget.
        """
        if not (_retryable(err) and self._reached_server()):
            raise self._error(err, what) from err
        left = state.failed()
        if left > 0:
            time.sleep(min(state.backoff(), left))
            left = state.left()
        if left > 0 and self._server_back(left):
            return
        raise self._lost(err, doing) from err

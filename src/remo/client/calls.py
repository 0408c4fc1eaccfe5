"""What both clients share and that does no I/O: the channel's options and retry policy,
request builders, and the bookkeeping of a call that outlives a broken connection.

:class:`~remo.client.Client` (blocking) and :class:`~remo.client.AsyncClient` (asyncio)
differ only in how they wait; every decision is made here, once.
"""

from __future__ import annotations

import json
import signal as signals
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from remo import __version__
from remo.api import output_wire
from remo.api.jobs import STATE_TO_PB, duration, job_from_pb, timestamp
from remo.api.limits import limits_to_pb
from remo.api.output_wire import OutputMessage
from remo.client.errors import UsageError
from remo.client.types import OutputChunk
from remo.core.spec import Limits
from remo.core.status import JobState, JobStatus
from remo.v1 import jobs_pb2 as pb

SERVICE = "remo.v1.JobService"
#: Seconds a unary call may take before it fails with DEADLINE_EXCEEDED.
DEFAULT_TIMEOUT = 30.0
#: Most bytes per WriteStdin message (a file is read this much at a time; a pipe gives
#: what it holds). The server's pipe to the job holds 1 MiB; gRPC takes up to 4 MiB.
STDIN_CHUNK = 1 << 20
#: Seconds ``output`` and ``wait`` keep trying to reconnect.
DEFAULT_RECONNECT_TIMEOUT = 60.0
#: Interval of HTTP/2 keepalive pings while a call is open, so that a dead network path
#: under a long ``output(follow=True)`` or ``wait`` is noticed. The server must allow
#: pings this often (grpc.http2.min_ping_interval_without_data_ms).
KEEPALIVE_MS = 60_000

RETRY_FIRST = 0.2
RETRY_MAX = 2.0
#: A re-opened call that stayed up this long means the connection is back.
HEALTHY_AFTER = 5.0

#: Calls that are safe to repeat: reads, Stop (stopping a stopped job returns its status)
#: and Wait. gRPC retries them itself (gRFC A6, the channel's service config) when an
#: attempt fails with UNAVAILABLE before the server answered: 5 attempts, backoff from
#: 0.2 s doubling to 2 s (with jitter), about 3 s in all and never past the call's
#: deadline. Start is not among them: one that creates a schedule carries no request id
#: to deduplicate it, and a service config is per method (see :func:`start_request`);
#: Remove and Kill are not idempotent (a repeat says NOT_FOUND / JOB_NOT_RUNNING).
RETRIED_METHODS = ("GetJob", "ListJobs", "GetSchedule", "ListSchedules", "WhoAmI", "Stop", "Wait")
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": m} for m in RETRIED_METHODS],
            "retryPolicy": {
                "maxAttempts": 5,  # gRPC's ceiling
                "initialBackoff": f"{RETRY_FIRST}s",
                "maxBackoff": f"{RETRY_MAX}s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
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

#: Long calls (followed output, waits) one connection carries at most. The server lets a
#: connection have 32 streams open (remo.server.app.MAX_STREAMS); beyond, grpc queues a
#: call until one ends, and a follow ends only with its job: more follows than that on
#: one connection would wait forever, and so would a Stop sent behind them.
LONG_CALLS_PER_CONNECTION = 30
#: Channels of long calls get a connection of their own each (grpc shares one between
#: channels made alike, unless each has its own subchannel pool).
LANE_OPTIONS: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]

#: The Output method's full name, for a lane's call with its own decoder.
OUTPUT_METHOD = f"/{SERVICE}/Output"


def output_callable(channel: Any) -> Any:
    """Output on ``channel`` (sync or asyncio), its messages read by
    :func:`remo.api.output_wire.decode`."""
    return channel.unary_stream(
        OUTPUT_METHOD,
        request_serializer=pb.OutputRequest.SerializeToString,
        response_deserializer=output_wire.decode,
        _registered_method=True,
    )


@dataclass
class Lane:
    """A channel for long calls and how many it carries now. ``output`` calls Output
    and reads its messages with :func:`remo.api.output_wire.decode` (one copy of the
    data, not three through protobuf)."""

    channel: Any
    stub: Any
    output: Any
    calls: int = 0


#: Unary calls one client has in flight at most on the channel of the short calls: the
#: server allows 32 streams a connection and may still count one that just ended, and a
#: call it refuses for that (REFUSED_STREAM) fails unless it is one that is retried.
SHORT_CALLS_IN_FLIGHT = 24

#: Stops (each waits for its job's end) one client sends at a time on the channel of the
#: short calls; more at once (stopping a thousand jobs) go on lanes, instead of queueing
#: behind the server's 32 streams per connection.
STOPS_ON_SHORT_CHANNEL = 16


class Seats:
    """A count of places, for threads and tasks alike: :meth:`take` says whether one was
    free (and takes it), :meth:`give` returns it."""

    def __init__(self, places: int) -> None:
        self._free = places
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._free <= 0:
                return False
            self._free -= 1
            return True

    def give(self) -> None:
        with self._lock:
            self._free += 1


class Lanes:
    """Long calls spread over channels of at most :data:`LONG_CALLS_PER_CONNECTION`
    each, opened as needed, apart from the channel of the short calls (which a Stop
    must always find free). Safe for threads and for tasks."""

    def __init__(self, open_channel: Callable[[], tuple[Any, Any, Any]]) -> None:
        self._open = open_channel
        self._lanes: list[Lane] = []
        self._lock = threading.Lock()

    def take(self) -> Lane:
        with self._lock:
            free = [lane for lane in self._lanes if lane.calls < LONG_CALLS_PER_CONNECTION]
            if free:
                lane = min(free, key=lambda lane: lane.calls)
            else:
                lane = Lane(*self._open())
                self._lanes.append(lane)
            lane.calls += 1
            return lane

    def give(self, lane: Lane) -> None:
        with self._lock:
            lane.calls -= 1

    def channels(self) -> list[Any]:
        """Every channel opened, for closing."""
        with self._lock:
            return [lane.channel for lane in self._lanes]


# -- calls a thread may have to abandon (the CLI's agent, on a command's Ctrl-C) ---------

#: Per thread that asked (:func:`track_calls`): its calls in progress.
ACTIVE = threading.local()
_TRACKED: dict[int, set[Any]] = {}
#: (re-entrant: a signal handler may cancel the calls of the thread it interrupted)
_TRACKED_LOCK = threading.RLock()


def track_calls() -> None:
    """Remember this thread's calls from now on (see :func:`cancel_calls`)."""
    with _TRACKED_LOCK:
        ACTIVE.calls = _TRACKED.setdefault(threading.get_ident(), set())
        _SHIELDS[threading.get_ident()] = _Shield()


def untrack_calls() -> None:
    with _TRACKED_LOCK:
        _TRACKED.pop(threading.get_ident(), None)
        _SHIELDS.pop(threading.get_ident(), None)
        ACTIVE.calls = None


def tracked() -> bool:
    """Whether this thread's calls are tracked (:func:`track_calls`)."""
    return getattr(ACTIVE, "calls", None) is not None


def note_call(call: Any) -> None:
    """A call starts on this thread (a no-op unless it is tracked); cancelled at once if
    the thread is owed an interrupt (it came while the call was being made)."""
    tracked = getattr(ACTIVE, "calls", None)
    if tracked is not None:
        with _TRACKED_LOCK:
            tracked.add(call)
            shield = _SHIELDS.get(threading.get_ident())
            owed = shield is not None and shield.pending is not None
        if owed:
            call.cancel()


def forget_call(call: Any) -> None:
    tracked = getattr(ACTIVE, "calls", None)
    if tracked is not None:
        with _TRACKED_LOCK:
            tracked.discard(call)


def cancel_calls(thread_ident: int | None) -> None:
    """Cancel the tracked calls of a thread, so that a wait inside grpc returns now."""
    with _TRACKED_LOCK:
        calls = list(_TRACKED.get(thread_ident or 0, ()))
    for call in calls:
        call.cancel()


# -- interrupts outside grpc's code (Ctrl-C in the CLI) ---------------------------------
#
# An exception a signal handler raises (KeyboardInterrupt) lands wherever the thread is.
# Inside grpc's Python code it can leave a call half updated that never completes, and
# closing the channel then waits for it for ever (grpc/grpc#19973): `remo logs -f`
# hung after Ctrl-C about once in 200 times on a busy machine. So a tracked thread
# marks each step inside grpc (:class:`shielded`), and an interrupt that finds it there
# cancels its calls instead, which ends a wait the way grpc means calls to end, and is
# raised as the step returns.


class _Shield:
    __slots__ = ("depth", "pending")

    def __init__(self) -> None:
        self.depth = 0
        self.pending: BaseException | None = None


#: Per tracked thread: how deep it is inside grpc, and the interrupt it is owed.
_SHIELDS: dict[int, _Shield] = {}


class shielded:
    """Around each step inside grpc (making a call, waiting for a message or a reply,
    cancelling it): an interrupt meanwhile (see :func:`interrupt`) is raised when it
    ends, replacing the cancellation it caused."""

    __slots__ = ("_shield",)

    def __enter__(self) -> None:
        shield = self._shield = _SHIELDS.get(threading.get_ident())
        if shield is not None:
            with _TRACKED_LOCK:  # (see interrupt: no asynchronous raise from here on)
                shield.depth += 1

    def __exit__(self, *_exc: object) -> None:
        shield = self._shield
        if shield is None:
            return
        with _TRACKED_LOCK:
            shield.depth -= 1
            if shield.depth:
                return
            pending, shield.pending = shield.pending, None
        if pending is not None:
            raise pending from None


def inside_grpc(thread_ident: int) -> bool:
    """Whether the tracked thread waits inside grpc now."""
    shield = _SHIELDS.get(thread_ident)
    return shield is not None and shield.depth > 0


def interrupt(
    thread_ident: int, error: BaseException, elsewhere: Callable[[], object] | None = None
) -> bool:
    """Interrupt a tracked thread that is inside grpc: cancel its calls and leave
    ``error`` to be raised as that step ends; True. False when it is elsewhere, or
    already owed an interrupt (a second Ctrl-C gets out at once, whatever grpc does):
    the caller raises ``error`` itself, or ``elsewhere`` does it for another thread,
    called while no step can begin (an asynchronous raise must not land in one)."""
    with _TRACKED_LOCK:
        shield = _SHIELDS.get(thread_ident)
        if shield is None or shield.depth == 0 or shield.pending is not None:
            if elsewhere is not None:
                elsewhere()
            return False
        shield.pending = error
    cancel_calls(thread_ident)
    return True


def interrupting(error: Callable[[int], BaseException]) -> Callable[[int, Any], None]:
    """A signal handler for the main thread (tracked): raises ``error(signum)`` where
    the thread is, or, inside grpc, once grpc's wait returned."""

    def handler(signum: int, _frame: Any) -> None:
        raised = error(signum)
        if not interrupt(threading.get_ident(), raised):
            raise raised

    return handler


#: The status codes of "the connection broke or the server went away", which are worth
#: trying again, as opposed to an answer of the server. UNAVAILABLE: no connection, a
#: broken one, or a server that is stopping (it ends its calls so). CANCELLED: the
#: server cancelled the call (this client cancels a call only after it is done with it).
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "CANCELLED"})
#: ``network`` as the SDK takes it ("": the server's default), and on the wire.
NETWORKS: dict[str, pb.Network] = {
    "": pb.NETWORK_UNSPECIFIED,
    "host": pb.NETWORK_HOST,
    "none": pb.NETWORK_NONE,
}


def reached_server(replied: bool, err: Any) -> bool:
    """Whether a client whose call failed with ``err`` had reached the server: it had
    a reply before, or this call got past connecting (the server accepted the
    connection, TLS and all, then went away). Only "failed to connect" is grpc's report
    of a connection that was never made. (Watching the channel's connectivity instead
    costs a polling thread that holds up every close by 0.2 s.)"""
    if replied:
        return True
    details = err.details() if callable(getattr(err, "details", None)) else ""
    return "failed to connect" not in (details or "")


def retryable(err: Any) -> bool:
    """Whether ``err`` means "the connection broke", not "the server said no": by its
    status code alone."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    return getattr(code, "name", "") in RETRYABLE_CODES


# -- requests --------------------------------------------------------------------------


def start_request(
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
    name: str = "",
    labels: Mapping[str, str] | None = None,
    stdin: bool = False,
) -> pb.StartRequest:
    """The Start request for the arguments of ``start`` (documented there)."""
    if isinstance(argv, str | bytes):
        raise UsageError("argv must be a list of strings, not a single string")
    network = network or ""
    if network not in NETWORKS:
        raise UsageError(f"network must be 'host' or 'none', not {network!r}")
    request = pb.StartRequest(
        argv=list(argv),
        env=dict(env or {}),
        cwd=cwd or "",
        limits=limits_to_pb(limits or Limits()),
        network=NETWORKS[network],
        private_tmp=private_tmp,
        name=name,
        labels=dict(labels or {}),
        stdin=stdin,
    )
    if delay is not None or at is not None or every is not None:
        when = pb.When()
        if at is not None:
            when.time.CopyFrom(timestamp(at.timestamp() if isinstance(at, datetime) else at))
        else:
            when.delay.CopyFrom(duration(float(delay or 0.0)))
        if every:
            when.period.CopyFrom(duration(float(every)))
        request.when.CopyFrom(when)
    else:
        # One id for every attempt: the server starts the job at most once for it, so a
        # reply lost with a restarting server is safely asked for again. Schedules are
        # not deduplicated: one attempt only. (Hence Start is retried by the client, by
        # request, and not by gRPC's service config, which can only name the method.)
        request.request_id = uuid.uuid4().hex
    return request


def stop_request(job_id: str, grace: float | None) -> pb.StopRequest:
    request = pb.StopRequest(id=job_id)
    if grace is not None:
        request.grace.CopyFrom(duration(grace))
    return request


def list_request(
    *,
    all_users: bool,
    states: Sequence[JobState | str],
    page_size: int,
    page_token: str,
    labels: Mapping[str, str] | None = None,
    live_usage: bool = False,
) -> pb.ListJobsRequest:
    try:
        wanted = [STATE_TO_PB[JobState(s)] for s in states]
    except ValueError as err:
        raise UsageError(f"{err}; states are {', '.join(s.value for s in JobState)}") from None
    return pb.ListJobsRequest(
        all_users=all_users,
        states=wanted,
        page_size=page_size,
        page_token=page_token,
        labels=dict(labels or {}),
        live_usage=live_usage,
    )


def signal_number(signal: int | str) -> int:
    """A signal given as a number, or a name with or without ``SIG`` (``"HUP"``)."""
    if isinstance(signal, int):
        return signal
    name = signal.upper()
    if name.isdigit():
        return int(name)
    try:
        return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise UsageError(f"unknown signal {signal!r} (try TERM, HUP, INT, KILL, USR1...)") from None


def check_offset(offset: int) -> None:
    if offset < 0:
        raise UsageError(f"the output offset must be 0 or more, got {offset}")


#: Stream names of the SDK -> the wire's enum.
OUTPUT_STREAMS = {"stdout": pb.OUTPUT_STREAM_STDOUT, "stderr": pb.OUTPUT_STREAM_STDERR}
STREAM_NAMES: dict[int, str] = {int(value): name for name, value in OUTPUT_STREAMS.items()}


@dataclass(frozen=True)
class OutputWindow:
    """What part of the output a reader asked for (see ``Client.output``)."""

    stdout: bool = True
    stderr: bool = True
    tail_lines: int | None = None
    since: float | datetime | None = None
    end_offset: int | None = None
    timestamps: bool = False

    def check(self) -> None:
        if not (self.stdout or self.stderr):
            raise UsageError("choose stdout, stderr or both")
        if self.tail_lines is not None and self.tail_lines < 0:
            raise UsageError(f"tail must be 0 lines or more, got {self.tail_lines}")
        if self.end_offset is not None:
            check_offset(self.end_offset)

    def request(
        self, job_id: str, offset: int, follow: bool, first: bool, final_status: bool = False
    ) -> pb.OutputRequest:
        """The Output request from ``offset``; the tail and the start time apply to the
        ``first`` call only (a resumed one continues at the byte it stopped at)."""
        request = pb.OutputRequest(
            id=job_id,
            offset=offset,
            follow=follow,
            timestamps=self.timestamps,
            final_status=final_status,
        )
        if not (self.stdout and self.stderr):
            request.streams.append(OUTPUT_STREAMS["stdout" if self.stdout else "stderr"])
        if self.end_offset is not None:
            request.end_offset = self.end_offset
        if first and self.tail_lines is not None:
            request.tail_lines = self.tail_lines
        if first and self.since is not None:
            since = self.since.timestamp() if isinstance(self.since, datetime) else self.since
            request.since.CopyFrom(timestamp(since))
        return request


def stdin_requests(job_id: str, chunks: Iterable[bytes]) -> Iterator[pb.WriteStdinRequest]:
    """WriteStdin's messages: the job's id first, then the bytes (gRPC pulls the next
    one only when flow control lets it send: the source is read as the job reads)."""
    yield pb.WriteStdinRequest(id=job_id)
    for chunk in chunks:
        if chunk:
            yield pb.WriteStdinRequest(data=chunk)


def read_chunks(source: BinaryIO | bytes, size: int = STDIN_CHUNK) -> Iterator[bytes]:
    """``source`` (bytes, or a binary file read ``size`` bytes at a time) in chunks."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = memoryview(source)
        for start in range(0, len(data), size):
            yield bytes(data[start : start + size])
        return
    read = getattr(source, "read1", source.read)
    while chunk := read(size):
        yield chunk


# -- calls that survive a broken connection --------------------------------------------


class Attempts:
    """The retries of one unary call within its deadline: after a failure,
    :meth:`pause` says how long to wait before the next attempt, or None to give up.

    gRPC retries the first ~3 s itself (:data:`SERVICE_CONFIG`); this waits out a longer
    outage (a restart) until the same deadline, but only once the client had reached the
    server (before that there may be no server here that takes us, and waiting would
    only hide why). Hand-written because gRPC's retries stop after 5 attempts whatever
    the deadline.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.deadline = time.monotonic() + limit
        self.delay = RETRY_FIRST
        self.again = False

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def pause(self, err: Any, retried: bool, replied: bool) -> float | None:
        """``replied``: whether the client had an answer from the server before."""
        if not (retried and retryable(err) and reached_server(replied, err)):
            return None
        if self.deadline - time.monotonic() <= self.delay:
            return None
        delay, self.delay = self.delay, min(self.delay * 2, RETRY_MAX)
        self.again = True
        return delay


class Outage:
    """Bookkeeping of one resilient stream (``output``, ``wait``): when did the current
    outage start?

    An outage ends when a re-opened call yields data or stays open for
    :data:`HEALTHY_AFTER` seconds; a call that fails faster than that (say, the server
    accepts the connection but fails the call at once) does not reset the clock, so
    the total time spent trying is bounded by the budget.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.outage_since: float | None = None
        self.opened_at = 0.0
        self.delay = RETRY_FIRST

    def opened(self) -> None:
        self.opened_at = time.monotonic()

    def progressed(self) -> None:
        self.outage_since = None
        self.delay = RETRY_FIRST

    def failed(self) -> float:
        """Record a failure; the seconds left in the budget (<= 0: give up)."""
        now = time.monotonic()
        if self.outage_since is None or now - self.opened_at >= HEALTHY_AFTER:
            self.outage_since = now
            self.delay = RETRY_FIRST
        return self.outage_since + self.budget - now

    def left(self) -> float:
        """The seconds left in the budget of the current outage."""
        if self.outage_since is None:
            return self.budget
        return self.outage_since + self.budget - time.monotonic()

    def backoff(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, RETRY_MAX)
        return delay


@dataclass
class Resume:
    """Where a resilient ``output`` stands: every byte is yielded once, in order, across
    reconnections (a re-opened call starts at :attr:`position`)."""

    position: int

    #: True once a message came: a resumed call continues from :attr:`position`.
    started: bool = False

    #: Ask the server for the job's final status at the end of a follow.
    final_status: bool = False

    #: That status, once its message came.
    final: JobStatus | None = None

    def take(self, msg: OutputMessage) -> OutputChunk | None:
        """The new bytes of ``msg`` (None when it only repeats what was yielded, or
        carries the final status instead: then :attr:`final` is set)."""
        self.started = True
        if msg.job is not None:
            self.final = job_from_pb(pb.Job.FromString(msg.job))
            return None
        data = msg.data
        start = msg.offset
        if start < self.position:
            # Overlaps what was already yielded: keep only the new bytes.
            data = data[self.position - start :]
            start = self.position
        if not data:
            return None
        self.position = start + len(data)
        time = msg.time_ns / 1e9 if msg.time_ns is not None else None
        return OutputChunk(start, data, STREAM_NAMES.get(msg.stream, "stdout"), time)


def split_lines(pending: bytes, data: bytes) -> tuple[list[str], bytes]:
    """Complete lines in ``pending + data`` (decoded as UTF-8, bad bytes replaced, the
    newline removed) and the incomplete rest."""
    buffer = pending + data
    *complete, rest = buffer.split(b"\n")
    return [line.decode("utf-8", "replace") for line in complete], rest

"""Hostile input to every RPC of remo.v1.JobService, over the real server with real mTLS.

Whatever a client sends, each call ends promptly with a precise status code from a
small allowed set per RPC (never UNKNOWN or INTERNAL), the server keeps serving, and no
request that was refused leaves a job, a schedule, a watch or a task behind.

The one documented exception: bytes that are not a protobuf message of the RPC's type
(invalid UTF-8 in a string field, a corrupt wire format) are refused by grpc itself
before any remo code runs. grpc's asyncio server answers those with UNKNOWN ("Unexpected
<class 'google.protobuf.message.DecodeError'>: Error parsing message..."), its thread
server with INTERNAL; :func:`test_undecodable_bytes_get_a_status` pins that down.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from remo.api.jobs import STATE_FROM_PB, duration, timestamp
from remo.core.paths import StatePaths
from remo.core.spec import MAX_ARGV_BYTES, MIN_IO_BPS
from remo.server import paging
from remo.server.convert import MAX_SCHEDULE_SECONDS
from remo.supervisor.service import instance_tag
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc
from tests.conftest import job_cgroups
from tests.e2e.conftest import Server, needs_root, reason_of
from tests.support import wait_until

pytestmark = needs_root

ALICE, BOB, CAROL = "remo-alice", "remo-bob", "remo-carol"
Code = grpc.StatusCode
OK, INVALID, MISSING = Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND
DENIED, PRECONDITION, EXHAUSTED = (
    Code.PERMISSION_DENIED,
    Code.FAILED_PRECONDITION,
    Code.RESOURCE_EXHAUSTED,
)

#: Seconds any one call may take; a call still pending after it counts as a hang.
CALL_TIMEOUT = 20.0

#: What each RPC may answer, whoever calls it with whatever.
ALLOWED: dict[str, frozenset[Code]] = {
    "Start": frozenset({OK, INVALID, PRECONDITION, DENIED, EXHAUSTED}),
    "Stop": frozenset({OK, INVALID, MISSING, DENIED}),
    "Kill": frozenset({OK, INVALID, MISSING, PRECONDITION, DENIED}),
    "GetJob": frozenset({OK, INVALID, MISSING}),
    "ListJobs": frozenset({OK, INVALID, DENIED}),
    "Output": frozenset({OK, INVALID, MISSING}),
    "OutputMany": frozenset({OK, INVALID, MISSING}),
    "Wait": frozenset({OK, INVALID, MISSING}),
    "Remove": frozenset({OK, INVALID, MISSING, PRECONDITION, DENIED}),
    "GetSchedule": frozenset({OK, INVALID, MISSING}),
    "ListSchedules": frozenset({OK, INVALID, DENIED}),
    "WhoAmI": frozenset({OK}),
    "WriteStdin": frozenset({OK, INVALID, MISSING, PRECONDITION, DENIED}),
}

#: The ErrorInfo reasons each status code may carry (proto/remo/v1/jobs.proto). grpc's
#: own refusals carry none: a message above the receive limit is RESOURCE_EXHAUSTED.
REASONS: dict[Code, frozenset[str]] = {
    INVALID: frozenset({"BAD_REQUEST", "LIMIT_OUT_OF_RANGE", "INVALID_PAGE_TOKEN"}),
    MISSING: frozenset({"JOB_NOT_FOUND", "SCHEDULE_NOT_FOUND"}),
    PRECONDITION: frozenset(
        {"START_FAILED", "JOB_STILL_RUNNING", "JOB_NOT_RUNNING", "STDIN_NOT_OPEN"}
    ),
    DENIED: frozenset({"ROLE_NOT_ALLOWED"}),
    EXHAUSTED: frozenset({"SERVER_DISK_FULL", ""}),
}

ROLES = {"viewer": pb.ROLE_VIEWER, "operator": pb.ROLE_OPERATOR, "admin": pb.ROLE_ADMIN}
JOB_STATES = frozenset(pb.JobState.values()) - {pb.JOB_STATE_UNSPECIFIED}

_OWNER = r"[a-z_][a-z0-9_.-]{0,31}"
#: A job id or name, as the server takes them (remo.server.ids): a number, or a name
#: (NAME#K for a schedule's run) that does not look like a schedule id.
JOB_ID = re.compile(
    rf"(?:(?P<owner>{_OWNER})/)?"
    r"(?:[0-9]{1,18}|(?!s[0-9]{1,18}$)[A-Za-z][A-Za-z0-9._-]{0,62}(?:#[0-9]{1,9})?)"
)
SCHEDULE_ID = re.compile(rf"(?:(?P<owner>{_OWNER})/)?s[0-9]{{1,18}}")

HUGE = (1 << 63) - 1
TINY = -(1 << 63)
BAD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, -0.0, 0.0, 1e-300, 1e308, -1e308]
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
int32s = st.one_of(
    st.sampled_from([INT32_MIN, -1, 0, 1, 2, 9, 15, 64, 65, 100, INT32_MAX]),
    st.integers(INT32_MIN, INT32_MAX),
)


MAX_WHOLE_SECONDS = int(MAX_SCHEDULE_SECONDS)


def seconds(msg: Duration | Timestamp) -> float:
    """A Duration or Timestamp as seconds, as the server reads them (no range checks:
    a hostile client sends whatever seconds and nanos it likes)."""
    return msg.seconds + msg.nanos / 1e9


# -- calling ------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: Code
    details: str = ""
    reply: Any = None
    reason: str = ""


async def outcome(call: Awaitable[Any]) -> Outcome:
    """The status of ``call``; fails the test if it takes longer than CALL_TIMEOUT."""
    try:
        reply = await asyncio.wait_for(call, CALL_TIMEOUT)
    except grpc.aio.AioRpcError as err:
        return Outcome(err.code(), err.details() or "", reason=reason_of(err))
    except TimeoutError:
        pytest.fail(f"a call did not finish within {CALL_TIMEOUT}s")
    return Outcome(OK, reply=reply)


async def read_stream(call: grpc.aio.UnaryStreamCall) -> list[Any]:
    return [chunk async for chunk in call]


async def one_message(message: Any) -> AsyncIterator[Any]:
    """A client stream of one message (WriteStdin's)."""
    yield message


@dataclass
class Caller:
    user: str
    role: str
    channel: grpc.aio.Channel
    stub: jobs_pb2_grpc.JobServiceStub

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def writes(self) -> bool:
        return self.role in ("admin", "operator")

    def canonical(self, shown: str) -> str:
        return shown if "/" in shown else f"{self.user}/{shown}"


@dataclass
class World:
    """The server, a caller per role, and what legitimately exists on it."""

    server: Server
    callers: list[Caller]
    job_ids: list[str] = field(default_factory=list)  # ids as callers type them
    started: set[str] = field(default_factory=set)  # canonical ids of jobs we started
    tasks_before: int = 0

    @property
    def admin(self) -> Caller:
        return next(c for c in self.callers if c.admin)

    async def call(self, caller: Caller, rpc: str, request: Any) -> Outcome:
        method = getattr(caller.stub, rpc)
        if rpc in ("Output", "OutputMany"):
            result = await outcome(read_stream(method(request)))
        elif rpc == "WriteStdin":
            result = await outcome(method(one_message(request)))
        else:
            result = await outcome(method(request))
        assert result.code in ALLOWED[rpc], (
            f"{rpc} as {caller.user} ({caller.role}) answered {result.code.name}: "
            f"{result.details!r} for {request!r:.300}"
        )
        if result.code != OK:
            assert result.reason in REASONS[result.code], (
                f"{rpc} as {caller.user} ({caller.role}) answered {result.code.name} with "
                f"reason {result.reason!r}: {result.details!r}"
            )
        if currently_in_test_context():
            event(f"{rpc} as {caller.role}: {result.code.name}")
        if rpc == "Start" and result.code == OK:
            await self.settle_start(caller, result.reply)
        return result

    async def settle_start(self, caller: Caller, reply: pb.StartResponse) -> None:
        """A legitimate start: stop the job at once, so that nothing is left running."""
        if reply.HasField("job"):
            self.started.add(caller.canonical(reply.job.id))
            stop = pb.StopRequest(id=reply.job.id, grace=duration(0))
            assert (await outcome(caller.stub.Stop(stop))).code == OK
        else:
            assert reply.HasField("schedule")
            remove = pb.RemoveRequest(id=reply.schedule.id, stop_running=True)
            assert (await outcome(caller.stub.Remove(remove))).code in (OK, MISSING)

    async def still_serving(self) -> None:
        for caller in self.callers:
            who = await outcome(caller.stub.WhoAmI(pb.WhoAmIRequest()))
            assert who.code == OK and who.reply.user == caller.user


@pytest.fixture
async def world(server: Server, unix_users: tuple[str, ...]) -> AsyncIterator[World]:
    callers = []
    for user, role in (
        ("root", "admin"),
        (ALICE, "operator"),
        (BOB, "operator"),
        (CAROL, "viewer"),
    ):
        channel, stub = server.stub(server.credential(user, role))
        callers.append(Caller(user, role, channel, stub))
    world = World(server, callers)
    try:
        for caller in callers:
            if caller.writes:
                job = (await caller.stub.Start(pb.StartRequest(argv=["echo", "hostile"]))).job
                await caller.stub.Wait(pb.WaitRequest(id=job.id))
                world.started.add(caller.canonical(job.id))
                world.job_ids += [job.id, f"{caller.user}/{job.id}"]
        await world.still_serving()
        world.tasks_before = len(live_tasks())
        yield world
        await check_nothing_left(world)
    finally:
        for caller in callers:
            await caller.channel.close()


async def check_nothing_left(world: World) -> None:
    """No job or schedule a refused request made, nothing running, no watch, no task."""
    admin = world.admin.stub
    schedules = await admin.ListSchedules(pb.ListSchedulesRequest(all_users=True))
    assert not schedules.schedules, "a schedule outlived the test"
    jobs: list[pb.Job] = []
    token = ""
    while True:
        request = pb.ListJobsRequest(all_users=True, page_size=1000, page_token=token)
        page = await admin.ListJobs(request)
        jobs += page.jobs
        if not (token := page.next_page_token):
            break
    stray = {f"{j.owner}/{j.id.rpartition('/')[2]}" for j in jobs if not j.schedule_id}
    stray -= world.started
    assert not stray, f"jobs nobody started legitimately: {stray}"
    assert all(j.state != pb.JOB_STATE_RUNNING for j in jobs), "a job was left running"
    watcher = world.server.running.jobs._watcher
    tag = instance_tag(StatePaths(world.server.state_dir.resolve()))

    def own_cgroups() -> set[str]:  # other remo servers on this host have their own tags
        return job_cgroups(tag)

    await wait_until(lambda: not own_cgroups(), 10, what="job cgroups to go with their jobs")
    await wait_until(
        lambda: watcher.watch_count == 0, 10, what="the output watches to go with their calls"
    )
    await wait_until(
        lambda: len(live_tasks()) <= world.tasks_before,
        10,
        what=lambda: f"tasks to end with their calls: {live_tasks()}",
    )


def live_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of this loop, less two kinds that come and go by design: grpc keeps one task
    per method waiting for the next call (replaced as each call arrives), and the
    scheduler sleeps in a timed ``Event.wait`` task while its heap holds an entry (a
    cancelled schedule's entry stays there, skipped, until its due time)."""
    tasks = asyncio.all_tasks()

    def name(task: asyncio.Task[Any]) -> str:
        return str(getattr(task.get_coro(), "__qualname__", ""))

    def owner(task: asyncio.Task[Any]) -> Any:
        frame = getattr(task.get_coro(), "cr_frame", None)
        return frame.f_locals.get("self") if frame is not None else None

    schedulers = [owner(t) for t in tasks if name(t) == "Scheduler._loop"]
    timers = {id(s._changed) for s in schedulers if s is not None}
    return [
        t
        for t in tasks
        if name(t).rpartition(".")[2] not in ("_request_registered_call", "_request_call")
        and not (name(t) == "Event.wait" and id(owner(t)) in timers)
    ]


HYPOTHESIS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


# -- strategies ---------------------------------------------------------------------------

hostile_text = st.one_of(
    st.sampled_from(["", "\0", "a\0b", "=", "==", "\n", " ", "é", "\u202e", "\ufeff", "../"]),
    st.text(max_size=24),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=8).map(lambda s: s + "\0" + s),
)

#: Command names that are harmless to run or cannot be found: never a random program.
commands = st.one_of(
    st.sampled_from(["true", "echo", "/bin/echo", "printf", "", "\0", "echo\0", "/", "/etc"]),
    hostile_text.map(lambda s: "/nonexistent-remo-command/" + s),
)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    if draw(st.integers(0, 9)) == 0:
        return []
    return [draw(commands), *draw(st.lists(hostile_text, max_size=6))]


envs = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(
            st.sampled_from(["", "=", "A=B", "A\0", "PATH", "HOME", "LD_PRELOAD", "é"]),
            hostile_text,
        ),
        hostile_text,
        max_size=4,
    ),
)

cwds = st.one_of(
    st.sampled_from(["", "/", "/tmp", "relative", "/no/such/dir", "/etc/passwd", "/tmp\0x"]),
    hostile_text,
)

# (valid tiny cpu limits are left out: a job at 0.001 cores needs seconds just to exec)
cpu_values = st.one_of(st.sampled_from([*BAD_FLOATS, 0.0009, 0.5, 4096.0, 4096.5]), st.floats())
int_limits = st.one_of(
    st.sampled_from([TINY, -1, 0, 1, 2, 1 << 20, (1 << 20) - 1, 1 << 22, (1 << 22) + 1]),
    st.sampled_from([1 << 62, (1 << 62) + 1, HUGE]),
    st.integers(TINY, HUGE),
)


@st.composite
def limits(draw: st.DrawFn) -> pb.Limits | None:
    if draw(st.booleans()):
        return None
    msg = pb.Limits()
    if draw(st.booleans()):
        msg.cpu_cores = draw(cpu_values)
    for name in ("memory_bytes", "io_read_bps", "io_write_bps", "pids", "output_bytes"):
        if draw(st.integers(0, 3)) == 0:
            setattr(msg, name, draw(int_limits))
    return msg


at_strings = st.one_of(
    st.sampled_from(
        [
            "",
            "02:00",
            "25:00",
            "99:99",
            "2:0",
            "2026-13-01T00:00",
            "2026-02-30T00:00",
            "2026-12-01",
            "0001-01-01T00:00",
            "9999-12-31T23:59",
            "9999-12-31T23:59-23:59",
            "2099-01-01T00:00+99:99",
            "\0",
            "x" * 10_000,
        ]
    ),
    hostile_text,
)

#: Seconds and nanos as a client may send them: Duration and Timestamp are two plain
#: integers on the wire, and nothing stops nanos from being out of range or of the
#: other sign.
wire_seconds = st.one_of(
    st.sampled_from([TINY, -1, 0, 1, 3600, 3601, MAX_WHOLE_SECONDS, MAX_WHOLE_SECONDS + 1, HUGE]),
    st.integers(TINY, HUGE),
)
wire_nanos = st.one_of(
    st.sampled_from([INT32_MIN, -1_000_000_000, -1, 0, 1, 999_999_999, 1_000_000_000, INT32_MAX]),
    st.integers(INT32_MIN, INT32_MAX),
)
hostile_durations = st.one_of(
    st.builds(duration, st.sampled_from([-1.0, -0.0, 0.0, 1e-6, 0.5, 1.0, 3600.0, 3600.5])),
    st.builds(Duration, seconds=wire_seconds, nanos=wire_nanos),
)


@st.composite
def hostile_timestamps(draw: st.DrawFn) -> Timestamp:
    now = int(time.time())
    near = [now - 3600, now - 2, now, now + 3600, now + MAX_WHOLE_SECONDS + 3600]
    return Timestamp(
        seconds=draw(st.one_of(st.sampled_from(near), wire_seconds)), nanos=draw(wire_nanos)
    )


@st.composite
def whens(draw: st.DrawFn) -> pb.When | None:
    if draw(st.booleans()):
        return None
    when = pb.When()
    first_run = draw(st.sampled_from([None, "delay", "time", "time_expression"]))
    if first_run == "delay":
        when.delay.CopyFrom(draw(hostile_durations))
    elif first_run == "time":
        when.time.CopyFrom(draw(hostile_timestamps()))
    elif first_run == "time_expression":
        when.time_expression = draw(at_strings)
    if draw(st.booleans()):
        when.period.CopyFrom(draw(hostile_durations))
    return when


def job_ids(world_ids: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "",
                "../",
                "/",
                "a/b/c",
                "root/",
                "/1",
                "1/",
                "99999999999999999999999",
                "999999999999999999",
                "0000000000000000001",
                "s",
                "sX",
                "s1",
                "s0",
                "root/s1",
                f"{ALICE}/s1",
                "1\n",
                "root\n/1",
                "s1\n",
                " 1",
                "-1",
                "+1",
                "0x1",
                "1e3",
                "\u0661",  # ARABIC-INDIC DIGIT ONE
                "\uff11",  # FULLWIDTH DIGIT ONE
                "Root/1",
                "root//1",
                "1\0",
                "../../etc/passwd",
                "%2e%2e/1",
                "é/1",
                f"{ALICE}/1",
                f"{BOB}/1",
                f"{CAROL}/1",
                "root/1",
                "nobody/1",
            ]
        ),
        st.sampled_from(world_ids),
        hostile_text,
        st.from_regex(JOB_ID, fullmatch=True),
        st.from_regex(SCHEDULE_ID, fullmatch=True),
    )


def expected_for_id(caller: Caller, rpc: str, raw: str) -> set[Code]:
    """What an RPC naming ``raw`` may answer, beyond the RPC's allowed set."""
    if rpc in ("Stop", "Kill", "Remove", "WriteStdin") and not caller.writes:
        return {DENIED}
    job, schedule = JOB_ID.fullmatch(raw), SCHEDULE_ID.fullmatch(raw)
    if rpc == "GetSchedule":
        match = schedule
    elif rpc == "Remove":
        match = schedule or job
    else:
        match = job
    if match is None:
        return {INVALID}
    owner = match["owner"] or caller.user
    if owner != caller.user and not caller.admin:
        return {MISSING}  # never "exists but not yours"
    return set(ALLOWED[rpc]) - {DENIED}


def obviously_invalid(request: pb.StartRequest) -> bool:
    """Start requests remo must refuse as INVALID_ARGUMENT, by the documented rules."""
    argv, env = list(request.argv), dict(request.env)
    size = sum(len(a.encode()) + 1 for a in argv)
    size += sum(len(k) + len(v.encode()) + 2 for k, v in env.items())
    lim = request.limits

    def out_of(name: str, low: int, high: int = 1 << 62) -> bool:
        return lim.HasField(name) and not low <= getattr(lim, name) <= high

    return (
        not argv
        or not argv[0]
        or any("\0" in a for a in argv)
        or any(not k or "=" in k or "\0" in k or "\0" in v for k, v in env.items())
        or size > MAX_ARGV_BYTES
        or (bool(request.cwd) and ("\0" in request.cwd or not request.cwd.startswith("/")))
        or request.network not in (pb.NETWORK_UNSPECIFIED, pb.NETWORK_HOST, pb.NETWORK_NONE)
        or (lim.HasField("cpu_cores") and not 0.001 <= lim.cpu_cores <= 4096)
        or out_of("memory_bytes", 1 << 20)
        or out_of("io_read_bps", MIN_IO_BPS)
        or out_of("io_write_bps", MIN_IO_BPS)
        or out_of("pids", 1, 1 << 22)
        or out_of("output_bytes", 0)
    )


def invalid_when(when: pb.When) -> bool:
    """A schedule request remo must refuse (only the rules that do not depend on parsing)."""
    if when.HasField("period") and not 1 <= seconds(when.period) <= MAX_SCHEDULE_SECONDS:
        return True
    first_run = when.WhichOneof("first_run")
    if first_run == "time_expression":
        return False  # parse_at decides; any of its answers is INVALID_ARGUMENT or OK
    now = time.time()
    if first_run == "time":  # the server's clock reads later than ours, by < 60 s
        return not now - 1 <= seconds(when.time) <= now + MAX_SCHEDULE_SECONDS + 60
    return not 0 <= seconds(when.delay) <= MAX_SCHEDULE_SECONDS


sane_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=16)

#: How each StartRequest field looks when it is not the hostile one.
SANE: dict[str, st.SearchStrategy[Any]] = {
    "argv": st.one_of(
        st.just(["true"]), st.lists(sane_text, max_size=4).map(lambda a: ["echo", *a])
    ),
    "env": st.one_of(
        st.none(),
        st.dictionaries(st.from_regex(r"REMO_T_[A-Z0-9_]{1,8}", fullmatch=True), sane_text),
    ),
    "cwd": st.sampled_from(["", "/", "/tmp"]),
    "limits": st.one_of(
        st.none(),
        st.builds(
            pb.Limits,
            cpu_cores=st.floats(0.1, 4096),
            memory_bytes=st.integers(64 << 20, 1 << 62),
            io_read_bps=st.integers(MIN_IO_BPS, 1 << 62),
            io_write_bps=st.integers(MIN_IO_BPS, 1 << 62),
            pids=st.integers(8, 1 << 22),
            output_bytes=st.integers(0, 1 << 62),
        ),
    ),
    "network": st.sampled_from([pb.NETWORK_UNSPECIFIED, pb.NETWORK_HOST, pb.NETWORK_NONE]),
    "when": st.one_of(st.none(), st.just(pb.When(delay=duration(3600), period=duration(60)))),
}

HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "argv": argvs(),
    "env": envs,
    "cwd": cwds,
    "limits": limits(),
    "network": int32s,
    "when": whens(),
}


@st.composite
def start_requests(draw: st.DrawFn) -> pb.StartRequest:
    """A request with up to three hostile fields, the rest sane: each hazard gets tested
    on its own as well as in company."""
    count = draw(st.integers(0, 3))
    hostile = draw(st.sets(st.sampled_from(sorted(HOSTILE)), min_size=count, max_size=count))
    field = {name: draw(HOSTILE[name] if name in hostile else SANE[name]) for name in SANE}
    request = pb.StartRequest(
        argv=field["argv"],
        cwd=field["cwd"],
        network=field["network"],
        private_tmp=draw(st.booleans()),
    )
    request.env.update(field["env"] or {})
    if field["limits"] is not None:
        request.limits.CopyFrom(field["limits"])
    if field["when"] is not None:
        request.when.CopyFrom(field["when"])
    return request


# -- the properties -----------------------------------------------------------------------


@HYPOTHESIS
@given(data=st.data(), request=start_requests())
async def test_start_with_hostile_requests(
    world: World, data: st.DataObject, request: pb.StartRequest
) -> None:
    caller = data.draw(st.sampled_from(world.callers))
    result = await world.call(caller, "Start", request)
    if not caller.writes:
        assert result.code == DENIED
    elif obviously_invalid(request) or (request.HasField("when") and invalid_when(request.when)):
        assert result.code == INVALID, f"{result.code.name} {result.details!r} for {request!r}"
    await world.still_serving()


@HYPOTHESIS
@given(
    data=st.data(),
    rpc=st.sampled_from(["GetJob", "Wait", "Stop", "Kill", "Remove", "GetSchedule", "WriteStdin"]),
)
async def test_job_and_schedule_ids(world: World, data: st.DataObject, rpc: str) -> None:
    caller = data.draw(st.sampled_from(world.callers))
    raw = data.draw(job_ids(world.job_ids))
    if rpc == "Stop":
        request: Any = pb.StopRequest(id=raw, grace=duration(0))
    elif rpc == "Kill":
        request = pb.KillRequest(id=raw, signal=9)
    elif rpc == "Remove":
        request = pb.RemoveRequest(id=raw, stop_running=data.draw(st.booleans()))
    elif rpc == "GetSchedule":
        request = pb.GetScheduleRequest(id=raw)
    elif rpc == "Wait":
        request = pb.WaitRequest(id=raw)
    elif rpc == "WriteStdin":
        request = pb.WriteStdinRequest(id=raw, data=data.draw(st.binary(max_size=64)))
    else:
        request = pb.GetJobRequest(id=raw)
    result = await world.call(caller, rpc, request)
    expected = expected_for_id(caller, rpc, raw)
    assert result.code in expected, f"{rpc} {raw!r} as {caller.role}: {result.code.name}"
    if result.code == MISSING:  # named as what was asked for
        schedule = rpc == "GetSchedule" or (rpc == "Remove" and SCHEDULE_ID.fullmatch(raw))
        assert result.reason == ("SCHEDULE_NOT_FOUND" if schedule else "JOB_NOT_FOUND"), raw
    if result.code == OK and rpc in ("GetJob", "Wait", "Stop", "Kill"):
        assert result.reply.job.id == raw.removeprefix(f"{caller.user}/")
    if result.code == OK and rpc == "GetSchedule":
        assert result.reply.schedule.id == raw.removeprefix(f"{caller.user}/")
    await world.still_serving()


@HYPOTHESIS
@given(
    data=st.data(),
    offset=st.one_of(
        st.sampled_from([TINY, -1, 0, 1, 5, 1 << 31, 1 << 62, HUGE]), st.integers(TINY, HUGE)
    ),
    follow=st.booleans(),
)
async def test_output_ids_and_offsets(
    world: World, data: st.DataObject, offset: int, follow: bool
) -> None:
    caller = data.draw(st.sampled_from(world.callers))
    raw = data.draw(job_ids(world.job_ids))
    request = pb.OutputRequest(id=raw, offset=offset, follow=follow)
    result = await world.call(caller, "Output", request)
    expected = expected_for_id(caller, "Output", raw)
    if offset < 0 and expected != {MISSING}:
        expected = {INVALID}  # refused before the job is looked up; others' ids come first
    assert result.code in expected, f"Output {raw!r} @{offset}: {result.code.name}"
    if result.code == OK:
        data_len = sum(len(c.data) for c in result.reply)
        assert all(c.offset >= offset for c in result.reply)
        if offset >= 1 << 20:
            assert data_len == 0  # far past the end of a few bytes of output
    await world.still_serving()


@HYPOTHESIS
@given(
    data=st.data(),
    offsets=st.lists(st.sampled_from([TINY, -1, 0, 5, 1 << 62, HUGE]), max_size=6),
    follow=st.booleans(),
)
async def test_output_many_ids_and_offsets(
    world: World, data: st.DataObject, offsets: list[int], follow: bool
) -> None:
    """Several jobs at once: the call is refused as the first job it cannot read would
    be (or as a bad offset), and an empty list is a bad request."""
    caller = data.draw(st.sampled_from(world.callers))
    raws = [data.draw(job_ids(world.job_ids)) for _ in offsets]
    request = pb.OutputManyRequest(
        jobs=[
            pb.OutputRequest(id=raw, offset=offset, follow=follow)
            for raw, offset in zip(raws, offsets, strict=True)
        ]
    )
    result = await world.call(caller, "OutputMany", request)
    if not offsets:
        assert result.code == INVALID
        return
    expected = set().union(*(expected_for_id(caller, "Output", raw) for raw in raws))
    if any(offset < 0 for offset in offsets):
        expected = {INVALID}  # every window and offset is checked before any job
    assert result.code in expected, f"OutputMany {raws!r} @{offsets}: {result.code.name}"
    if result.code == OK:
        ends = [piece.job for message in result.reply for piece in message.pieces if piece.end]
        assert sorted(ends) == list(range(len(raws)))  # each job's end, once
    await world.still_serving()


@HYPOTHESIS
@given(data=st.data(), grace=st.one_of(st.none(), hostile_durations))
async def test_stop_grace(world: World, data: st.DataObject, grace: Duration | None) -> None:
    caller = data.draw(st.sampled_from(world.callers))
    raw = data.draw(st.one_of(st.sampled_from(world.job_ids), job_ids(world.job_ids)))
    request = pb.StopRequest(id=raw, grace=grace)
    result = await world.call(caller, "Stop", request)
    expected = expected_for_id(caller, "Stop", raw)
    if grace is not None and not 0 <= seconds(grace) <= 3600 and expected - {DENIED, MISSING}:
        expected = {INVALID}
    assert result.code in expected, f"Stop {raw!r} grace={grace}: {result.code.name}"
    await world.still_serving()


@HYPOTHESIS
@given(data=st.data(), signal=int32s)
async def test_kill_signal(world: World, data: st.DataObject, signal: int) -> None:
    """Every job here has ended: a well-formed Kill is refused as JOB_NOT_RUNNING (or
    NOT_FOUND), one with a signal Linux does not have as INVALID_ARGUMENT."""
    caller = data.draw(st.sampled_from(world.callers))
    raw = data.draw(st.one_of(st.sampled_from(world.job_ids), job_ids(world.job_ids)))
    result = await world.call(caller, "Kill", pb.KillRequest(id=raw, signal=signal))
    expected = expected_for_id(caller, "Kill", raw)
    if not 0 <= signal <= 64 and expected - {DENIED, MISSING}:
        expected = {INVALID}
    assert result.code in expected, f"Kill {raw!r} signal={signal}: {result.code.name}"
    if result.code == PRECONDITION:
        assert result.reason == "JOB_NOT_RUNNING"
    await world.still_serving()


page_sizes = st.one_of(
    st.sampled_from([INT32_MIN, -1, 0, 1, 2, 100, 1000, 1001, INT32_MAX]),
    st.integers(INT32_MIN, INT32_MAX),
)

#: Keys a forged token may carry: of the wrong shape, or out of any range.
FORGED_KEYS: list[list[Any]] = [
    [],
    [0],
    [0, "", 0],
    ["x", "root", 1],
    [None, None, None],
    [math.nan, "root", 1],
    [math.inf, "root", 1],
    [1e308, "root", 1 << 70],
    [0, "root", -(1 << 70)],
    [time.time(), "root", HUGE],
    [time.time(), "\0", -1],
]
forged_keys = st.sampled_from(FORGED_KEYS)


def page_tokens(filters: str) -> st.SearchStrategy[str]:
    """Tokens no listing handed out: garbage, and well-formed ones for these filters
    (their fingerprint is no secret) carrying keys out of any range."""
    return st.one_of(
        st.sampled_from(["", "=", "e30", "bnVsbA", "W10", "x" * 10_000, "\0"]),
        hostile_text,
        forged_keys.map(lambda key: paging.encode(key, filters)),
    )


@HYPOTHESIS
@given(
    data=st.data(),
    all_users=st.booleans(),
    states=st.lists(st.one_of(st.sampled_from(sorted(JOB_STATES)), int32s), max_size=3),
    page_size=page_sizes,
)
async def test_list_and_whoami(
    world: World, data: st.DataObject, all_users: bool, states: list[int], page_size: int
) -> None:
    caller = data.draw(st.sampled_from(world.callers))
    owner = None if all_users else caller.user
    # the filters as the server fingerprints them, so that forged tokens get past that
    known = sorted({STATE_FROM_PB[s] for s in states if s in JOB_STATES})
    known = [s.value for s in known]
    token = data.draw(st.one_of(st.just(""), page_tokens(paging.fingerprint(owner, known))))
    request = pb.ListJobsRequest(
        all_users=all_users, states=states, page_size=page_size, page_token=token
    )
    result = await world.call(caller, "ListJobs", request)
    if all_users and not caller.admin:
        assert result.code == DENIED
    elif page_size < 0 or not set(states) <= JOB_STATES:
        assert result.code == INVALID
    elif not token:
        assert result.code == OK
    if result.code == OK:
        assert len(result.reply.jobs) <= min(page_size or 100, 1000)
        if not all_users:
            assert {j.owner for j in result.reply.jobs} <= {caller.user}
        if states:
            assert {j.state for j in result.reply.jobs} <= set(states)

    token = data.draw(st.one_of(st.just(""), page_tokens(paging.fingerprint(owner))))
    request = pb.ListSchedulesRequest(all_users=all_users, page_size=page_size, page_token=token)
    result = await world.call(caller, "ListSchedules", request)
    if all_users and not caller.admin:
        assert result.code == DENIED
    elif page_size < 0:
        assert result.code == INVALID
    elif not token:
        assert result.code == OK
    if result.code == OK and not all_users:
        assert {s.owner for s in result.reply.schedules} <= {caller.user}

    who = await world.call(caller, "WhoAmI", pb.WhoAmIRequest())
    assert (who.reply.user, who.reply.role) == (caller.user, ROLES[caller.role])


# -- explicit examples --------------------------------------------------------------------


async def test_forged_page_tokens(world: World) -> None:
    """A token with the right fingerprint (no secret) and a key out of any range is
    refused as INVALID_PAGE_TOKEN, or only moves the position: never an internal error."""
    for caller in (world.admin, next(c for c in world.callers if c.role == "operator")):
        jobs_filters = paging.fingerprint(caller.user, [])
        for key in FORGED_KEYS:
            token = paging.encode(key, jobs_filters)
            request = pb.ListJobsRequest(page_token=token)
            result = await world.call(caller, "ListJobs", request)
            assert result.code == OK or result.reason == "INVALID_PAGE_TOKEN", (key, result)
            token = paging.encode(key, paging.fingerprint(caller.user))
            request = pb.ListSchedulesRequest(page_token=token)
            result = await world.call(caller, "ListSchedules", request)
            assert result.code == OK or result.reason == "INVALID_PAGE_TOKEN", (key, result)
    await world.still_serving()


async def test_oversized_requests(world: World) -> None:
    admin = world.admin
    # 100,000 arguments beyond the 1 MiB argv+env limit: refused before anything starts
    many = pb.StartRequest(argv=["true", *(["y" * 15] * 100_000)])
    result = await world.call(admin, "Start", many)
    assert result.code == INVALID
    assert f"the limit is {MAX_ARGV_BYTES}" in result.details
    # 100,000 environment variables, same limit
    env = {f"V{i}": "y" * 8 for i in range(100_000)}
    result = await world.call(admin, "Start", pb.StartRequest(argv=["true"], env=env))
    assert result.code == INVALID and "the limit is" in result.details
    # one argument of 1 MiB
    result = await world.call(admin, "Start", pb.StartRequest(argv=["echo", "x" * (1 << 20)]))
    assert result.code == INVALID and "the limit is" in result.details
    # 100,000 one-byte arguments fit the limit (as they fit the kernel's): a real job
    result = await world.call(admin, "Start", pb.StartRequest(argv=["true", *(["y"] * 100_000)]))
    assert result.code == OK
    # a single argument above the kernel's MAX_ARG_STRLEN (128 KiB) cannot be exec'd: E2BIG
    result = await world.call(admin, "Start", pb.StartRequest(argv=["true", "y" * (200 << 10)]))
    assert result.code == PRECONDITION and "Argument list too long" in result.details
    # a message above the server's 8 MiB receive limit: grpc refuses it
    huge = pb.StartRequest(argv=["echo", "x" * (9 << 20)])
    result = await world.call(admin, "Start", huge)
    assert result.code == EXHAUSTED
    # an id of 1 MiB
    result = await world.call(admin, "GetJob", pb.GetJobRequest(id="9" * (1 << 20)))
    assert (result.code, result.reason) == (INVALID, "BAD_REQUEST")
    await world.still_serving()


async def test_limits_the_kernel_refuses_are_invalid_arguments(world: World) -> None:
    """pids.max above PID_MAX_LIMIT (2^22) is EINVAL in the kernel: refuse it up front."""
    admin = world.admin
    for pids in ((1 << 22) + 1, 1 << 62, HUGE):
        request = pb.StartRequest(argv=["true"], limits=pb.Limits(pids=pids))
        result = await world.call(admin, "Start", request)
        assert result.code == INVALID and "pids limit" in result.details
        assert result.reason == "LIMIT_OUT_OF_RANGE"
    # (a Timestamp or Duration cannot be NaN or infinite: the extremes of its integers)
    for when in (
        pb.When(time=Timestamp(seconds=HUGE)),
        pb.When(time=Timestamp(seconds=TINY)),
        pb.When(time=Timestamp(seconds=253_402_300_800)),  # year 10000
        pb.When(time=timestamp(time.time() + 2 * MAX_SCHEDULE_SECONDS)),
        pb.When(time_expression="9999-12-31T23:59"),
        pb.When(delay=Duration(seconds=HUGE, nanos=INT32_MAX)),
        pb.When(delay=Duration(seconds=TINY)),
        pb.When(delay=Duration(nanos=-1)),
        pb.When(period=Duration(seconds=HUGE)),
        pb.When(period=Duration(seconds=TINY)),
    ):
        result = await world.call(admin, "Start", pb.StartRequest(argv=["true"], when=when))
        assert (result.code, result.reason) == (INVALID, "BAD_REQUEST"), f"{when}: {result}"


# -- bytes that are not a message ---------------------------------------------------------

REQUEST_TYPES: dict[str, Any] = {
    "Start": pb.StartRequest,
    "Stop": pb.StopRequest,
    "Kill": pb.KillRequest,
    "GetJob": pb.GetJobRequest,
    "ListJobs": pb.ListJobsRequest,
    "Output": pb.OutputRequest,
    "OutputMany": pb.OutputManyRequest,
    "Wait": pb.WaitRequest,
    "Remove": pb.RemoveRequest,
    "GetSchedule": pb.GetScheduleRequest,
    "ListSchedules": pb.ListSchedulesRequest,
    "WhoAmI": pb.WhoAmIRequest,
    "WriteStdin": pb.WriteStdinRequest,
}

#: Hand-built messages: field 1 (argv / id) as a string holding invalid UTF-8, an env
#: map entry with an invalid UTF-8 key, a length running past the end, a bad wire type.
UNDECODABLE = [
    b"\x0a\x03\xff\xfe\xfd",
    b"\x0a\x02\xc3\x28",
    b"\x0a\x04\xed\xa0\x80x",  # an encoded UTF-16 surrogate
    b"\x12\x07\x0a\x01\xff\x12\x02ok",
    b"\x0a\x10ab",
    b"\x0f",
    b"\xff\xff\xff\xff",
]


async def raw_call(channel: grpc.aio.Channel, rpc: str, payload: bytes) -> Outcome:
    path = f"/remo.v1.JobService/{rpc}"
    if rpc in ("Output", "OutputMany"):
        stream = channel.unary_stream(path)(payload)
        return await outcome(read_stream(stream))
    if rpc == "WriteStdin":
        return await outcome(channel.stream_unary(path)(one_message(payload)))
    return await outcome(channel.unary_unary(path)(payload))


def decodes(rpc: str, payload: bytes) -> bool:
    try:
        REQUEST_TYPES[rpc].FromString(payload)
    except DecodeError:
        return False
    return True


async def test_every_rpc_gets_hostile_input() -> None:
    service = pb.DESCRIPTOR.services_by_name["JobService"]
    assert set(ALLOWED) == set(REQUEST_TYPES) == {m.name for m in service.methods}


async def test_undecodable_bytes_get_a_status(world: World) -> None:
    viewer = next(c for c in world.callers if c.role == "viewer")
    for rpc in REQUEST_TYPES:
        for payload in UNDECODABLE:
            if decodes(rpc, payload):
                continue  # e.g. WhoAmIRequest has no field 1 and skips unknown fields
            result = await raw_call(viewer.channel, rpc, payload)
            if rpc == "WriteStdin":
                # a client stream is admitted before its first message is read: the
                # viewer is refused without a byte of it decoded
                assert result.code == DENIED, (rpc, payload, result)
                continue
            # grpc (not remo) refuses these: UNKNOWN from its asyncio server
            assert result.code in (Code.UNKNOWN, Code.INTERNAL), (rpc, payload, result)
            assert "parsing message" in result.details or "deserializ" in result.details
    await world.still_serving()


@HYPOTHESIS
@given(
    rpc=st.sampled_from(sorted(REQUEST_TYPES)),
    payload=st.one_of(st.binary(max_size=64), st.sampled_from(UNDECODABLE)),
)
async def test_arbitrary_bytes(world: World, rpc: str, payload: bytes) -> None:
    """Sent as a viewer, who can start nothing, so random bytes can never run a program."""
    viewer = next(c for c in world.callers if c.role == "viewer")
    result = await raw_call(viewer.channel, rpc, payload)
    if rpc == "WriteStdin":  # admitted before a message is read (see above)
        assert result.code == DENIED, (rpc, payload, result)
    elif decodes(rpc, payload):
        assert result.code in ALLOWED[rpc], (rpc, payload, result)
        if rpc in ("Start", "Stop", "Kill", "Remove", "WriteStdin"):
            assert result.code == DENIED
    else:
        assert result.code in (Code.UNKNOWN, Code.INTERNAL), (rpc, payload, result)
    await world.still_serving()

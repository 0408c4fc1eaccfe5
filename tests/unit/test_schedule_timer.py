"""The scheduler's timer on a clock the tests move: periods pass without waiting for them.

The jobs are a stand-in that records what the timer asks of the JobManager; the
schedules are in a real ``schedules.db`` under the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from remo.core.errors import InvalidArgument, JobNotFound, StartFailed
from remo.core.spec import JobSpec
from remo.core.status import JobState, JobStatus
from remo.schedule.store import Run, ScheduleStore
from remo.schedule.timer import Scheduler, SystemClock
from tests.support import wait_until

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC: any fixed time serves


@dataclass
class _Wait:
    event: asyncio.Event
    deadline: float | None
    alarm: asyncio.Future[None]


class FakeClock:
    """Time that stands still until the test moves it with :meth:`advance`."""

    def __init__(self, now: float = T0) -> None:
        self._now = now
        self._waits: list[_Wait] = []

    def now(self) -> float:
        return self._now

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        deadline = None if timeout is None else self._now + timeout
        entry = _Wait(event, deadline, asyncio.get_running_loop().create_future())
        self._waits.append(entry)
        changed = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({changed, entry.alarm}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            self._waits.remove(entry)

    @property
    def deadlines(self) -> list[float | None]:
        """Until when each timer now waits (``None``: until something changes)."""
        return [w.deadline for w in self._waits]

    def _idle(self) -> bool:
        """Every timer waits, and neither its time nor a change has come."""
        return bool(self._waits) and all(
            not w.event.is_set() and (w.deadline is None or w.deadline > self._now)
            for w in self._waits
        )

    async def settle(self) -> None:
        """Until the timer has done everything that is due now, and waits again."""
        await wait_until(self._idle, 5, what="the timer to finish what is due and wait")

    def pass_time(self, seconds: float) -> None:
        """Move the time while no timer runs (a server that is down)."""
        assert not self._waits, "a timer waits: advance() wakes it"
        self._now += seconds

    async def advance(self, seconds: float) -> None:
        """Move the time, and let the timer do what that made due."""
        self._now += seconds
        for w in self._waits:
            if w.deadline is not None and w.deadline <= self._now and not w.alarm.done():
                w.alarm.set_result(None)
        await self.settle()


@dataclass
class FakeJobs:
    """What the timer uses of a JobManager: start, status, stop."""

    started: list[tuple[str, str | None]] = field(default_factory=list)
    stopped: list[tuple[str, float]] = field(default_factory=list)
    states: dict[str, JobState] = field(default_factory=dict)
    #: argv[0] -> what starting it raises
    failures: dict[str, Exception] = field(default_factory=dict)

    async def start(self, spec: JobSpec, *, schedule_id: str | None = None) -> str:
        if (failure := self.failures.get(spec.argv[0])) is not None:
            raise failure
        owner = (schedule_id or "root/").partition("/")[0]
        job_id = f"{owner}/{len(self.started) + 1}"
        self.started.append((job_id, schedule_id))
        self.states[job_id] = JobState.RUNNING
        return job_id

    async def status(self, job_id: str) -> JobStatus:
        if job_id not in self.states:
            raise JobNotFound(job_id)
        owner = job_id.partition("/")[0]
        return JobStatus(job_id, owner, ("true",), self.states[job_id], 1, None, None, T0, None)

    async def stop(self, job_id: str, grace: float = 10.0) -> JobStatus:
        self.stopped.append((job_id, grace))
        self.states[job_id] = JobState.STOPPED
        return await self.status(job_id)

    def end(self, job_id: str) -> None:
        self.states[job_id] = JobState.SUCCEEDED

    @property
    def ids(self) -> list[str]:
        return [job_id for job_id, _ in self.started]


@dataclass
class World:
    clock: FakeClock
    jobs: FakeJobs
    store: ScheduleStore
    scheduler: Scheduler
    refusals: dict[str, str]

    def runs(self, schedule_id: str) -> list[Run]:
        """Oldest first."""
        owner, _, seq = schedule_id.partition("/s")
        return list(reversed(self.store.recent_runs(owner, int(seq))))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock, jobs, refusals = FakeClock(), FakeJobs(), {}
    store = ScheduleStore(tmp_path / "schedules.db")
    scheduler = Scheduler(store, jobs, refusals.get, clock=clock)  # type: ignore[arg-type]
    await scheduler.start()
    await clock.settle()
    try:
        yield World(clock, jobs, store, scheduler, refusals)
    finally:
        await scheduler.close()
        store.close()


def spec(*argv: str) -> JobSpec:
    return JobSpec(list(argv or ["true"]))


async def test_a_delayed_run_starts_at_its_due_time_and_not_before(world: World) -> None:
    clock, jobs = world.clock, world.jobs
    schedule = world.scheduler.create(spec(), "alice", clock.now() + 2, None)
    await clock.settle()
    assert clock.deadlines == [T0 + 2]  # asleep until then: no polling
    await clock.advance(1.999)
    assert jobs.started == []
    await clock.advance(0.001)
    assert jobs.started == [("alice/1", "alice/s1")]
    assert world.runs(schedule.id) == [Run(T0 + 2, "started", "alice/1", "")]
    # a one-shot schedule is done after its run
    assert world.scheduler.active(None) == []
    assert world.store.get(schedule.id).next_due is None
    assert clock.deadlines == [None]
    await clock.advance(3600)
    assert len(jobs.started) == 1


async def test_every_2s_runs_on_its_period_and_skips_while_the_last_run_runs(
    world: World,
) -> None:
    clock, jobs = world.clock, world.jobs
    schedule = world.scheduler.create(spec(), "alice", clock.now(), 2)
    await clock.settle()
    assert jobs.ids == ["alice/1"]
    assert clock.deadlines == [T0 + 2]
    await clock.advance(2)  # alice/1 still runs
    assert jobs.ids == ["alice/1"]
    jobs.end("alice/1")
    await clock.advance(2)
    assert jobs.ids == ["alice/1", "alice/2"]
    assert [(r.due_at, r.outcome, r.job_id) for r in world.runs(schedule.id)] == [
        (T0, "started", "alice/1"),
        (T0 + 2, "skipped", ""),
        (T0 + 4, "started", "alice/2"),
    ]
    assert world.runs(schedule.id)[1].detail == "previous run 1 is still running"
    assert world.store.get(schedule.id).next_due == T0 + 6
    assert [s.id for s in world.scheduler.active("alice")] == [schedule.id]


async def test_a_late_wake_up_runs_once_and_keeps_to_the_period(world: World) -> None:
    """Woken 5 s late (a stalled loop), an every-2s schedule runs once, not three times,
    and its next run is on its original grid."""
    clock, jobs = world.clock, world.jobs
    schedule = world.scheduler.create(spec(), "alice", clock.now() + 2, 2)
    await clock.settle()
    await clock.advance(7)
    assert jobs.ids == ["alice/1"]
    assert world.runs(schedule.id) == [Run(T0 + 2, "started", "alice/1", "")]
    assert world.store.get(schedule.id).next_due == T0 + 8
    assert clock.deadlines == [T0 + 8]


async def test_schedules_run_in_the_order_they_fall_due(world: World) -> None:
    clock, jobs = world.clock, world.jobs
    for owner, delay in (("carol", 3.0), ("alice", 1.0), ("bob", 2.0)):
        world.scheduler.create(spec(), owner, clock.now() + delay, None)
    await clock.settle()
    assert clock.deadlines == [T0 + 1]  # the earliest
    await clock.advance(1)
    assert jobs.ids == ["alice/1"]
    await clock.advance(5)
    assert jobs.ids == ["alice/1", "bob/2", "carol/3"]


async def test_removing_a_schedule_stops_its_run_and_nothing_more_starts(world: World) -> None:
    clock, jobs = world.clock, world.jobs
    schedule = world.scheduler.create(spec(), "alice", clock.now(), 2)
    kept = world.scheduler.create(spec(), "bob", clock.now() + 1, None)
    await clock.settle()
    assert jobs.ids == ["alice/1"]
    await world.scheduler.cancel(schedule.id, stop_running=True, grace=5)
    assert jobs.stopped == [("alice/1", 5)]
    with pytest.raises(JobNotFound):
        world.scheduler.get(schedule.id)
    assert world.runs(schedule.id) == []
    await clock.advance(4)  # two periods
    assert jobs.ids == ["alice/1", "bob/2"]
    assert world.runs(kept.id)[0].outcome == "started"


async def test_removing_without_stop_leaves_the_run_running(world: World) -> None:
    schedule = world.scheduler.create(spec(), "alice", world.clock.now(), 60)
    await world.clock.settle()
    await world.scheduler.cancel(schedule.id, stop_running=False)
    assert world.jobs.stopped == []
    assert world.jobs.states["alice/1"] is JobState.RUNNING


async def test_runs_missed_while_the_server_was_down_run_once(tmp_path: Path) -> None:
    clock, jobs = FakeClock(), FakeJobs()
    store = ScheduleStore(tmp_path / "schedules.db")
    before = Scheduler(store, jobs, clock=clock)  # type: ignore[arg-type]
    await before.start()
    recurring = before.create(spec(), "alice", clock.now() + 1, 1)
    once = before.create(spec(), "bob", clock.now() + 2, None)
    await clock.settle()
    await before.close()

    clock.pass_time(3.5)  # three due times of alice's pass while no timer runs
    store.close()
    store = ScheduleStore(tmp_path / "schedules.db")
    after = Scheduler(store, jobs, clock=clock)  # type: ignore[arg-type]
    await after.start()
    try:
        await clock.settle()
        assert sorted(jobs.ids) == ["alice/1", "bob/2"]
        [run] = list(store.recent_runs("alice", 1))
        assert (run.due_at, run.outcome) == (T0 + 1, "caught-up")
        assert run.detail == "due while the server was down; 3 run(s) missed, run once now"
        assert store.get(recurring.id).next_due == T0 + 4  # back on its period
        [run] = list(store.recent_runs("bob", 1))
        assert (run.outcome, run.detail) == ("caught-up", "due while the server was down; run now")
        assert not store.get(once.id).active
        jobs.end("alice/1")
        await clock.advance(0.5)
        assert [r.outcome for r in store.recent_runs("alice", 1)] == ["started", "caught-up"]
    finally:
        await after.close()
        store.close()


async def test_a_refused_owner_is_skipped_with_the_reason_until_allowed(world: World) -> None:
    clock, jobs = world.clock, world.jobs
    schedule = world.scheduler.create(spec(), "alice", clock.now() + 1, 1)
    world.refusals["alice"] = "the account alice is banned"
    await clock.advance(1)
    assert jobs.started == []
    assert world.runs(schedule.id) == [Run(T0 + 1, "skipped", "", "the account alice is banned")]
    del world.refusals["alice"]
    await clock.advance(1)
    assert jobs.ids == ["alice/1"]


async def test_a_run_that_cannot_start_is_recorded_and_the_period_goes_on(world: World) -> None:
    clock, jobs = world.clock, world.jobs
    failure = StartFailed("exec", errno.ENOENT, "cannot run no-such-program")
    jobs.failures["no-such-program"] = failure
    schedule = world.scheduler.create(spec("no-such-program"), "alice", clock.now(), 1)
    await clock.settle()
    await clock.advance(1)
    runs = world.runs(schedule.id)
    assert [(r.due_at, r.outcome, r.detail) for r in runs] == [
        (T0, "failed", str(failure)),
        (T0 + 1, "failed", str(failure)),
    ]
    assert world.store.get(schedule.id).next_due == T0 + 2


async def test_one_schedule_failing_unexpectedly_does_not_stop_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clock, jobs = world.clock, world.jobs
    jobs.failures["broken"] = RuntimeError("a bug")
    world.scheduler.create(spec("broken"), "alice", clock.now() + 1, None)
    other = world.scheduler.create(spec(), "bob", clock.now() + 2, None)
    await clock.advance(2)
    assert jobs.ids == ["bob/1"]
    assert world.runs(other.id)[0].outcome == "started"
    assert "schedule alice/s1 failed" in caplog.text


async def test_an_invalid_spec_makes_no_schedule(world: World) -> None:
    with pytest.raises(InvalidArgument):
        world.scheduler.create(JobSpec([]), "alice", world.clock.now(), None)
    assert world.store.select() == []
    await world.clock.advance(10)
    assert world.jobs.started == []


async def test_the_real_clock_is_the_default_and_waits_for_the_event_or_the_time() -> None:
    store = ScheduleStore(Path(":memory:"))
    try:
        assert isinstance(Scheduler(store, FakeJobs()).clock, SystemClock)  # type: ignore[arg-type]
    finally:
        store.close()
    clock = SystemClock()
    assert abs(clock.now() - time.time()) < 1
    event = asyncio.Event()
    began = time.monotonic()
    await clock.wait(event, 0.01)  # the time passes
    assert time.monotonic() - began >= 0.01
    asyncio.get_running_loop().call_soon(event.set)
    await asyncio.wait_for(clock.wait(event, None), 5)  # the event comes

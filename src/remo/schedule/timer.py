"""The scheduler: one task that sleeps until the earliest due time, never polls.

10,000 idle schedules cost one sleeping task and a heap: nothing runs between due
times. A run that is due starts a job through the JobManager; if the schedule's
previous run is still running, the new one is skipped and the skip is recorded. Runs
missed while the server was down run once at start-up (recorded as ``caught-up`` with
how many were missed), not once per missed period.

Time comes from a :class:`Clock`: the real one unless another is given, so tests can
move a schedule's time by hand instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from remo.backend import JobBackend
from remo.core.errors import JobNotFound, NameTaken, RemoError
from remo.core.spec import JobSpec
from remo.core.timeexpr import missed_runs
from remo.schedule.store import Run, Schedule, ScheduleStore

log = logging.getLogger("remo.schedule")


#: Why an owner's runs must not start now (a banned account, say), or None if they may.
Refusal = Callable[[str], str | None]


class Clock(Protocol):
    """What the timer needs of time."""

    def now(self) -> float:
        """The time now, unix seconds."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Return once ``event`` is set or ``timeout`` seconds have passed (``None``:
        only the event ends the wait)."""
        ...


class SystemClock:
    """The real time, and asyncio's timeouts."""

    def now(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class Scheduler:
    def __init__(
        self,
        store: ScheduleStore,
        jobs: JobBackend,
        refuse: Refusal | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``refuse`` is asked before every run; a reason skips the run, recorded.
        ``clock`` is the real time unless given."""
        self.store = store
        self.jobs = jobs
        self.refuse = refuse or (lambda _owner: None)
        self.clock: Clock = clock or SystemClock()
        self._heap: list[tuple[float, str]] = []
        self._schedules: dict[str, Schedule] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        now = self.clock.now()
        for schedule in self.store.select(active_only=True):
            self._schedules[schedule.id] = schedule
            if schedule.next_due is not None:
                heapq.heappush(self._heap, (schedule.next_due, schedule.id))
        self._task = asyncio.create_task(self._loop(startup=now))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- API ----------------------------------------------------------------------------

    def create(self, spec: JobSpec, owner: str, first_due: float, every: float | None) -> Schedule:
        spec.validate()
        if spec.name and (
            self.store.by_name(owner, spec.name) is not None
            or self.jobs.by_name_blocking(owner, spec.name) is not None
        ):
            raise NameTaken(spec.name)
        schedule = self.store.create(spec, owner, first_due, every)
        self._schedules[schedule.id] = schedule
        heapq.heappush(self._heap, (first_due, schedule.id))
        self._changed.set()
        return schedule

    def get(self, schedule_id: str) -> Schedule:
        return self.store.get(schedule_id)

    def by_name(self, owner: str, name: str) -> Schedule | None:
        """``owner``'s active schedule named ``name``, if any."""
        return self.store.by_name(owner, name)

    def latest_run(self, schedule: Schedule) -> str | None:
        """The id of the job the schedule started last, if any."""
        return self.store.last_job(schedule)

    def active(self, owner: str | None) -> list[Schedule]:
        """Schedules with runs still to come (``owner``'s, or everyone's)."""
        return self.store.select(owner, active_only=True)

    async def cancel(self, schedule_id: str, stop_running: bool, grace: float = 10.0) -> None:
        schedule = self.store.get(schedule_id)
        self._schedules.pop(schedule_id, None)  # its heap entry is skipped lazily
        if stop_running:
            for run in self.store.recent_runs(schedule.owner, schedule.seq, limit=1000):
                if run.job_id:
                    with contextlib.suppress(JobNotFound):
                        await self.jobs.stop(run.job_id, grace)
        self.store.delete(schedule)
        self._changed.set()

    # -- the timer ----------------------------------------------------------------------

    async def _loop(self, startup: float) -> None:
        while True:
            self._changed.clear()
            delay = self._heap[0][0] - self.clock.now() if self._heap else None
            if delay is None or delay > 0:
                await self.clock.wait(self._changed, delay)
                continue
            due, schedule_id = heapq.heappop(self._heap)
            schedule = self._schedules.get(schedule_id)
            if schedule is None or schedule.next_due != due:
                continue  # cancelled, or a stale entry
            try:
                await self._run(schedule, due, startup)
            except Exception:  # one bad schedule must not stop the others
                log.exception("schedule %s failed", schedule_id)

    async def _run(self, schedule: Schedule, due: float, startup: float) -> None:
        now = self.clock.now()
        outcome, detail, job_id = "started", "", ""
        missed = 0
        if schedule.every and due < startup:
            missed, _ = missed_runs(_dt(due), timedelta(seconds=schedule.every), _dt(now))
            outcome = "caught-up"
            detail = f"due while the server was down; {missed + 1} run(s) missed, run once now"
        elif due < startup:
            outcome, detail = "caught-up", "due while the server was down; run now"
        previous = self.store.last_job(schedule)
        if (refused := self.refuse(schedule.owner)) is not None:
            outcome, detail = "skipped", refused
        elif previous and await self._still_running(previous):
            # As the schedule's owner types it (job 71, not root/71): runs are the owner's.
            outcome, detail = "skipped", f"previous run {_local(previous)} is still running"
        else:
            try:
                job_id = await self.jobs.start(self._run_spec(schedule), schedule_id=schedule.id)
            except RemoError as err:
                outcome, detail = "failed", str(err)
        self.store.record(schedule, Run(due, outcome, job_id, detail))
        next_due = None
        if schedule.every:
            _, following = missed_runs(_dt(due), timedelta(seconds=schedule.every), _dt(now))
            next_due = following.timestamp()
        self.store.set_next(schedule, next_due)
        if next_due is None:
            self._schedules.pop(schedule.id, None)
        else:
            heapq.heappush(self._heap, (next_due, schedule.id))
        log.info("schedule %s: %s %s %s", schedule.id, outcome, job_id, detail)

    def _run_spec(self, schedule: Schedule) -> JobSpec:
        """The spec of the schedule's next run: a named schedule's runs are NAME#1,
        NAME#2... (unique, and found by the schedule's name)."""
        if not schedule.spec.name:
            return schedule.spec
        number = self.store.started_runs(schedule) + 1
        return dataclasses.replace(schedule.spec, name=f"{schedule.spec.name}#{number}")

    async def _still_running(self, job_id: str) -> bool:
        try:
            return not (await self.jobs.status(job_id)).ended
        except RemoError:
            return False


def _local(job_id: str) -> str:
    """``71`` for ``owner/71``: a job id as its owner types it."""
    return job_id.rpartition("/")[2]


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)

"""A job's end: decide how it ended, clean up after it, record it, then tell followers.

:func:`judge` is the one place that decides a job's :class:`~remo.core.outcome.JobEnd`
from what is known (the init's record, the init's own wait status, whether remo was
stopping it); it does no I/O. :class:`Finisher` does the rest, in this order: read
usage from the cgroup, kill what the job left behind and wait until the cgroup is
empty, write the final row (retried until it succeeds, e.g. on a full disk), then
create the ``exit`` marker (followers treat it as "every byte is written"), and only
then remove the empty cgroup: nothing of the job runs once its end is recorded, and
the removal (~0.6 ms over the v1 hierarchies, in a thread) is not on the path of a
``remo run`` waiting for that end. A supervisor that dies before the removal leaves an
empty cgroup that no row names; its successor removes it (:mod:`recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Any

from remo.core.backoff import delays
from remo.core.errors import RemoError
from remo.core.outcome import Dropped, JobEnd, Lost, Outcome, Signaled, Usage
from remo.core.outcome import wait_status_outcome as outcome_of
from remo.core.paths import StatePaths
from remo.core.status import signal_name
from remo.store.jobs import JobStore
from remo.supervisor.jobfiles import (
    InitRecord,
    read_init_record,
    remove_init_record,
    write_exit_marker,
)
from remo.supervisor.running import RunningJob

log = logging.getLogger("remo.supervisor")

#: How long to wait for a killed cgroup to empty before giving up on removing it.
EMPTY_TIMEOUT = 30.0

#: Why a re-adopted job's end needed no guessing.
READOPTED = "re-adopted after a supervisor restart; exit status recorded by its init"


def judge(
    job: RunningJob,
    init_status: int | None,
    record: InitRecord | None,
    usage: Usage,
    why: str = "",
    now: float | None = None,
) -> JobEnd:
    """How ``job`` ended.

    ``init_status`` is the wait status of the job's init when it was our child (None
    for a re-adopted init, whose status only its old parent could collect); ``record``
    is what the init wrote before exiting; ``why`` says why the status may be unknown.

    In order: the init's record is the truth. Without one, an init that was our child
    and was stopping the job died of remo's own SIGKILL of the whole cgroup: the job is
    ``stopped``. A re-adopted job remo was stopping, gone after the stop's deadline, was
    ended by that SIGKILL too. Otherwise nobody knows: ``lost``, never ``succeeded``.
    """
    dropped = record.dropped if record is not None else Dropped()
    outcome: Outcome
    note = ""
    if record is not None and record.wait_status is not None:
        outcome = outcome_of(record.wait_status)
        note = READOPTED if job.adopted else ""
    elif init_status is not None:
        if job.stop_requested:
            outcome = outcome_of(init_status)
        else:
            # Killed from outside (an admin's kill -9; the job's account cannot).
            how = (
                f"was killed by {signal_name(os.WTERMSIG(init_status))}"
                if os.WIFSIGNALED(init_status)
                else f"exited with code {os.waitstatus_to_exitcode(init_status)}"
            )
            outcome = Lost(why or f"the job's init {how} before it recorded the job's exit status")
    elif job.stop_requested and job.kill_at is not None and job.kill_at <= _now(now):
        outcome = Signaled(signal.SIGKILL)
    else:
        outcome = Lost(why or "exit status unknown")
    return JobEnd(outcome, job.stop_requested, usage, dropped, note, _now(now))


def _now(now: float | None) -> float:
    return time.time() if now is None else now


class Finisher:
    """Records the end of jobs; one task per ending job."""

    def __init__(
        self,
        paths: StatePaths,
        store: JobStore,
        kill: Callable[[RunningJob], Coroutine[Any, Any, None]],
        kill_supported: bool,
        on_ended: Callable[[RunningJob], None],
        on_settled: Callable[[], None] = lambda: None,
    ) -> None:
        """``kill`` SIGKILLs every process of a job; ``on_ended`` is called once its end
        is recorded and the marker written; ``on_settled`` once no end is being finished
        (its cgroup removed too)."""
        self.paths = paths
        self.store = store
        self._kill = kill
        self._kill_supported = kill_supported
        self._on_ended = on_ended
        self._on_settled = on_settled
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def finishing(self) -> bool:
        """Whether the end of some job is still being finished (the supervisor waits)."""
        return bool(self._tasks)

    def finish_soon(self, job: RunningJob, init_status: int | None, why: str = "") -> None:
        """Record the end of ``job`` in a task of its own (called from the reaper)."""
        task = asyncio.get_running_loop().create_task(self.finish(job, init_status, why))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._on_settled()

    async def finish(self, job: RunningJob, init_status: int | None, why: str = "") -> None:
        if job.kill_timer is not None:
            job.kill_timer.cancel()
        usage = Usage()
        emptied = False
        if not self._kill_supported and init_status is not None:
            # No cgroup to empty: what the job left behind is in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)
        if job.group is not None:
            try:
                usage = job.group.usage()
            except RemoError as err:
                log.warning("usage of %s unreadable: %s", job.key, err)
            emptied = await self._empty(job)
        # Also after a supervisor restart: the init recorded the job's own status.
        end = judge(job, init_status, read_init_record(job.status_file), usage, why)
        # The row first, then the marker: whoever sees the marker reads a final status.
        await self._record(job, end)
        remove_init_record(job.status_file)
        try:
            write_exit_marker(self.paths.job_dir(job.owner, job.seq), end)
        except OSError as err:
            # (Not a full disk: that gets an empty marker.) The end is recorded, so
            # stops and waits return and the supervisor goes on; followers, who wait
            # for the marker, wait on a filesystem that an operator must look at.
            log.error("cannot write the exit marker of %s: %s", job.key, err)
        self._on_ended(job)
        if emptied:
            await self._destroy(job)

    async def _record(self, job: RunningJob, end: JobEnd) -> None:
        """Write the final row; on a full disk keep retrying until space returns."""
        for delay in delays(0.1, 1.0):  # recorded within ~1 s of space returning
            try:
                self.store.finish(job.owner, job.seq, end)
                return
            except sqlite3.OperationalError as err:
                log.error("cannot record the end of %s (%s); retrying", job.key, err)
                await asyncio.sleep(delay)

    async def _empty(self, job: RunningJob) -> bool:
        """Kill what is left in the job's cgroup until it is empty; whether it is.

        Killed tasks leave the cgroup once the kernel has torn them down; this is not a
        follower's wait, so a short backoff is the simple, bounded way.
        """
        group = job.group
        assert group is not None
        backoff, deadline = delays(0.001, 0.05), time.monotonic() + EMPTY_TIMEOUT
        try:
            while group.populated():
                await self._kill(job)
                if time.monotonic() > deadline:
                    log.error("cgroup of %s does not empty; leaving it", job.key)
                    return False
                await asyncio.sleep(next(backoff))
        except RemoError as err:
            log.warning("cleanup of %s: %s", job.key, err)
            return False
        return True

    async def _destroy(self, job: RunningJob) -> None:
        """Remove the job's empty cgroup; it may retry on EBUSY with sleeps, so in a
        thread, off this loop."""
        assert job.group is not None
        try:
            await asyncio.to_thread(job.group.destroy)
        except RemoError as err:
            log.warning("cleanup of %s: %s", job.key, err)

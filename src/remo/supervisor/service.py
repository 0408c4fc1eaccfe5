"""The supervisor's state machine: start, stop, reap and record jobs.

Everything runs on one asyncio loop in one thread (cgroup removal, which may retry on
EBUSY, runs in a worker thread). A job's life here:

1. start (:mod:`remo.supervisor.starts`): a waiting init runs the command; the
   ``running`` row is written and the job enters the :class:`JobTable`.
2. end: the :class:`Reaper` collects the init's exit status (``SIGCHLD`` →
   ``waitpid``); the :class:`Finisher` decides the outcome, empties the cgroup,
   records the end, writes the ``exit`` marker, then removes the empty cgroup
   (:mod:`remo.supervisor.ending`).
3. stop: SIGTERM to every process of the job, SIGKILL to the cgroup at the deadline
   (kept in the row, so a restarted supervisor re-arms it); the reply is sent once step
   2 has recorded the end.
4. a restarted supervisor re-adopts the jobs it finds (:mod:`remo.supervisor.recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from remo.cgroups.base import CgroupDriver
from remo.core.errors import (
    InvalidArgument,
    JobNotRunning,
    JobStillRunning,
    RemoError,
    StartFailed,
)
from remo.core.paths import StatePaths
from remo.core.spec import JobSpec
from remo.core.usage import MIN_INTERVAL, LiveUsage, Sample, rates
from remo.store.jobs import JobStore, parse_job_id
from remo.supervisor import namespaces, recovery
from remo.supervisor.ending import Finisher
from remo.supervisor.init import FORWARDED_SIGNALS
from remo.supervisor.jobfiles import mark_stop
from remo.supervisor.options import EXEC_TIMEOUT
from remo.supervisor.reaper import Reaper
from remo.supervisor.running import JobTable, RunningJob, instance_tag
from remo.supervisor.spawn import InitPool
from remo.supervisor.starts import Starter, StartReply

__all__ = ["RunningJob", "Supervisor", "instance_tag"]

log = logging.getLogger("remo.supervisor")

#: Longest grace period a stop may ask for.
MAX_GRACE = 3600.0
#: Finished jobs a purge removes per transaction.
PURGE_BATCH = 500


class Supervisor:
    """Owns every running job of one state directory."""

    def __init__(
        self,
        paths: StatePaths,
        store: JobStore,
        driver: CgroupDriver,
        on_idle: Callable[[], None] = lambda: None,
        use_namespaces: bool = True,
        exec_timeout: float = EXEC_TIMEOUT,
    ) -> None:
        self.paths = paths
        self.store = store
        self.driver = driver
        #: Called when the last job's end is finished (its cgroup removed too) or the
        #: last start is over.
        self.on_idle = on_idle
        self.tag = instance_tag(paths)
        self.reaper = Reaper()
        self.running = JobTable()
        self._kill_supported = "kill" in driver.supported()
        self._tasks: set[asyncio.Task[None]] = set()
        self.can_isolate = use_namespaces and namespaces.probe(
            namespaces.CLONE_NEWPID | namespaces.CLONE_NEWNS
        )
        self.can_isolate_network = namespaces.probe(namespaces.CLONE_NEWNET)
        self.finisher = Finisher(
            paths, store, self._kill, self._kill_supported, self._ended, self._settled
        )
        self.starter = Starter(
            paths,
            store,
            driver,
            self.reaper,
            self.tag,
            exec_timeout,
            self.isolation_for,
            self._track,
            lambda: self.on_idle(),
            self.can_isolate,
        )

    @property
    def pool(self) -> InitPool:
        return self.starter.pool

    def reap(self) -> None:
        """SIGCHLD handler."""
        self.reaper.reap()

    def isolation_for(self, spec: JobSpec) -> namespaces.Isolation:
        """PID and mount namespaces whenever the kernel lets us; network as asked.

        ``network=none`` is a requirement, not a wish: without network namespaces the
        start fails rather than run a job with network access it was denied.
        """
        if spec.network == "none" and not self.can_isolate_network:
            raise StartFailed(
                "namespace", None, "network isolation was required but is unavailable here"
            )
        if spec.private_tmp and not self.can_isolate:
            raise StartFailed(
                "namespace",
                None,
                "a private /tmp was required but mount namespaces are unavailable",
            )
        return namespaces.Isolation(
            pid=self.can_isolate,
            mount=self.can_isolate,
            network_none=spec.network == "none",
            private_tmp=spec.private_tmp,
        )

    def warnings(self) -> list[str]:
        out = list(self.driver.warnings())
        if not self.can_isolate:
            out.append("no PID/mount namespaces: jobs see every process and mount of the host")
        if not self.can_isolate_network:
            out.append("no network namespaces: --network none is refused")
        return out

    @property
    def busy(self) -> bool:
        """Jobs run, are being started or their ends finished: the supervisor must not
        exit."""
        return bool(len(self.running)) or self.starter.in_flight > 0 or self.finisher.finishing

    # -- start and end ----------------------------------------------------------------

    async def start(
        self,
        spec: JobSpec,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: str | None = None,
    ) -> StartReply:
        """Start a job; see :meth:`remo.supervisor.starts.Starter.start`."""
        return await self.starter.start(spec, schedule_id, request_id, stdin)

    def _track(self, job: RunningJob) -> None:
        """A job our child init started: its end comes through the reaper."""
        self.running.add(job)
        self.reaper.watch(job.pid, lambda status: self.finisher.finish_soon(job, status))

    def _ended(self, job: RunningJob) -> None:
        self.running.remove(job)
        if not job.ended.done():
            job.ended.set_result(None)

    def _settled(self) -> None:
        """No job end is being finished: the last one may have been all there was."""
        if not self.busy:
            self.on_idle()

    def recover(self) -> None:
        """Take over jobs a previous supervisor left: adopt live ones, close the rest."""
        recovery.recover(self)

    # -- stop -------------------------------------------------------------------------

    async def stop(self, job_id: str, grace: float) -> None:
        """Ask the job to end; return once its end is recorded. Idempotent."""
        if not (0 <= grace <= MAX_GRACE):
            raise InvalidArgument(f"grace must be between 0 and 3600 seconds, got {grace}")
        job = self.running.get(job_id)
        if job is None:
            self.store.get(job_id)  # raises JobNotFound for unknown ids
            return
        kill_at = time.time() + grace
        if not job.stop_requested:
            job.stop_requested = True
            self._signal(job, signal.SIGTERM)
        # A repeated stop may bring the deadline forward, and re-arms a missing timer.
        if job.kill_at is None or kill_at < job.kill_at or job.kill_timer is None:
            job.kill_at = min(kill_at, job.kill_at or kill_at)
            self.arm_kill(job)
            self._record_stop(job)
        await asyncio.shield(job.ended)

    def _record_stop(self, job: RunningJob) -> None:
        assert job.kill_at is not None
        try:
            self.store.mark_stop_requested(job.owner, job.seq, job.kill_at)
        except sqlite3.OperationalError as err:
            # A full disk must not stop the stop, nor a restarted supervisor forget it:
            # the stop goes into an empty file's name (no data block needed).
            log.error("cannot record the stop of %s (%s); stopping anyway", job.key, err)
            mark_stop(self.paths.job_dir(job.owner, job.seq), job.kill_at)

    async def kill(self, job_id: str, sig: int) -> None:
        """Send ``sig`` to every process of the running job, once: no grace, no
        escalation (``docker kill -s``). SIGKILL is a stop without grace period."""
        if not 1 <= sig < signal.NSIG:
            raise InvalidArgument(f"no signal {sig}", field="signal")
        job = self.running.get(job_id)
        if job is None:
            self.store.get(job_id)  # raises JobNotFound for unknown ids
            raise JobNotRunning(job_id)
        if sig == signal.SIGKILL:
            # SIGKILL takes the job's init too, which then cannot record the end: it is
            # a stop without SIGTERM nor grace (the job ends "stopped" by SIGKILL).
            job.stop_requested = True
            job.kill_at = time.time()
            self._record_stop(job)
            await self._kill(job)
            await asyncio.shield(job.ended)
        elif job.pid_namespace and sig not in FORWARDED_SIGNALS and job.group is not None:
            # The init forwards only the stop signals; others go to each process.
            job.group.signal_all(sig)
        else:
            self._signal(job, sig)

    def arm_kill(self, job: RunningJob) -> None:
        """SIGKILL the job at ``job.kill_at`` (at once if that has passed)."""
        if job.kill_timer is not None:
            job.kill_timer.cancel()
        assert job.kill_at is not None
        delay = max(0.0, job.kill_at - time.time())
        job.kill_timer = asyncio.get_running_loop().call_later(delay, self._kill_soon, job)

    def _kill_soon(self, job: RunningJob) -> None:
        task = asyncio.get_running_loop().create_task(self._kill(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _signal(self, job: RunningJob, sig: int) -> None:
        # SIGTERM goes to every process of the job, so a tree whose members ignore their
        # parent's death still hears it; processes that started their own session too.
        # In a PID namespace the init does that fan-out (kill(-1) from PID 1).
        if job.pid_namespace and sig != signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.pid, sig)
        elif job.group is not None and self._kill_supported:
            job.group.signal_all(sig)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, sig)

    async def _kill(self, job: RunningJob) -> None:
        """SIGKILL every process of the job. Through the freezer (pure v1) this waits
        for the group to freeze, so it runs in a worker thread, off this loop."""
        if job.group is not None and self._kill_supported:
            try:
                await asyncio.to_thread(job.group.kill)
            except RemoError as err:
                log.warning("kill of %s failed: %s", job.key, err)
        else:
            self._signal(job, signal.SIGKILL)

    # -- usage ------------------------------------------------------------------------

    async def live_usage(self, job_ids: list[str] | None) -> dict[str, LiveUsage]:
        """What each running job of ``job_ids`` (None: every running job) uses now, with
        rates over the time since the last reading (or since its start); ended or
        unknown ids are left out. The cgroup files are read in a worker thread: a
        thousand jobs are thousands of reads."""
        if job_ids is None:
            jobs = [job for job in self.running.all() if job.group]
        else:
            jobs = [job for job_id in job_ids if (job := self.running.get(job_id)) and job.group]
        samples = await asyncio.to_thread(
            lambda: [(job, job.group.sample(time.time())) for job in jobs if job.group]
        )
        found: dict[str, LiveUsage] = {}
        for job, sample in samples:
            before = job.last_sample
            if before is None:
                started = self.store.get(job.key).started_at
                before = Sample(started, cpu_seconds=0.0, io_read_bytes=0, io_write_bytes=0)
            found[job.key] = rates(before, sample)
            if sample.at - before.at >= MIN_INTERVAL:
                job.last_sample = sample
        return found

    # -- remove -----------------------------------------------------------------------

    async def remove(self, job_id: str) -> None:
        """Remove a finished job's row, then its files (outside the loop: a large output
        takes a second to delete, which must not delay other clients' calls)."""
        if job_id in self.running:
            raise JobStillRunning(job_id)
        self.store.get(job_id)
        owner, seq = parse_job_id(job_id)
        self.store.delete(owner, seq)
        await asyncio.to_thread(shutil.rmtree, self.paths.job_dir(owner, seq), True)

    async def purge(self, older_than: float) -> int:
        """Remove records and output of jobs that ended more than ``older_than`` s ago,
        oldest first, in bounded batches (a batch's rows in one transaction, its files
        outside the loop), so that a purge of 100,000 jobs stalls nothing."""
        if older_than < 0:
            raise InvalidArgument("retention must not be negative")
        cutoff, removed = time.time() - older_than, 0
        while batch := self.store.ended_before(cutoff, PURGE_BATCH):
            self.store.delete_many(batch)
            dirs = [self.paths.job_dir(owner, seq) for owner, seq in batch]
            await asyncio.to_thread(_remove_all, dirs)
            removed += len(batch)
        return removed


def _remove_all(dirs: list[Path]) -> None:
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)

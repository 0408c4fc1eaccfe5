"""The supervisor's state machine: start, stop, reap and record jobs.

Everything runs on one asyncio loop in one thread. A job's life here:

1. ``start``: allocate ``owner/n``, hand the job to a waiting init, create the output
   file, set the limits on the init's cgroup, wait for its report (see
   :mod:`remo.supervisor.spawn`), insert the ``running`` row.
2. ``SIGCHLD`` → ``waitpid``: the main process ended. Read usage from the cgroup, kill
   whatever the job left behind in it (setsid'd or double-forked helpers die with the
   job), wait until the cgroup is empty, remove it, record the final state, and only
   then create the ``exit`` marker: followers treat it as "every byte is written".
3. ``stop``: SIGTERM to every process of the job, SIGKILL to the cgroup after the grace
   period; the reply is sent once step 2 has recorded the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remo.cgroups.base import CgroupDriver, JobGroup, Usage
from remo.core.errors import (
    InvalidArgument,
    JobStillRunning,
    RemoError,
    ResourceExhausted,
    StartFailed,
)
from remo.core.paths import EXIT_FILE, OUTPUT_FILE, STATUS_FILE, StatePaths
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState, signal_name
from remo.store.jobs import JobStore, job_key, parse_job_id
from remo.supervisor import accounts, init, namespaces
from remo.supervisor.options import EXEC_TIMEOUT
from remo.supervisor.spawn import (
    InitPool,
    SpawnRequest,
    WaitingInit,
    parse_report,
    read_report,
)

log = logging.getLogger("remo.supervisor")

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: New jobs are refused when the state dir's filesystem has less than this free.
MIN_FREE_BYTES = 4 << 20

#: How long to wait for a killed cgroup to empty before giving up on removing it.
_EMPTY_TIMEOUT = 30.0
#: How long a failed start waits for its killed init to exit before leaving the cleanup
#: to the reaper.
INIT_EXIT_TIMEOUT = 5.0


@dataclass
class RunningJob:
    owner: str
    seq: int
    #: The job's init (our child): see :mod:`remo.supervisor.init`.
    pid: int
    group: JobGroup | None
    #: Where the init records the job's own wait status and output counts.
    status_file: Path
    pid_namespace: bool = False
    adopted: bool = False
    stop_requested: bool = False
    #: When the stop escalates to SIGKILL (unix time), kept in the job's row too.
    kill_at: float | None = None
    kill_timer: asyncio.TimerHandle | None = None
    ended: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def key(self) -> str:
        return job_key(self.owner, self.seq)


def instance_tag(paths: StatePaths) -> str:
    """A short tag of the state dir: several remo servers may share one ``remo`` cgroup
    parent (they run in the same cgroup), so each only ever touches its own groups."""
    return hashlib.sha256(str(paths.root).encode()).hexdigest()[:8]


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
        self.exec_timeout = exec_timeout
        #: Whether waiting inits get their job's directory ahead of time (see _take_files).
        self._make_spares = True
        self.on_idle = on_idle
        self._tag = instance_tag(paths)
        self._spawning = 0
        #: Starts with a request id under way, by (owner, request id): a repeat waits.
        self._starting: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._unclaimed: dict[int, int] = {}
        self.store = store
        self.driver = driver
        self.running: dict[int, RunningJob] = {}  # by main pid
        self.by_key: dict[str, RunningJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._kill_supported = "kill" in driver.supported()
        self.can_isolate = use_namespaces and namespaces.probe(
            namespaces.CLONE_NEWPID | namespaces.CLONE_NEWNS
        )
        self.can_isolate_network = namespaces.probe(namespaces.CLONE_NEWNET)
        self.pool = InitPool(
            self.can_isolate, str(paths.root), self._prepare_init, self._discard_init
        )

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
        """Jobs run or are being started: the supervisor must not exit."""
        return bool(self.running) or self._spawning > 0

    def cgroup_name(self, owner: str, seq: int) -> str:
        return f"{self._tag}-{owner}-{seq}"

    # -- start ------------------------------------------------------------------------

    async def start(
        self, spec: JobSpec, schedule_id: str | None = None, request_id: str = ""
    ) -> dict[str, Any]:
        """Start a job; return once it has exec'd (or raise why it could not).

        Not to be cancelled half-way (the request handler lets it finish when its client
        goes away): the job is either started and tracked or not started at all.

        With a ``request_id``, a start is done at most once per owner and id: a repeat
        (a client retrying after a lost reply, perhaps through a new API server) gets
        the first one's job, or waits for the first one's outcome while it is under way.
        """
        spec.validate()
        owner = spec.owner or accounts.current_account_name()
        if not request_id:
            return await self._start(spec, owner, schedule_id, "")
        if (done := self.store.by_request(owner, request_id)) is not None:
            status = self.store.get(done)
            return {"id": done, "pid": status.pid, "started_at": status.started_at}
        key = (owner, request_id)
        if (under_way := self._starting.get(key)) is not None:
            return await asyncio.shield(under_way)
        outcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        self._starting[key] = outcome
        try:
            reply = await self._start(spec, owner, schedule_id, request_id)
        except BaseException as err:
            outcome.set_exception(err)
            raise
        finally:
            del self._starting[key]
        outcome.set_result(reply)
        return reply

    async def _start(
        self, spec: JobSpec, owner: str, schedule_id: str | None, request_id: str
    ) -> dict[str, Any]:
        account = accounts.resolve(owner)
        isolation = self.isolation_for(spec)
        cwd = spec.cwd or (account.home if os.path.isdir(account.home) else "/")
        self._check_free_space()
        request = SpawnRequest(
            argv=spec.argv,
            env=accounts.job_environment(account, dict(spec.env or {})),
            cwd=cwd,
            account=account,
            isolation=isolation,
            output_cap=spec.limits.output_bytes,
        )
        spec = dataclasses.replace(spec, owner=owner, cwd=cwd)
        # While a start is on its way, an init that exits before it is tracked (a job
        # that ends at once) has its status kept in _unclaimed.
        self._spawning += 1
        try:
            job, pid, started = await self._spawn(spec, request, schedule_id, request_id)
        finally:
            self._spawning -= 1
            if not self._spawning:
                self.on_idle()  # a start that failed may have been all there was to do
        return {"id": job.key, "pid": pid, "started_at": started}

    async def _spawn(
        self, spec: JobSpec, request: SpawnRequest, schedule_id: str | None, request_id: str
    ) -> tuple[RunningJob, int, float]:
        """Hand the job to a waiting init and record it; undo everything on failure.

        The order hides latency: the init gets the request and decodes it while we
        create the job's files and set its limits; then it gets the descriptors, starts
        the command and reports, and the job's row is written with its pid.
        """
        owner = spec.owner
        assert owner is not None
        try:
            seq = self.store.allocate(owner)
        except sqlite3.OperationalError as err:
            raise self._storage_error(err) from err
        job_dir = self.paths.job_dir(owner, seq)
        try:
            waiting = await self.pool.send(request)
        except BaseException:
            self.store.release(owner, seq)
            raise
        group: JobGroup | None = None
        try:
            try:
                self._take_files(job_dir, waiting)
                if waiting.group is not None:
                    group = waiting.group  # the init is in it already
                    join = self.driver.apply(group, spec.limits)
                else:
                    group = self.driver.create(self.cgroup_name(owner, seq), spec.limits)
                    join = group.join_files()
                waiting.fds.extend(os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in join)
                self.pool.hand_over(waiting)
                try:
                    # (asyncio.timeout, unlike wait_for, makes no task: ~30 µs less per start)
                    async with asyncio.timeout(self.exec_timeout):
                        report = await read_report(waiting.sock)
                except TimeoutError:
                    raise StartFailed(
                        "exec",
                        errno.ETIMEDOUT,
                        f"{spec.argv[0]} did not start within {self.exec_timeout:g} s "
                        "(its program could not be read, or a set-up step hung)",
                    ) from None
            finally:
                waiting.close()
                # The replacement init is forked once this start has replied: no await
                # comes between here and the reply on success (see replenish).
                asyncio.get_running_loop().call_soon(self.pool.replenish)
            spawned = parse_report(waiting.pid, report, request.isolation.pid)
            started = time.time()
            try:
                self.store.insert_running(
                    owner,
                    seq,
                    spec,
                    spawned.job,
                    spawned.init,
                    started,
                    request.isolation.labels(),
                    schedule_id,
                    "" if self.driver.name == "none" else group.name,
                    request_id,
                )
            except BaseException:
                # A job nobody knows about must not run.
                _kill_quietly(waiting.pid, group)
                raise
        except BaseException as err:
            # Before any await: the spare's name is the init's pid, which a replacement
            # init may get once this one is reaped.
            shutil.rmtree(waiting.spare or job_dir, ignore_errors=True)
            if await self._end_init(waiting.pid, group):
                self.store.release(owner, seq)
            if isinstance(err, sqlite3.OperationalError):
                raise self._storage_error(err) from err
            if isinstance(err, OSError | StartFailed) and err.errno in _DISK_FULL:
                raise self._storage_error(err) from err
            if isinstance(err, OSError):
                raise StartFailed("setup", err.errno, "cannot prepare the job") from err
            raise
        job = RunningJob(
            owner, seq, waiting.pid, group, job_dir / STATUS_FILE, request.isolation.pid
        )
        self._track(job)
        self.pool.taken.discard(waiting.pid)
        if (early := self._unclaimed.pop(waiting.pid, None)) is not None:
            self._spawn_task(self._finish(job, wait_status=early))  # it already ended
        return job, spawned.job, started

    def _take_files(self, job_dir: Path, waiting: WaitingInit) -> None:
        """Put the job's directory in place: the init's spare one, renamed, or (when it
        could not be made ahead of time) a new one."""
        if waiting.spare is not None:
            try:
                _rename_spare(waiting.spare, job_dir)
                waiting.spare = None
                return
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                # jobs/ is on another filesystem than the state dir (a symlink to a
                # bigger disk): spares cannot be renamed there; stop making them.
                log.info("jobs/ is on another filesystem: job directories are made at start")
                self._make_spares = False
                self._discard_spare(waiting)
        _create_files(job_dir, waiting.fds)

    @staticmethod
    def _discard_spare(waiting: WaitingInit) -> None:
        """Close the spare files' descriptors (the first two of ``fds``) and remove them."""
        for fd in waiting.fds:
            os.close(fd)
        waiting.fds.clear()
        if waiting.spare is not None:
            shutil.rmtree(waiting.spare, ignore_errors=True)
            waiting.spare = None

    def _prepare_init(self, waiting: WaitingInit) -> None:
        """Make what a new waiting init's job will need, so that its start does not pay
        for it: the cgroup it waits in (no limits yet; a start pays no migration) and its
        job's directory and files. What cannot be made now is made at the start."""
        if self.driver.name != "none":
            try:
                waiting.group = self.driver.create(f"{self._tag}-init-{waiting.pid}", Limits())
            except RemoError as err:
                log.warning("no cgroup for a waiting init: %s", err)
        if not self._make_spares:
            return
        waiting.spare = self.paths.spare_dir / str(waiting.pid)
        try:
            _create_files(waiting.spare, waiting.fds)
        except OSError as err:  # a full disk: the start makes them (and says why not)
            log.warning("no job directory made ahead for init %d: %s", waiting.pid, err)
            self._discard_spare(waiting)

    def _discard_init(self, waiting: WaitingInit) -> None:
        """Remove what was made for an init that will not get a job."""
        if waiting.group is not None:
            _destroy_quietly(waiting.group)
        self._discard_spare(waiting)

    async def _end_init(self, pid: int, group: JobGroup | None) -> bool:
        """End the init of a start that failed, and remove its cgroup; True once done.

        An init that reported a failure has exited already; one that did not (the start
        was cancelled, or the program's exec stalled) is killed with everything it
        started. The waits are bounded: a process stuck in the kernel (a read from a
        hung filesystem) cannot die until that read returns, and a start must not hang
        with it. Its cgroup is then removed by the reaper once it is gone, and False
        says that its job number stays taken (the cgroup may carry it).
        """
        try:
            if self._unclaimed.pop(pid, None) is None:
                _kill_quietly(pid, group)  # not reaped yet, so the pid is still this init's
                # The init's session: its job too, when there is neither a PID namespace
                # nor a cgroup to kill it by.
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                waiter = self._child_exit(pid)
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), INIT_EXIT_TIMEOUT)
                except TimeoutError:
                    log.error(
                        "the init (pid %d) of a failed start does not exit; cleaning up "
                        "after it once it does",
                        pid,
                    )
                    if group is not None:
                        waiter.add_done_callback(lambda _: _destroy_quietly(group))
                    return False
            if group is not None:
                # Without a PID namespace the init is reaped before its killed child has
                # left the cgroup.
                deadline = time.monotonic() + INIT_EXIT_TIMEOUT
                while group.populated() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                group.destroy()
            return True
        except RemoError as err:
            log.warning("cgroup of a failed start not removed: %s", err)
            return False
        finally:
            self.pool.taken.discard(pid)

    def _child_exit(self, pid: int) -> asyncio.Future[int]:
        """A future for the exit status of a child the reaper does not track as a job."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if pid in self._unclaimed:
            waiter.set_result(self._unclaimed.pop(pid))
            return waiter
        self._waiters[pid] = waiter
        self.reap()  # it may have exited before its SIGCHLD was handled
        return waiter

    def _check_free_space(self) -> None:
        """Refuse new jobs before the disk is completely full: the space left is what
        running jobs' output and their final records need."""
        stats = os.statvfs(self.paths.root)
        free = stats.f_bavail * stats.f_frsize
        if free < MIN_FREE_BYTES:
            raise ResourceExhausted(
                f"the server's disk is full ({free >> 10} KiB free in {self.paths.root}); "
                "no new jobs until space is freed (remo rm old jobs); running jobs continue"
            )

    def _storage_error(self, err: Exception) -> ResourceExhausted:
        log.error("cannot record a job: %s", err)
        return ResourceExhausted(
            f"the server cannot store a new job ({err}): its disk may be full; "
            "running jobs are not affected"
        )

    def _track(self, job: RunningJob) -> None:
        self.running[job.pid] = job
        self.by_key[job.key] = job

    # -- stop -------------------------------------------------------------------------

    async def stop(self, job_id: str, grace: float) -> None:
        """Ask the job to end; return once its end is recorded. Idempotent."""
        if not (0 <= grace <= 3600):
            raise InvalidArgument(f"grace must be between 0 and 3600 seconds, got {grace}")
        job = self.by_key.get(job_id)
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
            self._arm_kill(job)
            try:
                self.store.mark_stop_requested(job.owner, job.seq, job.kill_at)
            except sqlite3.OperationalError as err:
                # A full disk must not stop the stop: only a supervisor restart before
                # the deadline would then lose it (it would escalate at once instead).
                log.error("cannot record the stop of %s (%s); stopping anyway", job.key, err)
        await asyncio.shield(job.ended)

    def _arm_kill(self, job: RunningJob) -> None:
        """SIGKILL the job at ``job.kill_at`` (at once if that has passed)."""
        if job.kill_timer is not None:
            job.kill_timer.cancel()
        assert job.kill_at is not None
        delay = max(0.0, job.kill_at - time.time())
        job.kill_timer = asyncio.get_running_loop().call_later(delay, self._kill, job)

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

    def _kill(self, job: RunningJob) -> None:
        if job.group is not None and self._kill_supported:
            try:
                job.group.kill()
            except RemoError as err:
                log.warning("kill of %s failed: %s", job.key, err)
        else:
            self._signal(job, signal.SIGKILL)

    # -- remove -----------------------------------------------------------------------

    def remove(self, job_id: str) -> None:
        if job_id in self.by_key:
            raise JobStillRunning(job_id)
        self.store.get(job_id)
        owner, seq = parse_job_id(job_id)
        self.store.delete(owner, seq)
        shutil.rmtree(self.paths.job_dir(owner, seq), ignore_errors=True)

    def purge(self, older_than: float) -> int:
        """Remove records and output of jobs that ended more than ``older_than`` s ago."""
        if older_than < 0:
            raise InvalidArgument("retention must not be negative")
        removed = 0
        for owner, seq in self.store.ended_before(time.time() - older_than):
            self.store.delete(owner, seq)
            shutil.rmtree(self.paths.job_dir(owner, seq), ignore_errors=True)
            removed += 1
        return removed

    # -- reaping ----------------------------------------------------------------------

    def reap(self) -> None:
        """SIGCHLD handler: collect every exited child without blocking."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.running.get(pid)
            if job is None:
                if pid == self.pool.spawner_pid:
                    self.pool.spawner_exited()
                elif self.pool.forget(pid):
                    pass  # a waiting init died
                elif (waiter := self._waiters.pop(pid, None)) is not None:
                    waiter.set_result(wait_status)
                elif pid in self.pool.taken:
                    self._unclaimed[pid] = wait_status  # a start's init, not yet tracked
                # otherwise an orphaned descendant re-parented to us (we are a subreaper)
                continue
            self._spawn_task(self._finish(job, wait_status=wait_status))

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, job: RunningJob, wait_status: int | None, reason: str = "") -> None:
        """Record the end of ``job``: usage, leftovers killed, cgroup removed, marker written."""
        if job.kill_timer is not None:
            job.kill_timer.cancel()
        usage = Usage(None, None, 0)
        if not self._kill_supported and wait_status is not None:
            # No cgroup to empty: what the job left behind is in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)
        if job.group is not None:
            try:
                usage = job.group.usage()
            except RemoError as err:
                log.warning("usage of %s unreadable: %s", job.key, err)
            await self._empty_and_destroy(job)
        # Also after a supervisor restart: the init recorded the job's own status.
        recorded = _read_init_record(job.status_file)
        dropped = recorded.dropped if recorded is not None else Dropped(0, False)
        if recorded is not None and recorded.wait_status is not None:
            wait_status = recorded.wait_status
            if job.adopted:
                reason = "re-adopted after a supervisor restart; exit status recorded by its init"
        elif wait_status is not None:
            # The init died before recording the job's status: its own end says nothing
            # about how the job ended (see _unrecorded).
            wait_status, reason = _unrecorded(job, wait_status, reason)
        elif job.stop_requested and job.kill_at is not None and job.kill_at <= time.time():
            # Not our child (re-adopted), no record: the init died with the job, and
            # after a stop's deadline that is remo's own SIGKILL (the init outlives TERM).
            wait_status, reason = signal.SIGKILL, ""
        fields = _final_fields(job, wait_status, usage, reason)
        fields["output_truncated"] = int(dropped.bytes > 0)
        fields["output_dropped_bytes"] = dropped.bytes
        fields["output_dropped_disk_full"] = int(dropped.disk_full)
        # The row first, then the marker: whoever sees the marker reads a final status.
        await self._record_end(job, fields)
        _write_exit_marker(self.paths.job_dir(job.owner, job.seq), fields)
        del self.running[job.pid]
        del self.by_key[job.key]
        if not job.ended.done():
            job.ended.set_result(None)
        if not self.running:
            self.on_idle()

    async def _record_end(self, job: RunningJob, fields: dict[str, Any]) -> None:
        """Write the final row; on a full disk keep retrying until space returns."""
        delay = 0.1
        while True:
            try:
                self.store.finish(job.owner, job.seq, **fields)
                return
            except sqlite3.OperationalError as err:
                log.error("cannot record the end of %s (%s); retrying", job.key, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _empty_and_destroy(self, job: RunningJob) -> None:
        group = job.group
        assert group is not None
        delay, deadline = 0.001, time.monotonic() + _EMPTY_TIMEOUT
        try:
            while group.populated():
                self._kill(job)
                if time.monotonic() > deadline:
                    log.error("cgroup of %s does not empty; leaving it", job.key)
                    return
                # Killed tasks leave the cgroup once the kernel has torn them down; this
                # is not a follower's wait, so a short backoff is the simple, bounded way.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            group.destroy()
        except RemoError as err:
            log.warning("cleanup of %s: %s", job.key, err)

    # -- recovery ---------------------------------------------------------------------

    def recover(self) -> None:
        """Take over jobs a previous supervisor left: adopt live ones, close the rest."""
        shutil.rmtree(self.paths.spare_dir, ignore_errors=True)  # its inits' directories
        known: set[str] = set()
        for status in self.store.list(running_only=True, limit=1 << 30):
            owner, seq = parse_job_id(status.id)
            known.add(name := status.cgroup or self.cgroup_name(owner, seq))
            group = self.driver.open(name)
            init_pid = self.store.init_pid(owner, seq)
            job = RunningJob(
                owner,
                seq,
                init_pid,
                group,
                self.paths.job_dir(owner, seq) / STATUS_FILE,
                "pid" in status.isolation,
                adopted=True,
            )
            job.stop_requested, job.kill_at = self.store.stop_requested(owner, seq)
            alive = (
                init_pid > 0 and _is_alive(init_pid) and (group is None or init_pid in group.pids())
            )
            self._track(job)
            if alive and self._watch_adopted(job):
                log.info("re-adopted %s (pid %s)", job.key, job.pid)
                if job.stop_requested:
                    # The stop outlives the supervisor that took it: escalate at its
                    # deadline (rows from before deadlines were kept: at once).
                    job.kill_at = job.kill_at if job.kill_at is not None else time.time()
                    self._arm_kill(job)
                continue
            self._spawn_task(
                self._finish(job, None, "the job ended while no supervisor was running")
            )
        for name in self.driver.list_names():
            if (
                name.startswith(f"{self._tag}-")
                and name not in known
                and (group := self.driver.open(name)) is not None
            ):
                _destroy_quietly(group)

    def _watch_adopted(self, job: RunningJob) -> bool:
        """Watch a job that is not our child: a pidfd turns readable when it exits."""
        try:
            pidfd = os.pidfd_open(job.pid)
        except OSError:
            return False
        loop = asyncio.get_running_loop()

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            reason = "exit status unknown: the supervisor was restarted while the job ran"
            self._spawn_task(self._finish(job, None, reason))

        loop.add_reader(pidfd, exited)
        return True

    # -- queries used by the request handler --------------------------------------------


def _unrecorded(job: RunningJob, init_status: int, reason: str) -> tuple[int | None, str]:
    """The job's wait status and reason when its init ended without recording one.

    After a stop, remo's own SIGKILL of the whole cgroup explains it: the job is
    ``stopped``. Otherwise the init was killed from outside (an admin's kill -9; the job's
    account cannot) and the job's own outcome is unknown: ``lost``, never ``succeeded``.
    """
    if job.stop_requested:
        return init_status, reason
    how = (
        f"was killed by {signal_name(os.WTERMSIG(init_status))}"
        if os.WIFSIGNALED(init_status)
        else f"exited with code {os.waitstatus_to_exitcode(init_status)}"
    )
    return None, reason or f"the job's init {how} before it recorded the job's exit status"


def _final_fields(
    job: RunningJob, wait_status: int | None, usage: Usage, reason: str
) -> dict[str, Any]:
    exit_code = sig = None
    if wait_status is None:
        state = JobState.LOST
    elif os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        state = JobState.STOPPED if job.stop_requested else JobState.KILLED
    else:
        exit_code = os.waitstatus_to_exitcode(wait_status)
        if job.stop_requested:
            state = JobState.STOPPED
        else:
            state = JobState.SUCCEEDED if exit_code == 0 else JobState.FAILED
    # The kernel counts OOM kills per cgroup, not per process: the main process was the
    # victim when it died of SIGKILL that remo did not send while the counter rose.
    oom = sig == signal.SIGKILL and not job.stop_requested and usage.oom_kills > 0
    if oom and not reason:
        reason = "killed by the out-of-memory killer: the job exceeded its memory limit"
    elif wait_status is None and usage.oom_kills:
        reason += f" ({usage.oom_kills} out-of-memory kill(s) in the job's cgroup)"
    return {
        "state": state,
        "exit_code": exit_code,
        "signal": sig,
        "cpu_seconds": usage.cpu_seconds,
        "peak_memory_bytes": usage.peak_memory_bytes,
        "oom_killed": int(oom),
        "oom_kills": usage.oom_kills,
        "reason": reason,
        "ended_at": time.time(),
    }


@dataclass(frozen=True)
class Dropped:
    """Output the init dropped: past the job's cap, or while the disk was full."""

    bytes: int
    disk_full: bool


@dataclass(frozen=True)
class InitRecord:
    """What the init wrote: the job's wait status (None while it ran: the init died
    before the end, but its drop counts were kept) and the output it dropped."""

    wait_status: int | None
    dropped: Dropped


def _read_init_record(status_file: Path) -> InitRecord | None:
    """The init's record (``<status or -> <written> <dropped> [<disk full>]``), or None
    when it wrote none (killed with the job at the end of a stop, before any drop)."""
    try:
        fields = status_file.read_text().split()
        status_file.unlink()
    except OSError:
        return None
    if len(fields) not in (3, 4) or not all(f.isdigit() for f in fields[1:]):
        return None
    if fields[0] != "-" and not fields[0].isdigit():
        return None
    disk_full = len(fields) == 4 and fields[3] == "1"
    wait_status = None if fields[0] == "-" else int(fields[0])
    return InitRecord(wait_status, Dropped(int(fields[2]), disk_full))


def _write_exit_marker(job_dir: Path, fields: dict[str, Any]) -> None:
    """Atomically create ``exit``: its appearance tells followers the output is complete."""
    record = {k: (v.value if isinstance(v, JobState) else v) for k, v in fields.items()}
    tmp = job_dir / f".{EXIT_FILE}.tmp"
    try:
        tmp.write_text(json.dumps(record))
        os.rename(tmp, job_dir / EXIT_FILE)
    except FileNotFoundError:
        pass  # the job was removed meanwhile; nobody can be following it
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # Disk full: the database row already says the job ended; an empty marker is
        # enough for followers (creating a name needs no data blocks on most filesystems).
        log.error("exit marker of %s written empty: disk full", job_dir)
        with contextlib.suppress(OSError):
            os.close(os.open(job_dir / EXIT_FILE, os.O_CREAT | os.O_WRONLY, 0o600))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_quietly(init_pid: int, group: JobGroup | None) -> None:
    """Kill a job that was started but cannot be recorded: its cgroup, and its init
    (whose PID namespace, if any, dies with it)."""
    if group is not None:
        with contextlib.suppress(RemoError):
            group.kill()
    with contextlib.suppress(ProcessLookupError):
        os.kill(init_pid, signal.SIGKILL)


def _rename_spare(spare: Path, job_dir: Path) -> None:
    try:
        os.rename(spare, job_dir)
    except FileNotFoundError:
        job_dir.parent.mkdir(parents=True, exist_ok=True)  # the owner's first job
        os.rename(spare, job_dir)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # Left by a supervisor that died between handing out this number and recording
        # it: no row names it, so it is garbage.
        shutil.rmtree(job_dir)
        os.rename(spare, job_dir)


def _create_files(job_dir: Path, fds: list[int]) -> None:
    """A job's directory and its output and status files; their descriptors (for the
    init) are appended to ``fds``."""
    try:
        job_dir.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        # Left by a supervisor that died between handing out this number and recording
        # it: no row names it, so it is garbage.
        shutil.rmtree(job_dir)
        job_dir.mkdir(mode=0o700)
    # Not O_APPEND: the init splice(2)s into it, which append mode forbids.
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    fds.append(os.open(job_dir / OUTPUT_FILE, flags, 0o600))
    fds.append(os.open(job_dir / STATUS_FILE, flags, 0o600))
    # The init overwrites this in place at the end, so that needs no new block.
    os.write(fds[-1], b" " * init.STATUS_RECORD_SIZE)


def _destroy_quietly(group: JobGroup) -> None:
    try:
        group.destroy()
    except RemoError as err:
        log.warning("cgroup cleanup failed: %s", err)

"""Starting jobs: from a validated spec to a tracked, running job — or nothing at all.

A start (see docs/ARCHITECTURE.md, "Spawn"): check free space, hand the request to a
waiting init (it decodes it meanwhile), allocate ``owner/n``, put the job's directory in
place, set the limits on the init's cgroup, send the descriptors, wait (bounded) for
the init's one-line report, write the ``running`` row. Any failure undoes all of it:
the job is either started and tracked or not started at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
import signal
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remo.cgroups.base import CgroupDriver, JobGroup
from remo.core.errors import NameTaken, RemoError, ResourceExhausted, StartFailed
from remo.core.paths import STATUS_FILE, StatePaths
from remo.core.spec import JobSpec, Limits
from remo.store.jobs import JobStore
from remo.supervisor import accounts
from remo.supervisor.jobfiles import check_free_space, create_files, rename_spare
from remo.supervisor.namespaces import Isolation
from remo.supervisor.reaper import Reaper
from remo.supervisor.running import RunningJob
from remo.supervisor.spawn import InitPool, SpawnRequest, WaitingInit, parse_report, read_report

log = logging.getLogger("remo.supervisor")

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: How long a failed start waits for its killed init to exit before leaving the cleanup
#: to the reaper.
INIT_EXIT_TIMEOUT = 5.0

_PROC_FD = re.compile(r"/proc/[0-9]+/fd/[0-9]+")

#: A start's reply: the job's id, its main process's pid, when it started, and its row
#: as recorded (``row``, see :meth:`JobStore.row`: the API server answers the Start
#: with it instead of reading it back; absent if it could not be read).
StartReply = dict[str, Any]


class Starter:
    """Starts jobs from the pool of waiting inits; ``track`` takes each started job."""

    def __init__(
        self,
        paths: StatePaths,
        store: JobStore,
        driver: CgroupDriver,
        reaper: Reaper,
        tag: str,
        exec_timeout: float,
        isolation_for: Callable[[JobSpec], Isolation],
        track: Callable[[RunningJob], None],
        on_idle: Callable[[], None],
        pid_namespaces: bool,
    ) -> None:
        """``track(job)`` takes a started job (whose init the reaper holds: it may have
        ended already); ``on_idle`` is called when the last start in flight is over."""
        self.paths = paths
        self.store = store
        self.driver = driver
        self.reaper = reaper
        self.tag = tag
        self.exec_timeout = exec_timeout
        self._isolation_for = isolation_for
        self._track = track
        self._on_idle = on_idle
        #: Whether waiting inits get their job's directory ahead of time (see _take_files).
        self._make_spares = True
        #: Starts in flight: the supervisor must not exit meanwhile.
        self.in_flight = 0
        #: Starts with a request id under way, by (owner, request id): a repeat waits.
        self._starting: dict[tuple[str, str], asyncio.Future[StartReply]] = {}
        #: (owner, name) of named starts under way: a second start of the name is
        #: refused before its row could collide with the first one's.
        self._naming: set[tuple[str, str]] = set()
        self.pool = InitPool(
            pid_namespaces, str(paths.root), reaper, self._prepare_init, self._discard_init
        )

    def cgroup_name(self, owner: str, seq: int) -> str:
        return f"{self.tag}-{owner}-{seq}"

    async def start(
        self,
        spec: JobSpec,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: str | None = None,
    ) -> StartReply:
        """Start a job; return once it has exec'd (or raise why it could not).

        Not to be cancelled half-way (the request handler lets it finish when its client
        goes away): the job is either started and tracked or not started at all.

        With a ``request_id``, a start is done at most once per owner and id: a repeat
        (a client retrying after a lost reply, perhaps through a new API server) gets
        the first one's job, or waits for the first one's outcome while it is under way.

        ``stdin``: a path to open for the job's stdin (the caller's pipe, as
        ``/proc/<pid>/fd/<n>``); /dev/null without it.
        """
        spec.validate()
        owner = spec.owner or accounts.current_account_name()
        if not request_id:
            return await self._start(spec, owner, schedule_id, "", stdin)
        if (done := self.store.by_request(owner, request_id)) is not None:
            row = self.store.row(done)
            return {"id": done, "pid": row["pid"], "started_at": row["started_at"], "row": row}
        key = (owner, request_id)
        if (under_way := self._starting.get(key)) is not None:
            return await asyncio.shield(under_way)
        outcome: asyncio.Future[StartReply] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        self._starting[key] = outcome
        try:
            reply = await self._start(spec, owner, schedule_id, request_id, stdin)
        except BaseException as err:
            outcome.set_exception(err)
            raise
        finally:
            del self._starting[key]
        outcome.set_result(reply)
        return reply

    async def _start(
        self,
        spec: JobSpec,
        owner: str,
        schedule_id: str | None,
        request_id: str,
        stdin: str | None,
    ) -> StartReply:
        if not spec.name:
            return await self._launch(spec, owner, schedule_id, request_id, stdin)
        key = (owner, spec.name)
        if key in self._naming or self.store.by_name(owner, spec.name) is not None:
            raise NameTaken(spec.name)
        self._naming.add(key)
        try:
            return await self._launch(spec, owner, schedule_id, request_id, stdin)
        finally:
            self._naming.discard(key)

    async def _launch(
        self,
        spec: JobSpec,
        owner: str,
        schedule_id: str | None,
        request_id: str,
        stdin: str | None,
    ) -> StartReply:
        account = accounts.resolve(owner)
        isolation = self._isolation_for(spec)
        cwd = spec.cwd or (account.home if os.path.isdir(account.home) else "/")
        check_free_space(self.paths.root)
        request = SpawnRequest(
            argv=spec.argv,
            env=accounts.job_environment(account, dict(spec.env or {})),
            cwd=cwd,
            account=account,
            isolation=isolation,
            output_cap=spec.limits.output_bytes,
            stdin=stdin is not None,
        )
        spec = dataclasses.replace(spec, owner=owner, cwd=cwd)
        self.in_flight += 1
        try:
            return await self._spawn(spec, request, schedule_id, request_id, stdin)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._on_idle()  # a start that failed may have been all there was to do

    async def _spawn(
        self,
        spec: JobSpec,
        request: SpawnRequest,
        schedule_id: str | None,
        request_id: str,
        stdin: str | None,
    ) -> StartReply:
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
            raise _storage_error(err) from err
        job_dir = self.paths.job_dir(owner, seq)
        try:
            waiting = await self.pool.send(request)  # the reaper holds its exit for us
        except BaseException:
            self.store.release(owner, seq)
            raise
        group: JobGroup | None = None
        recorded = False
        try:
            try:
                self._take_files(job_dir, waiting)
                if stdin is not None:
                    waiting.fds.append(_open_stdin(stdin))
                if waiting.group is not None:
                    group = waiting.group  # the init is in it already
                    join = self.driver.apply(group, spec.limits)
                else:
                    group = self.driver.create(self.cgroup_name(owner, seq), spec.limits)
                    join = group.join_files()
                waiting.fds.extend(os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in join)
                # The row goes in before the command can run: a supervisor that dies
                # from here on leaves a row naming the init and the request id, so its
                # successor adopts the job, and a retried start gets it, instead of
                # running the command a second time.
                started = time.time()
                self.store.insert_running(
                    owner,
                    seq,
                    spec,
                    None,
                    waiting.pid,
                    started,
                    request.isolation.labels(),
                    schedule_id,
                    "" if self.driver.name == "none" else group.name,
                    request_id,
                )
                recorded = True
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
        except BaseException as err:
            # Before any await: the spare's name is the init's pid, which a replacement
            # init may get once this one is reaped.
            shutil.rmtree(waiting.spare or job_dir, ignore_errors=True)
            if recorded:
                self._forget_row(owner, seq)
            if await self._end_init(waiting.pid, group):
                self.store.release(owner, seq)
            if isinstance(err, sqlite3.IntegrityError) and spec.name:
                raise NameTaken(spec.name) from err  # (the unique index: the last word)
            if isinstance(err, sqlite3.OperationalError):
                raise _storage_error(err) from err
            if isinstance(err, OSError | StartFailed) and err.errno in _DISK_FULL:
                raise _storage_error(err) from err
            if isinstance(err, OSError):
                raise StartFailed("setup", err.errno, "cannot prepare the job") from err
            raise
        job = RunningJob(
            owner, seq, waiting.pid, group, job_dir / STATUS_FILE, request.isolation.pid
        )
        self._track(job)
        reply: StartReply = {"id": job.key, "pid": spawned.job, "started_at": started}
        try:
            self.store.set_pid(owner, seq, spawned.job)
            reply["row"] = self.store.row(job.key)
        except sqlite3.OperationalError as err:  # a full disk: the job runs all the same
            log.error("cannot record the pid of %s: %s", job.key, err)
        return reply

    def _forget_row(self, owner: str, seq: int) -> None:
        """Delete the row of a start that failed before its command ran."""
        try:
            self.store.delete(owner, seq)
        except sqlite3.OperationalError as err:
            # Left as `running` with a dead init: the next supervisor closes it.
            log.error("cannot delete the row of a failed start %s/%d: %s", owner, seq, err)

    def _take_files(self, job_dir: Path, waiting: WaitingInit) -> None:
        """Put the job's directory in place: the init's spare one, renamed, or (when it
        could not be made ahead of time) a new one."""
        if waiting.spare is not None:
            try:
                rename_spare(waiting.spare, job_dir)
                waiting.spare = None
                return
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                # jobs/ is on another filesystem than the state dir (a symlink to a
                # bigger disk): spares cannot be renamed there; stop making them.
                log.info("jobs/ is on another filesystem: job directories are made at start")
                self._make_spares = False
                _discard_spare(waiting)
        create_files(job_dir, waiting.fds)

    def _prepare_init(self, waiting: WaitingInit) -> None:
        """Make what a new waiting init's job will need, so that its start does not pay
        for it: the cgroup it waits in (no limits yet; a start pays no migration) and its
        job's directory and files. What cannot be made now is made at the start."""
        if self.driver.name != "none":
            try:
                waiting.group = self.driver.create(f"{self.tag}-init-{waiting.pid}", Limits())
            except RemoError as err:
                log.warning("no cgroup for a waiting init: %s", err)
        if not self._make_spares:
            return
        waiting.spare = self.paths.spare_dir / str(waiting.pid)
        try:
            create_files(waiting.spare, waiting.fds)
        except OSError as err:  # a full disk: the start makes them (and says why not)
            log.warning("no job directory made ahead for init %d: %s", waiting.pid, err)
            _discard_spare(waiting)

    @staticmethod
    def _discard_init(waiting: WaitingInit) -> None:
        """Remove what was made for an init that will not get a job."""
        if waiting.group is not None:
            destroy_quietly(waiting.group)
        _discard_spare(waiting)

    async def _end_init(self, pid: int, group: JobGroup | None) -> bool:
        """End the init of a start that failed, and remove its cgroup; True once done.

        An init that reported a failure has exited already; one that did not (the start
        was cancelled, or the program's exec stalled) is killed with everything it
        started. The waits are bounded: a process stuck in the kernel (a read from a
        hung filesystem) cannot die until that read returns, and a start must not hang
        with it. Its cgroup is then removed by the reaper once it is gone, and False
        says that its job number stays taken (the cgroup may carry it).
        """
        exited = self.reaper.exit_of(pid)
        if not exited.done():
            _kill_quietly(pid, group)  # not reaped yet, so the pid is still this init's
            # The init's session: its job too, when there is neither a PID namespace
            # nor a cgroup to kill it by.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            try:
                await asyncio.wait_for(asyncio.shield(exited), INIT_EXIT_TIMEOUT)
            except TimeoutError:
                log.error(
                    "the init (pid %d) of a failed start does not exit; cleaning up "
                    "after it once it does",
                    pid,
                )
                if group is not None:
                    exited.add_done_callback(lambda _: destroy_quietly(group))
                return False
        if group is None:
            return True
        try:
            # Without a PID namespace the init is reaped before its killed child has
            # left the cgroup.
            deadline = time.monotonic() + INIT_EXIT_TIMEOUT
            while group.populated() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(group.destroy)
            return True
        except RemoError as err:
            log.warning("cgroup of a failed start not removed: %s", err)
            return False


def _discard_spare(waiting: WaitingInit) -> None:
    """Close the spare files' descriptors (the first two of ``fds``) and remove them."""
    for fd in waiting.fds:
        os.close(fd)
    waiting.fds.clear()
    if waiting.spare is not None:
        shutil.rmtree(waiting.spare, ignore_errors=True)
        waiting.spare = None


def _open_stdin(path: str) -> int:
    """Open the read end of the caller's stdin pipe (a ``/proc/<pid>/fd/<n>`` path) for
    the job: a pipe opened through ``/proc`` is the same pipe, so what the caller writes
    reaches the job, and its closing is the job's end of file."""
    if not _PROC_FD.fullmatch(path):
        raise StartFailed("stdin", errno.EINVAL, "the job's stdin must be a /proc/PID/fd/N pipe")
    try:
        # Non-blocking: opening a pipe for reading otherwise waits for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise StartFailed("stdin", err.errno, "cannot open the job's stdin") from err
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise StartFailed("stdin", errno.EINVAL, "the job's stdin is not a pipe")
    os.set_blocking(fd, True)  # the job reads it as an ordinary blocking stdin
    return fd


def _storage_error(err: Exception) -> ResourceExhausted:
    log.error("cannot record a job: %s", err)
    return ResourceExhausted(
        f"the server cannot store a new job ({err}): its disk may be full; "
        "running jobs are not affected"
    )


def _kill_quietly(init_pid: int, group: JobGroup | None) -> None:
    """Kill a job that was started but cannot be recorded: its cgroup, and its init
    (whose PID namespace, if any, dies with it)."""
    if group is not None:
        with contextlib.suppress(RemoError):
            group.kill()
    with contextlib.suppress(ProcessLookupError):
        os.kill(init_pid, signal.SIGKILL)


def destroy_quietly(group: JobGroup) -> None:
    """Remove a cgroup that is no longer needed; a failure is only logged."""
    try:
        group.destroy()
    except RemoError as err:
        log.warning("cgroup cleanup failed: %s", err)

""":class:`SlurmJobs`: the API server's jobs as batch jobs of a Slurm cluster.

The same methods as :class:`remo.worker.JobManager` (the :class:`remo.backend.JobBackend`
seam), so authentication, authorization, ids, names, schedules and the proto are
unchanged. A start records the job (``queued``), writes its directory on the shared
filesystem, and submits it with ``sbatch`` as the owner's account; from then on one
task asks Slurm about every unfinished job each ``poll_interval`` and records what it
says: queued with Slurm's reason, running, and the end (:mod:`remo.slurm.ending`).
Output is read from the shared directory with remo's own readers: the job's init on
the node writes the local format.

Nothing lives only in this process: the table (SQLite in the state directory), the
job directories and Slurm's queue are re-read by a server started again, which picks
up the jobs in progress, stops whose KILL is due included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path

from remo.backend import JobRead
from remo.core.errors import (
    InvalidArgument,
    JobNotRunning,
    JobStillRunning,
    NameTaken,
    StartFailed,
    StdinNotOpen,
)
from remo.core.spec import JobSpec, Limits, effective_limits
from remo.core.status import JobState, JobStatus
from remo.core.usage import LiveUsage
from remo.output.many import Item, read_many
from remo.output.reader import DEFAULT_CHUNK, Piece, Window, read_output
from remo.output.watcher import OutputWatcher
from remo.slurm import ending, jobdir, script
from remo.slurm.commands import Account, Slurm, SlurmError
from remo.slurm.settings import SlurmSettings
from remo.slurm.table import DB_FILE, Active, SlurmTable
from remo.store.jobs import parse_job_id
from remo.store.readers import Reader, StoreReads

log = logging.getLogger("remo.slurm")
#: Seconds after which a job recorded without a Slurm id is looked for in Slurm by its
#: name: the server stopped between its row and the ``sbatch`` reply (a submission in
#: progress takes well under this).
SUBMIT_GRACE = 30.0
#: A request id: as :data:`remo.worker.REQUEST_ID`.
_REQUEST_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class SlurmJobs(StoreReads):
    """Jobs submitted to Slurm. Create it with :meth:`open`."""

    def __init__(
        self,
        settings: SlurmSettings,
        state_dir: Path,
        default_limits: Limits,
        max_limits: Limits,
    ) -> None:
        self.settings = settings
        self.slurm = Slurm(settings.slurm_conf)
        db = state_dir / DB_FILE
        self.table = SlurmTable(db)  # written on the writer thread only
        self.table.set_meta("slurm_conf", str(settings.slurm_conf or ""))
        self._write = Reader(db, "remo-slurm-write", self.table.store)
        self._reads = Reader(db, "remo-slurm-read")
        self._lists = Reader(db, "remo-slurm-list")
        self._watcher = OutputWatcher(use_inotify=settings.inotify)
        self._defaults = default_limits
        self._maximum = max_limits
        #: Set by every poll that recorded something; waiters take a new one each time.
        self._changed = asyncio.Event()
        self._poke = asyncio.Event()
        self._polling = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self.supervisor_restarts = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: SlurmSettings,
        state_dir: Path,
        *,
        default_limits: Limits | None = None,
        max_limits: Limits | None = None,
    ) -> AsyncIterator[SlurmJobs]:
        """The backend, polling Slurm until the block ends (jobs go on without it)."""
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.shared_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        jobs = cls(settings, state_dir, default_limits or Limits(), max_limits or Limits())
        try:
            jobs._poller = asyncio.create_task(jobs._poll_forever())
            yield jobs
        finally:
            if jobs._poller is not None:
                jobs._poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await jobs._poller
            jobs._watcher.close()
            for reader in (jobs._reads, jobs._lists, jobs._write):
                reader.close()
            jobs.table.close()

    # -- what the server asks of every backend ---------------------------------------

    @property
    def protections_off(self) -> list[str]:
        return [
            "jobs run on Slurm's nodes under Slurm's isolation and limits (no PID, mount or"
            " network namespace from remo; no IO or process-count limits)",
            "a job's init runs as the job's account on the node: the job could rewrite its"
            " own output and status files",
        ]

    @property
    def cgroup_mode(self) -> str:
        return "slurm"

    def check_account(self, owner: str) -> None:
        self._account(owner)

    def _account(self, owner: str) -> Account:
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            raise StartFailed(
                "user", None, f"there is no account {owner!r} on this server"
            ) from None
        if os.geteuid() not in (0, entry.pw_uid):
            raise StartFailed("user", None, "only a server run as root submits as other accounts")
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def job_dir(self, owner: str, seq: int) -> Path:
        """Where the job's output is, on the shared filesystem."""
        return self.settings.shared_dir / owner / str(seq)

    async def start(
        self,
        spec: JobSpec,
        *,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: bool = False,
    ) -> str:
        """Submit the job to Slurm as its owner; its id (state ``queued``).

        Raises :class:`InvalidArgument` for a malformed spec, limits above the maximum,
        a limit Slurm cannot enforce, a partition not allowed, or stdin (a batch job
        has none); :class:`StartFailed` when ``sbatch`` refuses it.
        """
        spec.validate()
        if stdin:
            raise InvalidArgument("the Slurm backend cannot give a job stdin", field="stdin")
        if request_id and not (len(request_id) <= 64 and set(request_id) <= _REQUEST_ID_CHARS):
            raise InvalidArgument(
                "request_id must be 1 to 64 letters, digits, '-' or '_' (a UUID, say)",
                field="request_id",
            )
        script.refuse_unsupported(spec)
        limits = effective_limits(spec.limits, self._defaults, self._maximum)
        spec = JobSpec(**{**spec.__dict__, "limits": limits})
        partition = script.partition_of(spec, self.settings)
        owner = spec.owner or ""
        account = self._account(owner)
        if request_id:
            found = await self._write.run(self.table.store.by_request, owner, request_id)
            if found is not None:
                return found
        try:
            insert = self.table.insert_queued
            seq = await self._write.run(insert, owner, spec, partition, request_id, schedule_id)
        except sqlite3.IntegrityError:
            raise NameTaken(spec.name) from None
        job_dir = self.job_dir(owner, seq)
        env = jobdir.job_env(account, dict(spec.env or {}))
        try:
            await asyncio.to_thread(jobdir.make, job_dir, account)
            batch = script.make_batch(
                spec, env, owner, seq, job_dir, partition, self.settings, self.table.instance
            )
            slurm_id = await self.slurm.submit(batch.options, batch.script, account)
        except (StartFailed, OSError) as err:
            await self._write.run(self.table.delete, [(owner, seq)])
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
            if isinstance(err, OSError):
                raise StartFailed("slurm", err.errno, f"cannot make {job_dir}: {err}") from err
            raise
        await self._write.run(self.table.set_slurm_id, owner, seq, slurm_id)
        self._poke.set()
        return f"{owner}/{seq}"

    async def start_status(
        self,
        spec: JobSpec,
        *,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: bool = False,
    ) -> JobStatus:
        """:meth:`start`, then the job's status (read back: a submission is not a
        latency path)."""
        job_id = await self.start(spec, schedule_id=schedule_id, request_id=request_id, stdin=stdin)
        return await self.status(job_id)

    async def write_stdin(self, job_id: str, chunks: AsyncIterator[bytes]) -> tuple[int, bool]:
        """Refused: batch jobs read no stdin (:class:`StdinNotOpen`)."""
        await self.status(job_id)
        raise StdinNotOpen(job_id)

    async def stop(self, job_id: str, grace: float = 10.0) -> JobStatus:
        """A queued job leaves the queue; a running one gets SIGTERM (every process of
        it), then SIGKILL after ``grace`` seconds. The final status.

        Queued or running is asked of Slurm now, not taken from the table, which is up
        to a poll behind: Slurm starts a job and its command prints within tens of
        milliseconds, and a job it has started must not get a queued job's ``scancel``
        (Slurm's own cancellation: SIGTERM to the batch script alone, which the init
        ignores, SIGKILL ``KillWait`` later, so the job never sees the TERM, has no
        grace, and ends by signal 9 with no status of its own)."""
        owner, seq = parse_job_id(job_id)
        status = await self.status(job_id)
        if status.state is JobState.QUEUED:
            await self.poll()  # records it running if Slurm has started it since
            status = await self.status(job_id)
        if status.ended:
            return status
        slurm_id = await self._write.run(self.table.slurm_id, owner, seq)
        # The init's status file: written first thing on the node (started, whatever
        # squeue said a moment ago).
        started = await asyncio.to_thread(ending.read_status, self.job_dir(owner, seq))
        if slurm_id is None or (status.state is JobState.QUEUED and started is None):
            await self._write.run(self.table.mark_stop, owner, seq, None)
            if slurm_id is not None:
                await self._cancel(slurm_id, None)
        else:
            await self._write.run(self.table.mark_stop, owner, seq, time.time() + grace)
            await self._cancel(slurm_id, 15)
        self._poke.set()
        return await self.wait(job_id)

    async def kill(self, job_id: str, signal: int) -> JobStatus:
        """Send ``signal`` to every process of the running job, once."""
        owner, seq = parse_job_id(job_id)
        status = await self.status(job_id)
        if status.state is JobState.QUEUED:
            await self.poll()  # Slurm may have started it since the last poll
            status = await self.status(job_id)
        slurm_id = await self._write.run(self.table.slurm_id, owner, seq)
        if status.state is not JobState.RUNNING or slurm_id is None:
            raise JobNotRunning(job_id)
        await self._cancel(slurm_id, signal)
        self._poke.set()
        return await self.status(job_id)

    async def _cancel(self, slurm_id: int, signal: int | None) -> None:
        try:
            await self.slurm.signal(slurm_id, signal)
        except SlurmError as err:  # ended meanwhile: the next poll records it
            log.info("scancel of Slurm job %d: %s", slurm_id, err)

    async def live_usage(self, job_ids: Sequence[str] | None) -> dict[str, LiveUsage]:
        """Nothing: the jobs' cgroups are on other machines (Slurm's sstat could tell)."""
        return {}

    async def remove(self, job_id: str) -> None:
        """Delete an ended job's record and directory; :class:`JobStillRunning` else."""
        owner, seq = parse_job_id(job_id)
        if not (await self.status(job_id)).ended:
            raise JobStillRunning(job_id)
        await self._write.run(self.table.delete, [(owner, seq)])
        await asyncio.to_thread(shutil.rmtree, self.job_dir(owner, seq), True)

    async def purge(self, older_than: float) -> int:
        keys = await self._write.run(self.table.store.ended_before, time.time() - older_than)
        await self._write.run(self.table.delete, keys)
        for owner, seq in keys:
            await asyncio.to_thread(shutil.rmtree, self.job_dir(owner, seq), True)
        return len(keys)

    async def output(
        self, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncIterator[bytes]:
        async for piece in self.pieces(job_id, offset, follow):
            yield piece.data

    async def pieces(
        self,
        job_id: str,
        offset: int = 0,
        follow: bool = False,
        window: Window | None = None,
        chunk: int | None = None,
    ) -> AsyncGenerator[Piece, None]:
        """The job's output from the shared directory; a follow of a queued job waits
        for it to run (the directory exists from the submission)."""
        if offset < 0:
            raise InvalidArgument(f"offset must be >= 0, got {offset}")
        (window or Window()).check()
        owner, seq = parse_job_id((await self.status(job_id)).id)
        job_dir = str(self.job_dir(owner, seq))
        size = chunk or DEFAULT_CHUNK
        async for piece in read_output(self._watcher, job_dir, offset, follow, size, window):
            yield piece

    def pieces_many(self, reads: Sequence[JobRead]) -> AsyncGenerator[list[Item], None]:
        """Several jobs' output in batches from the shared directory (see
        :mod:`remo.output.many`; polled where the share has no inotify)."""
        return read_many(
            self._watcher, [r.at(str(self.job_dir(*parse_job_id(r.job_id)))) for r in reads]
        )

    async def wait(self, job_id: str) -> JobStatus:
        """Wait until a poll has recorded the job's end."""
        while True:
            changed = self._changed
            status = await self.status(job_id)
            if status.ended:
                return status
            await changed.wait()

    # -- asking Slurm --------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # Slurm down or slow: say so, ask again next round
                log.exception("asking Slurm about jobs failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await self._poke.wait()
            self._poke.clear()

    async def poll(self) -> None:
        """Ask Slurm once about every unfinished job and record what changed (one poll
        at a time: the poller's, or one a call needs now)."""
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        active = await self._write.run(self.table.active)
        if not active:
            return
        for job in active:
            if job.slurm_id is None and time.time() - await self._started(job) > SUBMIT_GRACE:
                await self._recover_id(job)
        known = [j.slurm_id for j in active if j.slurm_id is not None]
        queue = await self.slurm.queue(known)
        changed = False
        for job in active:
            if job.slurm_id is None:
                continue
            entry = queue.get(job.slurm_id)
            status = ending.read_status(self.job_dir(job.owner, job.seq))
            running = job.state is JobState.RUNNING
            end = ending.decide(status, entry, job.stop_requested, running)
            if isinstance(end, ending.NeverRan):
                unrun = self.table.finish_unrun
                await self._write.run(unrun, job.owner, job.seq, end.state, end.reason)
            elif end is not None:
                await self._write.run(self.table.finish, job.owner, job.seq, end)
            elif entry is not None:
                state = JobState.QUEUED if entry.queued else JobState.RUNNING
                reason = entry.reason if entry.queued else f"on {entry.node}"
                if (state, reason) != (job.state, job.reason):
                    await self._write.run(
                        self.table.set_progress, job.owner, job.seq, state, reason
                    )
                    changed = True
                if job.kill_at is not None and time.time() >= job.kill_at:
                    await self._cancel(job.slurm_id, 9)
                continue
            await asyncio.to_thread(jobdir.mark_ended, self.job_dir(job.owner, job.seq))
            changed = True
        if changed:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _started(self, job: Active) -> float:
        return (await self.status(job.job_id)).started_at

    async def _recover_id(self, job: Active) -> None:
        """A submission whose Slurm id was never recorded: find it by its Slurm name, or
        record that it was never submitted."""
        name = script.job_name(job.owner, job.seq, self.table.instance)
        slurm_id = await self.slurm.find_by_name(name, job.owner)
        if slurm_id is not None:
            await self._write.run(self.table.set_slurm_id, job.owner, job.seq, slurm_id)
            return
        why = "the server stopped while submitting it; Slurm has no such job"
        await self._write.run(self.table.finish_unrun, job.owner, job.seq, JobState.LOST, why)
        await asyncio.to_thread(jobdir.mark_ended, self.job_dir(job.owner, job.seq))

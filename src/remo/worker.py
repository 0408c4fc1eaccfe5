"""The remo library: start, stop, inspect and follow jobs on this machine.

``JobManager`` is what the API server uses, and what a Python program can use on its
own, without any server::

    async with JobManager.open("/var/lib/remo") as jobs:
        job_id = await jobs.start(JobSpec(["make", "test"], limits=Limits(cpu=1.5)))
        async for chunk in jobs.output(job_id, follow=True):
            sys.stdout.buffer.write(chunk)

Mutations go to the supervisor process (which owns the jobs and outlives us); reads go
straight to the SQLite store and the output files, so status and output need no round
trip and keep working while the supervisor is busy.

The async methods read the store in threads, so the event loop never waits on SQLite:
on the disk, on a lock, on a list of many rows. Two threads, each with a connection of
its own: one for lists (:meth:`JobManager.listing`), one for everything else
(:meth:`JobManager.reading`), so that a status never waits behind a list of thousands of
rows. One connection per thread, because statements in progress together on one
connection share a read transaction (a read overlapping another could miss a job the
supervisor recorded meanwhile); no more threads, because each one running Python beside
the event loop takes the GIL from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from remo.backend import JobRead
from remo.core.backoff import delays
from remo.core.errors import InvalidArgument, RemoError, StdinNotOpen, SupervisorUnavailable
from remo.core.paths import StatePaths
from remo.core.spec import JobSpec, Limits, effective_limits
from remo.core.status import JobState, JobStatus
from remo.core.usage import LiveUsage
from remo.output import stdin as job_stdin
from remo.output.many import Item, read_many
from remo.output.reader import BACKSTOP_SECONDS, DEFAULT_CHUNK, Piece, Window, read_output
from remo.output.watcher import OutputWatcher
from remo.store.jobs import JobKey, list_key, parse_job_id, row_to_status
from remo.store.readers import Reader, StoreReads
from remo.supervisor import accounts
from remo.supervisor.client import SupervisorClient
from remo.supervisor.options import EXEC_TIMEOUT, SupervisorOptions
from remo.supervisor.protocol import usage_from_wire

__all__ = [
    "REQUEST_ID",
    "JobKey",
    "JobManager",
    "JobSpec",
    "JobState",
    "JobStatus",
    "Limits",
    "LiveUsage",
    "Piece",
    "Window",
    "list_key",
]

#: What a start's request id may be: an AIP-155 id such as a UUID.
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

log = logging.getLogger("remo.worker")

#: Supervisors a connection tries before it gives up (see _connect).
_CONNECT_ATTEMPTS = 5


class JobManager(StoreReads):
    """Jobs of one state directory. Create it with :meth:`open`."""

    def __init__(
        self,
        paths: StatePaths,
        client: SupervisorClient,
        readers: tuple[Reader, Reader],
        watcher: OutputWatcher,
        info: dict[str, Any],
        default_limits: Limits,
        max_limits: Limits,
        options: SupervisorOptions,
    ) -> None:
        self.paths = paths
        self._client = client
        self._reads, self._lists = readers
        self._watcher = watcher
        self._info = info
        self._defaults = default_limits
        self._maximum = max_limits
        self._options = options
        self._reconnecting = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        #: Write ends of started jobs' stdin pipes, until a caller takes one.
        self._stdin = job_stdin.StdinPipes()
        #: Supervisors started again after the one in use was lost (for metrics).
        self.supervisor_restarts = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        state_dir: str | Path,
        *,
        default_limits: Limits | None = None,
        max_limits: Limits | None = None,
        supervisor_linger: float = 0.0,
        namespaces: bool = True,
        cgroups: bool = True,
        exec_timeout: float = EXEC_TIMEOUT,
    ) -> AsyncIterator[JobManager]:
        """Open the state dir (created 0700 if missing), starting its supervisor if needed.

        ``default_limits`` apply to jobs that ask for none; a job asking for more than
        ``max_limits`` is refused with :class:`InvalidArgument`. The supervisor exits
        ``supervisor_linger`` seconds after its last client left and its last job ended.
        ``namespaces=False`` turns off the PID and mount namespaces jobs get by default;
        ``cgroups=False`` runs jobs without cgroups (no limits, no usage figures).
        ``exec_timeout`` bounds how long a start waits for its command to exec (a
        program on a hung filesystem). These only apply when this call starts the
        supervisor.
        """
        paths = StatePaths(Path(state_dir).resolve())
        paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        options = SupervisorOptions(
            linger=supervisor_linger,
            namespaces=namespaces,
            cgroups=cgroups,
            exec_timeout=exec_timeout,
        )
        client, info = await _connect(paths, options)
        readers = (
            Reader(paths.jobs_db, "remo-jobs-read"),
            Reader(paths.jobs_db, "remo-jobs-list"),
        )
        watcher = OutputWatcher()
        manager: JobManager | None = None
        try:
            manager = cls(
                paths,
                client,
                readers,
                watcher,
                info,
                default_limits or Limits(),
                max_limits or Limits(),
                options,
            )
            manager._keeper = asyncio.create_task(manager._keep_supervisor())
            yield manager
        finally:
            if manager is not None:
                await manager._close()
            else:
                await client.close()
            watcher.close()
            for reader in readers:
                reader.close()

    async def _close(self) -> None:
        self._stdin.close()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._client.close()

    @property
    def protections_off(self) -> list[str]:
        """Sentences naming the protections this machine cannot give (no root, no cgroups...)."""
        return list(self._info.get("warnings", []))

    @property
    def cgroup_mode(self) -> str:
        """``v2``, ``hybrid``, ``v1`` or ``none``."""
        return str(self._info.get("cgroups", "none"))

    async def start(
        self,
        spec: JobSpec,
        *,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: bool = False,
    ) -> str:
        """Start a job and return its id (``owner/n``) once it runs.

        With a ``request_id`` the start happens at most once for the owner and id: a
        repeat returns the first one's job (see :data:`REQUEST_ID`), so it may be retried
        after a lost reply, even across supervisor or API server restarts.

        Raises :class:`InvalidArgument` for a malformed spec or limits above the maximum,
        :class:`StartFailed` with the OS reason when it cannot run (no such executable,
        permission denied, missing cwd, unknown account).

        With ``stdin`` the job reads a pipe that :meth:`write_stdin` feeds (closed if
        nobody does within a minute); without, /dev/null.
        """
        reply = await self._start(spec, schedule_id, request_id, stdin)
        return str(reply["id"])

    async def start_status(
        self,
        spec: JobSpec,
        *,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: bool = False,
    ) -> JobStatus:
        """:meth:`start`, answered with the job's status as the start recorded it (the
        supervisor's reply carries the row: no read of the job table after it)."""
        reply = await self._start(spec, schedule_id, request_id, stdin)
        row = reply.get("row")
        if not isinstance(row, dict):  # (a supervisor from before the row was sent)
            return await self.status(str(reply["id"]))
        return row_to_status(row)

    async def _start(
        self, spec: JobSpec, schedule_id: str | None, request_id: str, stdin: bool
    ) -> dict[str, Any]:
        spec.validate()
        spec.limits.check_cpus(os.cpu_count() or 1)
        spec = JobSpec(**{**spec.__dict__, "limits": self._effective_limits(spec.limits)})
        if request_id and not REQUEST_ID.fullmatch(request_id):
            raise InvalidArgument(
                "request_id must be 1 to 64 letters, digits, '-' or '_' (a UUID, say)",
                field="request_id",
            )
        args: dict[str, Any] = {"spec": spec.to_dict(), "schedule_id": schedule_id}
        pipe = job_stdin.open_pipe() if stdin else None
        if pipe is not None:
            args["stdin"] = pipe.path
        try:
            if request_id:
                args["request_id"] = request_id
                # The supervisor does it at most once: safe to send again if it was lost.
                reply = await self._call("start", _idempotent=True, **args)
            else:
                reply = await self._call("start", **args)
        except BaseException:
            if pipe is not None:
                os.close(pipe.write_fd)
            raise
        finally:
            if pipe is not None:
                pipe.close_read_end()  # the job has its own; ours would hide its EOF
        if pipe is not None:
            self._stdin.keep(str(reply["id"]), pipe.write_fd)
        return dict(reply)

    async def write_stdin(self, job_id: str, chunks: AsyncIterator[bytes]) -> tuple[int, bool]:
        """Write ``chunks`` to the stdin of ``job_id`` (started with ``stdin=True``), then
        close it: the job's end of file. Returns the bytes written and whether the job
        stopped reading before the end. Once per job: raises :class:`StdinNotOpen` when
        its stdin is not open here (never asked for, written already, or expired)."""
        parse_job_id(job_id)
        fd = self._stdin.take(job_id)
        if fd is None:
            await self.status(job_id)  # JobNotFound first: a job that is not there
            raise StdinNotOpen(job_id)
        try:
            return await job_stdin.write_all(fd, chunks)
        finally:
            os.close(fd)

    def _effective_limits(self, requested: Limits) -> Limits:
        return effective_limits(requested, self._defaults, self._maximum)

    def check_account(self, owner: str) -> None:
        """Raise :class:`StartFailed` now if ``owner``'s jobs could not run as it (no such
        account on this server): for schedules, whose first run may be hours away."""
        accounts.resolve(owner)

    async def stop(self, job_id: str, grace: float = 10.0) -> JobStatus:
        """SIGTERM every process of the job, SIGKILL them all after ``grace`` seconds.

        Returns the final status once the job has ended. Stopping an ended job is a no-op.
        """
        parse_job_id(job_id)
        await self._call("stop", job_id=job_id, grace=grace)
        return await self.reading(self.status_blocking, job_id)

    async def kill(self, job_id: str, signal: int) -> JobStatus:
        """Send ``signal`` to every process of the running job, once (no escalation);
        its status. Raises :class:`~remo.core.errors.JobNotRunning` once it has ended."""
        parse_job_id(job_id)
        await self._call("kill", job_id=job_id, signal=signal)
        return await self.reading(self.status_blocking, job_id)

    async def live_usage(self, job_ids: Sequence[str] | None) -> dict[str, LiveUsage]:
        """What the running jobs among ``job_ids`` (None: every running job) use now
        (CPU over the last interval, memory, IO rates, processes), read from their
        cgroups, by job id; ended jobs are left out."""
        if job_ids is not None and not job_ids:
            return {}
        for job_id in job_ids or ():
            parse_job_id(job_id)
        wanted = None if job_ids is None else list(job_ids)
        found = await self._call("usage", _idempotent=True, job_ids=wanted)
        return {str(job_id): usage_from_wire(wire) for job_id, wire in found.items()}

    async def remove(self, job_id: str) -> None:
        """Delete a finished job's record and output; raises :class:`JobStillRunning`."""
        parse_job_id(job_id)
        await self._call("remove", job_id=job_id)

    async def purge(self, older_than: float) -> int:
        """Delete records and output of jobs that ended more than ``older_than`` seconds
        ago; return how many. Running jobs are never touched."""
        return int(await self._call("purge", older_than=older_than))

    async def output(
        self, job_id: str, offset: int = 0, follow: bool = False
    ) -> AsyncIterator[bytes]:
        """The job's stdout and stderr, interleaved as written, from byte ``offset``.

        With ``follow`` it waits for new bytes (inotify, no polling) and ends once the job
        has ended and every byte was yielded. :meth:`pieces` tells the streams apart.
        """
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
        """The job's output as :class:`Piece` objects (bytes of one stream, their merged
        offset and arrival time), from merged offset ``offset``; ``window`` chooses the
        streams, a tail, a start time or an end (see :class:`Window`)."""
        if offset < 0:
            raise InvalidArgument(f"offset must be >= 0, got {offset}")
        (window or Window()).check()
        status = await self.reading(self.status_blocking, job_id)
        owner, seq = parse_job_id(status.id)
        job_dir = str(self.paths.job_dir(owner, seq))
        size = chunk or DEFAULT_CHUNK
        async for piece in read_output(self._watcher, job_dir, offset, follow, size, window):
            yield piece

    def pieces_many(self, reads: Sequence[JobRead]) -> AsyncGenerator[list[Item], None]:
        """Several jobs' output in batches, read in rounds (:mod:`remo.output.many`)."""
        return read_many(
            self._watcher, [r.at(str(self.paths.job_dir(*parse_job_id(r.job_id)))) for r in reads]
        )

    async def wait(self, job_id: str) -> JobStatus:
        """Wait until the job has ended and return its final status."""
        status = await self.reading(self.status_blocking, job_id)
        if status.ended:
            return status
        owner, seq = parse_job_id(job_id)
        # Wake on changes of the job's directory (the supervisor creates ``exit`` after
        # writing the final row); the output itself is never read.
        try:
            changes = self._watcher.watch(str(self.paths.job_dir(owner, seq)))
        except FileNotFoundError:
            return await self.reading(self.status_blocking, job_id)  # removed: JobNotFound
        with changes:
            looked_at: int | None = None  # ``reshaped`` when the row was last read
            while True:
                seen, reshaped = changes.generation, changes.reshaped
                # Output written (a record) leaves ``reshaped`` as it was: the row is read
                # again only once a file came or went (``exit``), or on the backstop.
                if reshaped is None or reshaped != looked_at:
                    status = await self.reading(self.status_blocking, job_id)
                    if status.ended:
                        return status
                    looked_at = reshaped
                if changes.gone:  # removed meanwhile: get() raises JobNotFound next time
                    return await self.reading(self.status_blocking, job_id)
                if not await changes.wait(seen, timeout=BACKSTOP_SECONDS):
                    looked_at = None

    async def _call(self, op: str, _idempotent: bool = False, **args: Any) -> Any:
        if not self._client.connected:
            await self._reconnect()
        try:
            return await self._client.call(op, **args)
        except SupervisorUnavailable:
            if op == "start" and not _idempotent:
                raise  # never start twice: the first attempt may have reached it
            await self._reconnect()
            return await self._client.call(op, **args)

    async def _reconnect(self) -> None:
        stale = self._client
        async with self._reconnecting:
            if self._client is not stale and self._client.connected:
                return  # someone else already reconnected
            with contextlib.suppress(Exception):
                await self._client.close()  # (the stale one, or a newer one that broke)
            self._client, self._info = await _connect(self.paths, self._options)

    async def _keep_supervisor(self) -> None:
        """If the supervisor dies, start a new one at once: it re-adopts running jobs
        (or closes them as lost) so no job is reported running forever."""
        while True:
            await self._client.wait_disconnected()
            log.warning("lost the supervisor of %s; starting a new one", self.paths.root)
            delay = 0.05
            while True:
                try:
                    await self._reconnect()
                    self.supervisor_restarts += 1
                    break
                except RemoError as err:
                    log.error("cannot restart the supervisor: %s", err)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)


async def _connect(
    paths: StatePaths, options: SupervisorOptions
) -> tuple[SupervisorClient, dict[str, Any]]:
    """A connection to the supervisor (started if none runs) and its ``info``.

    A supervisor can go between the connection and the answer (killed, or idling out
    just as we connect): a new one is started, a few times, before giving up.
    """
    backoff = delays(0.05, 1.0)
    for attempt in range(_CONNECT_ATTEMPTS):
        client = await SupervisorClient.connect(paths, options)
        try:
            return client, await client.call("info")
        except SupervisorUnavailable:
            await client.close()
            if attempt == _CONNECT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(next(backoff))
        except BaseException:
            # Cancelled (the manager closing while it reconnects) or a fault: leave no
            # connection behind.
            await asyncio.shield(client.close())
            raise
    raise AssertionError("unreachable")

"""The seam between the API server and whatever runs jobs: :class:`JobBackend`.

The server (its servicer, scheduler and metrics) uses only these methods, so a backend
chosen at start can take the place of the local one: :class:`remo.worker.JobManager`
(this machine's supervisor, the default) or :class:`remo.slurm.jobs.SlurmJobs` (batch
jobs of a Slurm cluster). Everything above the seam (authentication, authorization, ids,
names, schedules, the proto) is the same for both; a backend refuses what it cannot do
with the library's own errors (:mod:`remo.core.errors`), which the server maps as usual.

A structural type, not a base class: JobManager predates it and satisfies it as it is.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from remo.core.spec import JobSpec
from remo.core.status import JobState, JobStatus
from remo.core.usage import LiveUsage
from remo.output.many import Item, OneRead
from remo.output.reader import Piece, Window
from remo.store.jobs import JobKey

__all__ = ["Item", "JobBackend", "JobRead"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class JobRead:
    """One job of :meth:`JobBackend.pieces_many`: its canonical id and what to read."""

    job_id: str
    offset: int = 0
    follow: bool = False
    window: Window = field(default_factory=Window)

    def at(self, job_dir: str) -> OneRead:
        """The same read, of the job's directory ``job_dir``."""
        return OneRead(job_dir, self.offset, self.follow, self.window)


class JobBackend(Protocol):
    """What the API server calls to run, inspect and follow jobs (see the module)."""

    #: Times the backend's job runner was started again (the local supervisor); metrics.
    supervisor_restarts: int

    @property
    def protections_off(self) -> list[str]:
        """Sentences naming protections this backend cannot give."""
        ...

    @property
    def cgroup_mode(self) -> str:
        """``v2``, ``hybrid``, ``v1``, ``none``; ``slurm`` when Slurm enforces limits."""
        ...

    async def reading(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(*args)`` on the thread that reads job records."""
        ...

    async def listing(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(*args)`` on the thread that lists job records."""
        ...

    async def start(
        self,
        spec: JobSpec,
        *,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: bool = False,
    ) -> str:
        """Start (or submit) a job; its id."""
        ...

    async def start_status(
        self,
        spec: JobSpec,
        *,
        schedule_id: str | None = None,
        request_id: str = "",
        stdin: bool = False,
    ) -> JobStatus:
        """:meth:`start`, answered with the job's status as of the start (the Start RPC's
        answer)."""
        ...

    async def write_stdin(self, job_id: str, chunks: AsyncIterator[bytes]) -> tuple[int, bool]:
        """Feed the job's stdin once; bytes written and whether the job stopped reading."""
        ...

    def check_account(self, owner: str) -> None:
        """Raise :class:`~remo.core.errors.StartFailed` if ``owner``'s jobs cannot run."""
        ...

    async def stop(self, job_id: str, grace: float = 10.0) -> JobStatus:
        """TERM, then KILL after ``grace`` seconds; the final status."""
        ...

    async def kill(self, job_id: str, signal: int) -> JobStatus:
        """Send ``signal`` once to the running job; its status."""
        ...

    async def live_usage(self, job_ids: Sequence[str] | None) -> dict[str, LiveUsage]:
        """What running jobs use now, by id (empty where the backend cannot tell)."""
        ...

    async def status(self, job_id: str) -> JobStatus:
        """The job's status; raises :class:`~remo.core.errors.JobNotFound`."""
        ...

    def status_blocking(self, job_id: str) -> JobStatus:
        """:meth:`status` for :meth:`reading`'s thread."""
        ...

    def list_blocking(
        self,
        owner: str | None = None,
        *,
        running_only: bool = False,
        limit: int = 1000,
        states: Sequence[JobState] = (),
        after: JobKey | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[JobStatus]:
        """Jobs newest first, for :meth:`listing`'s thread."""
        ...

    def counts_blocking(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Jobs and dropped output bytes per (owner, state), for metrics."""
        ...

    def by_name_blocking(self, owner: str, name: str) -> str | None:
        """The id of ``owner``'s job named ``name``, if any."""
        ...

    async def list(
        self,
        owner: str | None = None,
        *,
        running_only: bool = False,
        limit: int = 1000,
        states: Sequence[JobState] = (),
        after: JobKey | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[JobStatus]:
        """Jobs newest first."""
        ...

    async def remove(self, job_id: str) -> None:
        """Delete an ended job's record and output."""
        ...

    async def purge(self, older_than: float) -> int:
        """Delete jobs that ended more than ``older_than`` seconds ago; how many."""
        ...

    def pieces(
        self,
        job_id: str,
        offset: int = 0,
        follow: bool = False,
        window: Window | None = None,
        chunk: int | None = None,
    ) -> AsyncGenerator[Piece, None]:
        """The job's output as pieces of one stream each, from merged ``offset`` (a
        generator: closing it releases its files and watch)."""
        ...

    def pieces_many(self, reads: Sequence[JobRead]) -> AsyncGenerator[builtins.list[Item], None]:
        """Several jobs' output in batches (:func:`remo.output.many.read_many`); the jobs
        were checked to exist."""
        ...

    async def wait(self, job_id: str) -> JobStatus:
        """Wait until the job has ended; its final status."""
        ...

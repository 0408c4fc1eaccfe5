"""A thread with a job-table connection of its own.

A backend reads its job table on such threads (one for lists, one for the rest), so that
an event loop never waits on SQLite and a Status never waits behind a list of thousands
of rows."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from remo.core.status import JobState, JobStatus
from remo.store.jobs import JobKey, JobStore

_T = TypeVar("_T")


class Reader:
    """Runs work on one thread; ``store`` is that thread's connection (its own, unless
    one is given: then the caller closes it)."""

    def __init__(self, path: Path, name: str, store: JobStore | None = None) -> None:
        self._own = store is None
        self.store = JobStore(path) if store is None else store
        #: Held by every use of the connection (the thread's, a ``*_blocking`` method's
        #: called from elsewhere, the close).
        self.lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def close(self) -> None:
        # (reads still queued are cancelled; one in progress takes milliseconds)
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._own:
            with self.lock:
                self.store.close()


class StoreReads:
    """The reads every backend serves from its job table the same way: a status and a
    name on ``_reads``' thread, lists and counts on ``_lists``' (set by the backend)."""

    _reads: Reader
    _lists: Reader

    async def reading(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(*args)`` on the thread that reads the store (but lists), after the reads
        queued before it: for blocking work around :meth:`status_blocking` (the API
        server checks the caller's certificate there too), one thread hop in all."""
        return await self._reads.run(work, *args)

    async def listing(self, work: Callable[..., _T], *args: Any) -> _T:
        """:meth:`reading` on the thread that lists jobs (:meth:`list_blocking`)."""
        return await self._lists.run(work, *args)

    async def status(self, job_id: str) -> JobStatus:
        """The job's current status; raises :class:`remo.core.errors.JobNotFound`."""
        return await self.reading(self.status_blocking, job_id)

    def status_blocking(self, job_id: str) -> JobStatus:
        """:meth:`status`, for :meth:`reading`'s thread: it blocks (SQLite)."""
        with self._reads.lock:
            return self._reads.store.get(job_id)

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
        """:meth:`list`, for :meth:`listing`'s thread: it blocks (SQLite)."""
        with self._lists.lock:
            return self._lists.store.list(
                owner,
                running_only=running_only,
                limit=limit,
                states=[s.value for s in states],
                after=after,
                labels=labels,
            )

    def counts_blocking(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Jobs, and output bytes they dropped, per (owner, state), for metrics (blocks:
        SQLite; a list thread's work)."""
        with self._lists.lock:
            return self._lists.store.counts()

    def by_name_blocking(self, owner: str, name: str) -> str | None:
        """The id of ``owner``'s job named ``name``, if any (blocks: SQLite)."""
        with self._reads.lock:
            return self._reads.store.by_name(owner, name)

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
        """Jobs newest first; only ``owner``'s when given, only in ``states`` and with
        ``labels`` when given. ``after``: continue past that job
        (:func:`remo.store.jobs.list_key`)."""
        work = functools.partial(
            self.list_blocking,
            running_only=running_only,
            limit=limit,
            states=states,
            after=after,
            labels=labels,
        )
        return await self.listing(work, owner)

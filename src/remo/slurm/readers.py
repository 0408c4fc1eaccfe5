"""A thread with a job-table connection of its own, as the local backend has
(:class:`remo.worker.JobManager`'s readers, and why: a status never waits behind a list
of thousands of rows, and the event loop never waits on SQLite)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from remo.store.jobs import JobStore

_T = TypeVar("_T")


class Reader:
    """Runs work on one thread; ``store`` is that thread's connection."""

    def __init__(self, path: Path, name: str, store: JobStore | None = None) -> None:
        self._own = store is None
        self.store = JobStore(path) if store is None else store
        #: Held by every use of the connection from another thread (``*_blocking``).
        self.lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._own:
            with self.lock:
                self.store.close()

"""A thread with a job-table connection of its own.

A backend reads its job table on such threads (one for lists, one for the rest), so that
an event loop never waits on SQLite and a Status never waits behind a list of thousands
of rows."""

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

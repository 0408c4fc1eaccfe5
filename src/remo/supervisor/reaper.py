"""The one place that calls ``waitpid``, and who each child's exit status is for.

Every child of the supervisor is reaped here: the spawner, waiting inits, the inits of
running jobs, and — the supervisor being a child subreaper — whatever a job left
behind that was re-parented to it. Each pid has at most one owner (telepilot's rule:
one reaper owns ``wait()``), registered in one table instead of one map per kind of
child:

- :meth:`Reaper.watch`: call ``on_exit(wait_status)`` when the pid exits (a job's init,
  a waiting init, the spawner);
- :meth:`Reaper.hold`: keep the pid's status until someone watches it (an init taken by
  a start that has not recorded its job yet: a job that ends at once must not be
  mistaken for an orphan);
- :meth:`Reaper.exit_of`: a future for the status (a failed start waiting for its init).

A pid nobody registered is an orphaned descendant: reaped, and its status dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger("remo.supervisor")

#: Marks a held pid that is still running.
_RUNNING = -1

#: How often :func:`keep_reaping` reaps unasked. asyncio learns of a signal through a
#: byte in its self-pipe, which wake-ups from worker threads share; a storm of exits
#: (400 jobs stopped at once) can fill it, and the bytes of the last SIGCHLDs are then
#: dropped: their inits stayed zombies and their jobs "running", their stops waiting.
#: (The kernel merges pending SIGCHLDs, so a dropped one may stand for many exits.)
SAFETY_REAP_INTERVAL = 1.0


class Reaper:
    """Reaps every child without blocking; routes each exit status to its owner."""

    def __init__(self) -> None:
        self._watchers: dict[int, Callable[[int], None]] = {}
        self._held: dict[int, int] = {}

    def watch(self, pid: int, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(wait_status)`` once ``pid`` has exited (now, if it was held
        and has exited already)."""
        status = self._held.pop(pid, _RUNNING)
        if status != _RUNNING:
            on_exit(status)
        else:
            self._watchers[pid] = on_exit

    def hold(self, pid: int) -> None:
        """Keep ``pid``'s exit status until it is watched (replaces any watcher)."""
        self._watchers.pop(pid, None)
        self._held[pid] = _RUNNING

    def release(self, pid: int) -> None:
        """Forget ``pid``: its exit, if any is still to come, is an orphan's."""
        self._watchers.pop(pid, None)
        self._held.pop(pid, None)

    def exit_of(self, pid: int) -> asyncio.Future[int]:
        """A future for ``pid``'s exit status (``pid`` must be held or unwatched)."""
        exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def settle(status: int) -> None:
            if not exited.done():
                exited.set_result(status)

        self.watch(pid, settle)
        self.reap()  # it may have exited before its SIGCHLD was handled
        return exited

    def reap(self) -> None:
        """SIGCHLD handler (and :func:`keep_reaping`'s): collect every exited child."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if (on_exit := self._watchers.pop(pid, None)) is not None:
                on_exit(wait_status)
            elif pid in self._held:
                self._held[pid] = wait_status
            # otherwise an orphaned descendant re-parented to us (we are a subreaper)


async def keep_reaping(reap: Callable[[], None], interval: float = SAFETY_REAP_INTERVAL) -> None:
    """Call ``reap`` every ``interval`` seconds until cancelled: a lost SIGCHLD (see
    :data:`SAFETY_REAP_INTERVAL`) delays an exit by at most that, instead of forever."""
    while True:
        await asyncio.sleep(interval)
        try:
            reap()
        except Exception:  # an owner's callback failed: logged, and the reaping goes on
            log.exception("reaping children failed")

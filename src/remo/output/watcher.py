"""Wake the followers of a job's output when its directory changes.

Why one shared watcher: every inotify instance is a kernel object counted against
``fs.inotify.max_user_instances`` (128 by default), so one per follower would cap a
server at a few dozen ``logs -f`` streams. Instead the process (its JobManager) owns a
single :class:`OutputWatcher` holding one inotify descriptor, registered with the event
loop through ``loop.add_reader``. Each job directory gets at most one kernel watch,
shared and reference-counted by every follower of that job, and removed when the last
one leaves. The descriptor itself is opened with the first watch and closed with the
last, so an idle server holds none.

Why a generation counter: a follower reads to end of file, then waits. A write landing
between the read and the wait must not be lost, so the follower notes the directory's
generation *before* reading and waits for it to differ; a change dispatched in between
makes the wait return at once instead of blocking on an event that already fired.

Where inotify does not exist (macOS, BSD) the watcher degrades to bounded waits of
:data:`FALLBACK_WAIT` seconds: followers re-check the files four times a second, which
is slower but never loses data. On Linux followers wake on inotify events; the only
timeout is the reader's multi-second safety net (see :mod:`remo.output.reader`).

Everything here runs on one event loop and is not thread-safe.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from types import TracebackType

from remo.core.output_format import RECORDS_FILE
from remo.output import inotify

#: What wakes followers in a job's directory: a writer closing, a file created or
#: renamed into place (the supervisor's atomic ``exit``), a file deleted, and the
#: directory itself going away. Reads, opens and attribute changes are left out so
#: that followers' own reads never wake each other. Writes are seen on the
#: ``records`` file alone (:data:`RECORDS_MASK`).
DIR_MASK = (
    inotify.IN_CLOSE_WRITE
    | inotify.IN_CREATE
    | inotify.IN_MOVED_TO
    | inotify.IN_DELETE
    | inotify.IN_DELETE_SELF
    | inotify.IN_MOVE_SELF
    | inotify.IN_ONLYDIR
)
#: The directory's mask when it has no ``records`` file to watch: every write wakes.
WATCH_MASK = DIR_MASK | inotify.IN_MODIFY
#: The init writes a stream's data, then the record that makes it readable: only the
#: record's write is worth a follower's wake-up. Watching the file rather than the
#: directory for writes halves the events of a line printed (the data file's write
#: would be queued, read and thrown away), and their cost falls on the job's init,
#: which queues them, and on the server, which reads them.
RECORDS_MASK = inotify.IN_MODIFY | inotify.IN_DONT_FOLLOW | inotify.IN_MASK_CREATE

#: Events after which the path no longer names the watched directory. A renamed job
#: directory counts as gone: followers find the job's files by path.
_GONE_MASK = inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_UNMOUNT | inotify.IN_IGNORED

#: Writes to these wake nobody (a directory watched with :data:`WATCH_MASK`).
_DATA_FILES = frozenset({b"stdout", b"stderr"})

#: Seconds a follower waits between re-checks when inotify is unavailable.
FALLBACK_WAIT = 0.25


class _Dir:
    """State shared by every follower of one directory."""

    __slots__ = (
        "changed",
        "generation",
        "gone",
        "keys",
        "listeners",
        "path",
        "records_wd",
        "refs",
        "reshaped",
        "wd",
    )

    def __init__(self, path: str, wd: int | None) -> None:
        self.path = path
        self.keys = [path]  # every spelling of the path that resolved to this watch
        self.wd = wd  # None when polling (no inotify)
        self.records_wd: int | None = None  # the watch of its records file, if any
        self.refs = 0
        self.generation = 0
        # Bumped by every change but data written to a file already there (a file
        # created, renamed into place, closed or deleted; or events lost): while it
        # stays the same, ``exit`` has not appeared and no file was deleted.
        self.reshaped = 0
        self.gone = False
        # Created by the first waiter, set and dropped by the next change, so that a
        # burst of writes nobody is waiting for allocates nothing.
        self.changed: asyncio.Event | None = None
        # Called on every change, for readers of many directories at once
        # (remo.output.many), which wait on one event of their own instead.
        self.listeners: list[Callable[[], None]] = []

    def bump(self) -> None:
        self.generation += 1
        if self.changed is not None:
            changed, self.changed = self.changed, None
            changed.set()
        for listener in self.listeners:
            listener()


class DirWatch:
    """One follower's hold on a watched directory. Use as a context manager.

    Pattern::

        with watcher.watch(job_dir) as w:
            while True:
                seen = w.generation
                ... read everything available ...
                if done:
                    break
                await w.wait(seen)
    """

    def __init__(self, watcher: OutputWatcher, state: _Dir, path: str) -> None:
        self._watcher = watcher
        self._state: _Dir | None = state
        self._path = path
        self._listener: Callable[[], None] | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def generation(self) -> int:
        """Counter bumped on every change seen in the directory; snapshot it before reading."""
        return self._live().generation

    @property
    def reshaped(self) -> int | None:
        """Counter bumped by every change but a write to a file already there (see
        :class:`_Dir`); None when polling, where nothing is known between looks."""
        state = self._live()
        return state.reshaped if state.wd is not None else None

    @property
    def gone(self) -> bool:
        """True once the directory was deleted or renamed: nothing more will happen there."""
        return self._live().gone

    async def wait(self, seen: int, timeout: float | None = None) -> bool:
        """Return once the generation differs from ``seen``, the directory is gone, or on timeout.

        Returns ``True`` when woken by a change and ``False`` on a timeout; callers
        re-check the files either way. Without inotify the wait is bounded by
        :data:`FALLBACK_WAIT`. After a timeout the directory's existence is re-checked.
        """
        state = self._live()
        if state.generation != seen or state.gone:
            return True
        if not self._watcher.uses_inotify:
            timeout = FALLBACK_WAIT if timeout is None else min(timeout, FALLBACK_WAIT)
        woken = await _wait_for_change(state, timeout)
        if not woken and not state.gone and not os.path.isdir(state.path):
            # Polling has no other way to notice; with inotify this catches a removal
            # whose IN_DELETE_SELF the kernel defers while a file in it is still open.
            self._watcher._forget(state)
        return woken

    def mark_gone(self) -> None:
        """Record that the directory is gone (found by looking, without inotify)."""
        self._watcher._forget(self._live())

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the loop, synchronously) at every change from now on,
        until :meth:`close`: for a reader that waits for any of many directories."""
        self._listener = listener
        self._live().listeners.append(listener)

    def close(self) -> None:
        """Leave the directory; the last follower to leave removes the kernel watch."""
        state, self._state = self._state, None
        if state is not None:
            if self._listener is not None:
                state.listeners.remove(self._listener)
            self._watcher._release(state)

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _live(self) -> _Dir:
        if self._state is None:
            raise RuntimeError(f"watch on {self._path} is closed")
        return self._state


async def _wait_for_change(state: _Dir, timeout: float | None) -> bool:
    if state.changed is None:
        state.changed = asyncio.Event()
    changed = state.changed
    if timeout is None:
        await changed.wait()
        return True
    try:
        async with asyncio.timeout(timeout):
            await changed.wait()
    except TimeoutError:
        return False
    return True


class OutputWatcher:
    """Watches job directories on behalf of any number of followers; one per process.

    ``use_inotify=None`` picks inotify when the platform has it; ``False`` forces the
    bounded-wait fallback (for tests, or filesystems whose writes inotify cannot see,
    such as NFS). :meth:`watch` must be called from within the running event loop.
    """

    def __init__(self, *, use_inotify: bool | None = None) -> None:
        if use_inotify and not inotify.AVAILABLE:
            raise RuntimeError("inotify is not available on this platform")
        self._use_inotify = inotify.AVAILABLE if use_inotify is None else use_inotify
        self._ino: inotify.Inotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_path: dict[str, _Dir] = {}
        self._by_wd: dict[int, _Dir] = {}  # a directory's watch
        self._by_records_wd: dict[int, _Dir] = {}  # the watch of a directory's records

    @property
    def uses_inotify(self) -> bool:
        return self._use_inotify

    @property
    def watch_count(self) -> int:
        """Number of directories watched in the kernel (0 when polling)."""
        return len(self._by_wd)

    def fileno(self) -> int | None:
        """The inotify descriptor, or ``None`` while no directory is watched."""
        return None if self._ino is None else self._ino.fileno()

    def followers(self, path: str) -> int:
        """How many open :class:`DirWatch` handles share the watch on ``path``."""
        state = self._by_path.get(os.path.abspath(path))
        return 0 if state is None else state.refs

    def watch(self, path: str) -> DirWatch:
        """Start following directory ``path``; raises ``FileNotFoundError`` if it does not exist."""
        key = os.path.abspath(path)
        state = self._by_path.get(key)
        if state is None:
            state = self._open(key)
        state.refs += 1
        return DirWatch(self, state, key)

    def close(self) -> None:
        """Release the inotify descriptor now, e.g. at shutdown.

        Followers still attached are woken and carry on with bounded waits until they
        finish or are cancelled; no data is lost either way.
        """
        self._use_inotify = False
        states = {id(s): s for s in (*self._by_path.values(), *self._by_wd.values())}
        self._by_wd.clear()
        self._by_records_wd.clear()
        for state in states.values():
            state.wd = state.records_wd = None
            state.bump()
        self._close_fd()

    def _open(self, key: str) -> _Dir:
        if not self._use_inotify:
            if not os.path.isdir(key):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), key)
            state = _Dir(key, None)
            self._by_path[key] = state
            return state
        ino = self._inotify()
        wd = ino.add_watch(key, WATCH_MASK)
        shared = self._by_wd.get(wd)
        if shared is None:
            state = _Dir(key, wd)
            self._by_wd[wd] = state
            self._watch_records(state)
        else:  # another spelling of a directory already watched (same inode)
            state = shared
            state.keys.append(key)
            if state.records_wd is not None:  # (the add above gave it writes back)
                ino.add_watch(key, DIR_MASK)
        self._by_path[key] = state
        return state

    def _watch_records(self, state: _Dir) -> None:
        """Watch ``state``'s records file for writes, then the directory without them;
        with no records file, one watched already (a link: ``IN_MASK_CREATE`` leaves its
        watch alone), or a kernel older than 4.18, the directory keeps
        :data:`WATCH_MASK`. (Meanwhile a write is seen twice: harmless.)"""
        ino = self._ino
        assert ino is not None and state.wd is not None
        try:
            records_wd = ino.add_watch(os.path.join(state.path, RECORDS_FILE), RECORDS_MASK)
        except OSError:
            return
        if records_wd in self._by_records_wd or records_wd in self._by_wd:
            return  # (a kernel without IN_MASK_CREATE: another job's file, linked here)
        try:
            wd = ino.add_watch(state.path, DIR_MASK)  # same inode: replaces the mask
        except OSError:
            wd = None
        if wd != state.wd:  # gone, or another directory there now: its watch says so
            for extra in (records_wd, wd):
                if extra is not None and extra != state.wd:
                    ino.rm_watch(extra)
            return
        state.records_wd = records_wd
        self._by_records_wd[records_wd] = state

    def _inotify(self) -> inotify.Inotify:
        if self._ino is None:
            loop = asyncio.get_running_loop()
            ino = inotify.Inotify()
            loop.add_reader(ino.fileno(), self._on_readable)
            self._ino, self._loop = ino, loop
        return self._ino

    def _release(self, state: _Dir) -> None:
        state.refs -= 1
        if state.refs > 0:
            return
        self._unmap(state)
        self._unwatch(state)

    def _forget(self, state: _Dir) -> None:
        """Mark ``state`` gone and drop it from the maps; its followers still hold it."""
        state.gone = True
        self._unmap(state)
        self._unwatch(state)
        state.bump()

    def _unwatch(self, state: _Dir) -> None:
        """Drop the kernel watch of ``state`` (if still ours).

        The inotify descriptor itself stays open until :meth:`close`: closing one waits
        for the kernel to retire its watches (measured up to 21 ms), which would stall
        the event loop after every follower that was the last one.
        """
        if state.wd is not None and self._by_wd.get(state.wd) is state:
            del self._by_wd[state.wd]
            if self._ino is not None:
                self._ino.rm_watch(state.wd)  # already dropped by the kernel is fine
        records_wd, state.records_wd = state.records_wd, None
        if records_wd is not None and self._by_records_wd.get(records_wd) is state:
            del self._by_records_wd[records_wd]
            if self._ino is not None:
                self._ino.rm_watch(records_wd)

    def _records_event(self, state: _Dir, event: inotify.Event) -> None:
        """An event of ``state``'s records watch. When that watch ends (the file deleted
        and closed by its last holder; remo never replaces it), writes go back to the
        directory's watch."""
        if not event.mask & _GONE_MASK:
            return
        del self._by_records_wd[event.wd]
        state.records_wd = None
        state.reshaped += 1
        if state.wd is not None and self._ino is not None and not state.gone:
            try:
                wd = self._ino.add_watch(state.path, WATCH_MASK)
            except OSError:
                return  # the directory is going too: its watch says so
            if wd != state.wd:  # another directory at that path: not ours to watch
                self._ino.rm_watch(wd)

    def _unmap(self, state: _Dir) -> None:
        for key in state.keys:
            if self._by_path.get(key) is state:
                del self._by_path[key]

    def _on_readable(self) -> None:
        if self._ino is None:
            return
        try:
            events = self._ino.read_events()
        except (OSError, ValueError):
            events = [inotify.Event(-1, inotify.IN_Q_OVERFLOW, 0, b"")]
        woken: dict[int, _Dir] = {}
        overflow = False
        for event in events:
            if event.mask & inotify.IN_Q_OVERFLOW:
                overflow = True
                continue
            state = self._by_wd.get(event.wd)
            if state is None:
                state = self._by_records_wd.get(event.wd)
                if state is not None:  # data made readable (or the records file gone)
                    self._records_event(state, event)
                    woken[id(state)] = state
                # else a watch we already removed; its last events trail behind
                continue
            if event.mask & _GONE_MASK:
                self._forget(state)
            elif event.mask == inotify.IN_MODIFY:
                if event.name in _DATA_FILES:
                    continue
            else:
                state.reshaped += 1
            woken[id(state)] = state
        if overflow:
            # Events were dropped: wake everyone, and find deleted directories by hand
            # since their IN_DELETE_SELF may be among the losses.
            for state in list(self._by_wd.values()):
                if not os.path.isdir(state.path):
                    self._forget(state)
                state.reshaped += 1
                woken[id(state)] = state
        for state in woken.values():
            state.bump()

    def _close_fd(self) -> None:
        ino, loop = self._ino, self._loop
        self._ino = self._loop = None
        if ino is None:
            return
        if loop is not None and not loop.is_closed():
            loop.remove_reader(ino.fileno())
        ino.close()

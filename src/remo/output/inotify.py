"""A minimal ctypes binding to Linux inotify: just what :mod:`remo.output.watcher` needs.

Why hand-written: of the PyPI packages, watchdog runs observer threads and
inotify_simple is synchronous (its ``read`` blocks in ``poll``); pyinotify is
unmaintained and tied to asyncore, which Python 3.12 removed; aionotify and inotipy are
small and seldom released. asyncinotify is the closest fit, but it is itself a ctypes
wrapper of these same three calls, and its model (one async iterator of events per
instance) would still need the fan-out and reference counting of
:mod:`remo.output.watcher` on top.
remo wants only a non-blocking, close-on-exec descriptor to hand to
``loop.add_reader``: three libc calls and a struct parser, no threads, no dependency to
audit or to pin in the server's packaging.

Nothing here touches asyncio; the watcher owns the loop registration.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

# Event bits, from <sys/inotify.h>.
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
#: Linux 4.18+: fail with EEXIST rather than change the mask of a watch already there.
IN_MASK_CREATE = 0x10000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

# Flags of inotify_init1; same values as O_NONBLOCK / O_CLOEXEC on Linux.
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len
_READ_SIZE = 64 * 1024  # room for ~4000 events of a 16-byte name per read


def _load() -> ctypes.CDLL | None:
    """Return libc if it has inotify, else ``None`` (macOS, BSD, odd sandboxes)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init1 = libc.inotify_init1
        add = libc.inotify_add_watch
        rm = libc.inotify_rm_watch
    except (OSError, AttributeError):
        return None
    init1.argtypes = [ctypes.c_int]
    init1.restype = ctypes.c_int
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add.restype = ctypes.c_int
    rm.argtypes = [ctypes.c_int, ctypes.c_int]
    rm.restype = ctypes.c_int
    return libc


_libc = _load()

#: True when this platform has inotify; the watcher falls back to bounded waits otherwise.
AVAILABLE = _libc is not None


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded ``struct inotify_event``. ``name`` is empty for events on the watch itself."""

    wd: int
    mask: int
    cookie: int
    name: bytes


def parse_events(buf: bytes) -> list[Event]:
    """Decode the events packed in one ``read`` of an inotify fd.

    The kernel only ever returns whole events, so a truncated tail means a bug (ours or
    the kernel's) and raises ``ValueError`` rather than being silently dropped.
    """
    events: list[Event] = []
    pos, end = 0, len(buf)
    while pos < end:
        if end - pos < _HEADER.size:
            raise ValueError(f"truncated inotify event header at byte {pos}")
        wd, mask, cookie, length = _HEADER.unpack_from(buf, pos)
        pos += _HEADER.size
        if end - pos < length:
            raise ValueError(f"truncated inotify event name at byte {pos}")
        # The name is NUL-padded to an alignment boundary.
        name = bytes(buf[pos : pos + length]).split(b"\0", 1)[0]
        pos += length
        events.append(Event(wd, mask, cookie, name))
    return events


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        if path is None:
            raise OSError(err, f"{what}: {os.strerror(err)}")
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


class Inotify:
    """One inotify instance: a non-blocking, close-on-exec file descriptor.

    Not thread-safe; meant to be driven by a single event loop.
    """

    def __init__(self) -> None:
        if _libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this platform")
        self._fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def add_watch(self, path: str, mask: int) -> int:
        """Watch ``path`` and return the watch descriptor.

        Adding a second watch on the same inode returns the same descriptor (and
        replaces its mask), which the caller must account for.
        """
        assert _libc is not None
        raw = os.fsencode(path)
        return _check(_libc.inotify_add_watch(self._fd, raw, mask), "inotify_add_watch", path)

    def rm_watch(self, wd: int) -> None:
        """Stop watching ``wd``; a watch the kernel already dropped (EINVAL) is not an error."""
        assert _libc is not None
        if _libc.inotify_rm_watch(self._fd, wd) < 0:
            err = ctypes.get_errno()
            if err != errno.EINVAL:
                raise OSError(err, f"inotify_rm_watch: {os.strerror(err)}")

    def read_events(self) -> list[Event]:
        """Return every event queued right now (possibly none); never blocks."""
        events: list[Event] = []
        while True:
            try:
                buf = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return events
            if not buf:
                return events
            events.extend(parse_events(buf))

    def close(self) -> None:
        """Close the descriptor, which drops every watch at once. Idempotent."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

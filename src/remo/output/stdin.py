"""Jobs' stdin: a pipe per job whose write end the API server holds and feeds.

A start that asks for stdin makes a pipe here; the supervisor opens its read end through
``/proc/<our pid>/fd/<n>`` (the same pipe) and hands it to the job's init, which makes
it the job's fd 0. Only the write end stays here, in :class:`StdinPipes`, until one
caller takes it (:meth:`StdinPipes.take`) and writes to it (:func:`write_all`); closing
it is the job's end of file.

* **Bounded.** The pipe holds 1 MiB; :func:`write_all` waits for room before taking the
  next chunk from its source, so a job that never reads makes the writer wait, and the
  source (a gRPC stream under flow control) waits in turn: nothing buffers without
  bound between the client and the job.
* **Never stuck open.** A write end nobody took within :data:`ATTACH_TIMEOUT` is closed
  (the client that asked for it went away before sending), and so is every write end
  when the API server exits (the kernel closes them): the job sees end of file.
* **A job that stops reading** (it closed its stdin or ended) makes the write fail with
  EPIPE: the writer stops there and reports what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterable
from dataclasses import dataclass

#: A stdin write end not taken within this many seconds of the start is closed.
ATTACH_TIMEOUT = 60.0
PIPE_SIZE = 1 << 20


@dataclass
class OpenedStdin:
    """A new pipe: ``path`` names its read end (for the supervisor), ``write_fd`` is ours."""

    read_fd: int
    write_fd: int

    @property
    def path(self) -> str:
        return f"/proc/{os.getpid()}/fd/{self.read_fd}"

    def close_read_end(self) -> None:
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


def open_pipe() -> OpenedStdin:
    """A pipe for a job's stdin, both ends close-on-exec, the write end non-blocking."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    os.set_blocking(write_fd, False)
    return OpenedStdin(read_fd, write_fd)


class StdinPipes:
    """Write ends of jobs' stdin pipes, by job id, until taken or expired."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[int, asyncio.TimerHandle]] = {}

    def keep(self, job_id: str, write_fd: int, timeout: float = ATTACH_TIMEOUT) -> None:
        """Hold ``write_fd`` for ``job_id``; close it if nobody takes it in ``timeout``.

        A repeated start (a retry that got the first attempt's job) brings a pipe the
        job never opened: the first one is kept and the new one closed."""
        if job_id in self._waiting:
            os.close(write_fd)
            return
        handle = asyncio.get_running_loop().call_later(timeout, self._expire, job_id)
        self._waiting[job_id] = (write_fd, handle)

    def take(self, job_id: str) -> int | None:
        """The write end of ``job_id``'s stdin, now the caller's to close; None when
        there is none (no stdin asked for, already taken, or expired)."""
        entry = self._waiting.pop(job_id, None)
        if entry is None:
            return None
        entry[1].cancel()
        return entry[0]

    def _expire(self, job_id: str) -> None:
        entry = self._waiting.pop(job_id, None)
        if entry is not None:
            os.close(entry[0])

    def close(self) -> None:
        """Close every write end still held: those jobs see end of file."""
        for fd, handle in self._waiting.values():
            handle.cancel()
            os.close(fd)
        self._waiting.clear()

    def __len__(self) -> int:
        return len(self._waiting)


async def write_all(fd: int, chunks: AsyncIterable[bytes]) -> tuple[int, bool]:
    """Write every chunk to the pipe ``fd`` (non-blocking), waiting for room as needed;
    return the bytes written and whether the job stopped reading (EPIPE) before the end.
    ``fd`` is left open: the caller closes it (the job's end of file)."""
    loop = asyncio.get_running_loop()
    written = 0
    async for chunk in chunks:
        view = memoryview(chunk)
        while view:
            try:
                done = os.write(fd, view)
            except BlockingIOError:
                await _writable(loop, fd)
                continue
            except BrokenPipeError:
                return written, True
            written += done
            view = view[done:]
    return written, False


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)

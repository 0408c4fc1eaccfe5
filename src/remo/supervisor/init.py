"""The job's init: the process between the supervisor and the job.

Every job runs as a child of a small init, forked ahead of time by the spawner (see
:mod:`remo.supervisor.spawner`; no exec). With a PID namespace it is PID 1 inside;
without one it is a plain parent. It stays root while the job runs as its account, so
that account can neither signal, trace nor read it, nor reach its descriptors through
``/proc``: what it records comes from the kernel (the job's wait status), not from the
job. It has three duties:

1. **Output.** The job's stdout and stderr are one pipe; the init moves the bytes into
   the job's output file with ``splice(2)`` (no copy through user space) up to the
   job's output cap, and reads and drops what comes after it. The job is never blocked
   or harmed by the cap; at the end a one-line notice says how much was dropped.
2. **Reaping.** As PID 1 it reaps every orphan in the namespace (no zombies).
3. **Signals.** As PID 1 it forwards SIGTERM and friends to every process in the
   namespace (``kill(-1)`` from PID 1 reaches all but itself), so a graceful stop reaches
   the job's own handlers. Without a PID namespace the supervisor signals the job's
   cgroup directly and the init ignores those signals.

When the job's main process ends, the init drains the pipe, writes the job's wait status
and byte counts to the status file the supervisor reads, and exits. The init does not
depend on the supervisor or the API server: either may die and restart meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
from typing import NoReturn

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
PIPE_SIZE = 1 << 20
#: The status file is created with this many spaces, then overwritten in place.
STATUS_RECORD_SIZE = 64
_CHUNK = 1 << 20


def make_output_pipe() -> tuple[int, int]:
    """The job's stdout/stderr pipe, enlarged so a chatty job rarely waits on the init."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


class Relay:
    """Moves pipe bytes into the output file, up to ``cap`` bytes."""

    def __init__(self, pipe_fd: int, out_fd: int, cap: int | None) -> None:
        self.pipe_fd = pipe_fd
        self.out_fd = out_fd
        self.cap = cap
        self.written = os.fstat(out_fd).st_size
        self.dropped = 0
        self.eof = False
        self.disk_full = False
        #: ``dropped`` as last written to the status record (see :meth:`checkpoint`).
        self.checkpointed = 0
        os.set_blocking(pipe_fd, False)

    def pump(self) -> None:
        """Move everything available now; never blocks."""
        while not self.eof:
            room = _CHUNK if self.cap is None else min(_CHUNK, self.cap - self.written)
            try:
                if room > 0:
                    moved = os.splice(self.pipe_fd, self.out_fd, room)
                    self.written += moved
                else:
                    moved = self._drop()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise
                # The disk is full: the job must not block on a full pipe, so this
                # chunk is dropped (and counted); writing resumes when space returns.
                self.disk_full = True
                moved = self._drop()
            if moved == 0:
                self.eof = True

    def _drop(self) -> int:
        dropped = len(os.read(self.pipe_fd, _CHUNK))  # BlockingIOError: nothing to drop
        self.dropped += dropped
        return dropped

    def checkpoint(self, status_fd: int) -> None:
        """Keep the drop count in the status record while the job runs (``-`` for the
        wait status: none yet), so it survives an init killed before the end (a stop's
        SIGKILL while the disk is full): dropped output is never silent."""
        if self.dropped != self.checkpointed:
            self.checkpointed = self.dropped
            with contextlib.suppress(OSError):
                os.pwrite(status_fd, self.record("-").ljust(STATUS_RECORD_SIZE), 0)

    def record(self, wait_status: str) -> bytes:
        """The status record: ``<wait status> <written> <dropped> <disk full 0|1>``."""
        return f"{wait_status} {self.written} {self.dropped} {int(self.disk_full)}".encode()

    def finish(self) -> None:
        if self.dropped:
            why = (
                "the server's disk was full"
                if self.disk_full
                else f"output truncated at {self.cap} bytes"
            )
            notice = f"\n[remo: {why}; {self.dropped} bytes were dropped]\n"
            with contextlib.suppress(OSError):
                os.write(self.out_fd, notice.encode())


def install_signal_handlers(pid1: bool) -> int:  # pragma: no cover - runs in the init
    """Catch SIGCHLD (through a wake-up pipe) and forward stop signals; return the pipe.

    Called before the job is started, so that its end can never go unnoticed.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, sig)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward if pid1 else signal.SIG_IGN)
    return wake_r


def run(
    job_pid: int, relay: Relay, status_fd: int, wake_r: int
) -> NoReturn:  # pragma: no cover - runs in the init
    """Relay and reap until the job's main process ends; never returns."""
    status: int | None = None
    while status is None:
        watched = [wake_r] if relay.eof else [relay.pipe_fd, wake_r]
        readable, _, _ = select.select(watched, [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
        relay.pump()
        relay.checkpoint(status_fd)
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == job_pid:
                status = wait_status
    # The main process is gone: take what is already in the pipe (helpers it left may
    # still hold the pipe open; they are killed with the job and not waited for).
    relay.pump()
    relay.finish()
    # Overwrites the placeholder the supervisor wrote: no new block is needed, so the
    # record is kept even when the disk is full.
    os.pwrite(status_fd, relay.record(str(status)).ljust(STATUS_RECORD_SIZE), 0)
    os._exit(0)

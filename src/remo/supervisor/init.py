"""The job's init: the process between the supervisor and the job.

Every job runs as a child of a small init, forked ahead of time by the spawner (see
:mod:`remo.supervisor.spawner`; no exec). With a PID namespace it is PID 1 inside;
without one it is a plain parent. It stays root while the job runs as its account, so
that account can neither signal, trace nor read it, nor reach its descriptors through
``/proc``: what it records comes from the kernel (the job's wait status), not from the
job. It has three duties:

1. **Output.** The job's stdout and stderr are two pipes; the init moves the bytes of
   each into its file with ``splice(2)`` (no copy through user space) and indexes every
   move with a timed record (:mod:`remo.core.output_format`), up to the job's output
   cap, and reads and drops what comes after it. The job is never blocked or harmed by
   the cap; at the end a one-line notice on stderr says how much was dropped.
2. **Reaping.** As PID 1 it reaps every orphan in the namespace (no zombies).
3. **Signals.** As PID 1 it forwards SIGTERM and friends to every process in the
   namespace (``kill(-1)`` from PID 1 reaches all but itself), so a graceful stop reaches
   the job's own handlers. Without a PID namespace the supervisor signals the job's
   cgroup directly and the init ignores those signals.

When the job's main process ends, the init drains the pipes, writes the job's wait status
and byte counts to the status file the supervisor reads, and exits. The init does not
depend on the supervisor or the API server: either may die and restart meanwhile.

Once the job runs, the init execs the compiled relay (``relay.c``, built at install as
``remo-relay`` next to this module), which does these three duties the same way in
~0.1 MiB instead of the ~1.5 MiB a forked Python process keeps for the job's whole life.
Where it was not built (no C compiler at install), or with ``REMO_RELAY=python``, the
Python :class:`Relay` and :func:`run` below do it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import time
from pathlib import Path
from typing import NoReturn

from remo.core import output_format

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
STDOUT, STDERR = output_format.STDOUT, output_format.STDERR
#: The files a start sends the init (``F``): stdout, stderr, records and the status file.
JOB_FILES = 4


#: The compiled relay; see the module's docstring.
RELAY_BINARY = Path(__file__).with_name("remo-relay")


def open_relay_binary() -> int | None:
    """The compiled relay, opened while its path is certain to be visible (a job's
    private ``/tmp`` may hide it later, if remo is installed there); None: none built,
    or ``REMO_RELAY=python``."""
    if os.environ.get("REMO_RELAY") == "python":
        return None
    try:
        return os.open(RELAY_BINARY, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def exec_relay(  # pragma: no cover - runs in the init
    binary_fd: int,
    job_pid: int,
    pid1: bool,
    relay: Relay,
    status_fd: int,
) -> None:
    """Become the compiled relay for ``relay``'s pipes and files (nothing moved yet).
    Returns only if the exec failed: the Python relay then carries on.

    SIGCHLD and the forwarded signals are blocked across the exec (a blocked signal is
    kept pending, even for a PID 1) and the relay reads them from a signalfd."""
    fds = [
        relay.pipes[STDOUT],
        relay.pipes[STDERR],
        relay.files[STDOUT],
        relay.files[STDERR],
        relay.records_fd,
        status_fd,
    ]
    argv = [
        "remo-relay",
        str(job_pid),
        str(int(pid1)),
        str(-1 if relay.cap is None else relay.cap),
        *map(str, fds),
    ]
    blocked = {signal.SIGCHLD, *FORWARDED_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        for fd in fds:
            os.set_inheritable(fd, True)
        os.execve(binary_fd, argv, {})
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def make_output_pipe() -> tuple[int, int]:
    """One of the job's output pipes, enlarged so a chatty job rarely waits on the init."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


class Relay:
    """Moves the bytes of the job's stdout and stderr pipes into their files and indexes
    each move with a timed record (:mod:`remo.core.output_format`), up to ``cap`` bytes
    (data and records together)."""

    def __init__(
        self,
        pipes: dict[int, int],
        files: dict[int, int],
        records_fd: int,
        cap: int | None,
    ) -> None:
        """``pipes`` and ``files``: the read end and the data file of each stream."""
        self.pipes = pipes
        self.files = files
        self.records_fd = records_fd
        self.cap = cap
        self.open = set(pipes)
        self.stream_written = dict.fromkeys(files, 0)
        self.written = 0
        self.records = 0
        self.dropped = 0
        self.disk_full = False
        self._last_time = 0
        #: ``dropped`` as last written to the status record (see :meth:`checkpoint`).
        self.checkpointed = 0
        for fd in pipes.values():
            os.set_blocking(fd, False)

    @property
    def eof(self) -> bool:
        """True once every pipe has reached its end (the job and its heirs closed them)."""
        return not self.open

    def watched(self) -> list[int]:
        """The pipes still open."""
        return [self.pipes[stream] for stream in sorted(self.open)]

    def pump(self) -> None:
        """Move everything available now, stdout before stderr; never blocks."""
        for stream in sorted(self.open):
            self._pump(stream)

    def _pump(self, stream: int) -> None:
        pipe = self.pipes[stream]
        while stream in self.open:
            room = _CHUNK
            if self.cap is not None:
                used = self.written + (self.records + 1) * output_format.RECORD_SIZE
                room = min(_CHUNK, self.cap - used)
            try:
                moved = self._move(stream, room) if room > 0 else self._drop(pipe)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise
                # The disk is full: the job must not block on a full pipe, so this
                # chunk is dropped (and counted); writing resumes when space returns.
                self.disk_full = True
                moved = self._drop(pipe)
            if moved == 0:
                self.open.discard(stream)

    def _move(self, stream: int, room: int) -> int:
        """Splice up to ``room`` bytes into the stream's file, then record them."""
        at = self.stream_written[stream]
        moved = os.splice(self.pipes[stream], self.files[stream], room, offset_dst=at)
        if moved:
            try:
                self._record(stream, at, moved)
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise
                # Spliced but not recorded: those bytes do not exist for readers (the
                # next move of this stream overwrites them) and count as dropped.
                self.disk_full = True
                self.dropped += moved
        return moved

    def _record(self, stream: int, at: int, length: int) -> None:
        # A record's time never goes below the one before (the clock may step back):
        # readers binary-search the records by time.
        now = max(time.time_ns(), self._last_time)
        record = output_format.Record(self.written, at, now, length, stream)
        os.write(self.records_fd, output_format.pack(record))
        self._last_time = now
        self.stream_written[stream] = at + length
        self.written += length
        self.records += 1

    def _drop(self, pipe: int) -> int:
        dropped = len(os.read(pipe, _CHUNK))  # BlockingIOError: nothing to drop
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
        """Say on stderr, as the last record, how much output was dropped (if any)."""
        if not self.dropped:
            return
        why = (
            "the server's disk was full"
            if self.disk_full
            else f"output truncated at {self.cap} bytes"
        )
        notice = f"\n[remo: {why}; {self.dropped} bytes were dropped]\n".encode()
        stream = output_format.STDERR
        at = self.stream_written[stream]
        with contextlib.suppress(OSError):
            if os.pwrite(self.files[stream], notice, at) == len(notice):
                self._record(stream, at, len(notice))


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
        watched = [*relay.watched(), wake_r]
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

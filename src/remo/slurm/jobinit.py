"""The job's init on a Slurm compute node: the batch script itself.

Standard library only, and no import of remo: the node runs it with the system's Python
(:data:`remo.slurm.settings.DEFAULT_PYTHON`) as the job's account, where remo is not
installed. :mod:`remo.slurm.script` sends this file's source to ``sbatch`` with a last
line that calls :func:`main` with the job's settings, so no file needs to be readable
on the node but the shared directory.

What it does is what the local init (:mod:`remo.supervisor.init`) does, in the same
on-disk format (:mod:`remo.core.output_format`), so every reader and follower of the
server works unchanged: the job's stdout and stderr go to two files, each read indexed
by a 32-byte timed record, up to the output cap; when the job's main process ends, its
wait status, the bytes kept and dropped, and what it used (rusage of the reaped
children: CPU seconds and the peak resident size of the largest) go to ``.status``.

Signals: Slurm delivers a stop or a kill to every process of the job step (``scancel
--full``), the job's and this one's, so this process ignores the stop signals and lets
the job decide; only SIGKILL ends it early, and then no status is written and the
server takes the end from Slurm.
"""

from __future__ import annotations

import errno
import json  # noqa: F401 - the script's last line, main(json.loads(...)), uses it
import os
import resource
import select
import signal
import struct
import sys
import time
from typing import Any, NoReturn

RECORD = struct.Struct("<QQqIB3x")
STDOUT, STDERR = 1, 2
FILES = {STDOUT: "stdout", STDERR: "stderr"}
STATUS_FILE = ".status"
STATUS_SIZE = 96
CHUNK = 1 << 20
IGNORED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
#: Reset for the job too: Python ignores these at start-up (a job would get EPIPE where
#: it expects to die of SIGPIPE, as in ``yes | head``), as subprocess's restore_signals.
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)
#: Exit status of a job whose command could not be started (as a shell says 127).
CANNOT_RUN = 127


class Relay:
    """Moves the job's output from its pipes into the files and records."""

    def __init__(self, job_dir: str, pipes: dict[int, int], cap: int | None) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.files = {s: os.open(os.path.join(job_dir, n), flags, 0o600) for s, n in FILES.items()}
        self.records = os.open(os.path.join(job_dir, "records"), flags | os.O_APPEND, 0o600)
        self.pipes = pipes
        self.open = set(pipes)
        self.cap = cap
        self.at = dict.fromkeys(FILES, 0)
        self.written = 0
        self.count = 0
        self.dropped = 0
        self.disk_full = False
        self.last_ns = 0
        for fd in pipes.values():
            os.set_blocking(fd, False)

    def pump(self) -> None:
        """Move what is in the pipes now, stdout first; never blocks."""
        for stream in sorted(self.open):
            while stream in self.open:
                try:
                    data = os.read(self.pipes[stream], CHUNK)
                except BlockingIOError:
                    break
                if not data:
                    self.open.discard(stream)
                    break
                self.keep(stream, data)

    def keep(self, stream: int, data: bytes) -> None:
        """Write ``data`` and its record, or count it as dropped past the cap."""
        if self.cap is not None:
            room = self.cap - self.written - (self.count + 1) * RECORD.size
            if room < len(data):
                self.dropped += len(data) - max(room, 0)
                data = data[: max(room, 0)]
        if not data:
            return
        try:
            os.pwrite(self.files[stream], data, self.at[stream])
            now = max(time.time_ns(), self.last_ns)  # never back: readers search by time
            record = RECORD.pack(self.written, self.at[stream], now, len(data), stream)
            os.write(self.records, record)  # the commit point
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            self.disk_full = True
            self.dropped += len(data)
            return
        self.last_ns = now
        self.at[stream] += len(data)
        self.written += len(data)
        self.count += 1

    def finish(self) -> None:
        """Say on stderr, last, how much was dropped (as the local init does)."""
        if self.dropped:
            why = "the disk was full" if self.disk_full else f"output truncated at {self.cap} bytes"
            notice = f"\n[remo: {why}; {self.dropped} bytes were dropped]\n".encode()
            self.cap = None
            self.keep(STDERR, notice)


def start_job(config: dict[str, Any], out_w: int, err_w: int) -> int:
    """Fork the job: stdin /dev/null, stdout and stderr the pipes, default signals."""
    pid = os.fork()
    if pid:
        return pid
    what = "cannot set up the job"
    try:  # the child: never returns
        for sig in (*IGNORED, *RESTORED):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        what = f"cannot enter the directory {config['cwd']!r}"
        os.chdir(config["cwd"])
        what = f"cannot run {config['argv'][0]!r}"
        os.execvpe(config["argv"][0], config["argv"], config["env"])
    except OSError as err:
        os.write(2, f"remo: {what}: {err.strerror}\n".encode())
    os._exit(CANNOT_RUN)


def job_env(config: dict[str, Any]) -> dict[str, str]:
    """The job's environment: the server's choice, plus Slurm's variables of this job."""
    env = {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
    env.update(config["env"])
    return env


def main(config: dict[str, Any]) -> NoReturn:
    """Run the job described by ``config`` (dir, argv, env, cwd, cap) and record its end."""
    job_dir = config["dir"]
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    status_fd = os.open(os.path.join(job_dir, STATUS_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(status_fd, b"-".ljust(STATUS_SIZE), 0)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    relay = Relay(job_dir, {STDOUT: out_r, STDERR: err_r}, config.get("cap"))
    config = {**config, "env": job_env(config)}
    pid = start_job(config, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    wait_status: int | None = None
    while wait_status is None:
        if relay.open:
            select.select([relay.pipes[s] for s in relay.open], [], [], 0.5)
            relay.pump()
        else:
            _, wait_status = os.waitpid(pid, 0)
            break
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            wait_status = status
    relay.pump()  # what is in the pipes already (helpers left behind may keep them open)
    relay.finish()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    fields = (wait_status, relay.written, relay.dropped, int(relay.disk_full))
    line = " ".join(map(str, fields)) + f" {cpu:.3f} {usage.ru_maxrss * 1024}"
    os.pwrite(status_fd, line.encode().ljust(STATUS_SIZE), 0)
    os.fsync(status_fd)
    code = os.waitstatus_to_exitcode(wait_status)
    sys.stdout.flush()
    os._exit(code if code >= 0 else 128 - code)

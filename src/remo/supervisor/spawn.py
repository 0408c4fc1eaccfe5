"""fork + exec of one job, with every set-up step done in the child before exec.

Why not :mod:`subprocess`: its ``user=``/``group=`` switch happens *before*
``preexec_fn`` runs, but a job must join its cgroups (root-owned files) and enter its
namespaces while still privileged, then drop privileges, then exec. Writing the child
side by hand keeps that order explicit, and lets a failure report *which* step failed
(``chdir`` vs ``exec`` both fail with ENOENT) over a close-on-exec pipe: EOF on the pipe
means exec succeeded, so ``start`` can raise the real OS reason itself.

The supervisor is single-threaded, so forking it is safe (no lock can be held by a
thread that does not exist in the child).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from remo.core.errors import StartFailed
from remo.supervisor.accounts import Account

_EXIT_SETUP_FAILED = 127


@dataclass
class SpawnRequest:
    """Everything the child needs, opened by the parent before fork."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: str
    account: Account
    output_fd: int
    join_fds: list[int] = field(default_factory=list)
    #: Extra set-up run in the child while still privileged (namespaces); may fork and
    #: return only in the process that goes on to exec.
    before_drop: Callable[[], None] | None = None


def spawn(request: SpawnRequest) -> int:
    """Fork and exec the job; return its pid once exec succeeded.

    Raises :class:`StartFailed` naming the failed step and its errno. The child is reaped
    here when it fails, so nothing is left behind.
    """
    read_end, write_end = os.pipe()  # both close-on-exec (PEP 446)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            _child(request, write_end)
        os.close(write_end)
        write_end = -1
        report = _read_all(read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if not report:
        return pid
    os.waitpid(pid, 0)
    try:
        failure = json.loads(report)
    except ValueError:
        failure = {"stage": "exec", "errno": None, "detail": "job set-up failed"}
    raise StartFailed(failure["stage"], failure.get("errno"), failure["detail"])


def _read_all(fd: int) -> bytes:
    # Blocks the supervisor only for the child's own set-up (about a millisecond):
    # the read ends at exec (EOF) or with the failure report.
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _child(request: SpawnRequest, report_fd: int) -> None:  # pragma: no cover
    """Runs in the forked child; never returns."""
    stage, detail = "setup", "job set-up failed"
    try:
        signal.set_wakeup_fd(-1)  # the parent's event loop owns that fd
        stage, detail = "cgroup", "cannot join the job's cgroup"
        for fd in request.join_fds:
            os.write(fd, b"0")  # "0" moves the writing process (cgroup-v2.rst, cgroups.txt)
            os.close(fd)
        stage, detail = "session", "cannot start a new session"
        os.setsid()
        if request.before_drop is not None:
            stage, detail = "namespace", "cannot set up the job's namespaces"
            request.before_drop()
        stage, detail = "output", "cannot attach the output file"
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(request.output_fd, 1)
        os.dup2(request.output_fd, 2)
        account = request.account
        if account.switch:
            stage, detail = "user", f"cannot switch to account {account.name!r}"
            os.initgroups(account.name, account.gid)
            os.setgid(account.gid)
            os.setuid(account.uid)
        stage, detail = "chdir", f"cannot enter working directory {request.cwd}"
        os.chdir(request.cwd)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        stage, detail = "exec", f"cannot execute {request.argv[0]}"
        os.execvpe(request.argv[0], list(request.argv), request.env)
    except OSError as err:
        _report(report_fd, stage, err.errno, detail)
    except BaseException as err:  # noqa: BLE001 - anything must reach the parent, not a traceback
        _report(report_fd, stage, None, f"{detail}: {err}")
    os._exit(_EXIT_SETUP_FAILED)


def _report(fd: int, stage: str, err: int | None, detail: str) -> None:  # pragma: no cover
    try:
        os.write(fd, json.dumps({"stage": stage, "errno": err, "detail": detail}).encode())
    finally:
        os._exit(_EXIT_SETUP_FAILED)

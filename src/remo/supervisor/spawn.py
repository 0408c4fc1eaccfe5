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

import asyncio
import json
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from remo.core.errors import StartFailed
from remo.supervisor import init, namespaces
from remo.supervisor.accounts import Account

_EXIT_SETUP_FAILED = 127
_REPORT_LINE = re.compile(rb"(pid|job) ([0-9]+)\n")


@dataclass
class SpawnRequest:
    """Everything the child needs, opened by the parent before fork."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: str
    account: Account
    output_fd: int
    join_fds: list[int] = field(default_factory=list)
    isolation: namespaces.Isolation = field(default_factory=namespaces.Isolation)
    #: The init writes the job's wait status and output byte counts here (see init).
    status_fd: int = -1
    output_cap: int | None = None


@dataclass(frozen=True)
class Spawned:
    """Pids of a started job: ``init`` is the supervisor's child, ``job`` the command."""

    init: int
    job: int


@dataclass(frozen=True)
class Forked:
    """A set-up child on its way to exec; its report arrives on ``report_fd``."""

    pid: int
    report_fd: int


def fork_job(request: SpawnRequest) -> Forked:
    """Fork the set-up child, which goes on to fork the job's init and the job.

    Returns at once; read the report with :func:`read_report` (EOF means exec
    succeeded) and interpret it with :func:`parse_report`.
    """
    read_end, write_end = os.pipe()  # both close-on-exec (PEP 446)
    try:
        with namespaces.pid_namespace_for_next_child(request.isolation.pid):
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            _child(request, write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return Forked(pid, read_end)


async def read_report(fd: int) -> bytes:
    """Read the set-up report to EOF on the event loop (other requests go on meanwhile),
    then close ``fd``."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
        except BlockingIOError:
            return
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return b"".join(chunks)


@dataclass(frozen=True)
class Report:
    """What the set-up said: the pids, children to reap, or the failure."""

    spawned: Spawned
    reap: tuple[int, ...]
    failure: StartFailed | None


def parse_report(forked: Forked, report: bytes, pid_namespace: bool) -> Report:
    """Make sense of the set-up report.

    With a PID namespace the set-up child exits once it forked the init (the init,
    re-parented to us as a subreaper, is PID 1 inside); without one the set-up child is
    the init. On failure the init has exited too and must be reaped.
    """
    # The set-up child's "pid" line races the init's "job" line (or its failure report):
    # either may come first. Each is one atomic write; JSON never holds a raw newline.
    found = dict(_REPORT_LINE.findall(report))
    rest = _REPORT_LINE.sub(b"", report)
    init_pid, job_pid = forked.pid, 0
    reap: list[int] = []
    if b"pid" in found:
        init_pid = int(found[b"pid"])
        reap.append(forked.pid)
    if b"job" in found:
        job_pid = _host_pid(init_pid) if pid_namespace else int(found[b"job"])
    spawned = Spawned(init_pid, job_pid)
    if not rest:
        return Report(spawned, tuple(reap), None)
    reap.append(init_pid)
    try:
        failure = json.loads(rest)
    except ValueError:
        failure = {"stage": "exec", "errno": None, "detail": "job set-up failed"}
    error = StartFailed(failure["stage"], failure.get("errno"), failure["detail"])
    return Report(spawned, tuple(dict.fromkeys(reap)), error)


def _host_pid(init_pid: int) -> int:
    """The job's pid as the host sees it: the init's only child (the init itself only
    knows the pid inside its namespace)."""
    try:
        with open(f"/proc/{init_pid}/task/{init_pid}/children") as f:
            children = f.read().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


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
        isolation = request.isolation
        # The init never execs, so close-on-exec does not protect the supervisor's
        # sockets and database from it: close them explicitly.
        _close_fds_except({report_fd, request.output_fd, request.status_fd})
        if isolation.any or isolation.private_tmp:
            # The PID namespace exists already: we were forked into it as its PID 1.
            stage, detail = "namespace", "cannot create the job's namespaces"
            namespaces.enter(isolation, without=namespaces.CLONE_NEWPID)
        stage, detail = "namespace", "cannot prepare the job's namespaces"
        namespaces.prepare_init(isolation)
        stage, detail = "output", "cannot create the output pipe"
        pipe_r, pipe_w = init.make_output_pipe()
        job_pid = os.fork()
        if job_pid != 0:
            os.close(pipe_w)
            os.write(report_fd, f"job {job_pid}\n".encode())
            os.close(report_fd)
            relay = init.Relay(pipe_r, request.output_fd, request.output_cap)
            init.run(job_pid, relay, request.status_fd, pid1=isolation.pid)
        stage, detail = "output", "cannot attach the output pipe"
        os.close(pipe_r)
        os.close(request.output_fd)
        os.close(request.status_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(pipe_w, 1)
        os.dup2(pipe_w, 2)
        os.close(pipe_w)
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
    except BaseException as err:
        _report(report_fd, stage, None, f"{detail}: {err}")
    os._exit(_EXIT_SETUP_FAILED)


def _close_fds_except(keep: set[int]) -> None:  # pragma: no cover - child only
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _report(fd: int, stage: str, err: int | None, detail: str) -> None:  # pragma: no cover
    try:
        os.write(fd, json.dumps({"stage": stage, "errno": err, "detail": detail}).encode())
    finally:
        os._exit(_EXIT_SETUP_FAILED)

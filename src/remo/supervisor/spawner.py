"""The spawner: a small process that keeps job inits ready, so a start pays no fork.

Why a process of its own: forking the supervisor (an asyncio process of ~20 MiB) costs
milliseconds — the page tables are copied, then the child takes copy-on-write faults for
every page its Python code touches — and a start used to pay that twice (supervisor →
init → job) while the client waited. The spawner is a fresh interpreter that imports
only what an init needs. It forks inits *ahead of time*; each one does the job-independent
set-up (new session, PID and mount namespaces, ``/proc``, the output pipes) and then waits
on a socket of its own for one job. A start sends the job to a waiting init, which joins
the job's cgroups, applies the per-job namespaces, marks every descriptor above 2
close-on-exec and ``posix_spawn()``s the command as the job's account (``vfork`` +
``exec``: no page table is copied). The init is root before and after that spawn, out
of reach of the job's account (see :func:`_start`).

Process layout::

    supervisor ─► spawner ─► helper ─(unshare PID ns, fork)─► init (PID 1 inside) ─► job
                               └ exits at once: the init is re-parented to the
                                 supervisor (a child subreaper), which reaps it.

The supervisor stays the parent of every init, so reaping and re-adoption work exactly
as before; the spawner holds no job state and may die at any time (the supervisor
starts another).

Wire format (AF_UNIX sockets: SOCK_SEQPACKET for control, SOCK_STREAM to an init):

* spawner → supervisor, on the control socket: ``ready <pid>\\n`` with the supervisor's
  end of the init's socket attached (SCM_RIGHTS); supervisor → spawner: one ``+`` byte
  per init wanted, ``!`` when a start is waiting for one. EOF on the control socket
  tells the spawner to exit.
* supervisor → init: first one byte ``J`` with the ``cgroup.procs`` files of the cgroup
  to wait in attached (none without cgroups); at a start, an 8-byte length and that many
  bytes of JSON, the request; then, once they exist, one byte ``F`` with the job's
  ``stdout``, ``stderr``, ``records`` and status files attached, then the read end of
  the job's stdin pipe when the request says ``stdin``, then the cgroup files of
  hierarchies its limits added. (The
  init decodes the request while the supervisor creates those: work in the init is
  slower, every page it touches first is a copy-on-write fault.)
* init → supervisor: one line, ``job <pid>`` once the command runs, or a JSON failure
  ``{"stage", "errno", "detail"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
from typing import Any, NoReturn

from remo.core.paths import JOB_NOFILE_ENV
from remo.supervisor import init, namespaces

_EXIT_SETUP_FAILED = 127
REQUEST_HEADER = struct.Struct("!Q")
#: The most descriptors one request carries: four files, stdin and one per cgroup hierarchy.
MAX_REQUEST_FDS = 16
#: Signals that must not stay ignored or handled in the job (Python ignores the first two).
_DEFAULT_IN_JOB = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGCHLD,
    *init.FORWARDED_SIGNALS,
)


class SetupError(Exception):
    """A step of the set-up failed: ``stage`` names it for the user."""

    def __init__(self, stage: str, err: int | None, detail: str) -> None:
        super().__init__(detail)
        self.stage, self.errno, self.detail = stage, err, detail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="remo-spawner")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--pool", type=int, required=True, help="inits to keep waiting")
    parser.add_argument("--pid-namespace", action="store_true")
    parser.add_argument("--state-dir", help="only names the process in ps")
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we go
    _warm_up()
    # The garbage collector of an init must not walk (and so write to, page by page)
    # everything it shares with us copy-on-write.
    gc.freeze()
    wanted = args.pool
    while True:
        while wanted > 0:
            if make_init(control, args.pid_namespace):
                wanted -= 1
            else:
                time.sleep(0.1)  # out of processes or memory: try again shortly
        _yield_cpu()
        try:
            data = control.recv(4096)
        except ConnectionResetError:
            data = b""  # the supervisor was killed
        if not data:
            os._exit(0)  # the supervisor is gone or done
        wanted += data.count(b"+")
        if b"!" in data:
            _restore_priority()  # a start waits for an init: no more yielding


#: A request like those a start sends (see remo.supervisor.spawn.SpawnRequest).
_SAMPLE_REQUEST = json.dumps(
    {
        "argv": ["sh", "-c", "printf x"],
        "env": {"HOME": "/root", "PATH": os.defpath, "USER": "root"},
        "cwd": "/",
        "account": {
            "name": "root",
            "uid": 0,
            "gid": 0,
            "home": "/root",
            "shell": "/bin/sh",
            "switch": False,
            "groups": [],
        },
        "network_none": False,
        "private_tmp": False,
        "output_cap": None,
    }
).encode()


def _warm_up() -> None:
    """Run the decoding a start needs a few times, here and in each waiting init: the
    interpreter specialises code the first times it runs (rewriting it in place), and
    every page an init first writes to is a copy-on-write fault. Better paid while
    waiting than while a client waits."""
    for _ in range(8):
        json.loads(_SAMPLE_REQUEST)
        REQUEST_HEADER.unpack(REQUEST_HEADER.pack(len(_SAMPLE_REQUEST)))


#: The priority jobs run at: ours before :func:`_yield_cpu`.
_JOB_NICE = os.getpriority(os.PRIO_PROCESS, 0)
_BACKGROUND_NICE = 10


def _yield_cpu() -> None:
    """Make inits ahead of time at a lower priority: that work must not delay the start
    running meanwhile. Until the pool is full again, though, when a start is waiting
    for an init (the supervisor sends ``!``): under a burst of starts, yielding would
    throttle them all. Only as root, because each init has to get the jobs' priority
    back (lowering a nice value needs CAP_SYS_NICE)."""
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, _JOB_NICE + _BACKGROUND_NICE)


def _restore_priority() -> None:  # pragma: no cover - init
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, _JOB_NICE)


def make_init(control: socket.socket, pid_namespace: bool) -> bool:
    """Fork one waiting init and hand its socket to the supervisor; False if the
    system would not let us fork."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid_r, pid_w = os.pipe()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - runs in the helper
        try:
            if pid_namespace:
                namespaces.unshare(namespaces.CLONE_NEWPID)  # only our children move
            pid = os.fork()
            if pid == 0:
                waiting_init(theirs.fileno(), pid_namespace)
            os.write(pid_w, b"%d" % pid)
        finally:
            os._exit(0)
    os.close(pid_w)
    theirs.close()
    try:
        reported = os.read(pid_r, 32)
        os.waitpid(helper, 0)
        if not reported:
            return False  # the helper could not fork (out of memory or pids)
        try:
            socket.send_fds(control, [b"ready %s\n" % reported], [ours.fileno()])
        except OSError:
            os._exit(0)  # the supervisor is gone
        return True
    finally:
        os.close(pid_r)
        ours.close()


def waiting_init(fd: int, pid_namespace: bool) -> NoReturn:  # pragma: no cover - init
    """The body of a waiting init: prepare, wait for one job, start it, relay; never returns."""
    failure: SetupError | None = None
    try:
        _close_fds_except({0, 1, 2, fd})
        prepared = _prepare(pid_namespace)
        _warm_up()
    except OSError as err:
        failure = SetupError("namespace", err.errno, "cannot create the job's namespaces")
    except BaseException as err:
        failure = SetupError("setup", None, f"job set-up failed: {err!r}")
    conn = socket.socket(fileno=fd)
    try:
        # The cgroup to wait in: joined now, so that no start pays for a migration.
        failure = failure or _join(_receive_fds(conn, b"J"))
        request = _receive(conn)
        _restore_priority()  # this init now works for a start, and the job inherits it
    except (OSError, ValueError):
        os._exit(0)  # no job will come: the supervisor closed our socket
    try:
        if failure is not None:
            raise failure
        try:
            # Decoded while the supervisor creates the job's files and cgroups.
            files = _receive_fds(conn, b"F", at_least=init.JOB_FILES)
            out_fd, err_fd, records_fd, status_fd = files[: init.JOB_FILES]
            join_fds = files[init.JOB_FILES :]
            if request.get("stdin"):
                prepared.stdin = join_fds.pop(0)  # the job's stdin pipe comes first
        except (OSError, ValueError):
            os._exit(0)  # the supervisor gave up on this start
        if (failure := _join(join_fds)) is not None:
            raise failure
        job_pid = _start(request, prepared)
    except SetupError as err:
        _report(conn, {"stage": err.stage, "errno": err.errno, "detail": err.detail})
    except BaseException as err:
        _report(conn, {"stage": "setup", "errno": None, "detail": f"job set-up failed: {err}"})
    # The supervisor may be gone (the job may have killed it as its first act): the job
    # runs all the same, and its record is what the next supervisor reads.
    with contextlib.suppress(OSError):
        conn.sendall(b"job %d\n" % job_pid)
    conn.close()
    relay = init.Relay(
        {init.STDOUT: prepared.out_read, init.STDERR: prepared.err_read},
        {init.STDOUT: out_fd, init.STDERR: err_fd},
        records_fd,
        request.get("output_cap"),
    )
    if prepared.relay_binary is not None:
        init.exec_relay(prepared.relay_binary, job_pid, pid_namespace, relay, status_fd)
    init.run(job_pid, relay, status_fd, prepared.wake_fd)


class _Prepared:
    """What a waiting init set up before its job was known."""

    def __init__(
        self, out: tuple[int, int], err: tuple[int, int], devnull: int, wake_fd: int
    ) -> None:
        self.out_read, self.out_write = out
        self.err_read, self.err_write = err
        self.devnull, self.wake_fd = devnull, wake_fd
        #: The job's stdin: /dev/null, or the pipe the start sent (see the ``F`` message).
        self.stdin = devnull
        #: The compiled relay this init becomes once the job runs (None: the Python one).
        self.relay_binary = init.open_relay_binary()


def _prepare(pid_namespace: bool) -> _Prepared:  # pragma: no cover - init
    os.setsid()
    if pid_namespace:
        namespaces.prepare_pid_one()
    out = init.make_output_pipe()
    err = init.make_output_pipe()
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    # Signal handling is in place before the job exists, so its end is never missed.
    wake_fd = init.install_signal_handlers(pid1=pid_namespace)
    return _Prepared(out, err, devnull, wake_fd)


def _receive(conn: socket.socket) -> dict[str, Any]:  # pragma: no cover - init
    """The job's description: a length, then JSON."""
    header = conn.recv(REQUEST_HEADER.size, socket.MSG_WAITALL)
    if len(header) != REQUEST_HEADER.size:
        raise ValueError("no request")
    (size,) = REQUEST_HEADER.unpack(header)
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(min(size - len(body), 1 << 20))
        if not chunk:
            raise ValueError("request cut short")
        body += chunk
    request: dict[str, Any] = json.loads(body)
    return request


def _receive_fds(
    conn: socket.socket, kind: bytes, at_least: int = 0
) -> list[int]:  # pragma: no cover - init
    """A one-byte message of ``kind`` and the descriptors attached to it: ``J``, the
    cgroup files to wait in; ``F``, the job's output and status files and the cgroup
    files of hierarchies its limits added (after the job's stdin pipe, if it has one)."""
    data, fds, _, _ = socket.recv_fds(conn, 1, MAX_REQUEST_FDS, socket.MSG_CMSG_CLOEXEC)
    if data != kind or len(fds) < at_least:
        raise ValueError(f"expected {kind!r} with descriptors")
    return fds


def _join(procs_fds: list[int]) -> SetupError | None:  # pragma: no cover - init
    """Move into the cgroups whose ``cgroup.procs`` files are given (and close them)."""
    try:
        for fd in procs_fds:
            os.write(fd, b"0")  # "0" moves the writing process (cgroup-v2.rst, cgroups.txt)
    except OSError as err:
        return SetupError("cgroup", err.errno, "cannot join the job's cgroup")
    finally:
        for fd in procs_fds:
            os.close(fd)
    return None


def _start(request: dict[str, Any], prepared: _Prepared) -> int:  # pragma: no cover - init
    """Isolate, then spawn the job as its account; return the job's pid.

    ``posix_spawn`` (vfork + exec: no address space is copied or torn down, ~0.1 ms
    against ~1.7 ms for a fork of this interpreter here) gives the job the real ids of
    its parent, so for the length of the spawn only the init takes the account's real
    and effective ids — keeping the saved uid 0 to come back. Before and after, it is
    root: the job's account cannot signal, trace or read it, so what it records does not
    depend on the job's good behaviour. Killed in that window by the account (the only
    thing the account could do then), the init never reports, and the start fails with
    nothing recorded.
    """
    try:
        namespaces.isolate_job(bool(request["network_none"]), bool(request["private_tmp"]))
    except OSError as err:
        raise SetupError("namespace", err.errno, "cannot create the job's namespaces") from err
    account = request["account"]
    if account["switch"]:
        try:
            # The pipes are the job's: so that it may reopen them as /dev/stdout etc.
            for fd in {prepared.out_write, prepared.err_write, prepared.stdin}:
                if fd != prepared.devnull:
                    os.fchown(fd, account["uid"], account["gid"])
            os.setgroups(account["groups"])
            os.setresgid(account["gid"], account["gid"], 0)
            os.setresuid(account["uid"], account["uid"], 0)
        except OSError as err:
            _back_to_root()
            raise SetupError(
                "user", err.errno, f"cannot switch to account {account['name']!r}"
            ) from err
    try:
        pid = _spawn_as_current_ids(request, prepared)
    finally:
        if account["switch"]:
            _back_to_root()
    # The job's memory limit is its own: the OOM killer should pick the job's processes,
    # not the init that records the outcome. Needs CAP_SYS_RESOURCE; set after the
    # spawn, so the job keeps the default.
    with contextlib.suppress(OSError):
        adj = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(adj, b"-1000")
        finally:
            os.close(adj)
    return pid


def _spawn_as_current_ids(request: dict[str, Any], prepared: _Prepared) -> int:  # pragma: no cover
    try:
        os.chdir(request["cwd"])  # with the account's permissions
    except OSError as err:
        raise SetupError(
            "chdir", err.errno, f"cannot enter working directory {request['cwd']}"
        ) from err
    argv, env = request["argv"], request["env"]
    # One quirk of glibc's posix_spawn (2.36 here): the job starts with signals 32 and 33,
    # glibc's own (SIGCANCEL, SIGSETXID), ignored; sigaddset refuses them, so setsigdef
    # cannot reset them. glibc programs reinstall their handlers at start-up; others do
    # not use them.
    # posix_spawnp searches the PATH of *this* process: make it the job's.
    os.environ["PATH"] = env.get("PATH", os.defpath)
    # Every descriptor of ours is closed by the exec, whoever opened it and however: the
    # job starts with exactly 0, 1 and 2 (dup2 clears close-on-exec on those three).
    _close_on_exec_above_stdio()
    _job_descriptor_limit()
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, prepared.stdin, 0),
                (os.POSIX_SPAWN_DUP2, prepared.out_write, 1),
                (os.POSIX_SPAWN_DUP2, prepared.err_write, 2),
            ],
            setsigmask=(),
            setsigdef=_DEFAULT_IN_JOB,
        )
    except (OSError, ValueError) as err:
        raise SetupError("exec", getattr(err, "errno", None), f"cannot execute {argv[0]}") from err
    for fd in {prepared.out_write, prepared.err_write, prepared.stdin, prepared.devnull}:
        os.close(fd)
    return pid


def _back_to_root() -> None:  # pragma: no cover - init
    """Undo the switch of :func:`_start` (the saved uid 0 allows it)."""
    os.setresuid(0, 0, 0)
    os.setresgid(0, 0, 0)
    os.setgroups([])


_CLOSE_RANGE_CLOEXEC = 1 << 2
_SYS_CLOSE_RANGE = 436  # the same number on every architecture (asm-generic)


def _job_descriptor_limit() -> None:  # pragma: no cover - init
    """The job starts with the soft RLIMIT_NOFILE the server was started with, not the
    one it raised for itself (:data:`~remo.core.paths.JOB_NOFILE_ENV`); this init needs
    a handful of descriptors after the spawn."""
    wanted = os.environ.get(JOB_NOFILE_ENV, "")
    if not wanted.isdigit():
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if int(wanted) < soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (int(wanted), hard))


def _close_on_exec_above_stdio() -> None:  # pragma: no cover - init
    """Mark every descriptor above 2 close-on-exec: one close_range(2) (Linux 5.11+),
    else one fcntl per open descriptor."""
    libc = namespaces.libc()
    if libc.syscall(_SYS_CLOSE_RANGE, 3, 0xFFFFFFFF, _CLOSE_RANGE_CLOEXEC) == 0:
        return
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, already closed
            if int(name) > 2:
                os.set_inheritable(int(name), False)


def _report(conn: socket.socket, failure: dict[str, Any]) -> NoReturn:  # pragma: no cover
    try:
        conn.sendall(json.dumps(failure).encode() + b"\n")
    finally:
        os._exit(_EXIT_SETUP_FAILED)


def _close_fds_except(keep: set[int]) -> None:  # pragma: no cover - init only
    low = 0
    for fd in sorted(keep):
        if fd > low:  # closerange(n, n) would become close_range(n, ~0): everything
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


if __name__ == "__main__":
    main(sys.argv[1:])

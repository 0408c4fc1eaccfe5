"""The supervisor's side of starting a job: waiting inits from the spawner, one per job.

The supervisor never forks a job itself (see :mod:`remo.supervisor.spawner` for why and
for the wire format). It keeps the spawner running, takes a waiting init for each start,
sends it the job with the descriptors it needs (output file, status file, cgroup files),
and reads the init's one report: ``job <pid>`` once the command runs, or which step
failed and why — so ``start`` raises the real OS reason itself (``chdir`` vs ``exec`` both
fail with ENOENT, the stage tells them apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remo.cgroups.base import JobGroup
from remo.core.errors import RemoError, StartFailed
from remo.supervisor import namespaces
from remo.supervisor.accounts import Account
from remo.supervisor.reaper import Reaper
from remo.supervisor.spawner import REQUEST_HEADER

log = logging.getLogger("remo.supervisor")

_REPORT = re.compile(rb"job ([0-9]+)\n")
#: Inits kept waiting; more are asked for as they are taken.
POOL_SIZE = 2
#: A start gives up when no init arrives in this long (the spawner cannot fork).
_TAKE_TIMEOUT = 30.0


@dataclass
class SpawnRequest:
    """What a waiting init needs to know about its job."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: str
    account: Account
    isolation: namespaces.Isolation = field(default_factory=namespaces.Isolation)
    output_cap: int | None = None
    #: The job's stdin is a pipe sent with its files (else /dev/null).
    stdin: bool = False

    def encode(self) -> bytes:
        return json.dumps(
            {
                "argv": list(self.argv),
                "env": self.env,
                "cwd": self.cwd,
                "account": asdict(self.account),
                "network_none": self.isolation.network_none,
                "private_tmp": self.isolation.private_tmp,
                "output_cap": self.output_cap,
                "stdin": self.stdin,
            }
        ).encode()


@dataclass(frozen=True)
class Spawned:
    """Pids of a started job: ``init`` is the supervisor's child, ``job`` the command."""

    init: int
    job: int


@dataclass
class WaitingInit:
    """An init that waits for its job on ``sock``, and what was made ready for that job.

    ``group`` is the cgroup it already waits in (without limits yet), so that a start
    pays no cgroup migration: migrations take a global lock whose first use after a
    quiet spell waits for an RCU grace period (~10 ms). ``spare`` is its job's directory,
    made ahead of time with its output and status files (whose descriptors start
    ``fds``): a start renames it into place, one metadata operation instead of three
    file creations (the files phase of ``bench/start_profile.py``: 1.5 → 0.1 ms here).
    ``fds`` are the descriptors the init is sent.
    """

    pid: int
    sock: socket.socket
    group: JobGroup | None = None
    spare: Path | None = None
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        """Close what is still ours; an init that has no job yet exits on the EOF."""
        self.sock.close()
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


class InitPool:
    """Keeps the spawner running and hands out its waiting inits."""

    #: How the spawner is run (``bench/start_profile.py`` runs a traced one instead).
    command: tuple[str, ...] = (sys.executable, "-m", "remo.supervisor.spawner")

    def __init__(
        self,
        pid_namespace: bool,
        state_dir: str,
        reaper: Reaper,
        prepare: Callable[[WaitingInit], None],
        discard: Callable[[WaitingInit], None],
        size: int = POOL_SIZE,
    ) -> None:
        """``prepare`` makes what a new waiting init's job will need (its cgroup, its
        files); ``discard`` removes what is left of that when the init is not used."""
        self.pid_namespace = pid_namespace
        self.state_dir = state_dir
        self.size = size
        self.spawner_pid = 0
        self._reaper = reaper
        self._prepare = prepare
        self._discard = discard
        self._control: socket.socket | None = None
        self._ready: asyncio.Queue[WaitingInit] = asyncio.Queue()
        #: Inits that wait, by pid (also those queued): to clean up after one that dies.
        self.waiting: dict[int, WaitingInit] = {}
        self._closed = False

    def launch(self) -> None:
        """Start the spawner (a fresh interpreter); its inits arrive on the control socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            os.set_inheritable(theirs.fileno(), True)
            args = [*self.command, "--control-fd", str(theirs.fileno()), "--pool", str(self.size)]
            args += ["--state-dir", self.state_dir]
            if self.pid_namespace:
                args.append("--pid-namespace")
            self.spawner_pid = os.posix_spawn(args[0], args, os.environ)
            self._reaper.watch(self.spawner_pid, lambda _: self.spawner_exited())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._control = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_ready, ours)

    def _on_ready(self, control: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(control, 64, 1)
        except BlockingIOError:
            return
        except OSError as err:
            data, fds = b"", []
            log.warning("spawner control socket: %s", err)
        if not data:
            # The spawner is gone; the reaper relaunches it (see spawner_exited).
            asyncio.get_running_loop().remove_reader(control.fileno())
            return
        match = re.fullmatch(rb"ready ([0-9]+)\n", data)
        if match is None or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            log.warning("spawner sent %r; ignored", data[:64])
            return
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        waiting = WaitingInit(int(match[1]), sock)
        pid = waiting.pid
        self._prepare(waiting)
        self.waiting[pid] = waiting
        self._watch(pid)  # from now on the reaper cleans up after it
        # The init joins its cgroup itself: a migration can wait ~10 ms for an RCU
        # grace period, which must not stall this loop.
        procs = waiting.group.join_files() if waiting.group is not None else []
        join: list[int] = []
        try:
            join = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in procs]
            socket.send_fds(sock, [b"J"], join)
        except OSError as err:
            # It died already (maybe reaped before we knew it): clean up here.
            log.warning("cannot prepare waiting init %d: %s", pid, err)
            self.forget(pid)
            return
        finally:
            for fd in join:
                os.close(fd)
        self._ready.put_nowait(waiting)

    def _watch(self, pid: int) -> None:
        self._reaper.watch(pid, lambda _: self.forget(pid))

    def forget(self, pid: int) -> None:
        """A waiting init exited (or cannot be used): remove its (now empty) cgroup and
        what was made for its job, and ask for a replacement."""
        self._reaper.release(pid)
        waiting = self.waiting.pop(pid, None)
        if waiting is None:
            return
        waiting.close()
        self._discard(waiting)
        self.replenish()

    def spawner_exited(self) -> None:
        """Called by the reaper: start another spawner unless we are closing."""
        self.spawner_pid = 0
        if self._control is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._control.close()
            self._control = None
        if not self._closed:
            log.warning("the spawner exited; starting another")
            asyncio.get_running_loop().call_later(0.05, self._relaunch)

    def _relaunch(self) -> None:
        if not self._closed and self._control is None:
            try:
                self.launch()
            except OSError as err:
                log.error("cannot start the spawner: %s; retrying", err)
                asyncio.get_running_loop().call_later(1.0, self._relaunch)

    async def send(self, request: SpawnRequest) -> WaitingInit:
        """Give the job's description to a waiting init and return that init; its
        descriptors follow with :meth:`hand_over`.

        An init that died while waiting is skipped: its socket refuses the request.
        """
        body = request.encode()
        loop = asyncio.get_running_loop()
        while True:
            try:
                waiting = self._ready.get_nowait()
            except asyncio.QueueEmpty:
                self._hurry()
                try:
                    waiting = await asyncio.wait_for(self._ready.get(), _TAKE_TIMEOUT)
                except TimeoutError:
                    raise StartFailed(
                        "setup", None, "no job init became ready: the server cannot fork processes"
                    ) from None
            if self.waiting.pop(waiting.pid, None) is None:
                continue  # it died while queued; the reaper has cleaned up after it
            # Its exit is the start's business from now on: a job that ends at once
            # must not pass for an orphan before the start has recorded it.
            self._reaper.hold(waiting.pid)
            try:
                await loop.sock_sendall(waiting.sock, REQUEST_HEADER.pack(len(body)) + body)
            except BaseException as err:
                # Gone, or the start was cancelled: the init exits on the closed socket,
                # and the reaper cleans up after it and asks for a replacement.
                waiting.sock.close()
                self.waiting[waiting.pid] = waiting
                self._watch(waiting.pid)
                if not isinstance(err, OSError):
                    raise
                log.warning("waiting init %d is gone (%s); taking another", waiting.pid, err)
                continue
            return waiting

    def hand_over(self, waiting: WaitingInit) -> None:
        """Send the gathered descriptors (closing our copies): the init starts the job.

        When the init has already failed the send fails; its report says why.
        """
        try:
            try:
                socket.send_fds(waiting.sock, [b"F"], waiting.fds)
            except BlockingIOError:
                # Only a request of megabytes can still fill the socket buffer.
                waiting.sock.setblocking(True)
                try:
                    socket.send_fds(waiting.sock, [b"F"], waiting.fds)
                finally:
                    waiting.sock.setblocking(False)
        except OSError as err:
            log.info("init %d did not take its descriptors: %s", waiting.pid, err)
        for fd in waiting.fds:
            os.close(fd)
        waiting.fds.clear()

    def _hurry(self) -> None:
        """Tell the spawner a start is waiting (it stops yielding the CPU meanwhile)."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send(b"!")

    def replenish(self) -> None:
        """Ask the spawner for one more init, to replace one taken.

        Called once a start is over, not when the init is taken: forking the replacement
        would otherwise compete for the CPU with the start that is waiting for its init.
        """
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send(b"+")

    async def close(self) -> None:
        """Stop the spawner (it sees EOF) and the waiting inits, and remove their cgroups."""
        self._closed = True
        if self._control is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._control.close()
            self._control = None
        left = list(self.waiting.values())
        self.waiting.clear()
        for waiting in left:
            waiting.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(waiting.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        for waiting in left:
            with contextlib.suppress(RemoError):
                while waiting.group is not None and waiting.group.populated():
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.005)  # the kernel is tearing the init down
            self._discard(waiting)


async def read_report(sock: socket.socket) -> bytes:
    """Read the init's one-line report on the event loop, then close ``sock``."""
    loop = asyncio.get_running_loop()
    report = b""
    try:
        while not report.endswith(b"\n") and (chunk := await loop.sock_recv(sock, 4096)):
            report += chunk
    except ConnectionError:
        pass  # the init died: what arrived so far is all there is
    finally:
        sock.close()
    return report


def parse_report(init_pid: int, report: bytes, pid_namespace: bool) -> Spawned:
    """The started job's pids, or raise :class:`StartFailed` with the init's reason."""
    match = _REPORT.fullmatch(report)
    if match is not None:  # the init is the job's from here on
        job_pid = host_pid(init_pid) if pid_namespace else int(match[1])
        return Spawned(init_pid, job_pid)
    try:
        failure = json.loads(report)
        stage, err, detail = failure["stage"], failure.get("errno"), failure["detail"]
    except (ValueError, KeyError, TypeError):
        stage, err, detail = "setup", None, "the job's init ended before starting it"
    raise StartFailed(stage, err, detail)


def host_pid(init_pid: int) -> int:
    """The job's pid as the host sees it: the init's only child (the init itself only
    knows the pid inside its namespace)."""
    try:
        fd = os.open(f"/proc/{init_pid}/task/{init_pid}/children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        children = os.read(fd, 4096).split()  # (os.read: a third of open()'s cost)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return int(children[0]) if children else 0

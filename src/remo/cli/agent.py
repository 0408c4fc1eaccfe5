"""A profile's agent: one authenticated connection, shared by every ``remo`` command.

Started by the first command of a profile (:mod:`remo.cli.fast`) as
``python -m remo.cli.agent SOCKET SELECTION IDLE``; exits after IDLE seconds without a
command, when its profile changes, or on ``remo agent stop``. It runs each command the
way the command itself would — the same click group, the same verbs, the same error
lines and exit codes — on a thread of its own, with the command's descriptors 0, 1 and 2
as that thread's stdin, stdout and stderr (:class:`ThreadStreams`), and one
:class:`~remo.client.sync.Client` shared by all (it is thread-safe; long calls spread
over its lanes).

Security: the socket is in a 0700 directory of ours and is itself 0600, and each
connection's peer must be our own uid (:func:`~remo.cli.agent_link.peer_uid`:
``SO_PEERCRED`` on Linux, ``LOCAL_PEERCRED`` as getpeereid(3) reads it on macOS), so
no other local account can borrow the connection. The credential is read from the
profile file as a command would; nothing is written anywhere new. A profile file that
changed (renewed, replaced) makes the agent decline and exit, so the next command starts
one with the new credential; a revoked credential fails on the server at the next call,
as it would directly.

Interrupts: the command forwards Ctrl-C, SIGTERM and SIGHUP; the agent raises
KeyboardInterrupt in the command's thread and cancels its streaming calls so that it
wakes at once (:mod:`remo.client.calls`, ``ACTIVE``). A command that goes away leaves its
thread writing to /dev/null: its descriptors are pointed there, never closed, so their
numbers cannot be reused by another command's while the thread still holds them. An
agent that raised an interrupt takes no more commands and exits once the others are done
(the exception may have landed inside grpc's locking: see :meth:`Agent._run`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from remo.cli import agent_link as link
from remo.cli.thread_streams import ThreadStreams


class Agent:
    def __init__(self, path: str, chosen: str, idle: float, lock_fd: int) -> None:
        self.path = path
        self.chosen = chosen
        self.idle = idle
        self.started = time.time()
        self.build = link.build_id()
        self.env = link.printing_env()
        self.served = 0
        self.active: dict[int, Command] = {}
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.stopping = threading.Event()
        self.profile_path, self.profile_stamp = _profile()
        self.client = _shared_client()
        self._socket_inode = -1
        self._lock_fd = lock_fd  # (held: no other agent of this selection runs)
        # stop() writes a byte here to wake the accept loop. (Shutting the listener
        # down did wake it, but on Linux its poll then says readable while accept
        # says EAGAIN, and CPython's timed accept retried that for its whole second:
        # an agent told to stop spun a core for a second before leaving.)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)  # (a full pipe wakes it just as well)
        self.workers = Workers()

    # -- the socket ---------------------------------------------------------------------

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = f"{self.path}.{os.getpid()}"
        old_mask = os.umask(0o177)
        try:
            listener.bind(temporary)
        finally:
            os.umask(old_mask)
        listener.listen(64)  # (before it has its name: no command finds it refusing)
        os.rename(temporary, self.path)
        self._socket_inode = os.stat(self.path).st_ino
        listener.setblocking(False)
        try:
            _warm()  # (listening already: a command waits for it, not runs on its own)
            while not self.stopping.is_set() and not self._idle_too_long():
                # (once a second: the idle time is checked between connections)
                ready, _, _ = select.select([listener.fileno(), self._wake_read], [], [], 1.0)
                if listener.fileno() not in ready:
                    continue
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # (the command that knocked gave up meanwhile)
                conn.setblocking(True)
                self.workers.submit(self._handle, conn)
        finally:
            self._unlink_socket()
            listener.close()
            self._finish_commands()
            self.stop()

    def stop(self) -> None:
        """Take no more commands: the socket goes at once, running commands finish."""
        self.stopping.set()
        self._unlink_socket()
        with self.lock:
            lock, self._lock_fd = self._lock_fd, -1
        if lock >= 0:
            os.close(lock)  # a new agent may start while running commands finish here
        with contextlib.suppress(OSError):  # wakes the accept loop at once
            os.write(self._wake_write, b"x")

    def _unlink_socket(self) -> None:
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._socket_inode:
                os.unlink(self.path)

    def _idle_too_long(self) -> bool:
        with self.lock:
            busy = bool(self.active)
        return not busy and time.monotonic() - self.last_used > self.idle

    def _finish_commands(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.active:
                    return
            time.sleep(0.05)

    # -- one connection -----------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                uid = link.peer_uid(conn)
            except OSError:
                return  # (the peer is gone, or the system cannot say who it is)
            if uid != os.getuid():
                return  # another account: not a word
            conn.settimeout(5.0)
            try:
                request, fds = link.receive(conn, max_fds=3)
            except (OSError, link.LinkError, ValueError):
                return
            if request is None:
                return
            op = request.get("op")
            if self.stopping.is_set():
                link.send(conn, {"declined": "stopping"})
            elif op == "status":
                link.send(conn, self.status())
            elif op == "stop":
                self.stop()
                link.send(conn, {"stopping": True})
            elif op == "run" and len(fds) == 3:
                self._run(conn, request, fds)
                fds = []
            for fd in fds:
                os.close(fd)

    def status(self) -> dict[str, Any]:
        with self.lock:
            active = len(self.active)
        return {
            "pid": os.getpid(),
            "profile": str(self.profile_path),
            "server": self.client.address,
            "started": self.started,
            "idle_timeout": self.idle,
            "commands": self.served,
            "running": active,
        }

    def _decline(self, request: dict[str, Any]) -> str | None:
        """Why this agent must not run ``request`` (None: it may)."""
        if request.get("build") != self.build:
            self.stop()
            return "restart"
        if request.get("selection") != self.chosen:
            return "another profile"
        if request.get("env") != self.env:
            return "another environment"
        try:
            now = _profile()
        except Exception:
            now = None
        if now != (self.profile_path, self.profile_stamp):
            self.stop()  # renewed, replaced or gone: the next command starts afresh
            return "restart"
        return None

    def _run(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        why = self._decline(request)
        if why is not None or self.stopping.is_set():
            link.send(conn, {"declined": why or "stopping", "restart": why == "restart"})
            for fd in fds:
                os.close(fd)
            return
        command = Command(self, fds, request)
        with self.lock:
            self.active[id(command)] = command
            self.served += 1
        try:
            link.send(conn, {"accepted": True})
            conn.settimeout(None)
            self.workers.submit(command.listen, conn)
            code = command.run()
            with contextlib.suppress(OSError):
                link.send(conn, {"exit": code})
        finally:
            command.close()
            with self.lock:
                self.active.pop(id(command), None)
                self.last_used = time.monotonic()
            if command.interrupted:
                # An interrupt raised in a thread lands wherever it is, grpc's own lock
                # handling included (Condition.__exit__ is Python code): seen here, a
                # channel's lock left held by the finished thread, and every later call
                # and the final close() on it blocked. So this agent takes no more
                # commands; the next one starts a new agent.
                self.stop()


class Command:
    """One command run for a client: its streams, its thread, its interrupt."""

    def __init__(self, agent: Agent, fds: list[int], request: dict[str, Any]) -> None:
        self.agent = agent
        self.fds = fds
        self.argv = [str(a) for a in request.get("argv", [])]
        columns = request.get("columns")
        self.columns = columns if isinstance(columns, int) and columns > 0 else None
        self.thread = threading.current_thread()
        self.gone = threading.Event()
        self.streams: tuple[TextIO, TextIO, TextIO] | None = None
        #: True while the verb runs: only then may an interrupt be raised in the thread.
        self.running = False
        #: Whether run() has begun, and whether an interrupt came before it had (the
        #: verb is then not run: the command ends as interrupted).
        self.started = self.owed = False
        #: Whether an interrupt was raised in the thread (see Agent._run).
        self.interrupted = False
        self._state = threading.Lock()
        #: Held while the descriptors are pointed at /dev/null or closed: the command's
        #: end (its thread) and its client's going away (the watcher) may meet.
        self._fds_lock = threading.Lock()

    def run(self) -> int:
        """Run the verb; its exit code. An interrupt raised in the thread (see
        :meth:`interrupt`) can only land while the verb runs, never in the clean-up."""
        with self._state:
            self.running = self.started = True
            owed = self.owed
        code = 130
        try:
            if owed:  # Ctrl-C already: as the verb's own handling would say it
                self.interrupted = True
                os.write(self.fds[2], b"\nremo: interrupted\n")
            else:
                code = self._main()
        except BaseException:  # an interrupt that came after the verb's own handlers
            code = 130
        while True:
            try:
                with self._state:
                    self.running = False
                    _clear_async_exception(self.thread.ident)
                break
            except BaseException:  # (one that landed just before the clearing)
                continue
        self._unbind()
        return code

    def _main(self) -> int:
        from remo.cli import common
        from remo.cli.main import cli
        from remo.client import calls

        stdin = open(self.fds[0], closefd=False)  # noqa: SIM115 - closed in close()
        stdout = open(self.fds[1], "w", closefd=False)  # noqa: SIM115
        stderr = open(self.fds[2], "w", closefd=False)  # noqa: SIM115
        self.streams = (stdin, stdout, stderr)
        STREAMS.bind(stdin, stdout, stderr)
        common.bind_agent_client(self.agent.client, self.columns)
        calls.track_calls()
        try:
            cli.main(args=self.argv, prog_name="remo")
        except SystemExit as done:
            return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        return 0

    def _unbind(self) -> None:
        from remo.cli import common
        from remo.client import calls

        for stream in (self.streams or ())[1:]:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        calls.untrack_calls()
        common.bind_agent_client(None, None)
        STREAMS.unbind()

    def listen(self, conn: socket.socket) -> None:
        """Read the client's messages: a forwarded signal, or its end."""
        while True:
            try:
                message, _ = link.receive(conn)
            except (OSError, link.LinkError, ValueError):
                message = None
            if message is None:
                self.abandon()
                return
            if isinstance(message.get("signal"), int):
                self.interrupt()

    def interrupt(self) -> None:
        """Ctrl-C in the client: KeyboardInterrupt in the thread, woken from its calls."""
        from remo.client import calls

        ident = self.thread.ident
        with self._state:
            if not self.started:
                self.owed = True
                return
            if not self.running or ident is None:
                return
            # Inside grpc: its calls cancelled, raised as grpc's step ends; elsewhere
            # raised at once, before it can begin one (see remo.client.calls.interrupt).
            calls.interrupt(
                ident,
                KeyboardInterrupt(),
                elsewhere=lambda: ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
                ),
            )
            self.interrupted = True
        calls.cancel_calls(ident)

    def abandon(self) -> None:
        """The client went away: whatever the thread still writes goes nowhere."""
        with self._fds_lock:
            if self.gone.is_set():
                return
            self.gone.set()
            # (none left once the command is done: closed, their numbers maybe another
            # command's already, which must not be pointed anywhere)
            if self.fds:
                devnull = os.open(os.devnull, os.O_RDWR)
                try:
                    for fd in self.fds:
                        with contextlib.suppress(OSError):
                            os.dup2(devnull, fd)
                finally:
                    os.close(devnull)
        self.interrupt()  # (a no-op once the verb is done)

    def close(self) -> None:
        if self.streams is not None:
            for stream in self.streams:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        with self._fds_lock:
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.fds = []


class Workers:
    """Threads for the connections and their watchers, kept for the next ones: starting
    a thread costs a command ~0.15 ms (the starter waits until it runs), waking one that
    waits ~0.02. A thread whose work raised is not kept; one idle for
    :data:`WORKER_IDLE` seconds ends.

    (Each is a daemon: what is per thread — streams, the client lent, tracked calls,
    click's context — is unbound by each command at its end, and an interrupt raised in
    one is withdrawn before it finishes: see :meth:`Command.run`.)
    """

    def __init__(self, idle: float | None = None) -> None:
        self._idle_timeout = WORKER_IDLE if idle is None else idle
        self._work: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        #: Threads waiting for work, less the work queued for them (under ``_lock``,
        #: where work is queued too: idle + queued = threads waiting).
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, target: Callable[..., object], *args: Any) -> None:
        """Run ``target(*args)`` on a waiting thread, or a new one."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put((target, args))
                return
        threading.Thread(target=self._serve, args=(target, args), daemon=True).start()

    def _serve(self, target: Callable[..., object], args: tuple[Any, ...]) -> None:
        while True:
            target(*args)  # (if it raises, this thread ends with it, as it used to)
            with self._lock:
                self._idle += 1
            try:
                target, args = self._work.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._work.empty():
                        self._idle -= 1
                        return
                    target, args = self._work.get_nowait()


#: Seconds a worker thread of the agent waits for more work before it ends.
WORKER_IDLE = 60.0

#: The process's stdin, stdout and stderr, per thread (installed in :func:`main`).
STREAMS = ThreadStreams()


def _clear_async_exception(ident: int | None) -> None:
    """Withdraw an interrupt raised in thread ``ident`` that has not landed yet."""
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)


def _exclusive(path: str) -> int | None:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _profile() -> tuple[str, tuple[int, int, int]]:
    """The credential file this agent's selection names, and its identity now."""
    from remo.client.profiles import select

    path = select(None).path
    info = os.stat(path)
    return str(path), (info.st_ino, info.st_mtime_ns, info.st_size)


def _shared_client() -> Any:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from remo.client.sync import Client

    return Client.from_profile(None)


def main(argv: list[str]) -> None:
    path, chosen, idle = argv[0], argv[1], float(argv[2])
    profile, from_env = json.loads(chosen)[:2]
    if profile or from_env:
        # what --profile or $REMO_PROFILE chose, made absolute (see agent_link.selection)
        os.environ["REMO_PROFILE"] = profile or from_env
    os.chdir("/")  # keeps no directory of the user's busy
    # The lock first: commands that found no agent yet each start one, and all but the
    # first leave here, before importing grpc and click (~0.1 s of CPU each, taken from
    # the commands themselves on a small machine).
    link.make_private_dir(os.path.dirname(path))
    lock = _exclusive(path + ".lock")
    if lock is None:
        return  # another agent of this selection is starting or running
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: AGENT_STOP.set())
    STREAMS.install()
    agent = Agent(path, chosen, idle, lock)
    watcher = threading.Thread(target=_stop_on_signal, args=(agent,), daemon=True)
    watcher.start()
    agent.serve()
    # Closing tells the server the calls still open are over; a channel left locked (see
    # Agent._run) must not keep the agent alive, so not waited for beyond a few seconds.
    closing = threading.Thread(target=agent.client.close, daemon=True)
    closing.start()
    closing.join(CLOSE_TIMEOUT)
    sys.stdout.flush()
    os._exit(0)


#: Seconds the agent gives its client's close() before it exits anyway.
CLOSE_TIMEOUT = 5.0


AGENT_STOP = threading.Event()


def _warm() -> None:
    """Import the verbs now rather than in the first command through the agent, then
    leave what is loaded out of the garbage collector's full passes (gc.freeze): a
    pass over grpc's, protobuf's and click's objects would land in some command."""
    import gc
    import importlib

    from remo.cli.main import COMMANDS

    for verb in sorted(link.AGENT_VERBS):
        importlib.import_module(COMMANDS[verb][0])
    gc.freeze()


def _stop_on_signal(agent: Agent) -> None:
    AGENT_STOP.wait()
    agent.stop()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception:
        os._exit(1)

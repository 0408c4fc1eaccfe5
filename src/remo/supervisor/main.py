"""The supervisor process: lock, listen, serve requests, reap, and exit when idle.

Started by :mod:`remo.supervisor.client` as ``python -m remo.supervisor``. It forks
once more so that it is nobody's child (the process that launched it may be killed),
sets itself as a child subreaper so orphaned job processes are reaped here rather than
by PID 1, and holds an exclusive lock so one state directory has one supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from remo.cgroups.detect import detect
from remo.cgroups.none import NoneDriver
from remo.core.errors import InvalidArgument, RemoError
from remo.core.memory import return_free_memory
from remo.core.paths import StatePaths
from remo.core.spec import JobSpec
from remo.store.jobs import JobStore
from remo.supervisor.init import RELAY_BINARY
from remo.supervisor.options import SupervisorOptions
from remo.supervisor.protocol import encode, error_to_wire, read_message, usage_to_wire
from remo.supervisor.reaper import keep_reaping
from remo.supervisor.service import Supervisor

log = logging.getLogger("remo.supervisor")

_PR_SET_CHILD_SUBREAPER = 36
_FIRST_CLIENT_GRACE = 10.0


class Server:
    """Serves the supervisor socket; exits once nobody is connected and no job runs."""

    def __init__(self, supervisor: Supervisor, linger: float) -> None:
        self.supervisor = supervisor
        self.clients = 0
        self.linger = linger
        self.done = asyncio.Event()
        self._idle_timer: asyncio.TimerHandle | None = None
        #: Before this (loop time) it does not leave, until a first client came: its
        #: launcher is about to connect.
        self._not_before = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        self._not_before = 0.0  # a client came: no more waiting for the first one
        self._cancel_idle()
        pending: set[asyncio.Task[None]] = set()
        try:
            while (message := await read_message(reader)) is not None:
                task = asyncio.create_task(self._answer(message, writer))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except (ConnectionError, ValueError) as err:
            log.warning("dropping client: %s", err)
        except asyncio.CancelledError:
            # The supervisor is exiting (it does so only when idle): nothing to finish.
            for task in pending:
                task.cancel()
        finally:
            # Requests in flight run to their end even though nobody reads the answers:
            # a start cut in half would leave a job that runs but is not tracked.
            writer.close()
            self.clients -= 1
            self.check_idle()

    async def _answer(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        reply: dict[str, Any] = {"id": message.get("id")}
        try:
            reply["ok"] = await self._dispatch(message)
        except RemoError as err:
            reply["error"] = error_to_wire(err)
        except (KeyError, TypeError, ValueError) as err:
            reply["error"] = error_to_wire(InvalidArgument(f"malformed request: {err}"))
        except Exception as err:  # a bug: the caller must get an answer, not wait forever
            log.exception("%s failed", message.get("op"))
            reply["error"] = error_to_wire(RemoError(f"internal error in the supervisor: {err}"))
        if not writer.is_closing():
            writer.write(encode(reply))

    async def _dispatch(self, message: dict[str, Any]) -> Any:
        op = message.get("op")
        sup = self.supervisor
        if op == "start":
            return await sup.start(
                JobSpec.from_dict(message["spec"]),
                message.get("schedule_id"),
                str(message.get("request_id") or ""),
                message.get("stdin"),
            )
        if op == "stop":
            await sup.stop(str(message["job_id"]), float(message.get("grace", 10.0)))
            return None
        if op == "kill":
            await sup.kill(str(message["job_id"]), int(message["signal"]))
            return None
        if op == "usage":
            ids = message.get("job_ids")
            found = await sup.live_usage(None if ids is None else [str(i) for i in ids])
            return {job_id: usage_to_wire(usage) for job_id, usage in found.items()}
        if op == "remove":
            await sup.remove(str(message["job_id"]))
            return None
        if op == "purge":
            return await sup.purge(float(message["older_than"]))
        if op == "info":
            return {
                "pid": os.getpid(),
                "spawner": sup.pool.spawner_pid,
                "cgroups": sup.driver.name,
                "warnings": sup.warnings() + _privilege_warnings(),
                "running": len(sup.running),
            }
        raise InvalidArgument(f"unknown operation {op!r}")

    def check_idle(self) -> None:
        if self.clients == 0 and not self.supervisor.busy:
            self._cancel_idle()
            loop = asyncio.get_running_loop()
            delay = max(self.linger, self._not_before - loop.time())
            self._idle_timer = loop.call_later(delay, self._exit_if_still_idle)

    def await_first_client(self, grace: float) -> None:
        """Stay at least ``grace`` seconds for the launcher to connect, whatever ends
        meanwhile (a job recovered dead, finished after "ready", must not cut it short)."""
        self._not_before = asyncio.get_running_loop().time() + grace
        self.check_idle()

    def _exit_if_still_idle(self) -> None:
        if self.clients == 0 and not self.supervisor.busy:
            self.done.set()

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


def _privilege_warnings() -> list[str]:
    if os.geteuid() == 0:
        return []
    return ["not running as root: jobs run as this account, not as their owners"]


async def serve(paths: StatePaths, ready_fd: int | None, options: SupervisorOptions) -> None:
    store = JobStore(paths.jobs_db)
    driver = (
        detect()
        if options.cgroups
        else NoneDriver(
            "cgroups turned off: no limits, no usage figures, and stop kills only the process group"
        )
    )
    supervisor = Supervisor(
        paths,
        store,
        driver,
        use_namespaces=options.namespaces,
        exec_timeout=options.exec_timeout,
    )
    server = Server(supervisor, options.linger)
    supervisor.on_idle = server.check_idle
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGCHLD, supervisor.reap)
    for sig in (signal.SIGTERM, signal.SIGINT):
        # A stop of the supervisor must not orphan jobs: it leaves once they are done.
        loop.add_signal_handler(sig, lambda: log.info("asked to exit; waiting for jobs to end"))
    # The same wake-up descriptor asyncio set, without a traceback in the log each time
    # a storm of exits fills it: the signals it then drops, keep_reaping makes up for.
    signal.set_wakeup_fd(signal.set_wakeup_fd(-1), warn_on_full_buffer=False)
    supervisor.recover()
    supervisor.pool.launch()
    supervisor.reap()  # children that ended before the handler was installed
    # The socket is bound relative to the state dir (we chdir'd there) so that deep state
    # directories do not hit the 108-byte limit of unix socket paths.
    paths.supervisor_socket.unlink(missing_ok=True)
    listener = await asyncio.start_unix_server(server.handle, path=paths.supervisor_socket.name)
    os.chmod(paths.supervisor_socket.name, 0o600)
    if ready_fd is not None:
        # The launcher may have given up meanwhile (its caller was cancelled: a server
        # shutting down): serve all the same, and leave when idle as always, not crash
        # with the socket left behind.
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    # The launcher connects right after "ready"; give it time before idling out.
    server.await_first_client(_FIRST_CLIENT_GRACE)
    trimmer = asyncio.create_task(return_free_memory())
    reaping = asyncio.create_task(keep_reaping(supervisor.reap))
    await server.done.wait()
    trimmer.cancel()
    reaping.cancel()
    await supervisor.pool.close()
    listener.close()
    paths.supervisor_socket.unlink(missing_ok=True)
    store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="remo-supervisor")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--ready-fd", type=int)
    SupervisorOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    paths = StatePaths(Path(args.state_dir).resolve())
    if os.fork() != 0:  # the launcher reaps this parent at once; we are nobody's child
        os._exit(0)
    os.setsid()
    os.chdir(paths.root)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")
    log_fd = os.open(paths.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s"
    )
    lock = os.open(paths.supervisor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another supervisor owns this state dir (maybe just exiting): the launcher
        # retries its connection rather than running two.
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"busy\n")
        os._exit(0)
    log.info("started")
    if not RELAY_BINARY.exists() and os.environ.get("REMO_RELAY") != "python":
        # (an install built without setup.py, or without a C compiler: it works, at
        # ~1.5 MiB per running job instead of ~0.1; docs/CONFIG.md says how to fix it)
        log.warning("no compiled relay at %s: running jobs use the Python relay", RELAY_BINARY)
    try:
        asyncio.run(serve(paths, args.ready_fd, SupervisorOptions.from_args(args)))
    except Exception:
        log.exception("supervisor crashed")
        sys.exit(1)
    log.info("exiting: no clients and no running jobs")

"""The library's side of the supervisor socket: connect, launching the supervisor if needed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from remo.core.errors import SupervisorUnavailable
from remo.core.paths import StatePaths
from remo.supervisor.options import SupervisorOptions
from remo.supervisor.protocol import encode, error_from_wire, read_message

_LAUNCH_TIMEOUT = 30.0
_MAX_SUN_PATH = 100


class SupervisorClient:
    """One pipelined connection: many requests in flight, answers matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader_task = asyncio.create_task(self._read_replies())

    @classmethod
    async def connect(
        cls,
        paths: StatePaths,
        options: SupervisorOptions | None = None,
    ) -> SupervisorClient:
        """Connect to the supervisor of ``paths``, starting one with ``options`` when
        none runs."""
        deadline = time.monotonic() + _LAUNCH_TIMEOUT
        while True:
            try:
                reader, writer = await _open(paths)
                return cls(reader, writer)
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if time.monotonic() > deadline:
                raise SupervisorUnavailable(
                    f"the supervisor of {paths.root} did not start; see {paths.supervisor_log}"
                )
            await _launch(paths, options or SupervisorOptions(), deadline)

    async def call(self, op: str, **args: Any) -> Any:
        """Send one request and wait for its answer; raise the error the supervisor raised."""
        if self._writer.is_closing():
            raise SupervisorUnavailable("the connection to the supervisor is closed")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(encode({"id": request_id, "op": op, **args}))
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            raise error_from_wire(reply["error"])
        return reply.get("ok")

    @property
    def connected(self) -> bool:
        return not self._reader_task.done()

    async def wait_disconnected(self) -> None:
        """Return once the connection to the supervisor is gone (for whatever reason)."""
        await asyncio.wait([self._reader_task])

    async def _read_replies(self) -> None:
        error: Exception = SupervisorUnavailable("the supervisor closed the connection")
        try:
            while (reply := await read_message(self._reader)) is not None:
                future = self._pending.get(reply.get("id", -1))
                if future is not None and not future.done():
                    future.set_result(reply)
        except (ConnectionError, ValueError) as err:
            error = SupervisorUnavailable(f"lost the supervisor: {err}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task


async def _open(paths: StatePaths) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = str(paths.supervisor_socket)
    if len(path) <= _MAX_SUN_PATH:
        return await asyncio.open_unix_connection(path)
    # Unix socket paths are limited to 108 bytes: reach a deep state dir through a
    # short /proc/self/fd path to a descriptor of the directory.
    dir_fd = os.open(paths.root, os.O_PATH | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(
                sock, f"/proc/self/fd/{dir_fd}/{paths.supervisor_socket.name}"
            )
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(dir_fd)
    return await asyncio.open_unix_connection(sock=sock)


async def _launch(paths: StatePaths, options: SupervisorOptions, deadline: float) -> None:
    """Start ``python -m remo.supervisor`` and wait until it listens (or says it is not needed)."""
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    try:
        # Popen is safe from a threaded process (no Python code runs between fork and exec).
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remo.supervisor",
                "--state-dir",
                str(paths.root),
                "--ready-fd",
                str(write_end),
                *options.to_args(),
            ],
            pass_fds=(write_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(write_end)
        write_end = -1
        try:
            line = await _read_ready(read_end, max(deadline - time.monotonic(), 0.1))
        except BaseException:
            # Cancelled: the launched process (it forks the supervisor and exits once
            # its imports are done) is reaped by a thread, not waited for here.
            threading.Thread(target=process.wait, daemon=True).start()
            raise
        # The launched process forks the supervisor and exits at once: reap it (it is
        # long gone when the supervisor reports; the timeout only guards against a bug).
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        if line == b"busy\n":
            await asyncio.sleep(0.02)  # another supervisor is exiting; connect again shortly
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


async def _read_ready(fd: int, timeout: float) -> bytes:
    """The supervisor's one-line readiness report; b"" on EOF or timeout.

    Waits on the event loop (not in a thread), so a server shutting down meanwhile can
    cancel it at once.
    """
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(readable, timeout)
    except TimeoutError:
        return b""
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 64)

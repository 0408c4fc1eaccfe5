"""Jobs' stdin pipes: the write ends the API server holds, the read end the supervisor
opens, and writing with back-pressure."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remo.core.errors import StartFailed
from remo.output import stdin as job_stdin
from remo.supervisor.starts import _open_stdin


def test_the_supervisor_opens_only_a_proc_fd_pipe(tmp_path: Path) -> None:
    pipe = job_stdin.open_pipe()
    try:
        fd = _open_stdin(pipe.path)
        try:
            os.write(pipe.write_fd, b"hi")
            assert os.read(fd, 2) == b"hi"
            assert os.get_blocking(fd)  # the job reads an ordinary blocking stdin
        finally:
            os.close(fd)
        plain = tmp_path / "file"
        plain.write_text("x")
        with open(plain) as f:  # a /proc/<pid>/fd/<n> that is not a pipe
            with pytest.raises(StartFailed) as caught:
                _open_stdin(f"/proc/{os.getpid()}/fd/{f.fileno()}")
            assert caught.value.errno == errno.EINVAL
        for path in (str(plain), "/etc/shadow", f"/proc/{os.getpid()}/fd/{pipe.read_fd}/../x"):
            with pytest.raises(StartFailed):
                _open_stdin(path)
    finally:
        pipe.close_read_end()
        os.close(pipe.write_fd)


async def test_a_write_end_nobody_takes_is_closed() -> None:
    pipes = job_stdin.StdinPipes()
    pipe = job_stdin.open_pipe()
    pipes.keep("alice/1", pipe.write_fd, timeout=0.01)
    try:
        # the job's end sees end of file once the write end is closed
        loop = asyncio.get_running_loop()
        assert (
            await asyncio.wait_for(loop.run_in_executor(None, os.read, pipe.read_fd, 1), 5) == b""
        )
        assert pipes.take("alice/1") is None
    finally:
        pipe.close_read_end()


async def test_a_repeated_start_keeps_the_first_pipe() -> None:
    pipes = job_stdin.StdinPipes()
    first, second = job_stdin.open_pipe(), job_stdin.open_pipe()
    pipes.keep("alice/1", first.write_fd)
    pipes.keep("alice/1", second.write_fd)  # closed: the job never opened it
    assert pipes.take("alice/1") == first.write_fd
    assert os.read(second.read_fd, 1) == b""
    for pipe in (first, second):
        pipe.close_read_end()
    os.close(first.write_fd)
    pipes.close()


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


async def test_write_all_waits_for_room_and_stops_at_a_closed_reader() -> None:
    pipe = job_stdin.open_pipe()
    capacity = 1 << 20
    writer = asyncio.create_task(job_stdin.write_all(pipe.write_fd, chunks(64, 1 << 20)))
    await asyncio.sleep(0)
    assert not writer.done()  # 64 MiB do not fit: it waits for the reader
    got = os.read(pipe.read_fd, 1 << 16)
    assert got
    pipe.close_read_end()  # the job stops reading
    written, stopped = await asyncio.wait_for(writer, 5)
    assert stopped
    assert written <= capacity + (1 << 17) + len(got)
    os.close(pipe.write_fd)

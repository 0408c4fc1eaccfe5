"""Launching the supervisor when whoever launched it stops waiting half-way (a server
shutting down cancels the call that was starting one)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from remo.core.paths import StatePaths
from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.supervisor import client
from remo.supervisor.options import SupervisorOptions
from remo.worker import JobManager
from tests.support import wait_until


async def test_a_launch_given_up_leaves_a_supervisor_that_serves_then_leaves_cleanly(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = StatePaths(state_dir.resolve())
    paths.root.mkdir(mode=0o700)
    launched: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        launched.append(real_popen(*args, **kwargs))
        return launched[-1]

    async def cancelled(fd: int, timeout: float) -> bytes:
        raise asyncio.CancelledError  # the launcher's caller gave up before "ready"

    monkeypatch.setattr(client.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(client, "_read_ready", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await client._launch(paths, SupervisorOptions(linger=0), time.monotonic() + 30)
    monkeypatch.undo()
    [process] = launched
    # The launched process (it forks the supervisor and exits) is reaped all the same.
    # (returncode, not poll(): a poll would reap it itself)
    await wait_until(
        lambda: process.returncode is not None, what="the launched process to be reaped"
    )
    # The supervisor found nobody to tell it was ready: it serves anyway...
    await wait_until(paths.supervisor_socket.exists, 30, what="the supervisor to listen")
    async with JobManager.open(state_dir) as manager:
        job = await manager.start(JobSpec(["true"]))
        assert (await manager.wait(job)).state is JobState.SUCCEEDED
    # ...and leaves once idle, its socket with it, having crashed at no point.
    await wait_until(
        lambda: not paths.supervisor_socket.exists(), 30, what="the idle supervisor to leave"
    )
    assert "crashed" not in paths.supervisor_log.read_text()

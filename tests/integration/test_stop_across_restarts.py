"""A stop is a promise kept across supervisor restarts.

A job that ignores SIGTERM is stopped with a grace period; the supervisor is killed
during that period. The new supervisor re-adopts the job: it must still SIGKILL it at
the original deadline and record it as ``stopped`` by SIGKILL — not leave it running,
and not record it ``lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from remo.core.errors import RemoError
from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.store.jobs import JobStore, parse_job_id
from remo.worker import JobManager
from tests.integration.conftest import needs_root
from tests.support import wait_until

pytestmark = needs_root

#: Ignores SIGTERM, so only the stop's SIGKILL ends it.
STUBBORN = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]


async def stop_recorded(state_dir: Path, job_id: str) -> None:
    """Until the supervisor has recorded the stop (its TERM is sent with it)."""
    store = JobStore(state_dir / "jobs.db")
    try:
        key = parse_job_id(job_id)
        await wait_until(lambda: store.stop_requested(*key)[0], 10, what="the stop's record")
    finally:
        store.close()


async def ready(manager: JobManager, job_id: str) -> None:
    async for chunk in manager.output(job_id, follow=True):
        if b"ready" in chunk:
            return


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "plain"])
async def test_a_stop_escalates_after_the_supervisor_that_took_it_died(
    state_dir: Path, namespaces: bool
) -> None:
    async with JobManager.open(state_dir, namespaces=namespaces) as manager:
        job = await manager.start(JobSpec(STUBBORN))
        await ready(manager, job)
        stopping = asyncio.create_task(manager.stop(job, grace=2))
        await stop_recorded(state_dir, job)
        os.kill(manager._info["pid"], signal.SIGKILL)
        # (the library re-sends the stop to the next supervisor, which must keep the
        # first one's deadline; before, it re-adopted the job without one, for ever)
        status = await asyncio.wait_for(manager.wait(job), 60)
        with contextlib.suppress(RemoError):
            await stopping
    assert status.state is JobState.STOPPED, status
    assert status.signal == signal.SIGKILL
    assert "lost" not in status.reason and "unknown" not in status.reason


async def test_a_later_stop_brings_a_restarted_supervisors_deadline_forward(
    state_dir: Path,
) -> None:
    async with JobManager.open(state_dir) as manager:
        job = await manager.start(JobSpec(STUBBORN))
        await ready(manager, job)
        stopping = asyncio.create_task(manager.stop(job, grace=3600))
        await stop_recorded(state_dir, job)
        os.kill(manager._info["pid"], signal.SIGKILL)
        status = await asyncio.wait_for(manager.stop(job, grace=0), 60)
        with contextlib.suppress(RemoError):
            await asyncio.wait_for(stopping, 60)  # the same end answers the first stop
    assert status.state is JobState.STOPPED and status.signal == signal.SIGKILL

"""A start is done at most once, even when the supervisor dies in the middle of it.

The job's own first act is to SIGKILL the supervisor (no PID namespace, so it can see
it): the supervisor dies while the start is under way — before or after it has read
the init's report. The library resends the start with its request id to the next
supervisor, which must find the job (its row is written before the command can run)
and adopt it, not run the command a second time.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from remo.core.errors import SupervisorUnavailable
from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.worker import JobManager
from tests.integration.conftest import needs_root

pytestmark = needs_root


async def test_a_start_cut_short_by_the_supervisors_death_runs_its_command_once(
    state_dir: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    async with JobManager.open(state_dir, namespaces=False) as manager:
        for _ in range(3):
            request_id = uuid.uuid4().hex
            script = f'kill -KILL {manager._info["pid"]}; mktemp "{markers}/{request_id}.XXXX"'
            spec = JobSpec(["sh", "-c", script])
            job = None
            for _attempt in range(3):  # what a client does when a start raised
                with contextlib.suppress(SupervisorUnavailable):
                    job = await manager.start(spec, request_id=request_id)
                    break
            assert job is not None
            status = await manager.wait(job)
            assert status.state is JobState.SUCCEEDED, (status.state, status.reason)
            assert len(list(markers.glob(f"{request_id}.*"))) == 1, "the command ran twice"
            with contextlib.suppress(SupervisorUnavailable):
                await manager.list()  # a new supervisor for the next round

"""A stop that comes after Slurm has started a job but before the server's poll has seen
it (the command has printed already; the job table still says queued): the job gets the
TERM and the grace of a running one. A queued job's ``scancel`` would be Slurm's own
cancellation instead: TERM to the batch script alone (the init, which ignores it) and
KILL ``KillWait`` later, so the job would never see the TERM and would end by signal 9
with no status of its own (seen: test_stop_a_running_job_term_then_kill, whose stop
often came within the 0.2 s between two polls)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState
from remo.slurm import ending
from remo.slurm.admin import stop_jobs_of
from remo.slurm.jobs import SlurmJobs
from tests.slurm.cluster import Cluster
from tests.slurm.conftest import ALICE, slurm_settings
from tests.support import wait_until


def _slurm_state(cluster: Cluster, slurm_id: int) -> str:
    done = cluster.command("squeue", "--noheader", "--format=%T", f"--jobs={slurm_id}")
    return done.stdout.strip()


@pytest.mark.parametrize("how", ["stop", "admin"])
async def test_a_stop_the_poller_has_not_caught_up_with_still_terms_the_job(
    tmp_path: Path, cluster: Cluster, unix_users: tuple[str, ...], how: str
) -> None:
    # No polls but those a start or a stop asks for: the table stays as stale as needed.
    settings = slurm_settings(cluster, tmp_path.name, poll_interval=60.0)
    both_cpus = Limits(cpu=2)
    async with SlurmJobs.open(settings, tmp_path / "state") as backend:
        blocker = await backend.start(JobSpec(["sleep", "300"], owner=ALICE, limits=both_cpus))
        polite = ["sh", "-c", "echo ready; exec sleep 300"]
        job_id = await backend.start(JobSpec(polite, owner=ALICE, limits=both_cpus))
        seq = int(job_id.rpartition("/")[2])
        job_dir = backend.job_dir(ALICE, seq)
        blocker_slurm = backend.table.slurm_id(ALICE, int(blocker.rpartition("/")[2]))
        assert blocker_slurm is not None
        await wait_until(
            lambda: _slurm_state(cluster, blocker_slurm) == "RUNNING", 60, what="the blocker"
        )
        # The job waits for the blocker's CPUs; once they are free Slurm starts it, and
        # no poll of the server sees that.
        cluster.command("scancel", "--signal=KILL", str(blocker_slurm))
        await wait_until((job_dir / "stdout").read_bytes, 60, what="the command to run")
        assert (await backend.status(job_id)).state is JobState.QUEUED  # (stale, on purpose)

        stopping = None
        if how == "stop":
            stopping = asyncio.create_task(backend.stop(job_id, grace=30))
        else:  # remo admin revoke --stop-jobs, from the state directory
            assert await stop_jobs_of(tmp_path / "state", ALICE, grace=30) == 2

        def recorded() -> bool:
            status = ending.read_status(job_dir)
            return status is not None and status.wait_status is not None

        await wait_until(recorded, 20, what="the init to record the job's end (the TERM)")
        await backend.poll()  # (the stop's own poll may have come before that)
        if stopping is not None:
            ended = await asyncio.wait_for(stopping, 30)
        else:
            ended = await backend.status(job_id)
    assert ended.state is JobState.STOPPED and ended.signal == 15
    assert ended.reason == ""  # the job's own end, not Slurm's CANCELLED

"""A server that stopped between recording a job and learning its Slurm id: the next
one finds the job in Slurm by its name, or records that it was never submitted."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.slurm import jobdir, jobs, script
from remo.slurm.commands import Account
from remo.slurm.jobs import SlurmJobs
from tests.slurm.cluster import Cluster
from tests.slurm.conftest import ALICE, slurm_settings
from tests.support import wait_until


async def test_a_submission_without_its_id_is_found_by_name(
    tmp_path: Path, cluster: Cluster, unix_users: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No search while this test submits (the poller would find nothing yet and record
    # the job as never submitted); afterwards, as if the server came back much later.
    monkeypatch.setattr(jobs, "SUBMIT_GRACE", 3600.0)
    settings = slurm_settings(cluster, tmp_path.name)
    entry = pwd.getpwnam(ALICE)
    account = Account(ALICE, entry.pw_uid, entry.pw_gid, (entry.pw_gid,), entry.pw_dir)
    spec = JobSpec(["echo", "found"], owner=ALICE)
    async with SlurmJobs.open(settings, tmp_path / "state") as backend:
        # As a start does, up to the sbatch whose reply was lost (the server died):
        submitted = backend.table.insert_queued(ALICE, spec, "")
        job_dir = backend.job_dir(ALICE, submitted)
        jobdir.make(job_dir, account)
        env = jobdir.job_env(account, {})
        instance = backend.table.instance
        batch = script.make_batch(spec, env, ALICE, submitted, job_dir, "", settings, instance)
        await backend.slurm.submit(batch.options, batch.script, account)
        # ... and one recorded but never submitted at all:
        never = backend.table.insert_queued(ALICE, JobSpec(["true"], owner=ALICE), "")
        monkeypatch.setattr(jobs, "SUBMIT_GRACE", 0.0)

        async def ended(seq: int) -> bool:
            return (await backend.status(f"{ALICE}/{seq}")).ended

        await wait_until(lambda: ended(submitted), 60, what="the found job's end")
        await wait_until(lambda: ended(never), 60, what="the lost job's end")
        found = await backend.status(f"{ALICE}/{submitted}")
        lost = await backend.status(f"{ALICE}/{never}")
        printed = b"".join([p async for p in backend.output(found.id)])
    assert found.state is JobState.SUCCEEDED and printed == b"found\n"
    assert lost.state is JobState.LOST
    assert lost.reason == "the server stopped while submitting it; Slurm has no such job"

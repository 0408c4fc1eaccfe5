"""The test cluster itself: a test account submits, sees and cancels its own jobs."""

from __future__ import annotations

from tests.slurm.cluster import Cluster
from tests.slurm.conftest import ALICE
from tests.support import wait_until_sync


def test_an_account_submits_lists_and_cancels(
    cluster: Cluster, unix_users: tuple[str, ...]
) -> None:
    submitted = cluster.command(
        "sbatch", "--parsable", "--output=/dev/null", "--wrap=sleep 300", user=ALICE
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.isdigit()

    def state() -> str:
        return cluster.command(
            "squeue", "--noheader", "--states=all", "--format=%u|%T", f"--jobs={job_id}", user=ALICE
        ).stdout.strip()

    assert wait_until_sync(lambda: state() == f"{ALICE}|RUNNING", 30, what="the job to run")
    cancelled = cluster.command("scancel", job_id, user=ALICE)
    assert cancelled.returncode == 0, cancelled.stderr
    assert wait_until_sync(lambda: state() == f"{ALICE}|CANCELLED", 30, what="the cancel")

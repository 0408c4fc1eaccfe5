"""The real ``remo`` CLI against a server with the Slurm backend: the same commands,
streams and exit codes as against a local server, and the ``queued`` state shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, cli_env, run_cli
from tests.slurm.conftest import ALICE
from tests.support import wait_until

__all__ = ["cli_env"]  # (the e2e fixture, used here)


@pytest.fixture
def credential(server: Server) -> Path:
    return server.credential(ALICE, "operator")


async def test_run_streams_both_outputs_and_returns_the_jobs_status(
    cli_env: dict[str, str],
) -> None:
    code, out, err = await run_cli(
        cli_env, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3", timeout=90
    )
    assert (code, out) == (3, b"out\n")
    assert "err\n" in err


async def test_status_and_ps_show_a_queued_job_and_its_reason(cli_env: dict[str, str]) -> None:
    code, out, _ = await run_cli(cli_env, "run", "-d", "--cpu", "2", "--", "sleep", "300")
    assert code == 0
    hog = out.decode().strip()

    async def running() -> bool:
        _, shown, _ = await run_cli(cli_env, "status", "--json", hog)
        return bool(json.loads(shown)["state"] == "JOB_STATE_RUNNING")

    await wait_until(running, 60, what="the first job to run")
    code, out, _ = await run_cli(cli_env, "run", "-d", "--cpu", "2", "--", "sleep", "300")
    waiting = out.decode().strip()
    try:

        async def queued_with_reason() -> dict[str, object] | None:
            _, shown, _ = await run_cli(cli_env, "status", "--json", waiting)
            job: dict[str, object] = json.loads(shown)
            return job if job.get("state") == "JOB_STATE_QUEUED" and job.get("reason") else None

        job = await wait_until(queued_with_reason, 60, what="the second job queued")
        code, listed, _ = await run_cli(cli_env, "ps", "--state", "queued", "-q")
        code, shown, _ = await run_cli(cli_env, "status", waiting)
        assert listed.decode().split() == [waiting]
        assert job["reason"] in ("Resources", "Priority")
        assert "queued" in shown.decode().split()  # the state as `status` shows it
    finally:
        for job_id in (waiting, hog):
            await run_cli(cli_env, "stop", "--grace", "5s", job_id)

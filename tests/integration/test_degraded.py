"""Without cgroups (or without root) jobs still run, and remo says what is off."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from remo.core.errors import InvalidArgument
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState
from remo.worker import JobManager


async def test_without_cgroups_jobs_run_and_protections_are_named(tmp_path: Path) -> None:
    async with JobManager.open(tmp_path / "state", cgroups=False, namespaces=False) as jobs:
        assert jobs.cgroup_mode == "none"
        off = " ".join(jobs.protections_off)
        assert "cgroups turned off" in off and "namespaces" in off
        job = await jobs.start(JobSpec(["sh", "-c", "echo hello; exit 3"]))
        status = await jobs.wait(job)
        assert (status.state, status.exit_code) == (JobState.FAILED, 3)
        assert b"".join([c async for c in jobs.output(job)]) == b"hello\n"
        with pytest.raises(InvalidArgument, match="cannot enforce"):
            await jobs.start(JobSpec(["true"], limits=Limits(memory=64 << 20)))
        # stop still ends the whole process group
        tree = await jobs.start(JobSpec(["sh", "-c", "sleep 60 & sleep 60"]))
        stopped = await jobs.stop(tree, grace=0.2)
        assert stopped.state is JobState.STOPPED
        survivors = subprocess.run(
            ["pgrep", "-g", str(stopped.pid)], capture_output=True, check=False
        )
        assert survivors.stdout == b""


def _runs_python_as(user: str) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", "import remo"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another account")
def test_as_an_unprivileged_account(tmp_path: Path, unix_users: tuple[str, ...]) -> None:
    user = unix_users[0]
    if not _runs_python_as(user):
        pytest.skip(f"{user} cannot run this Python interpreter (its directory is private)")
    state = tmp_path / "state"
    tmp_path.chmod(0o777)
    script = textwrap.dedent(
        f"""
        import asyncio
        from remo.worker import JobManager, JobSpec
        async def main():
            async with JobManager.open({str(state)!r}) as jobs:
                print("OFF", " | ".join(jobs.protections_off))
                job = await jobs.start(JobSpec(["id", "-un"]))
                await jobs.wait(job)
                print("OUT", b"".join([c async for c in jobs.output(job)]).decode().strip())
        asyncio.run(main())
        """
    )
    result = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "not running as root" in result.stdout
    assert f"OUT {user}" in result.stdout
    assert pwd.getpwnam(user).pw_uid == state.stat().st_uid

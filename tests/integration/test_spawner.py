"""Job inits wait ahead of time (see remo.supervisor.spawner): what happens when the
machinery around them fails, and who they are once their job runs."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.worker import JobManager
from tests.support import wait_until


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


async def supervisor_info(manager: JobManager) -> dict[str, int]:
    info = await manager._client.call("info")
    return {"pid": int(info["pid"]), "spawner": int(info["spawner"])}


async def waiting_inits(manager: JobManager, at_least: int = 1) -> set[int]:
    """The supervisor's children that are neither the spawner nor a job's init (the
    spawner forks them in the background: until there are ``at_least``)."""

    async def found() -> set[int]:
        info = await supervisor_info(manager)
        inits = {p for p in children(info["pid"]) - {info["spawner"]} if not children(p)}
        return inits if len(inits) >= at_least else set()

    return await wait_until(found, 5, what=f"{at_least} waiting init(s)")


async def gone(pids: set[int]) -> None:
    """Until the supervisor has reaped them (a kill takes effect asynchronously)."""
    await wait_until(
        lambda: not any(os.path.exists(f"/proc/{p}") for p in pids),
        5,
        what=f"{sorted(pids)} to be reaped",
    )


def spares(manager: JobManager) -> set[int]:
    """Inits whose job directory is made ahead of time."""
    spare = manager.paths.spare_dir
    return {int(p.name) for p in spare.iterdir()} if spare.is_dir() else set()


async def test_an_init_killed_while_waiting_is_skipped(manager: JobManager) -> None:
    inits = await waiting_inits(manager, at_least=2)
    for pid in inits:
        spare = manager.paths.spare_dir / str(pid)
        # (the last of its files made)
        await wait_until((spare / ".exit.tmp").exists, 5, what=f"a job directory for init {pid}")
        assert sorted(p.name for p in spare.iterdir()) == [
            ".exit.tmp",
            ".status",
            "records",
            "stderr",
            "stdout",
        ]
        os.kill(pid, signal.SIGKILL)
    await gone(inits)
    await wait_until(lambda: not spares(manager) & inits, 5, what="their job directories to go")
    job = await manager.start(JobSpec(["echo", "still fine"]))
    status = await manager.wait(job)
    assert status.state is JobState.SUCCEEDED
    assert b"".join([c async for c in manager.output(job)]) == b"still fine\n"


async def test_a_killed_spawner_is_replaced(manager: JobManager) -> None:
    before = await supervisor_info(manager)
    os.kill(before["spawner"], signal.SIGKILL)
    inits = await waiting_inits(manager)
    for pid in inits:
        os.kill(pid, signal.SIGKILL)  # and what it had made: only a new one can help
    await gone({before["spawner"], *inits})
    job = await asyncio.wait_for(manager.start(JobSpec(["true"])), 30)
    assert (await manager.wait(job)).state is JobState.SUCCEEDED
    after = await supervisor_info(manager)
    assert after["pid"] == before["pid"]
    assert after["spawner"] not in (0, before["spawner"])


async def test_spawner_and_waiting_inits_leave_with_the_supervisor(state_dir: Path) -> None:
    async with JobManager.open(state_dir) as manager:
        info = await supervisor_info(manager)
        inits = await waiting_inits(manager, at_least=2)
        supervisor = info["pid"]
    await wait_until(
        lambda: spares(manager) >= inits, 5, what="job directories for the waiting inits"
    )
    os.kill(supervisor, signal.SIGKILL)
    await gone({supervisor, info["spawner"], *inits})
    async with JobManager.open(state_dir):  # a new supervisor, which cleans up after the old
        assert not spares(manager) & inits
    # One that exits in good order (at once: it lingers 0 s) leaves none.
    await wait_until(lambda: not spares(manager), 5, what="every job directory to go")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch accounts")
async def test_only_the_job_runs_as_its_account_its_init_stays_root(
    manager: JobManager, unix_users: tuple[str, ...]
) -> None:
    """The job drops to its account in its own fork; the init that records its outcome
    stays root, out of that account's reach."""
    account = pwd.getpwnam(unix_users[0])
    job = await manager.start(JobSpec(["sleep", "30"], owner=account.pw_name))
    try:
        status = await manager.status(job)
        stat = Path(f"/proc/{status.pid}/stat").read_text()
        init_pid = int(stat.rsplit(")", 1)[1].split()[1])

        def uids(pid: int) -> set[int]:
            line = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split("\n")[0]
            return set(map(int, line.split()))

        assert uids(status.pid) == {account.pw_uid}  # real, effective, saved, fs
        assert uids(init_pid) == {0}

        def read_as_account(path: str) -> subprocess.CompletedProcess[bytes]:
            switch = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}"]
            return subprocess.run(
                ["setpriv", *switch, "--clear-groups", "cat", path],
                capture_output=True,
                check=False,
            )

        assert read_as_account(f"/proc/{status.pid}/environ").returncode == 0
        denied = read_as_account(f"/proc/{init_pid}/environ")
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr
    finally:
        await manager.stop(job, grace=0)


async def test_jobs_run_at_the_servers_priority(manager: JobManager) -> None:
    """Inits are made at a lower priority (see spawner._yield_cpu); their jobs are not."""
    job = await manager.start(JobSpec(["nice"]))
    assert (await manager.wait(job)).state is JobState.SUCCEEDED
    output = b"".join([c async for c in manager.output(job)])
    assert int(output) == os.getpriority(os.PRIO_PROCESS, 0)


async def test_jobs_on_another_filesystem_than_the_state_dir(
    state_dir: Path, tmp_path: Path
) -> None:
    """An operator may put jobs/ on a bigger disk (a symlink): the spare directories,
    made beside it, cannot be renamed there, so job directories are made at start."""
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    target = elsewhere / f"remo-test-jobs-{os.getpid()}"
    target.mkdir(mode=0o700)
    try:
        state_dir.mkdir(mode=0o700)
        (state_dir / "jobs").symlink_to(target)
        async with JobManager.open(state_dir) as manager:
            for word in ("first", "second", "third"):  # spares taken, then none made
                job = await manager.start(JobSpec(["echo", word]))
                assert (await manager.wait(job)).state is JobState.SUCCEEDED
                assert b"".join([c async for c in manager.output(job)]) == word.encode() + b"\n"
            assert len(list(target.rglob("records"))) == 3  # on the other filesystem
    finally:
        shutil.rmtree(target, ignore_errors=True)

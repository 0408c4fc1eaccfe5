"""A start whose program cannot be read: it fails in bounded time and leaves nothing.

exec reads the first page of the program. Here that page is held locked by a read that
the block layer throttles to one byte per second (the way a job under a tiny io limit,
or a hung network filesystem, would hold it): exec waits for it in the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.core.errors import StartFailed
from remo.core.paths import StatePaths
from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.supervisor.service import instance_tag
from remo.worker import JobManager
from tests.conftest import job_cgroups
from tests.support import wait_until_sync

BLKIO = Path("/sys/fs/cgroup/blkio")


def own_blkio_group() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "blkio" in controllers.split(","):
            return BLKIO / path.lstrip("/")
    pytest.skip("no cgroup v1 blkio hierarchy")


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


@pytest.fixture
def locked_program(tmp_path: Path) -> Iterator[Path]:
    """A copy of ``true`` whose first page a throttled ``dd`` is (slowly) reading."""
    if os.geteuid() != 0 or not BLKIO.is_dir():
        pytest.skip("needs root and the v1 blkio controller")
    program = tmp_path / "stalled-true"
    shutil.copy("/bin/true", program)
    fd = os.open(program, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
        device = os.fstat(fd).st_dev
    finally:
        os.close(fd)
    subprocess.run(["dd", "if=/dev/null", "of=/dev/null"], check=True, capture_output=True)
    group = own_blkio_group() / f"remo-test-stall-{os.getpid()}"
    group.mkdir()
    reader: subprocess.Popen[bytes] | None = None
    rule = f"{os.major(device)}:{os.minor(device)}"
    try:
        try:
            (group / "blkio.throttle.read_bps_device").write_text(f"{rule} 1\n")
        except OSError as err:  # a partition, a virtual filesystem: nothing to throttle
            pytest.skip(f"cannot throttle reads of {rule}: {err.strerror}")
        reader = subprocess.Popen(
            [
                "sh",
                "-c",
                f'echo $$ > {group}/cgroup.procs && exec dd if="$1" of=/dev/null bs=4096 count=1',
                "sh",
                str(program),
            ],
            stderr=subprocess.DEVNULL,
        )

        def throttled(dd: subprocess.Popen[bytes] = reader) -> bool:
            """dd's read of the program is queued: the page stays locked."""
            assert dd.poll() is None, "the throttled read finished"
            return state_of(dd.pid) == "D" and exe_of(dd.pid).endswith("/dd")

        wait_until_sync(throttled, 10, what="dd's read to be throttled")
        yield program
    finally:
        # Lifting the limit lets the queued read through: the page unlocks, dd ends.
        with contextlib.suppress(OSError):  # (no limit was set when setting it failed)
            (group / "blkio.throttle.read_bps_device").write_text(f"{rule} 0\n")
        if reader is not None:
            reader.wait(timeout=30)

        def removed() -> bool:
            try:
                group.rmdir()
            except OSError:
                return False  # dd is still leaving it
            return True

        with contextlib.suppress(AssertionError):  # (a stray test group is no failure)
            wait_until_sync(removed, 5, what=f"{group} to be removed")


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "plain"])
async def test_a_start_whose_exec_stalls_fails_in_bounded_time(
    locked_program: Path, state_dir: Path, namespaces: bool
) -> None:
    async with JobManager.open(state_dir, exec_timeout=3.0, namespaces=namespaces) as jobs:
        began = time.monotonic()
        with pytest.raises(StartFailed) as failed:
            await jobs.start(JobSpec([str(locked_program)]))
        # Not a performance figure: the start must end, not wait for the read (hours).
        assert time.monotonic() - began < 60
        assert failed.value.stage == "exec"
        assert failed.value.errno == errno.ETIMEDOUT
        assert "did not start within 3 s" in str(failed.value)
        # Nothing of it is left: no record, no directory, no cgroup, no process.
        assert await jobs.list() == []
        assert not list((state_dir / "jobs").rglob("records"))
        assert not job_cgroups(instance_tag(StatePaths(state_dir.resolve())))
        info = await jobs._client.call("info")
        for child in children(int(info["pid"])) - {int(info["spawner"])}:
            assert not children(child), "a job's init is left"  # only waiting inits
        # The supervisor is unharmed: the next start works, with the next number.
        job = await jobs.start(JobSpec(["echo", "next"]))
        status = await jobs.wait(job)
        assert status.state is JobState.SUCCEEDED

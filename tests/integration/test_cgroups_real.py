"""The cgroup managers on this machine's real cgroupfs (root only).

Expected locations are computed here independently of :mod:`remo.cgroups.detect`: for
every hierarchy remo uses, the job must sit at ``<our own cgroup>/<parent>/<name>``.

Other remo instances on this machine (a supervisor under test, say) share the default
``remo`` parent and may sweep groups they do not know, so most tests use a parent of
their own, which the module removes at the end; one test checks the default name.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.cgroups import JobGroup, detect
from remo.cgroups.base import CgroupDriver
from remo.cgroups.detect import block_devices
from remo.core.spec import Limits
from tests.support import wait_until_sync

ROOT = "/sys/fs/cgroup"
USED = {"cpu", "cpuacct", "memory", "pids", "blkio", "freezer"}
PREFIX = f"t{os.getpid()}-"
PARENT = f"remo-itest{os.getpid()}"


def own_dirs() -> list[str]:
    """Our cgroup directory in each hierarchy remo should use (v1 ones and cgroup2)."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else ["cgroup2"]:
            paths[c] = path
    found, v1 = [], False
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        root, point = left.split()[3:5]
        fstype, _, options = right.split()
        if not point.startswith(ROOT) or fstype not in ("cgroup", "cgroup2"):
            continue
        names = set(options.split(",")) & USED if fstype == "cgroup" else {"cgroup2"}
        if names:
            v1 = v1 or fstype == "cgroup"
            path = paths[sorted(names)[0]]
            rel = path[len(root.rstrip("/")) :]
            found.append(os.path.normpath(point + "/" + rel))
    if not v1:  # pure v2: the caller may already have been moved into the server leaf
        found = [d[: -len("/remo-server")] if d.endswith("/remo-server") else d for d in found]
    return found


def usable() -> bool:
    if os.geteuid() != 0 or not os.access(ROOT, os.W_OK):
        return False
    try:
        return bool(own_dirs())
    except (OSError, ValueError, KeyError):
        return False


pytestmark = [
    pytest.mark.root,
    pytest.mark.cgroups,
    pytest.mark.skipif(not usable(), reason="needs root and a writable /sys/fs/cgroup"),
]


@pytest.fixture(scope="module")
def driver() -> Iterator[CgroupDriver]:
    found = detect(parent=PARENT)
    assert found.name in ("hybrid", "v1", "v2")
    yield found
    for name in found.list_names():
        if group := found.open(name):
            group.destroy()
    parents = [os.path.join(d, PARENT) for d in own_dirs()]
    for parent in parents:
        os.rmdir(parent)
    assert not [p for p in parents if os.path.exists(p)]


@pytest.fixture
def make(driver: CgroupDriver) -> Iterator[list[JobGroup]]:
    groups: list[JobGroup] = []
    yield groups
    for group in groups:
        group.destroy()
        assert not any(os.path.exists(os.path.dirname(f)) for f in group.join_files())


def create(driver: CgroupDriver, groups: list[JobGroup], suffix: str, limits: Limits) -> JobGroup:
    group = driver.create(PREFIX + suffix, limits)
    groups.append(group)
    return group


def spawn(group: JobGroup, argv: list[str], stdout: int | None = None) -> subprocess.Popen[bytes]:
    """Start argv inside ``group`` the way the supervisor does: fds opened before fork,
    the child writes "0" to each before exec."""
    fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in group.join_files()]

    def join() -> None:
        for fd in fds:
            os.write(fd, b"0")

    try:
        # The supervisor's way; this test process starts no threads.
        return subprocess.Popen(argv, stdout=stdout, preexec_fn=join)  # noqa: PLW1509
    finally:
        for fd in fds:
            os.close(fd)


def job_file(group: JobGroup, file: str) -> str:
    [path] = [
        p for f in group.join_files() if os.path.exists(p := os.path.join(os.path.dirname(f), file))
    ]
    return Path(path).read_text()


def wait_empty(group: JobGroup, timeout: float = 5.0) -> None:
    wait_until_sync(lambda: not group.populated(), timeout, what="the group to empty")


def dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_default_parent_is_remo_under_own_cgroup() -> None:
    parents = [os.path.join(d, "remo") for d in own_dirs()]
    existed = {p for p in parents if os.path.isdir(p)}
    driver = detect()
    everything = Limits(memory=64 << 20, cpu=1, pids=100)
    group = driver.create(PREFIX + "default", everything)
    dirs = {os.path.dirname(f) for f in group.join_files()}
    try:
        # Only hierarchies the job needs (see V1Driver._needed), each under our own group.
        assert dirs <= {os.path.join(p, group.name) for p in parents}
        assert {d.split("/")[4] for d in dirs} >= {"memory", "cpu", "pids"}
        memory = [d for d in dirs if "/memory" in d]
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        own = {c: p for _, c, p in (line.split(":", 2) for line in lines)}
        if memory:  # e.g. /sys/fs/cgroup/memory/process_api/<hash>/remo/<name>
            assert memory[0].endswith(f"{own['memory'].rstrip('/')}/remo/{group.name}")
    finally:
        group.destroy()
    assert not [d for d in dirs if os.path.exists(d)]
    for parent in set(parents) - existed:
        with contextlib.suppress(OSError):  # another remo instance may use it by now
            os.rmdir(parent)


def test_the_jobs_group_weighs_as_many_processes_as_there_are_cpus(driver: CgroupDriver) -> None:
    """The kernel takes the weight remo gives its group: all jobs together weigh as many
    processes as the server has CPUs (cpu.shares 1024 each on v1, cpu.weight 100 on v2)."""
    cpus = len(os.sched_getaffinity(0))
    if driver.name == "v2":
        file, weight = "cpu.weight", min(10000, 100 * cpus)
    else:
        file, weight = "cpu.shares", min(262144, 1024 * cpus)
    weighed = [Path(d, PARENT, file) for d in own_dirs() if Path(d, PARENT, file).exists()]
    assert weighed, "no cpu controller for remo's group"
    for path in weighed:
        assert path.read_text().strip() == str(weight), path


def test_group_under_own_cgroup_with_limits(driver: CgroupDriver, make: list[JobGroup]) -> None:
    limits = Limits(cpu=0.5, memory=64 << 20, io_read_bps=1 << 20, io_write_bps=2 << 20, pids=32)
    group = create(driver, make, "limits", limits)
    dirs = {os.path.dirname(f) for f in group.join_files()}
    # The hierarchies that limit it (and cpuacct or freezer only where cgroup2 lacks
    # cpu.stat or cgroup.kill), each beneath our own cgroup.
    assert dirs <= {os.path.join(d, PARENT, group.name) for d in own_dirs()}
    limiting = {"cpu", "memory", "pids", "blkio"}
    child = spawn(group, ["sleep", "30"])
    try:
        assert group.pids() == [child.pid]
        assert group.populated()
        for line in Path(f"/proc/{child.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if not controllers or set(controllers.split(",")) & limiting:
                assert path.endswith(f"/{PARENT}/{group.name}"), line
    finally:
        child.kill()
        child.wait()
    devices = block_devices()
    if driver.name == "v2":
        assert job_file(group, "cpu.max") == "50000 100000\n"
        assert job_file(group, "memory.max") == f"{64 << 20}\n"
        assert job_file(group, "pids.max") == "33\n"  # 32 for the job, 1 for its init
        io = job_file(group, "io.max")
        for dev in devices:
            assert f"{dev} rbps=1048576 wbps=2097152" in io
    else:
        assert job_file(group, "cpu.cfs_quota_us") == "50000\n"
        assert job_file(group, "cpu.cfs_period_us") == "100000\n"
        assert job_file(group, "memory.limit_in_bytes") == f"{64 << 20}\n"
        with contextlib.suppress(ValueError):  # ValueError: no swap accounting here
            assert job_file(group, "memory.memsw.limit_in_bytes") == f"{64 << 20}\n"
        assert job_file(group, "pids.max") == "33\n"  # 32 for the job, 1 for its init
        for dev in devices:
            assert f"{dev} 1048576" in job_file(group, "blkio.throttle.read_bps_device")
            assert f"{dev} 2097152" in job_file(group, "blkio.throttle.write_bps_device")


def test_kill_reaches_setsid_double_forked_grandchild(
    driver: CgroupDriver, make: list[JobGroup], tmp_path: Path
) -> None:
    group = create(driver, make, "escape", Limits())
    pidfile = tmp_path / "pid"
    script = f"setsid sh -c 'sleep 300 & echo $! > {pidfile}; wait' </dev/null >/dev/null 2>&1 &"
    spawn(group, ["sh", "-c", script]).wait()  # the job's first process is gone at once
    grandchild = int(
        wait_until_sync(
            lambda: pidfile.exists() and pidfile.read_text().strip(), 5, what="the pid file"
        )
    )
    assert os.getsid(grandchild) != os.getsid(0)
    assert grandchild in group.pids()
    group.kill()
    wait_empty(group)
    assert dead(grandchild)
    assert group.pids() == []


def test_usage_and_cpu_limit(driver: CgroupDriver, make: list[JobGroup]) -> None:
    group = create(driver, make, "usage", Limits(cpu=0.2, memory=256 << 20))
    burn = "b = b'x' * (48 << 20)\nimport time\nt = time.time()\nwhile time.time() - t < 1: pass"
    child = spawn(group, [sys.executable, "-c", burn])
    assert child.wait(timeout=30) == 0
    usage = group.usage()
    assert usage.cpu_seconds is not None
    assert 0.1 < usage.cpu_seconds < 0.45  # 1 s of wall time at 0.2 cores
    assert usage.peak_memory_bytes is not None and usage.peak_memory_bytes >= 48 << 20
    assert usage.oom_kills == 0


def test_memory_limit_oom_kills(driver: CgroupDriver, make: list[JobGroup]) -> None:
    group = create(driver, make, "oom", Limits(memory=32 << 20))
    child = spawn(group, [sys.executable, "-c", "b = b'x' * (200 << 20)"])
    assert child.wait(timeout=30) == -9
    assert group.usage().oom_kills >= 1


def test_pids_limit(driver: CgroupDriver, make: list[JobGroup]) -> None:
    group = create(driver, make, "pids", Limits(pids=8))
    forker = (
        "import os, time\nn = 0\nfor _ in range(20):\n"
        "    try:\n        pid = os.fork()\n    except BlockingIOError:\n        break\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint(n)"
    )
    child = spawn(group, [sys.executable, "-c", forker], stdout=subprocess.PIPE)
    assert child.stdout is not None
    with child.stdout:  # the sleeping children keep the pipe open: read one line only
        # pids.max is 8 + 1 (the share of a job's init): the parent stands in for the init
        assert int(child.stdout.readline()) == 8
    assert child.wait(timeout=30) == 0
    assert len(group.pids()) == 8
    group.destroy()  # kills the sleeping children too
    assert group.pids() == []


def test_destroy_live_group_removes_every_directory(
    driver: CgroupDriver, make: list[JobGroup]
) -> None:
    group = create(driver, make, "live", Limits(memory=64 << 20))
    child = spawn(group, ["sleep", "30"])
    group.destroy()
    assert child.wait(timeout=5) == -9
    assert not any(os.path.exists(os.path.dirname(f)) for f in group.join_files())
    assert driver.open(group.name) is None


def test_create_destroy_cost(driver: CgroupDriver) -> None:
    limits = Limits(cpu=1, memory=256 << 20, io_read_bps=1 << 20, io_write_bps=1 << 20, pids=64)
    costs = []
    for i in range(50):
        start = time.perf_counter()
        driver.create(f"{PREFIX}cost{i}", limits).destroy()
        costs.append(time.perf_counter() - start)
    assert statistics.median(costs) < 0.005

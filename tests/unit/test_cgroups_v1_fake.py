"""The v1 and hybrid backends against a fake tree of v1 hierarchies (+ a cgroup2 mount).

:class:`FakeCgroup1` emulates, on plain directories, what remo relies on: each hierarchy
creates its controllers' files on mkdir, ``cgroup.procs`` moves a pid within one
hierarchy, memsw must stay >= the memory limit, a CFS quota under 1 ms is refused, rmdir
of a populated cgroup fails with EBUSY. Fake pids are above the kernel's pid_max, so no
real process is signalled unless a test puts its own child there.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from remo.cgroups import base, detect
from remo.cgroups.v1 import V1Driver, V1Group
from remo.core.errors import CgroupError, InvalidArgument
from remo.core.spec import Limits

FAKE_PID = "99000001"  # > 2**22, the largest pid_max
UNLIMITED = "9223372036854771712"

V1_CORE = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0\n"}
V1_FILES = {
    "cpu": {"cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpu.shares": "1024\n"},
    "cpuacct": {"cpuacct.usage": "0\n"},
    "memory": {
        "memory.limit_in_bytes": UNLIMITED + "\n",
        "memory.memsw.limit_in_bytes": UNLIMITED + "\n",
        "memory.max_usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": ""},
    "freezer": {"freezer.state": "THAWED\n"},
    "devices": {"devices.list": "a *:* rwm\n"},
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n"},
}
UNIFIED_FILES = {
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
HYBRID = {
    "cpu,cpuacct": ("cpu", "cpuacct"),
    "memory": ("memory",),
    "pids": ("pids",),
    "blkio": ("blkio",),
    "freezer": ("freezer",),
    "devices": ("devices",),
    "cpuset": ("cpuset",),
    "systemd": ("name=systemd",),
    "unified": (),
}
OWN = {"memory": "/process_api/f716"}


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class FakeCgroup1(base.Fs):
    """Hierarchies mounted at ``root/<dir>``; ``unified`` (no controllers) is cgroup2."""

    def __init__(
        self, root: Path, layout: Mapping[str, tuple[str, ...]], missing: tuple[str, ...] = ()
    ) -> None:
        self.root = root
        self.layout = layout
        self.missing = missing
        self.writes: list[tuple[str, str]] = []
        self.fail_on: str | None = None
        self.denied = False
        for mount in layout:
            (root / mount).mkdir(parents=True)
            (root / mount / "cgroup.procs").write_text("1\n")
        for controller, path in OWN.items():
            for mount, controllers in layout.items():
                if controller in controllers:
                    d = root / mount
                    for part in Path(path).parts[1:]:
                        d = d / part
                        self.mkdir(str(d))

    def _hierarchy(self, path: Path) -> str:
        return path.relative_to(self.root).parts[0]

    def mkdir(self, path: str) -> None:
        if self.denied:
            raise oserror(errno.EACCES)
        d = Path(path)
        d.mkdir()
        mount = self._hierarchy(d)
        files = dict(UNIFIED_FILES) if mount == "unified" else dict(V1_CORE)
        for controller in self.layout[mount]:
            files.update(V1_FILES.get(controller, {}))
        for name, text in files.items():
            if name not in self.missing:
                (d / name).write_text(text)

    def rmdir(self, path: str) -> None:
        d = Path(path)
        if not d.is_dir():
            raise oserror(errno.ENOENT)
        if any(c.is_dir() for c in d.iterdir()) or (d / "cgroup.procs").read_text().split():
            raise oserror(errno.EBUSY)
        shutil.rmtree(d)

    def write(self, path: str, data: str) -> None:
        self.writes.append((path, data))
        p = Path(path)
        d, name = p.parent, p.name
        if not p.exists():
            raise oserror(errno.ENOENT)
        if name == self.fail_on:
            raise oserror(errno.EINVAL)
        if name == "cgroup.procs":
            for sub in (Path(r) for r, _, _ in os.walk(self.root / self._hierarchy(d))):
                pids = [x for x in (sub / "cgroup.procs").read_text().split() if x != data]
                (sub / "cgroup.procs").write_text("".join(x + "\n" for x in pids))
            p.write_text(p.read_text() + data + "\n")
        elif name == "memory.memsw.limit_in_bytes":
            if int(data) < int((d / "memory.limit_in_bytes").read_text()):
                raise oserror(errno.EINVAL)
            p.write_text(data)
        elif name == "cpu.cfs_quota_us" and 0 <= int(data) < 1000:
            raise oserror(errno.EINVAL)
        elif name.startswith("blkio.throttle."):
            rules = dict(line.split(" ", 1) for line in p.read_text().splitlines())
            device, _, value = data.partition(" ")
            rules[device] = value
            p.write_text("".join(f"{k} {v}\n" for k, v in rules.items()))
        elif name == "cgroup.kill":
            for sub in (Path(r) for r, _, _ in os.walk(d)):
                (sub / "cgroup.procs").write_text("")
                (sub / "cgroup.events").write_text("populated 0\nfrozen 0\n")
        else:
            p.write_text(data)
        if (d / "cgroup.events").exists():
            busy = bool((d / "cgroup.procs").read_text().split())
            (d / "cgroup.events").write_text(f"populated {int(busy)}\nfrozen 0\n")


def make_proc(tmp: Path, fake: FakeCgroup1, mount_roots: dict[str, str] | None = None) -> Path:
    proc = tmp / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    lines, cgroup = ["22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw"], []
    for i, (mount, controllers) in enumerate(fake.layout.items()):
        root = (mount_roots or {}).get(mount, "/")
        point = fake.root / mount
        if mount == "unified":
            lines.append(f"{40 + i} 31 0:{30 + i} {root} {point} rw - cgroup2 cgroup2 rw")
            cgroup.append("0::/")
            continue
        opts = ",".join(("rw", *controllers))
        lines.append(f"{40 + i} 31 0:{30 + i} {root} {point} rw,relatime - cgroup cgroup {opts}")
        path = next((OWN[c] for c in controllers if c in OWN), "/")
        cgroup.append(f"{i + 1}:{','.join(controllers)}:{path}")
    (proc / "self/mountinfo").write_text("\n".join(lines) + "\n")
    (proc / "self/cgroup").write_text("\n".join(reversed(cgroup)) + "\n")
    return proc


def make_driver(
    tmp: Path, layout: Mapping[str, tuple[str, ...]], missing: tuple[str, ...] = ()
) -> tuple[FakeCgroup1, V1Driver]:
    fake = FakeCgroup1(tmp / "cgroup", layout, missing)
    driver = detect(str(fake.root), str(make_proc(tmp, fake)), ["254:0", "8:0"], fs=fake)
    assert isinstance(driver, V1Driver)
    return fake, driver


@pytest.fixture
def hybrid(tmp_path: Path) -> tuple[FakeCgroup1, V1Driver]:
    return make_driver(tmp_path, HYBRID)


@pytest.fixture
def plain_v1(tmp_path: Path) -> tuple[FakeCgroup1, V1Driver]:
    return make_driver(tmp_path, {k: v for k, v in HYBRID.items() if k != "unified"})


def test_hybrid_groups_live_under_own_cgroup(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    assert driver.name == "hybrid"
    assert driver.supported() == base.FEATURES
    assert driver.warnings() == []
    group = driver.create("job1", Limits(cpu=1, pids=10, io_read_bps=1 << 20))
    root = fake.root
    expected = [
        root / "unified/remo/job1",
        root / "blkio/remo/job1",
        root / "cpu,cpuacct/remo/job1",
        root / "memory/process_api/f716/remo/job1",
        root / "pids/remo/job1",
    ]
    assert group.join_files() == [str(p / "cgroup.procs") for p in expected]
    assert all(p.is_dir() for p in expected)
    assert not (root / "cpuset/remo").exists()
    assert not (root / "devices/remo").exists()
    assert not (root / "systemd/remo").exists()
    assert driver.list_names() == ["job1"]


def test_jobs_join_only_the_hierarchies_they_need(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    """No limits: memory (peak, OOM kills), cpu (a fair share: no autogroup of its own)
    and the cgroup2 mount (tracking, kill, cpu.stat) are all a job needs; each extra
    hierarchy would cost every start a migration."""
    fake, driver = hybrid
    group = driver.create("job1", Limits())
    root = fake.root
    expected = [
        root / "unified/remo/job1",
        root / "cpu,cpuacct/remo/job1",
        root / "memory/process_api/f716/remo/job1",
    ]
    assert group.join_files() == [str(p / "cgroup.procs") for p in expected]
    assert not (root / "pids/remo/job1").exists()
    assert not (root / "freezer/remo/job1").exists()
    opened = driver.open("job1")
    assert opened is not None and opened.join_files() == group.join_files()
    group.destroy()
    assert driver.open("job1") is None


def test_limits_applied_later_add_hierarchies(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    """A job init waits in memory, cpu and cgroup2; a job's pids limit adds that
    hierarchy, whose cgroup.procs the init must then join; its cpu limit adds none."""
    fake, driver = hybrid
    group = driver.create("init-1", Limits())
    root = fake.root
    join = driver.apply(group, Limits(cpu=0.5, pids=10, memory=64 << 20))
    assert join == [str(root / "pids/remo/init-1/cgroup.procs")]
    assert (root / "cpu,cpuacct/remo/init-1/cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "pids/remo/init-1/pids.max").read_text() == "11"  # + the init
    memory = root / "memory/process_api/f716/remo/init-1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert len(group.join_files()) == 4
    assert driver.apply(group, Limits(pids=10)) == []  # nothing new to join
    group.destroy()
    assert driver.list_names() == []


def test_limits_applied_later_in_a_joined_hierarchy(
    plain_v1: tuple[FakeCgroup1, V1Driver],
) -> None:
    """cpu is mounted with cpuacct, which a waiting group on plain v1 is in already: a
    cpu limit then needs no new directory and nothing to join."""
    fake, driver = plain_v1
    group = driver.create("init-1", Limits())
    assert driver.apply(group, Limits(cpu=0.5)) == []
    assert (fake.root / "cpu,cpuacct/remo/init-1/cpu.cfs_quota_us").read_text() == "50000"


def test_plain_v1_jobs_join_cpuacct_and_freezer(plain_v1: tuple[FakeCgroup1, V1Driver]) -> None:
    """Without a cgroup2 mount, usage comes from cpuacct and kill needs the freezer."""
    fake, driver = plain_v1
    group = driver.create("job1", Limits())
    root = fake.root
    expected = [
        root / "cpu,cpuacct/remo/job1",
        root / "freezer/remo/job1",
        root / "memory/process_api/f716/remo/job1",
    ]
    assert group.join_files() == [str(p / "cgroup.procs") for p in expected]


def test_v1_limits_use_kernel_formats(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    limits = Limits(cpu=1.5, memory=256 << 20, io_read_bps=1 << 20, io_write_bps=2 << 20, pids=64)
    driver.create("job1", limits)
    root = fake.root
    cpu, mem = root / "cpu,cpuacct/remo/job1", root / "memory/process_api/f716/remo/job1"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"
    assert (mem / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(256 << 20)
    assert (root / "pids/remo/job1/pids.max").read_text() == "65"  # + the init
    blkio = root / "blkio/remo/job1"
    assert (blkio / "blkio.throttle.read_bps_device").read_text() == "254:0 1048576\n8:0 1048576\n"
    assert (blkio / "blkio.throttle.write_bps_device").read_text() == "254:0 2097152\n8:0 2097152\n"


def test_tiny_cpu_limit_uses_long_period(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    driver.create("job1", Limits(cpu=0.002))
    cpu = fake.root / "cpu,cpuacct/remo/job1"
    assert (cpu / "cpu.cfs_period_us").read_text() == "1000000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "2000"


def test_hybrid_kill_uses_unified_cgroup_kill(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    group = driver.create("job1", Limits())
    unified = fake.root / "unified/remo/job1"
    fake.write(str(unified / "cgroup.procs"), FAKE_PID)
    assert group.pids() == [int(FAKE_PID)]
    assert group.populated()
    group.kill()
    assert (str(unified / "cgroup.kill"), "1") in fake.writes
    assert not any(p.endswith("freezer.state") for p, _ in fake.writes)
    assert not group.populated()


def test_hybrid_usage(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    group = driver.create("job1", Limits())
    (fake.root / "unified/remo/job1/cpu.stat").write_text("usage_usec 2500000\nuser_usec 1\n")
    mem = fake.root / "memory/process_api/f716/remo/job1"
    (mem / "memory.max_usage_in_bytes").write_text("4096000\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert group.usage() == base.Usage(cpu_seconds=2.5, peak_memory_bytes=4096000, oom_kills=1)


def test_hybrid_live_sample(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    """memory.usage_in_bytes (cgroup-v1/memory.rst); io from the unified io.stat, or
    blkio.throttle.io_service_bytes when the job is in the blkio hierarchy."""
    fake, driver = hybrid
    group = driver.create("job1", Limits())
    (fake.root / "unified/remo/job1/cpu.stat").write_text("usage_usec 500000\n")
    mem = fake.root / "memory/process_api/f716/remo/job1"
    (mem / "memory.usage_in_bytes").write_text("52428800\n")
    (mem / "memory.max_usage_in_bytes").write_text("62914560\n")
    sample = group.sample(5.0)
    assert (sample.cpu_seconds, sample.memory_bytes, sample.peak_memory_bytes) == (
        0.5,
        52428800,
        62914560,
    )
    assert base.blkio_totals(
        "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Total 60\nTotal 60\n"
    ) == (
        10,
        20,
    )


def test_plain_v1_usage_from_cpuacct(plain_v1: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = plain_v1
    assert driver.name == "v1"
    group = driver.create("job1", Limits())
    (fake.root / "cpu,cpuacct/remo/job1/cpuacct.usage").write_text("750000000\n")
    assert group.usage() == base.Usage(cpu_seconds=0.75, peak_memory_bytes=0, oom_kills=0)


def test_plain_v1_kill_freezes_kills_thaws(plain_v1: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = plain_v1
    group = driver.create("job1", Limits())
    freezer = fake.root / "freezer/remo/job1"
    child = subprocess.Popen(["sleep", "60"])
    try:
        fake.write(str(freezer / "cgroup.procs"), str(child.pid))
        assert group.pids() == [child.pid]
        assert group.populated()
        group.kill()
        assert child.wait(timeout=5) == -9
    finally:
        child.kill()
        child.wait()
    states = [d for p, d in fake.writes if p.endswith("freezer.state")]
    assert states == ["FROZEN", "THAWED"]


def test_destroy_removes_every_directory(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    group = driver.create("job1", Limits(memory=64 << 20))
    fake.write(str(fake.root / "unified/remo/job1/cgroup.procs"), FAKE_PID)
    assert isinstance(group, V1Group)
    group.destroy()
    assert not any(os.path.exists(p) for p in group.paths)
    assert driver.list_names() == []
    assert driver.open("job1") is None
    group.destroy()  # already gone: ENOENT is fine
    group.kill()


def test_open_finds_partial_leftovers(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    driver.create("job1", Limits())
    shutil.rmtree(fake.root / "unified/remo/job1")
    group = driver.open("job1")
    assert group is not None
    group.destroy()
    assert driver.list_names() == []


def test_failure_removes_what_was_created(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    fake.fail_on = "blkio.throttle.write_bps_device"
    with pytest.raises(CgroupError) as info:
        driver.create("job1", Limits(cpu=1, io_write_bps=1 << 20))
    assert info.value.file == "blkio.throttle.write_bps_device"
    assert driver.list_names() == []


def test_mkdir_failure_removes_what_was_created(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    (fake.root / "pids/remo/job1").mkdir()  # a leftover in one hierarchy only
    with pytest.raises(CgroupError) as info:
        driver.create("job1", Limits(pids=10))
    assert info.value.errno == errno.EEXIST
    assert driver.list_names() == ["job1"]
    assert not (fake.root / "unified/remo/job1").exists()


def test_missing_hierarchy_and_swap_accounting(tmp_path: Path) -> None:
    layout = {k: v for k, v in HYBRID.items() if k != "pids"}
    fake, driver = make_driver(tmp_path, layout, missing=("memory.memsw.limit_in_bytes",))
    assert "pids" not in driver.supported()
    warnings = driver.warnings()
    assert any(w.startswith("no pids controller") for w in warnings)
    assert any("memsw" in w for w in warnings)
    with pytest.raises(InvalidArgument, match="pids limit"):
        driver.create("job1", Limits(pids=10))
    driver.create("job1", Limits(memory=64 << 20))
    writes = [os.path.basename(p) for p, _ in fake.writes if "job1" in p]
    assert writes == ["memory.limit_in_bytes"]


def test_parent_group_removed_while_idle_is_rebuilt(hybrid: tuple[FakeCgroup1, V1Driver]) -> None:
    fake, driver = hybrid
    fake.rmdir(str(fake.root / "memory/process_api/f716/remo"))
    driver.create("job1", Limits(memory=64 << 20))
    assert (fake.root / "memory/process_api/f716/remo/job1/memory.limit_in_bytes").is_file()


def test_separate_cpu_and_cpuacct_mounts(tmp_path: Path) -> None:
    layout = {"cpu": ("cpu",), "cpuacct": ("cpuacct",), "memory": ("memory",)}
    fake, driver = make_driver(tmp_path, layout)
    assert driver.name == "v1"
    group = driver.create("job1", Limits(cpu=0.5))
    assert (fake.root / "cpu/remo/job1/cpu.cfs_quota_us").read_text() == "50000"
    assert (fake.root / "cpuacct/remo/job1").is_dir()
    assert "kill" not in driver.supported()  # no freezer, no cgroup2
    assert "io" not in driver.supported()
    group.destroy()
    assert driver.list_names() == []


def test_mount_root_inside_hierarchy(tmp_path: Path) -> None:
    """A container that sees only its own subtree: mountinfo root is /process_api."""
    fake = FakeCgroup1(tmp_path / "cgroup", {"memory": ("memory",)})
    shutil.rmtree(fake.root / "memory/process_api")
    fake.mkdir(str(fake.root / "memory/f716"))
    proc = make_proc(tmp_path, fake, {"memory": "/process_api"})
    driver = detect(str(fake.root), str(proc), [], fs=fake)
    assert isinstance(driver, V1Driver)
    group = driver.create("job1", Limits())
    assert group.join_files() == [str(fake.root / "memory/f716/remo/job1/cgroup.procs")]


def test_not_writable_gives_none(tmp_path: Path) -> None:
    fake = FakeCgroup1(tmp_path / "cgroup", HYBRID)
    fake.denied = True
    driver = detect(str(fake.root), str(make_proc(tmp_path, fake)), [], fs=fake)
    assert driver.name == "none"
    assert driver.warnings()[0].startswith("not root: no cgroups")


def test_mounts_outside_root_are_ignored(tmp_path: Path) -> None:
    fake = FakeCgroup1(tmp_path / "cgroup", HYBRID)
    driver = detect(str(tmp_path / "elsewhere"), str(make_proc(tmp_path, fake)), [], fs=fake)
    assert driver.name == "none"


@pytest.mark.parametrize(("cpus", "shares"), [(1, "1024"), (3, "3072"), (300, "262144")])
def test_the_jobs_cpu_group_weighs_as_many_processes_as_there_are_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int, shares: str
) -> None:
    """remo's group in the cpu hierarchy: cpu.shares of one process times the CPUs the
    server may use (the kernel's maximum at most), so the jobs can fill the machine and
    the server, one process, keeps its share."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    fake, driver = make_driver(tmp_path, HYBRID)
    assert (fake.root / "cpu,cpuacct/remo/cpu.shares").read_text() == shares
    assert not [w for w in driver.warnings() if "weigh" in w]


def test_a_cpu_group_that_cannot_be_weighed_is_a_warning(tmp_path: Path) -> None:
    fake = FakeCgroup1(tmp_path / "cgroup", HYBRID)
    fake.fail_on = "cpu.shares"
    driver = detect(str(fake.root), str(make_proc(tmp_path, fake)), ["254:0"], fs=fake)
    assert [w for w in driver.warnings() if w.startswith("cannot weigh the jobs' cpu group")]
    assert "cpu" in driver.supported()

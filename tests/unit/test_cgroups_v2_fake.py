"""The v2 backend against a fake cgroup2 tree that answers like the kernel does.

:class:`FakeCgroup2` is an :class:`~remo.cgroups.base.Fs` over plain directories that
emulates the parts of cgroupfs remo relies on: interface files appear on mkdir according
to the parent's ``cgroup.subtree_control``, enabling controllers in a non-root cgroup that
has processes fails with EBUSY, writing a pid to ``cgroup.procs`` moves it, rmdir of a
populated cgroup fails with EBUSY. Fake pids are above the kernel's pid_max, so no real
process can ever be signalled by these tests.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from remo.cgroups import base, detect
from remo.cgroups.detect import own_dir, parse_mountinfo, parse_proc_cgroup
from remo.cgroups.none import NoneDriver
from remo.cgroups.v2 import V2Driver
from remo.core.errors import CgroupError, InvalidArgument
from remo.core.spec import Limits
from remo.core.usage import Sample, rates

FAKE_PIDS = ("99000001", "99000002")  # > 2**22, the largest pid_max
ALL = "cpuset cpu io memory hugetlb pids rdma misc"

CORE = {
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cgroup.subtree_control": "",
    "cgroup.type": "domain\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
CONTROLLER_FILES = {
    "cpu": {"cpu.max": "max 100000\n", "cpu.weight": "100\n"},
    "memory": {
        "memory.max": "max\n",
        "memory.peak": "0\n",
        "memory.swap.max": "max\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
    "io": {"io.max": ""},
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
}


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class FakeCgroup2(base.Fs):
    """A cgroup2 mount at ``mount`` (see the module docstring for what is emulated)."""

    def __init__(self, mount: Path, controllers: str = ALL) -> None:
        self.mount = mount
        self.writes: list[tuple[str, str]] = []
        self.fail_on: str | None = None
        self.busy_rmdirs = 0
        self.readonly = False
        mount.mkdir(parents=True)
        (mount / "cgroup.controllers").write_text(controllers + "\n")
        (mount / "cgroup.subtree_control").write_text("")
        (mount / "cgroup.procs").write_text("1\n")
        (mount / "cpu.stat").write_text(CORE["cpu.stat"])

    def _words(self, d: Path, file: str) -> list[str]:
        return (d / file).read_text().split()

    def _dirs(self) -> list[Path]:
        return [Path(root) for root, _, _ in os.walk(self.mount)]

    def _refresh_events(self) -> None:
        for d in self._dirs():
            if d != self.mount:
                busy = any(
                    self._words(s, "cgroup.procs") for s in self._dirs() if d in [s, *s.parents]
                )
                frozen = self._words(d, "cgroup.freeze") == ["1"]
                (d / "cgroup.events").write_text(f"populated {int(busy)}\nfrozen {int(frozen)}\n")

    def mkdir(self, path: str) -> None:
        if self.readonly:
            raise oserror(errno.EACCES)
        d = Path(path)
        d.mkdir()
        enabled = self._words(d.parent, "cgroup.subtree_control")
        (d / "cgroup.controllers").write_text(" ".join(enabled) + "\n")
        files = dict(CORE)
        for c in enabled:
            files.update(CONTROLLER_FILES.get(c, {}))
        for name, text in files.items():
            (d / name).write_text(text)

    def rmdir(self, path: str) -> None:
        d = Path(path)
        if not d.is_dir():
            raise oserror(errno.ENOENT)
        if self.busy_rmdirs:
            self.busy_rmdirs -= 1
            raise oserror(errno.EBUSY)
        if any(c.is_dir() for c in d.iterdir()) or self._words(d, "cgroup.procs"):
            raise oserror(errno.EBUSY)
        shutil.rmtree(d)

    def write(self, path: str, data: str) -> None:
        self.writes.append((path, data))
        p = Path(path)
        d, name = p.parent, p.name
        if self.readonly:
            raise oserror(errno.EACCES)
        if not p.exists():
            raise oserror(errno.ENOENT)
        if name == self.fail_on:
            raise oserror(errno.EINVAL)
        if name == "cgroup.subtree_control":
            self._subtree_control(d, data)
        elif name == "cgroup.procs":
            # "No Internal Process Constraint" also forbids joining such a cgroup.
            if d != self.mount and self._words(d, "cgroup.subtree_control"):
                raise oserror(errno.EBUSY)
            for other in self._dirs():
                pids = [x for x in self._words(other, "cgroup.procs") if x != data.strip()]
                (other / "cgroup.procs").write_text("".join(x + "\n" for x in pids))
            p.write_text(p.read_text() + data.strip() + "\n")
        elif name == "cgroup.kill":
            for sub in self._dirs():
                if d in [sub, *sub.parents]:
                    (sub / "cgroup.procs").write_text("")
        elif name == "io.max":
            rules = dict(line.split(" ", 1) for line in p.read_text().splitlines())
            device, _, keys = data.partition(" ")
            rules[device] = keys
            p.write_text("".join(f"{k} {v}\n" for k, v in rules.items()))
        else:
            p.write_text(data)
        self._refresh_events()

    def _subtree_control(self, d: Path, data: str) -> None:
        enabled = self._words(d, "cgroup.subtree_control")
        for token in data.split():
            controller = token[1:]
            if controller not in self._words(d, "cgroup.controllers"):
                raise oserror(errno.ENOENT)
            if token[0] == "+" and controller not in enabled:
                if d != self.mount and self._words(d, "cgroup.procs"):
                    raise oserror(errno.EBUSY)
                enabled.append(controller)
                for child in (c for c in d.iterdir() if c.is_dir()):
                    available = [*self._words(child, "cgroup.controllers"), controller]
                    (child / "cgroup.controllers").write_text(" ".join(available) + "\n")
                    for file, text in CONTROLLER_FILES.get(controller, {}).items():
                        (child / file).write_text(text)
        (d / "cgroup.subtree_control").write_text(" ".join(enabled) + "\n")


def make_proc(tmp_path: Path, mount: Path, cgroup: str, mount_root: str = "/") -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self/cgroup").write_text(f"0::{cgroup}\n")
    (proc / "self/mountinfo").write_text(
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"30 23 0:26 {mount_root} {mount} rw,nosuid,nodev,noexec,relatime shared:4"
        " - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    )
    return proc


@pytest.fixture
def fake(tmp_path: Path) -> FakeCgroup2:
    """A systemd-like tree: the service cgroup holds the server's processes."""
    fs = FakeCgroup2(tmp_path / "cgroup")
    fs.write(str(fs.mount / "cgroup.subtree_control"), "+cpu +memory +pids")
    fs.mkdir(str(fs.mount / "system.slice"))
    fs.write(str(fs.mount / "system.slice/cgroup.subtree_control"), "+cpu +memory +pids")
    fs.mkdir(str(fs.mount / "system.slice/remo.service"))
    for pid in FAKE_PIDS:
        fs.write(str(fs.mount / "system.slice/remo.service/cgroup.procs"), pid)
    fs.writes.clear()
    return fs


@pytest.fixture
def driver(tmp_path: Path, fake: FakeCgroup2) -> V2Driver:
    proc = make_proc(tmp_path, fake.mount, "/system.slice/remo.service")
    found = detect(str(fake.mount), str(proc), ["254:0", "8:0"], fs=fake)
    assert isinstance(found, V2Driver)
    return found


def test_setup_enables_controllers_down_the_path(fake: FakeCgroup2, driver: V2Driver) -> None:
    assert driver.name == "v2"
    service = fake.mount / "system.slice/remo.service"
    for d in (fake.mount, fake.mount / "system.slice", service, service / "remo"):
        assert sorted((d / "cgroup.subtree_control").read_text().split()) == [
            "cpu",
            "io",
            "memory",
            "pids",
        ]
    assert driver.supported() == base.FEATURES
    assert driver.warnings() == []


def test_internal_processes_move_to_server_leaf(fake: FakeCgroup2, driver: V2Driver) -> None:
    service = fake.mount / "system.slice/remo.service"
    assert (service / "cgroup.procs").read_text() == ""
    assert (service / "remo-server/cgroup.procs").read_text().split() == list(FAKE_PIDS)
    # The first attempt hit EBUSY, the pids were moved, then the retry succeeded.
    enables = [d for p, d in fake.writes if p == str(service / "cgroup.subtree_control")]
    assert enables[0] == "+cpu"
    assert enables.count("+cpu") == 2


def test_setup_again_from_inside_server_leaf(tmp_path: Path, fake: FakeCgroup2) -> None:
    proc = make_proc(tmp_path, fake.mount, "/system.slice/remo.service")
    detect(str(fake.mount), str(proc), ["254:0"], fs=fake)
    proc = make_proc(tmp_path, fake.mount, "/system.slice/remo.service/remo-server")
    again = detect(str(fake.mount), str(proc), ["254:0"], fs=fake)
    assert isinstance(again, V2Driver)
    assert again.base == str(fake.mount / "system.slice/remo.service/remo")


def test_group_lives_under_own_cgroup(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    assert path.is_dir()
    assert group.join_files() == [str(path / "cgroup.procs")]
    assert driver.list_names() == ["job1"]
    assert driver.open("job1") is not None
    assert driver.open("job2") is None


def test_limits_use_kernel_formats(fake: FakeCgroup2, driver: V2Driver) -> None:
    limits = Limits(cpu=0.5, memory=256 << 20, io_read_bps=1 << 20, io_write_bps=2 << 20, pids=64)
    driver.create("job1", limits)
    path = fake.mount / "system.slice/remo.service/remo/job1"
    assert (path / "cpu.max").read_text() == "50000 100000"
    assert (path / "memory.max").read_text() == str(256 << 20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "pids.max").read_text() == "65"  # 64 for the job, 1 for its init
    assert (path / "io.max").read_text() == (
        "254:0 rbps=1048576 wbps=2097152\n8:0 rbps=1048576 wbps=2097152\n"
    )
    io_writes = [d for p, d in fake.writes if p.endswith("io.max")]
    assert io_writes == ["254:0 rbps=1048576 wbps=2097152", "8:0 rbps=1048576 wbps=2097152"]


def test_limits_applied_later_to_a_waiting_group(fake: FakeCgroup2, driver: V2Driver) -> None:
    """A job init waits in a group without limits; the job's are written at its start,
    and in v2 no other hierarchy has to be joined."""
    group = driver.create("init-1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/init-1"
    assert (path / "memory.max").read_text() == "max\n"
    assert driver.apply(group, Limits(cpu=0.5, memory=256 << 20, pids=64)) == []
    assert (path / "cpu.max").read_text() == "50000 100000"
    assert (path / "memory.max").read_text() == str(256 << 20)
    assert (path / "pids.max").read_text() == "65"  # 64 for the job, 1 for its init


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(2, "200000 100000"), (0.01, "1000 100000"), (0.005, "5000 1000000"), (0.001, "1000 1000000")],
)
def test_cpu_quota_respects_kernel_minimum(
    fake: FakeCgroup2, driver: V2Driver, cores: float, expected: str
) -> None:
    driver.create("job1", Limits(cpu=cores))
    assert (fake.mount / "system.slice/remo.service/remo/job1/cpu.max").read_text() == expected


def test_io_limit_writes_only_the_given_direction(fake: FakeCgroup2, driver: V2Driver) -> None:
    driver.create("job1", Limits(io_write_bps=1 << 20))
    io_writes = [d for p, d in fake.writes if p.endswith("io.max")]
    assert io_writes == ["254:0 wbps=1048576", "8:0 wbps=1048576"]


def test_usage_parsed_from_canned_files(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    (path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    (path / "memory.peak").write_text("123456789\n")
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\n")
    assert group.usage() == base.Usage(cpu_seconds=1.5, peak_memory_bytes=123456789, oom_kills=2)
    (path / "memory.peak").unlink()  # kernels before 5.19
    assert group.usage().peak_memory_bytes is None


def test_a_live_sample_reads_memory_io_and_processes(fake: FakeCgroup2, driver: V2Driver) -> None:
    """cgroup-v2.rst: memory.current, io.stat (rbytes/wbytes per device), cgroup.procs."""
    group = driver.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    (path / "cpu.stat").write_text("usage_usec 2000000\nuser_usec 1\n")
    (path / "memory.current").write_text("104857600\n")
    (path / "memory.peak").write_text("209715200\n")
    (path / "io.stat").write_text(
        "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n"
        "8:16 rbytes=24 wbytes=48 rios=1 wios=1 dbytes=0 dios=0\n"
    )
    fake.write(str(path / "cgroup.procs"), FAKE_PIDS[0])
    sample = group.sample(10.0)
    assert sample == Sample(10.0, 2.0, 104857600, 209715200, 1024, 2048, 1)
    (path / "io.stat").unlink()  # no io controller enabled
    assert group.sample(11.0).io_read_bytes is None


def test_rates_of_two_samples() -> None:
    before = Sample(10.0, cpu_seconds=1.0, io_read_bytes=0, io_write_bytes=1000)
    now = Sample(12.0, cpu_seconds=2.0, io_read_bytes=4096, io_write_bytes=1000)
    live = rates(before, now)
    assert (live.interval_seconds, live.cpu_cores) == (2.0, 0.5)
    assert (live.io_read_bytes_per_second, live.io_write_bytes_per_second) == (2048.0, 0.0)
    assert rates(now, now).cpu_cores is None  # no interval: no rate


def test_kill_writes_cgroup_kill(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    fake.write(str(path / "cgroup.procs"), FAKE_PIDS[0])
    assert group.populated()
    assert group.pids() == [int(FAKE_PIDS[0])]
    group.kill()
    assert (str(path / "cgroup.kill"), "1") in fake.writes
    assert not group.populated()


def test_kill_without_cgroup_kill_freezes(fake: FakeCgroup2, driver: V2Driver) -> None:
    os.unlink(fake.mount / "system.slice/remo.service/remo/cgroup.kill")
    proc = make_proc(fake.mount.parent, fake.mount, "/system.slice/remo.service")
    old = detect(str(fake.mount), str(proc), ["254:0"], fs=fake)
    group = old.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    child = subprocess.Popen(["sleep", "60"])
    try:
        fake.write(str(path / "cgroup.procs"), str(child.pid))
        group.kill()
        assert child.wait(timeout=5) == -9
    finally:
        child.kill()
        child.wait()
    freezes = [d for p, d in fake.writes if p.endswith("cgroup.freeze")]
    assert freezes == ["1", "0"]


def test_destroy_kills_waits_and_removes(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    fake.write(str(path / "cgroup.procs"), FAKE_PIDS[0])
    group.destroy()
    assert not path.exists()
    assert (str(path / "cgroup.kill"), "1") in fake.writes
    assert driver.list_names() == []
    group.destroy()  # already gone: ENOENT is fine
    group.kill()
    assert group.pids() == []
    assert not group.populated()


def test_destroy_retries_ebusy(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    fake.busy_rmdirs = 3
    group.destroy()
    assert not (fake.mount / "system.slice/remo.service/remo/job1").exists()


def test_destroy_removes_child_groups_made_by_the_job(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    path = fake.mount / "system.slice/remo.service/remo/job1"
    fake.mkdir(str(path / "inner"))
    fake.mkdir(str(path / "inner/deeper"))
    group.destroy()
    assert not path.exists()


def test_destroy_gives_up_on_lasting_ebusy(fake: FakeCgroup2, driver: V2Driver) -> None:
    group = driver.create("job1", Limits())
    fake.busy_rmdirs = 10**6
    with pytest.raises(CgroupError) as info:
        base.remove_dirs(
            fake, [str(fake.mount / "system.slice/remo.service/remo/job1")], group, 0.05
        )
    assert info.value.errno == errno.EBUSY


def test_failed_limit_removes_the_group(fake: FakeCgroup2, driver: V2Driver) -> None:
    fake.fail_on = "pids.max"
    with pytest.raises(CgroupError) as info:
        driver.create("job1", Limits(memory=64 << 20, pids=10))
    assert info.value.file == "pids.max"
    assert not (fake.mount / "system.slice/remo.service/remo/job1").exists()


def test_existing_name_is_an_error(driver: V2Driver) -> None:
    driver.create("job1", Limits())
    with pytest.raises(CgroupError) as info:
        driver.create("job1", Limits())
    assert info.value.errno == errno.EEXIST


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\nb", "ab\n", "x" * 129])
def test_bad_names_are_refused(driver: V2Driver, name: str) -> None:
    with pytest.raises(InvalidArgument):
        driver.create(name, Limits())


def test_names_with_dots_are_fine_unless_they_clash(fake: FakeCgroup2, driver: V2Driver) -> None:
    driver.create("job-john.doe-3", Limits())
    assert driver.list_names() == ["job-john.doe-3"]
    with pytest.raises(CgroupError) as info:
        driver.create("cgroup.procs", Limits())
    assert info.value.errno == errno.EEXIST


def test_parent_group_removed_while_idle_is_rebuilt(fake: FakeCgroup2, driver: V2Driver) -> None:
    fake.rmdir(driver.base)
    driver.create("job1", Limits(io_read_bps=1 << 20))
    assert (fake.mount / "system.slice/remo.service/remo/job1/io.max").is_file()


def test_missing_controller_is_invalid_argument(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup", controllers="cpu memory pids")
    proc = make_proc(tmp_path, fake.mount, "/")
    driver = detect(str(fake.mount), str(proc), ["254:0"], fs=fake)
    assert driver.name == "v2"
    assert "io" not in driver.supported()
    assert any(w.startswith("no io controller") for w in driver.warnings())
    with pytest.raises(InvalidArgument, match="io read limit"):
        driver.create("job1", Limits(io_read_bps=2 << 20))
    assert driver.list_names() == []
    driver.create("job2", Limits(cpu=1, memory=1 << 30, pids=5))


def test_no_block_device_means_no_io(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup")
    driver = detect(str(fake.mount), str(make_proc(tmp_path, fake.mount, "/")), [], fs=fake)
    assert "io" not in driver.supported()


def test_root_cgroup_is_exempt_from_internal_process_rule(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup")
    driver = detect(str(fake.mount), str(make_proc(tmp_path, fake.mount, "/")), ["8:0"], fs=fake)
    assert isinstance(driver, V2Driver)
    assert driver.base == str(fake.mount / "remo")
    assert not (fake.mount / "remo-server").exists()


def test_cgroup_namespace_mount_root(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup")
    fake.mkdir(str(fake.mount / "ctr"))
    proc = make_proc(tmp_path, fake.mount, "/kubepods/pod1/ctr", mount_root="/kubepods/pod1")
    driver = detect(str(fake.mount), str(proc), ["8:0"], fs=fake)
    assert isinstance(driver, V2Driver)
    assert driver.base == str(fake.mount / "ctr/remo")


def test_cgroup_outside_the_mount_gives_none(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup")
    proc = make_proc(tmp_path, fake.mount, "/elsewhere", mount_root="/kubepods/pod1")
    assert detect(str(fake.mount), str(proc), [], fs=fake).name == "none"


def test_unwritable_tree_gives_none(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup")
    fake.readonly = True
    driver = detect(str(fake.mount), str(make_proc(tmp_path, fake.mount, "/")), [], fs=fake)
    assert driver.name == "none"
    assert driver.warnings()[0].startswith("not root: no cgroups, limits are off")


def test_none_driver(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text("0::/\n")
    (proc / "self/mountinfo").write_text("22 1 254:0 / / rw - ext4 /dev/vda rw\n")
    driver = detect(str(tmp_path / "cgroup"), str(proc), [])
    assert isinstance(driver, NoneDriver)
    assert driver.supported() == frozenset()
    [warning] = driver.warnings()
    assert "limits are off and stop kills only the process group" in warning
    with pytest.raises(InvalidArgument, match="memory limit requested"):
        driver.create("job1", Limits(memory=1 << 30))
    group = driver.create("job1", Limits())
    assert group.join_files() == []
    assert group.pids() == []
    assert not group.populated()
    assert group.usage() == base.Usage(None, None, 0)
    group.kill()
    group.destroy()
    assert driver.open("job1") is None
    assert driver.list_names() == []


def test_unreadable_proc_gives_none(tmp_path: Path) -> None:
    driver = detect(str(tmp_path), str(tmp_path / "missing"), [])
    assert driver.name == "none"
    assert "cannot read" in driver.warnings()[0]


def test_parsers() -> None:
    [mount] = parse_mountinfo(
        r"41 31 0:38 /a\040b /sys/fs/cgroup/my\040dir rw,relatime - cgroup cgroup rw,cpu,cpuacct"
    )
    assert (mount.root, mount.point, mount.fstype) == ("/a b", "/sys/fs/cgroup/my dir", "cgroup")
    assert {"cpu", "cpuacct"} <= mount.controllers
    v1, v2 = parse_proc_cgroup(
        "5:cpu,cpuacct:/x\n4:memory:/process_api/f716\n1:name=systemd:/\n0::/\n"
    )
    assert v1["cpu"] == v1["cpuacct"] == "/x"
    assert v1["memory"] == "/process_api/f716"
    assert v2 == "/"
    assert own_dir(mount, "/a b/c") == "/sys/fs/cgroup/my dir/c"
    assert own_dir(mount, "/a bc") is None


@pytest.mark.parametrize(("cpus", "weight"), [(1, "100"), (3, "300"), (200, "10000")])
def test_the_jobs_group_weighs_as_many_processes_as_there_are_cpus(
    tmp_path: Path, fake: FakeCgroup2, monkeypatch: pytest.MonkeyPatch, cpus: int, weight: str
) -> None:
    """remo's group: cpu.weight of one process (100) times the server's CPUs, at most the
    kernel's 10000; the server's own leaf keeps one process's."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    proc = make_proc(tmp_path, fake.mount, "/system.slice/remo.service")
    driver = detect(str(fake.mount), str(proc), ["254:0"], fs=fake)
    assert (fake.mount / "system.slice/remo.service/remo/cpu.weight").read_text() == weight
    assert driver.warnings() == []


def test_a_group_that_cannot_be_weighed_is_a_warning(tmp_path: Path, fake: FakeCgroup2) -> None:
    fake.fail_on = "cpu.weight"
    proc = make_proc(tmp_path, fake.mount, "/system.slice/remo.service")
    driver = detect(str(fake.mount), str(proc), ["254:0"], fs=fake)
    assert [w for w in driver.warnings() if w.startswith("cannot weigh the jobs' cpu group")]
    assert "cpu" in driver.supported()

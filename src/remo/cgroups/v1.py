"""The cgroup v1 backend, plain (``v1``) or with a controller-less cgroup2 mount (``hybrid``).

v1 has one hierarchy per mount (``cpu``, ``memory``... or joined ones like
``cpu,cpuacct``), so a job has one directory per hierarchy, each at
``<own cgroup in that hierarchy>/remo/<job>``. In hybrid mode the cgroup2 mount (usually
``/sys/fs/cgroup/unified``) carries no controllers but gives what v1 lacks: reliable
membership and ``populated`` (cgroup.events), ``cgroup.kill`` and ``cpu.stat``. It is then
the tracking hierarchy, as in runc's fs manager. Without it, the freezer is used to kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from remo.cgroups import base
from remo.core.errors import CgroupError
from remo.core.outcome import Usage
from remo.core.spec import Limits
from remo.core.usage import Sample

#: v1 controllers remo uses. cpuset and devices are left alone: a new cpuset group starts
#: with empty cpuset.cpus/mems and refuses tasks (cgroup-v1/cpusets.rst), and remo limits
#: neither. ``name=systemd`` has no controller at all.
USED = ("cpu", "cpuacct", "memory", "pids", "blkio", "freezer")


class V1Group:
    """A job's directories: one per v1 hierarchy, plus one in the unified mount if any."""

    def __init__(
        self, name: str, dirs: Mapping[str, str], unified: str | None, fs: base.Fs, kill: bool
    ) -> None:
        self.name = name
        self.dirs = dict(dirs)
        self._unified = unified
        self._fs = fs
        self._has_kill = kill
        self._set_paths()

    def _set_paths(self) -> None:
        paths = [self._unified] if self._unified else []
        self.paths = paths + sorted({d for d in self.dirs.values() if d not in paths})
        self._tracking = self._unified or self.dirs.get("freezer") or self.paths[0]

    def add(self, dirs: Mapping[str, str]) -> None:
        """Directories made in more hierarchies (see :meth:`V1Driver.apply`)."""
        self.dirs.update(dirs)
        self._set_paths()

    def join_files(self) -> list[str]:
        return [os.path.join(p, "cgroup.procs") for p in self.paths]

    def pids(self) -> list[int]:
        return base.read_pids(self._fs, self._tracking)

    def signal_all(self, sig: int) -> None:
        base.signal_pids(self.pids(), sig)

    def kill(self) -> None:
        with base.unless_gone():
            self._kill()

    def _kill(self) -> None:
        fs = self._fs
        if self._unified and self._has_kill:
            # cgroup-v2.rst "cgroup.kill" works on a controller-less hierarchy too.
            base.write(fs, self._unified, "cgroup.kill", "1")
        elif freezer := self.dirs.get("freezer"):
            # cgroup-v1/freezer-subsystem.rst: write FROZEN, read back until FROZEN (it
            # shows FREEZING meanwhile), then THAWED. Killing in between is runc's method.
            base.freeze_kill(
                lambda on: base.write(fs, freezer, "freezer.state", "FROZEN" if on else "THAWED"),
                lambda: (base.read(fs, freezer, "freezer.state") or "").strip() == "FROZEN",
                self.pids,
            )
        else:
            # Racy against fork; remove_dirs() repeats it until the group is empty.
            self.signal_all(signal.SIGKILL)

    def populated(self) -> bool:
        if self._unified:
            events = base.keyed(base.read(self._fs, self._unified, "cgroup.events"))
            return events.get("populated", 0) == 1
        return bool(self.pids())

    def usage(self) -> Usage:
        fs, cpu = self._fs, None
        if self._unified:
            stat = base.keyed(base.read(fs, self._unified, "cpu.stat"))
            cpu = stat["usage_usec"] / 1e6 if "usage_usec" in stat else None
        if cpu is None and (acct := self.dirs.get("cpuacct")):
            # cgroup-v1/cpuacct.rst: cpuacct.usage is the total CPU time in nanoseconds.
            text = (base.read(fs, acct, "cpuacct.usage") or "").strip()
            cpu = int(text) / 1e9 if text.isdigit() else None
        peak, ooms = None, 0
        if memory := self.dirs.get("memory"):
            # cgroup-v1/memory.rst: max_usage_in_bytes is the high-water mark, and
            # memory.oom_control reports oom_kill (4.13+).
            text = (base.read(fs, memory, "memory.max_usage_in_bytes") or "").strip()
            peak = int(text) if text.isdigit() else None
            ooms = base.keyed(base.read(fs, memory, "memory.oom_control")).get("oom_kill", 0)
        return Usage(cpu, peak, ooms)

    def sample(self, at: float) -> Sample:
        """What the job uses now: memory.usage_in_bytes (cgroup-v1/memory.rst), the
        unified group's io.stat or, when the job is in the blkio hierarchy (it joins it
        only for an io limit), blkio.throttle.io_service_bytes; processes in the
        tracking group."""
        fs = self._fs
        used = self.usage()
        memory = None
        if directory := self.dirs.get("memory"):
            text = (base.read(fs, directory, "memory.usage_in_bytes") or "").strip()
            memory = int(text) if text.isdigit() else None
        read: int | None = None
        written: int | None = None
        if blkio := self.dirs.get("blkio"):
            read, written = base.blkio_totals(
                base.read(fs, blkio, "blkio.throttle.io_service_bytes")
            )
        elif self._unified:
            read, written = base.io_stat_totals(base.read(fs, self._unified, "io.stat"))
        return Sample(
            at,
            cpu_seconds=used.cpu_seconds,
            memory_bytes=memory,
            peak_memory_bytes=used.peak_memory_bytes,
            io_read_bytes=read,
            io_write_bytes=written,
            processes=len(self.pids()),
        )

    def destroy(self) -> None:
        base.remove_dirs(self._fs, self.paths, self)


class V1Driver:
    """Jobs under ``<own>/remo`` in every v1 hierarchy remo uses (and the unified one)."""

    def __init__(
        self,
        hierarchies: Mapping[str, str],
        unified: str | None,
        io_devices: Sequence[str],
        fs: base.Fs,
        parent: str = base.PARENT,
    ) -> None:
        """``hierarchies`` maps each mounted v1 controller to this process's cgroup
        directory in it (joined controllers map to the same directory); ``unified`` is
        our directory in the cgroup2 mount, if there is one. ``parent`` names the group
        holding the jobs (see :func:`remo.cgroups.detect.detect`).

        Raises :class:`CgroupError` when not a single hierarchy can be used.
        """
        self.name = "hybrid" if unified else "v1"
        self._fs = fs
        self._devices = list(io_devices)
        self._warnings: list[str] = []
        self._bases: dict[str, str] = {}
        first_error: CgroupError | None = None
        for controller in USED:
            if controller in hierarchies:
                where = os.path.join(hierarchies[controller], parent)
                try:
                    base.mkdir_exist_ok(fs, where)
                    self._bases[controller] = where
                except CgroupError as err:
                    first_error = first_error or err
                    self._warnings.append(f"{controller} hierarchy unusable: {err}")
        self._unified: str | None = None
        if unified:
            try:
                base.mkdir_exist_ok(fs, os.path.join(unified, parent))
                self._unified = os.path.join(unified, parent)
            except CgroupError as err:
                first_error = first_error or err
                self._warnings.append(f"cgroup2 hierarchy unusable: {err}")
        if not self._bases and not self._unified and first_error:
            raise first_error
        if "cpu" in self._bases:
            try:  # (cgroup-v1 scheduler docs: cpu.shares from 2 to 262144)
                weight = base.jobs_cpu_weight(1024, 262144)
                base.write(fs, self._bases["cpu"], "cpu.shares", str(weight))
            except CgroupError as err:
                self._warnings.append(f"cannot weigh the jobs' cpu group: {err}")
        self._has_kill = bool(self._unified) and self._has("unified", "cgroup.kill")
        self._has_memsw = self._has("memory", "memory.memsw.limit_in_bytes")
        self._unified_cpu_stat = self._has("unified", "cpu.stat")
        self._supported = self._features()

    def _has(self, controller: str, file: str) -> bool:
        where = self._unified if controller == "unified" else self._bases.get(controller)
        return where is not None and self._fs.exists(os.path.join(where, file))

    def _features(self) -> frozenset[str]:
        found: set[str] = {c for c in ("memory", "pids") if c in self._bases}
        if self._has("cpu", "cpu.cfs_quota_us"):  # needs CONFIG_CFS_BANDWIDTH
            found.add("cpu")
        if self._devices and self._has("blkio", "blkio.throttle.read_bps_device"):
            found.add("io")
        if self._has_kill or "freezer" in self._bases:
            found.add("kill")
        if self._has("unified", "cpu.stat") or "cpuacct" in self._bases:
            found.add("usage")
        return frozenset(found)

    def warnings(self) -> list[str]:
        extra = []
        if "memory" in self._bases and not self._has_memsw:
            extra.append("no swap accounting (memory.memsw): memory limits do not cover swap")
        return self._warnings + base.off_warnings(self._supported) + extra

    def supported(self) -> frozenset[str]:
        return self._supported

    def _group(self, name: str, controllers: Sequence[str]) -> V1Group:
        dirs = {c: os.path.join(self._bases[c], name) for c in controllers}
        unified = os.path.join(self._unified, name) if self._unified else None
        return V1Group(name, dirs, unified, self._fs, self._has_kill)

    def _needed(self, limits: Limits) -> list[str]:
        """The hierarchies a job with ``limits`` must be in.

        Every hierarchy costs a directory and a migration (the migration takes a
        global lock, cgroup_threadgroup_rwsem), so a job only joins what limits it,
        shares the CPU fairly, reports its usage (memory's peak and OOM kills; cpuacct
        when the cgroup2 mount has no cpu.stat) or kills it (the freezer, when the
        cgroup2 mount cannot). Without one of them the job stays where the server is.
        A waiting init joins its hierarchies before its start
        (``Starter._prepare_init``): only a limit's own hierarchy adds to a start.

        cpu always, as on cgroup v2: left in the root group, each session a job starts
        is an autogroup of its own (sched(7)) that weighs as much as the server's: 20
        busy sessions left a busy process 9 % of a core. In remo's group all jobs
        together weigh as many processes as there are CPUs (base.jobs_cpu_weight), each
        job as much as another, and the server keeps its share.
        """
        wanted = {"memory", "cpu"}
        if limits.pids is not None:
            wanted.add("pids")
        if limits.io_read_bps is not None or limits.io_write_bps is not None:
            wanted.add("blkio")
        if not self._unified_cpu_stat:
            wanted.add("cpuacct")
        if not self._has_kill:
            wanted.add("freezer")
        return [c for c in USED if c in wanted and c in self._bases]

    def create(self, name: str, limits: Limits) -> V1Group:
        base.check_name(name)
        base.check_limits(limits, self._supported)
        group = self._group(name, self._needed(limits))
        created: list[str] = []
        try:
            for path in group.paths:
                self._mkdir(path)
                created.append(path)
            self._write_limits(group, limits)
        except CgroupError:
            for path in reversed(created):
                with contextlib.suppress(OSError):
                    self._fs.rmdir(path)
            raise
        return group

    def apply(self, group: base.JobGroup, limits: Limits) -> list[str]:
        """Add the hierarchies ``limits`` need (cpu, pids, blkio), then write them."""
        assert isinstance(group, V1Group)
        base.check_limits(limits, self._supported)
        added: dict[str, str] = {}
        made: list[str] = []  # new directories: joined controllers share one
        try:
            for controller in self._needed(limits):
                if controller in group.dirs:
                    continue
                path = os.path.join(self._bases[controller], group.name)
                if path not in group.paths and path not in made:
                    self._mkdir(path)
                    made.append(path)
                added[controller] = path
            group.add(added)
            self._write_limits(group, limits)
        except CgroupError:
            for path in made:
                with contextlib.suppress(OSError):
                    self._fs.rmdir(path)
            raise
        return [os.path.join(p, "cgroup.procs") for p in sorted(made)]

    def _mkdir(self, path: str) -> None:
        try:
            try:
                self._fs.mkdir(path)
            except FileNotFoundError:
                # Our remo group was removed while idle: recreate it, once.
                base.mkdir_exist_ok(self._fs, os.path.dirname(path))
                self._fs.mkdir(path)
        except OSError as err:
            raise CgroupError(os.path.dirname(path), os.path.basename(path), "mkdir", err) from err

    def _write_limits(self, group: V1Group, limits: Limits) -> None:
        fs, dirs = self._fs, group.dirs
        if limits.cpu is not None:
            # scheduler/sched-bwc.rst; period first, so the quota is checked against it.
            quota, period = base.cpu_quota(limits.cpu)
            base.write(fs, dirs["cpu"], "cpu.cfs_period_us", str(period))
            base.write(fs, dirs["cpu"], "cpu.cfs_quota_us", str(quota))
        if limits.memory is not None:
            base.write(fs, dirs["memory"], "memory.limit_in_bytes", str(limits.memory))
            if self._has_memsw:
                # cgroup-v1/memory.rst: memsw limits memory+swap, so swap cannot hide
                # usage; it must be >= limit_in_bytes, hence written second.
                base.write(fs, dirs["memory"], "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            base.write(fs, dirs["pids"], "pids.max", base.pids_max(limits))
        # cgroup-v1/blkio-controller.rst: "MAJ:MIN bytes_per_second", one device per
        # write. Rules belong to a disk's request queue; a partition's numbers are
        # refused or match nothing, hence the whole-disk device list.
        for file, value in (
            ("blkio.throttle.read_bps_device", limits.io_read_bps),
            ("blkio.throttle.write_bps_device", limits.io_write_bps),
        ):
            if value is not None:
                for device in self._devices:
                    base.write(fs, dirs["blkio"], file, f"{device} {value}")

    def open(self, name: str) -> V1Group | None:
        base.check_name(name)
        present = [c for c in self._bases if self._fs.exists(os.path.join(self._bases[c], name))]
        group = self._group(name, present)
        if not any(self._fs.exists(p) for p in group.paths):
            return None
        return group

    def list_names(self) -> list[str]:
        names: set[str] = set()
        for where in {*self._bases.values(), *([self._unified] if self._unified else [])}:
            with contextlib.suppress(FileNotFoundError):
                names.update(self._fs.listdirs(where))
        return sorted(names)

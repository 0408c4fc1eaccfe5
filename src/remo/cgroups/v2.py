"""The cgroup v2 backend: one unified hierarchy, controllers enabled top-down.

Layout: ``<own cgroup>/remo/<job>``, where ``<own cgroup>`` is where this process runs.
Controllers reach a group only if every ancestor lists them in ``cgroup.subtree_control``
(cgroup-v2.rst "Top-down Constraint"), so setup enables them along the path once, at
driver construction; :meth:`V2Driver.create` is then one mkdir plus a few writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence

from remo.cgroups import base
from remo.core.errors import CgroupError
from remo.core.outcome import Usage
from remo.core.spec import Limits
from remo.core.usage import Sample

#: Controllers remo uses; everything else is left as the system configured it.
WANTED = ("cpu", "io", "memory", "pids")

#: Leaf that receives the processes of our own cgroup when they block delegation.
SERVER_LEAF = "remo-server"


class V2Group:
    """A job's single directory in the unified hierarchy."""

    def __init__(self, name: str, path: str, fs: base.Fs, has_kill: bool) -> None:
        self.name = name
        self.path = path
        self._fs = fs
        self._has_kill = has_kill

    def join_files(self) -> list[str]:
        return [os.path.join(self.path, "cgroup.procs")]

    def pids(self) -> list[int]:
        return base.read_pids(self._fs, self.path)

    def signal_all(self, sig: int) -> None:
        base.signal_pids(self.pids(), sig)

    def kill(self) -> None:
        with base.unless_gone():
            if self._has_kill:
                # cgroup-v2.rst "cgroup.kill": writing "1" SIGKILLs every process in the
                # subtree, and the kernel deals with concurrent forks and migrations.
                base.write(self._fs, self.path, "cgroup.kill", "1")
                return
            # Before 5.14 there is no cgroup.kill; cgroup.freeze (5.2+) closes the race.
            base.freeze_kill(
                lambda on: base.write(self._fs, self.path, "cgroup.freeze", "1" if on else "0"),
                lambda: self._events().get("frozen", 1) == 1,
                self.pids,
            )

    def _events(self) -> dict[str, int]:
        return base.keyed(base.read(self._fs, self.path, "cgroup.events"))

    def populated(self) -> bool:
        # cgroup.events "populated" covers the whole subtree and ignores zombies.
        return self._events().get("populated", 0) == 1

    def usage(self) -> Usage:
        fs, path = self._fs, self.path
        # cgroup-v2.rst "CPU Interface Files": usage_usec is always present in cpu.stat,
        # even without the cpu controller.
        stat = base.keyed(base.read(fs, path, "cpu.stat"))
        cpu = stat["usage_usec"] / 1e6 if "usage_usec" in stat else None
        peak_text = base.read(fs, path, "memory.peak")  # 5.19+
        peak = int(peak_text) if peak_text and peak_text.strip().isdigit() else None
        events = base.keyed(base.read(fs, path, "memory.events"))
        return Usage(cpu, peak, events.get("oom_kill", 0))

    def sample(self, at: float) -> Sample:
        """What the job uses now (cgroup-v2.rst: memory.current, io.stat's rbytes and
        wbytes summed over devices, the processes in cgroup.procs)."""
        fs, path = self._fs, self.path
        used = self.usage()
        current = (base.read(fs, path, "memory.current") or "").strip()
        read, written = base.io_stat_totals(base.read(fs, path, "io.stat"))
        return Sample(
            at,
            cpu_seconds=used.cpu_seconds,
            memory_bytes=int(current) if current.isdigit() else None,
            peak_memory_bytes=used.peak_memory_bytes,
            io_read_bytes=read,
            io_write_bytes=written,
            processes=len(self.pids()),
        )

    def destroy(self) -> None:
        base.remove_dirs(self._fs, [self.path], self)


class V2Driver:
    """Jobs under ``<own>/remo`` on a pure cgroup v2 machine."""

    name = "v2"

    def __init__(
        self,
        own: str,
        mount: str,
        io_devices: Sequence[str],
        fs: base.Fs,
        parent: str = base.PARENT,
    ) -> None:
        """``own`` is this process's cgroup directory, ``mount`` the cgroup2 mount point,
        ``parent`` the group holding the jobs (see :func:`remo.cgroups.detect.detect`).

        Raises :class:`CgroupError` when the hierarchy cannot be prepared.
        """
        if os.path.basename(own) == SERVER_LEAF:
            # We were moved into the leaf by an earlier setup in this same cgroup.
            own = os.path.dirname(own)
        self._fs = fs
        self._devices = list(io_devices)
        self._warnings: list[str] = []
        self.own = own
        self.base = os.path.join(own, parent)
        self._mount = mount
        self._setup()
        listed = (base.read(fs, self.base, "cgroup.subtree_control") or "").split()
        self._has_kill = fs.exists(os.path.join(self.base, "cgroup.kill"))
        self._has_swap = fs.exists(os.path.join(self.base, "memory.swap.max"))
        features = {c for c in WANTED if c in listed}
        if not self._devices:
            features.discard("io")
        features.add("usage")
        if self._has_kill or fs.exists(os.path.join(self.base, "cgroup.freeze")):
            features.add("kill")
        self._supported = frozenset(features)

    def _setup(self) -> None:
        chain = [self._mount]
        rel = os.path.relpath(self.own, self._mount)
        for part in [] if rel == "." else rel.split(os.sep):
            chain.append(os.path.join(chain[-1], part))
        for ancestor in chain[:-1]:
            # Best effort above us: an ancestor we do not own may have processes and
            # refuse (EBUSY). The controller then stays off and warnings() says so.
            with contextlib.suppress(CgroupError):
                self._enable(ancestor)
        try:
            self._enable(self.own)
        except CgroupError as err:
            if err.errno != errno.EBUSY:
                raise
            # cgroup-v2.rst "No Internal Process Constraint": a non-root cgroup with
            # processes cannot enable controllers for its children. Container inits
            # solve this the same way: move our own processes into a leaf sibling of
            # the job groups, then enable.
            self._evacuate()
            self._enable(self.own)
        base.mkdir_exist_ok(self._fs, self.base)
        self._enable(self.base)
        if self._fs.exists(os.path.join(self.base, "cpu.weight")):
            try:  # (cgroup-v2.rst "Weights": 1 to 10000, 100 by default)
                weight = base.jobs_cpu_weight(100, 10000)
                base.write(self._fs, self.base, "cpu.weight", str(weight))
            except CgroupError as err:
                self._warnings.append(f"cannot weigh the jobs' cpu group: {err}")

    def _enable(self, path: str) -> None:
        available = (base.read(self._fs, path, "cgroup.controllers") or "").split()
        enabled = (base.read(self._fs, path, "cgroup.subtree_control") or "").split()
        for controller in WANTED:
            if controller in available and controller not in enabled:
                base.write(self._fs, path, "cgroup.subtree_control", f"+{controller}")

    def _evacuate(self) -> None:
        leaf = os.path.join(self.own, SERVER_LEAF)
        base.mkdir_exist_ok(self._fs, leaf)
        # Processes may fork while we move them; a few rounds catch the children.
        for _ in range(10):
            pids = base.read_pids(self._fs, self.own)
            if not pids:
                return
            for pid in pids:
                try:
                    base.write(self._fs, leaf, "cgroup.procs", str(pid))
                except CgroupError as err:
                    if err.errno != errno.ESRCH:
                        raise

    def warnings(self) -> list[str]:
        return self._warnings + base.off_warnings(self._supported)

    def supported(self) -> frozenset[str]:
        return self._supported

    def create(self, name: str, limits: Limits) -> V2Group:
        base.check_name(name)
        base.check_limits(limits, self._supported)
        fs, path = self._fs, os.path.join(self.base, name)
        try:
            try:
                fs.mkdir(path)
            except FileNotFoundError:
                # Our remo group was removed while idle (by an admin or a service
                # manager cleaning up): rebuild it, controllers included, once.
                self._setup()
                fs.mkdir(path)
        except OSError as err:
            raise CgroupError(self.base, name, "mkdir", err) from err
        try:
            self._write_limits(path, limits)
        except CgroupError:
            with contextlib.suppress(OSError):
                fs.rmdir(path)
            raise
        return V2Group(name, path, fs, self._has_kill)

    def _write_limits(self, path: str, limits: Limits) -> None:
        fs = self._fs
        if limits.cpu is not None:
            # cgroup-v2.rst "cpu.max": "$MAX $PERIOD".
            quota, period = base.cpu_quota(limits.cpu)
            base.write(fs, path, "cpu.max", f"{quota} {period}")
        if limits.memory is not None:
            base.write(fs, path, "memory.max", str(limits.memory))
            if self._has_swap:
                # Without this the job could push its excess to swap instead of hitting
                # memory.max (swap is accounted separately in v2).
                base.write(fs, path, "memory.swap.max", "0")
        if limits.pids is not None:
            base.write(fs, path, "pids.max", base.pids_max(limits))
        if limits.io_read_bps is not None or limits.io_write_bps is not None:
            keys = []
            if limits.io_read_bps is not None:
                keys.append(f"rbps={limits.io_read_bps}")
            if limits.io_write_bps is not None:
                keys.append(f"wbps={limits.io_write_bps}")
            # cgroup-v2.rst "io.max": one "$MAJ:$MIN key=value..." line per write.
            for device in self._devices:
                base.write(fs, path, "io.max", f"{device} {' '.join(keys)}")

    def apply(self, group: base.JobGroup, limits: Limits) -> list[str]:
        """One hierarchy holds every controller: only the limit files change."""
        assert isinstance(group, V2Group)
        base.check_limits(limits, self._supported)
        self._write_limits(group.path, limits)
        return []

    def open(self, name: str) -> V2Group | None:
        base.check_name(name)
        path = os.path.join(self.base, name)
        if not self._fs.exists(path):
            return None
        return V2Group(name, path, self._fs, self._has_kill)

    def list_names(self) -> list[str]:
        try:
            return self._fs.listdirs(self.base)
        except FileNotFoundError:
            return []

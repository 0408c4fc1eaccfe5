"""Choose the cgroup backend, once, at start-up.

The only place that looks at mountinfo: it finds where each hierarchy is mounted and
where this process sits in it, and hands plain directories to a backend. Doing it once
keeps :meth:`CgroupDriver.create`, which runs on every job start, free of rescans.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from remo.cgroups.base import PARENT, CgroupDriver, Fs, check_name
from remo.cgroups.none import NoneDriver
from remo.cgroups.v1 import USED, V1Driver
from remo.cgroups.v2 import V2Driver
from remo.core.errors import CgroupError

_OFF = "limits are off and stop kills only the process group"
_OCTAL = re.compile(r"\\([0-7]{3})")
#: /sys/block entries that are not real disks; /sys/block lists no partitions anyway.
_VIRTUAL = ("loop", "ram", "zram")


@dataclass(frozen=True)
class Mount:
    """One cgroup line of mountinfo (proc(5)): ``root`` is the hierarchy path the mount
    shows at ``point``; ``controllers`` are the v1 controllers from the super options."""

    root: str
    point: str
    fstype: str
    controllers: frozenset[str]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(","))
        mounts.append(Mount(_unescape(fields[3]), _unescape(fields[4]), tail[0], options))
    return mounts


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """``(v1 controller -> path, v2 path)`` from /proc/<pid>/cgroup (cgroups(7)).

    Paths are relative to our cgroup namespace root, as mountinfo's root field is.
    """
    v1: dict[str, str] = {}
    v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        else:
            for controller in parts[1].split(","):
                v1[controller] = parts[2]
    return v1, v2


def own_dir(mount: Mount, path: str) -> str | None:
    """Directory of cgroup ``path`` under ``mount``; None when the mount does not show it
    (a bind mount of another subtree, or a root outside our namespace such as ``/..``)."""
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    return os.path.normpath(mount.point + "/" + path[len(root) :])


def block_devices(sys_block: str = "/sys/block") -> list[str]:
    """``MAJ:MIN`` of every whole disk, skipping loop, ram and zram devices."""
    found = []
    try:
        names = sorted(os.listdir(sys_block))
    except OSError:
        return []
    for name in names:
        if name.startswith(_VIRTUAL):
            continue
        try:
            with open(os.path.join(sys_block, name, "dev")) as f:
                found.append(f.read().strip())
        except OSError:
            continue
    return found


def _under(point: str, root: str) -> bool:
    return point == root or point.startswith(root.rstrip("/") + "/")


def detect(
    root: str = "/sys/fs/cgroup",
    proc: str = "/proc",
    io_devices: Sequence[str] | None = None,
    *,
    fs: Fs | None = None,
    parent: str = PARENT,
) -> CgroupDriver:
    """Return the driver for this machine: ``hybrid``/``v1`` if v1 controllers are
    mounted under ``root``, ``v2`` for a lone cgroup2 mount, else ``none``.

    ``io_devices`` (``MAJ:MIN`` strings) defaults to :func:`block_devices`; ``fs`` lets
    tests emulate the kernel. Jobs go in ``<own cgroup>/<parent>/<name>``: every remo
    instance running in the same cgroup shares ``parent``, and ``list_names`` shows all
    of their groups, so a second instance on one machine needs its own ``parent``.
    Never raises: a failure yields ``none`` with the reason.
    """
    check_name(parent)
    fs = fs or Fs()
    try:
        v1_paths, v2_path = parse_proc_cgroup(fs.read(os.path.join(proc, "self/cgroup")))
        mounts = parse_mountinfo(fs.read(os.path.join(proc, "self/mountinfo")))
    except OSError as err:
        return NoneDriver(f"cannot read {proc}/self ({err.strerror}): no cgroups, {_OFF}")
    hierarchies: dict[str, str] = {}
    unified = unified_mount = None
    for mount in mounts:
        if not _under(mount.point, root):
            continue
        if mount.fstype == "cgroup":
            for controller in mount.controllers.intersection(USED):
                if controller in v1_paths and controller not in hierarchies:
                    where = own_dir(mount, v1_paths[controller])
                    if where:
                        hierarchies[controller] = where
        elif unified is None and v2_path is not None:
            unified, unified_mount = own_dir(mount, v2_path), mount.point
    devices = block_devices() if io_devices is None else list(io_devices)
    try:
        if hierarchies:
            return V1Driver(hierarchies, unified, devices, fs, parent)
        if unified and unified_mount:
            return V2Driver(unified, unified_mount, devices, fs, parent)
    except CgroupError as err:
        if os.geteuid() != 0 or err.errno in (errno.EACCES, errno.EPERM):
            return NoneDriver(f"not root: no cgroups, {_OFF} ({err})")
        return NoneDriver(f"cannot set up cgroups ({err}): {_OFF}")
    return NoneDriver(f"no usable cgroup filesystem under {root}: no cgroups, {_OFF}")

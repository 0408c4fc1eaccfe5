"""What every cgroup backend shares: the protocols and cgroupfs file I/O.

The supervisor codes against :class:`CgroupDriver` and :class:`JobGroup` only; which
backend sits behind them is decided once, by :func:`remo.cgroups.detect.detect`.
Backends (``v1``, ``v2``, ``none``) import this module and never each other, so a fix in
one hierarchy's quirks cannot leak into another.

All file access goes through :class:`Fs`. The real one is a thin layer over ``os``; unit
tests pass a subclass that emulates the kernel's answers (EBUSY, moving pids...) on a
plain directory tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from remo.core.backoff import delays
from remo.core.errors import CgroupError, InvalidArgument
from remo.core.outcome import Usage
from remo.core.spec import Limits
from remo.core.usage import Sample

#: Everything a driver can report in :meth:`CgroupDriver.supported`.
FEATURES = frozenset({"cpu", "memory", "io", "pids", "kill", "usage"})

#: Name of the group, beneath the caller's own cgroup, that holds every job group.
PARENT = "remo"


def jobs_cpu_weight(one: int, maximum: int) -> int:
    """The CPU weight of remo's group: ``one`` process's (cpu.shares 1024 on v1,
    cpu.weight 100 on v2) times the CPUs this process may run on, at most ``maximum``.

    As Kubernetes weighs its pods' group: all jobs together weigh as many busy
    processes as there are CPUs, while the server, weighing one, keeps 1/(n+1) of the
    machine under contention (two thirds of a core on two CPUs, nearly one on many:
    about what its one event loop can use). At one process's weight, with 1,000
    followed jobs on two cores, each job's relay (in the job's group) waited for the
    jobs' turn: a line's p99 from print to record 28-54 ms, 3-13 ms weighed so
    (bench/many_jobs_bench.py)."""
    return min(maximum, one * len(os.sched_getaffinity(0)))


#: Tasks of remo's own in every job cgroup (the job's init): pids.max is the job's limit
#: plus these, so that ``--pids N`` lets the job itself hold N processes.
INIT_TASKS = 1


def pids_max(limits: Limits) -> str:
    """The value of ``pids.max`` for ``limits.pids`` (see :data:`INIT_TASKS`)."""
    assert limits.pids is not None
    return str(min(limits.pids + INIT_TASKS, 1 << 22))


CPU_PERIOD_US = 100_000
# Documentation/scheduler/sched-bwc.rst: "The minimum quota allowed for the quota or
# period is 1ms. There is also an upper bound on the period length of 1s."
_MIN_QUOTA_US = 1_000
_LONG_PERIOD_US = 1_000_000

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


class JobGroup(Protocol):
    """The cgroup(s) of one job, in every hierarchy the driver manages."""

    name: str

    def join_files(self) -> list[str]: ...
    def pids(self) -> list[int]: ...
    def signal_all(self, sig: int) -> None: ...
    def kill(self) -> None: ...
    def populated(self) -> bool: ...
    def usage(self) -> Usage: ...
    def sample(self, at: float) -> Sample: ...
    def destroy(self) -> None: ...


class CgroupDriver(Protocol):
    """Creates and finds job groups; ``name`` is ``v2``, ``hybrid``, ``v1`` or ``none``.

    ``apply`` sets a job's limits on a group created earlier without them (a job init
    waits in one, see :mod:`remo.supervisor.spawn`) and returns the ``cgroup.procs``
    files of hierarchies it had to add, which the group's members must still join.
    """

    name: str

    def warnings(self) -> list[str]: ...
    def supported(self) -> frozenset[str]: ...
    def create(self, name: str, limits: Limits) -> JobGroup: ...
    def apply(self, group: JobGroup, limits: Limits) -> list[str]: ...
    def open(self, name: str) -> JobGroup | None: ...
    def list_names(self) -> list[str]: ...


class Fs:
    """Raw cgroupfs access. Methods raise :class:`OSError`; callers turn it into CgroupError.

    Writes use a bare ``open(O_WRONLY)`` + one ``write``: each write(2) on a cgroupfs file
    is parsed by the kernel as one command, so data must never be split or buffered.
    """

    def read(self, path: str) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(fd)

    def write(self, path: str, data: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdirs(self, path: str) -> list[str]:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))


def write(fs: Fs, directory: str, file: str, data: str) -> None:
    """Write one cgroup file, raising :class:`CgroupError` that names it."""
    try:
        fs.write(os.path.join(directory, file), data)
    except OSError as err:
        raise CgroupError(directory, file, "write", err) from err


def read(fs: Fs, directory: str, file: str) -> str | None:
    """Read one cgroup file; ``None`` if it does not exist (controller off, group gone)."""
    try:
        return fs.read(os.path.join(directory, file))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CgroupError(directory, file, "read", err) from err


def keyed(text: str | None) -> dict[str, int]:
    """Parse a flat-keyed file (``key value`` lines: cpu.stat, memory.events...)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def io_stat_totals(text: str | None) -> tuple[int | None, int | None]:
    """Bytes read and written, summed over devices, from a cgroup-v2 ``io.stat``
    (``8:0 rbytes=1 wbytes=2 rios=...`` lines); None when the file is missing."""
    if text is None:
        return None, None
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if value.isdigit():
                read += int(value) if key == "rbytes" else 0
                written += int(value) if key == "wbytes" else 0
    return read, written


def blkio_totals(text: str | None) -> tuple[int | None, int | None]:
    """Bytes read and written from a v1 ``blkio.throttle.io_service_bytes``
    (``8:0 Read 1``, ``8:0 Write 2``... and a ``Total`` line, which is skipped)."""
    if text is None:
        return None, None
    read = written = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            read += int(parts[2]) if parts[1] == "Read" else 0
            written += int(parts[2]) if parts[1] == "Write" else 0
    return read, written


def read_pids(fs: Fs, directory: str) -> list[int]:
    """Members of one cgroup, from its ``cgroup.procs`` (empty if the group is gone)."""
    return [int(p) for p in (read(fs, directory, "cgroup.procs") or "").split()]


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid; a pid that exited meanwhile (ESRCH) is not an error."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@contextlib.contextmanager
def unless_gone() -> Iterator[None]:
    """Swallow the error of acting on a group already removed: nothing is left in it."""
    try:
        yield
    except CgroupError as err:
        if err.errno != errno.ENOENT:
            raise


def mkdir_exist_ok(fs: Fs, path: str) -> None:
    try:
        fs.mkdir(path)
    except FileExistsError:
        pass
    except OSError as err:
        raise CgroupError(os.path.dirname(path), os.path.basename(path), "mkdir", err) from err


def check_name(name: str) -> None:
    """Job group names become directory names: no ``/``, no leading dot (``.``, ``..``).

    Dots are allowed because account names may contain them. A name equal to an interface
    file such as ``cgroup.procs`` is not refused here; mkdir then fails with EEXIST.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid cgroup name {name!r}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'"
        )


def cpu_quota(cores: float) -> tuple[int, int]:
    """``(quota_us, period_us)`` for ``cores``. Below 0.01 cores a 100 ms period would
    need a quota under the kernel's 1 ms minimum, so the period grows to 1 s instead."""
    quota = round(cores * CPU_PERIOD_US)
    if quota >= _MIN_QUOTA_US:
        return quota, CPU_PERIOD_US
    return max(_MIN_QUOTA_US, round(cores * _LONG_PERIOD_US)), _LONG_PERIOD_US


_LIMIT_FEATURE = (
    ("cpu", "cpu", "cpu"),
    ("memory", "memory", "memory"),
    ("io_read_bps", "io", "io read"),
    ("io_write_bps", "io", "io write"),
    ("pids", "pids", "pids"),
)

_OFF = {
    "cpu": "no cpu controller: cpu limits are not enforced",
    "memory": "no memory controller: memory limits are not enforced and peak memory is unknown",
    "io": "no io controller or no block device: io limits are not enforced",
    "pids": "no pids controller: process count limits are not enforced",
    "kill": "no cgroup.kill or freezer: stop signals processes one by one and can miss "
    "ones forked meanwhile",
    "usage": "no cpu accounting: cpu usage is not reported",
}


def check_limits(limits: Limits, supported: frozenset[str], why: str | None = None) -> None:
    """Refuse limits this machine cannot enforce, rather than silently ignoring them.

    ``why`` replaces the per-controller explanation (the ``none`` driver has one reason).
    """
    limits.validate()
    for field, feature, label in _LIMIT_FEATURE:
        if getattr(limits, field) is not None and feature not in supported:
            raise InvalidArgument(
                f"{label} limit requested but this server cannot enforce it: {why or _OFF[feature]}"
            )


def off_warnings(supported: frozenset[str]) -> list[str]:
    """One sentence per feature that is off."""
    return [_OFF[f] for f in sorted(FEATURES - supported)]


def freeze_kill(
    set_frozen: Callable[[bool], None],
    is_frozen: Callable[[], bool],
    pids: Callable[[], list[int]],
    settle: float = 1.0,
) -> None:
    """SIGKILL every member without a fork race: freeze, kill each pid, thaw (as runc
    does). Frozen tasks cannot fork; SIGKILL is acted on once they are thawed."""
    set_frozen(True)
    try:
        deadline = time.monotonic() + settle
        # Freezing is asynchronous (FREEZING in cgroup-v1/freezer-subsystem.rst, "frozen 0"
        # in cgroup.events for v2); a task not yet frozen could still fork, so wait.
        while not is_frozen() and time.monotonic() < deadline:
            time.sleep(0.001)
        signal_pids(pids(), signal.SIGKILL)
    finally:
        set_frozen(False)


def remove_dirs(fs: Fs, dirs: list[str], group: JobGroup, timeout: float = 5.0) -> None:
    """Kill ``group``, wait until it is empty, then rmdir each of ``dirs``.

    rmdir(2) of a cgroup fails with EBUSY while it still has live tasks or child groups
    (cgroup-v2.rst "Removing cgroups"; zombies do not count). SIGKILL is asynchronous: a
    killed task stays a member until it has run its exit path and torn down its memory,
    which takes longer for a large job, so EBUSY is retried with a short backoff. A job
    running as root may also have made child groups; those are removed first.
    A directory already gone (ENOENT) is what we wanted.
    """
    deadline = time.monotonic() + timeout
    backoff = delays(0.0005, 0.02)
    if group.populated():
        group.kill()
        while group.populated() and time.monotonic() < deadline:
            time.sleep(next(backoff))
            group.kill()
    for path in dirs:
        while True:
            try:
                fs.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise CgroupError(
                        os.path.dirname(path), os.path.basename(path), "rmdir", err
                    ) from err
                _remove_children(fs, path)
                time.sleep(next(backoff))


def _remove_children(fs: Fs, path: str) -> None:
    """Best-effort, depth-first rmdir of the groups below ``path``."""
    with contextlib.suppress(OSError):
        for child in fs.listdirs(path):
            _remove_children(fs, os.path.join(path, child))
            fs.rmdir(os.path.join(path, child))

"""PID, mount and network namespaces for one job.

A namespaced job's init is forked by the spawner's helper after it unshared its PID
namespace, so the init is PID 1 of a fresh namespace (see
:mod:`remo.supervisor.spawner`). While it waits for a job it makes its mount namespace
a slave of the host's and mounts that namespace's ``/proc``; once the job is known it adds what that
job asked for (no network but ``lo``, a private ``/tmp``) and starts it as PID 2. When
the init exits, the kernel kills whatever is left in the namespace.

Python 3.11 has no ``os.unshare`` or ``mount``: both come from libc through ctypes.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_SLAVE = 0x4000, 0x80000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1

# dlopen(NULL): the symbols already loaded, libc among them (find_library would run
# ldconfig in a subprocess).
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Isolation:
    """Which namespaces a job gets."""

    pid: bool = False
    mount: bool = False
    network_none: bool = False
    private_tmp: bool = False

    @property
    def any(self) -> bool:
        return self.pid or self.mount or self.network_none

    def labels(self) -> tuple[str, ...]:
        out = []
        if self.pid:
            out.append("pid")
        if self.mount or self.pid or self.private_tmp:
            out.append("mount")
        out.append("network:none" if self.network_none else "network:host")
        if self.private_tmp:
            out.append("private-tmp")
        return tuple(out)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def mount(
    source: str, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    result = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def probe(flags: int) -> bool:
    """Whether this process may create the namespaces in ``flags`` (tried in a child)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            unshare(flags)
            code = 0
        except OSError:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def libc() -> ctypes.CDLL:
    """The C library, for the calls Python 3.11 does not wrap."""
    return _libc


def prepare_pid_one() -> None:
    """In a waiting init, PID 1 of a fresh PID namespace: a mount namespace of its own
    with this namespace's ``/proc``.

    Slave propagation: nothing mounted inside ever shows up on the host, while what the
    host mounts later (on shared mounts) still reaches a job whose init was forked
    before — it may have waited in the pool for a while.
    """
    unshare(CLONE_NEWNS)
    mount("none", "/", None, MS_REC | MS_SLAVE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def isolate_job(network_none: bool, private_tmp: bool) -> None:
    """In the init, once its job is known: the namespaces this one job asked for.

    A private ``/tmp`` needs the init's own mount namespace (see :func:`prepare_pid_one`);
    the supervisor refuses such jobs when namespaces are off.
    """
    if network_none:
        unshare(CLONE_NEWNET)
        _loopback_up()
    if private_tmp:
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))

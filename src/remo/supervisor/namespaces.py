"""PID, mount and network namespaces for one job.

Layout of a namespaced job (all forked from the supervisor, no exec until the job)::

    supervisor ── setup child ──(unshare, fork)──► init (PID 1 inside) ──► job (PID 2)
                     └ exits at once; init is re-parented to the supervisor,
                       which is a child subreaper, so the supervisor still reaps it.

Before forking the job, the init mounts a fresh ``/proc`` for the new PID namespace,
optionally a private ``/tmp``, and brings up ``lo`` in a new network namespace (see
:mod:`remo.supervisor.init` for what it does afterwards). When the init exits, the
kernel kills whatever is left in the namespace.

Python 3.11 has no ``os.unshare`` or ``mount``: both come from libc through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


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

    def flags(self) -> int:
        flags = CLONE_NEWPID if self.pid else 0
        # /proc for a new PID namespace needs a mount namespace of its own.
        flags |= CLONE_NEWNS if (self.mount or self.pid or self.private_tmp) else 0
        return flags | (CLONE_NEWNET if self.network_none else 0)

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


def enter(isolation: Isolation, without: int = 0) -> None:
    """In the setup child: create the namespaces; mounts stay private to them."""
    unshare(isolation.flags() & ~without)
    if isolation.flags() & CLONE_NEWNS:
        # Private propagation: nothing mounted inside ever shows up on the host.
        mount("none", "/", None, MS_REC | MS_PRIVATE)


_own_pid_namespace: int | None = None


@contextlib.contextmanager
def pid_namespace_for_next_child(wanted: bool) -> Iterator[None]:
    """Make the next fork land in a new PID namespace, as its PID 1.

    ``unshare(CLONE_NEWPID)`` does not move the caller, only its future children; the
    ``setns`` back to our own namespace afterwards makes later children ordinary again.
    Forking straight into the namespace saves the extra fork (about a millisecond of a
    start) that unsharing in the child and forking again would cost. The supervisor is
    single-threaded, so no other fork can happen in between. (The child leaves this
    block too, after the fork: only the parent restores.)
    """
    global _own_pid_namespace
    if not wanted:
        yield
        return
    if _own_pid_namespace is None:
        _own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    unshare(CLONE_NEWPID)
    parent = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == parent and _libc.setns(_own_pid_namespace, CLONE_NEWPID) != 0:
            # Every later child would land in a dead namespace: better to stop here and
            # let the library start a fresh supervisor.
            err = ctypes.get_errno()
            os.write(2, f"remo supervisor: setns failed: {os.strerror(err)}\n".encode())
            os._exit(70)


def prepare_init(isolation: Isolation) -> None:
    """In the init (PID 1 inside): /proc for this PID namespace, /tmp, loopback."""
    if isolation.pid:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if isolation.private_tmp:
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if isolation.network_none:
        _loopback_up()


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))

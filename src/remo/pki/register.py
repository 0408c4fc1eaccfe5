"""The register socket: how a local account gets its credential file.

``remo server`` listens on a unix stream socket. Whoever connects gets a fresh client
certificate for *their own* account: the kernel tells the server the caller's uid
(``SO_PEERCRED``); nothing the caller sends can change who they are.

Where the socket lives
    The state directory is private (0700), so the socket cannot live in it. It is
    ``/run/remo/register-<h>.sock`` where ``<h>`` is the first 16 hex digits of the
    SHA-256 of the state directory's absolute, symlink-resolved path. ``remo register
    --state-dir DIR`` computes the same name from ``DIR``
    (:func:`register_socket_path`); one host can run several servers. ``/run/remo`` is
    created mode 0755 and the socket 0666: every local account may connect.

Who gets which role
    root gets ``admin``, every other account ``operator``, unless the ``roles`` mapping
    (account name -> role) passed to :class:`RegisterServer` says otherwise;
    ``default_role=None`` refuses accounts the mapping does not name.

Protocol (one exchange per connection)
    client: ``remo-register v1\\n``;
    server: ``ok <length>\\n`` and ``<length>`` bytes of credential file, or
    ``error <one-line message>\\n``.

Bounds
    Every credential is a key pair made and a registry row written, for good: one
    account may get ``rate`` of them per window (:data:`DEFAULT_RATE`, 5 per 10
    minutes; ``register_rate`` in the server settings), counted per account name in
    memory, and is told when to try again. A connection gets ``timeout`` seconds to send
    its request line (at most :data:`MAX_REQUEST_LINE` bytes) and again to take the
    answer; at most :data:`MAX_CONNECTIONS_PER_ACCOUNT` connections per account and
    :data:`MAX_CONNECTIONS` in all are served at once, any more are answered with an
    error at once. A local account can thus hold a few tasks and descriptors of the
    server for seconds, and make a few keys and rows per window; nothing more.

Trust
    Before connecting, the client checks that the socket and its directory belong to
    root or to one same account and that the directory is writable by its owner only,
    so another local account cannot plant a fake server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import math
import os
import pwd
import socket
import stat
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from remo.core.errors import RemoError
from remo.core.spec import ACCOUNT_NAME
from remo.pki import package
from remo.pki.ca import CLIENT_VALIDITY, CertificateAuthority, Role
from remo.pki.errors import RegisterError, RegisterRefused, RegisterUnavailable
from remo.pki.registry import Registry

log = logging.getLogger("remo.register")

DEFAULT_RUN_DIR = Path("/run/remo")
REQUEST = b"remo-register v1\n"
MAX_RESPONSE = 1 << 20
#: The request is one short line; the stream buffer needs no more than this.
MAX_REQUEST_LINE = 4096
#: Connections served at once from one account: `remo register` needs one.
MAX_CONNECTIONS_PER_ACCOUNT = 4
#: Connections served at once in all (each is a task and a descriptor of the server).
MAX_CONNECTIONS = 64
_PEERCRED = struct.Struct("3i")


class RateLimit(NamedTuple):
    """At most ``credentials`` per account in any ``window`` seconds."""

    credentials: int
    window: float


#: 5 credentials per account per 10 minutes: `remo register` is run once per account
#: and machine, again after a lost file or a revocation; a few retries fit, a loop that
#: fills the registry with rows (each a key made, a row kept for good) does not.
DEFAULT_RATE = RateLimit(5, 600.0)


class _Registrations:
    """When each account last got credentials, for :class:`RateLimit` (thread-safe:
    credentials are issued in worker threads). A slot is taken before the key is made
    and given back if issuing fails, so concurrent requests cannot overshoot."""

    def __init__(self, rate: RateLimit, clock: Callable[[], float]) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = {}

    def take(self, user: str) -> float:
        """Take a slot for ``user`` (returns its time) or raise :class:`RegisterRefused`."""
        with self._lock:
            now = self._clock()
            times = self._times.setdefault(user, deque())
            while times and times[0] <= now - self.rate.window:
                times.popleft()
            if len(times) >= self.rate.credentials:
                wait = max(1, math.ceil(times[0] + self.rate.window - now))
                raise RegisterRefused(
                    f"too many registrations for account {user}; try again in {wait} s"
                )
            times.append(now)
            return now

    def give_back(self, user: str, taken: float) -> None:
        with self._lock:
            times = self._times.get(user)
            if times is not None and taken in times:
                times.remove(taken)
            if not times:
                self._times.pop(user, None)


def register_socket_path(
    state_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str] = DEFAULT_RUN_DIR
) -> Path:
    """The register socket of the server whose state directory is ``state_dir``.

    Computed from the path alone: the directory is private (0700, root's), and the
    accounts that run ``remo register --state-dir DIR`` cannot read it. Symlinks are
    resolved where the caller can see them (``realpath`` leaves the rest as written).
    """
    resolved = os.path.realpath(os.path.abspath(os.fspath(state_dir)), strict=False)
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(run_dir) / f"register-{digest}.sock"


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


class RegisterServer:
    """Serves the register socket; use as ``async with`` or :meth:`start` / :meth:`close`."""

    def __init__(
        self,
        ca: CertificateAuthority,
        registry: Registry,
        addresses: Iterable[str],
        socket_path: str | os.PathLike[str],
        *,
        roles: Mapping[str, Role] | None = None,
        default_role: Role | None = Role.OPERATOR,
        validity: timedelta = CLIENT_VALIDITY,
        timeout: float = 10.0,
        rate: RateLimit = DEFAULT_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ca = ca
        self.registry = registry
        self.addresses = [package.validate_address(a) for a in addresses]
        if not self.addresses:
            raise RegisterError("the register socket needs at least one server address to hand out")
        self.socket_path = Path(socket_path)
        self.roles = dict(roles or {})
        self.default_role = default_role
        self.validity = validity
        self.timeout = timeout
        if rate.credentials < 1 or not rate.window > 0:
            raise RegisterError(f"invalid register rate {rate.credentials}/{rate.window:g}s")
        self.rate = rate
        self._registrations = _Registrations(rate, clock)
        self._connections: dict[int, int] = {}
        self._server: asyncio.Server | None = None
        #: The connections being answered, cancelled by :meth:`close`.
        self._handlers: set[asyncio.Task[None]] = set()

    # -- policy ------------------------------------------------------------------------

    def role_for(self, uid: int, user: str) -> Role | None:
        """The role ``user`` (uid ``uid``) gets, or None if it may not register."""
        if user in self.roles:
            return Role(self.roles[user])
        if uid == 0:
            return Role.ADMIN
        return self.default_role

    def issue_for_uid(self, uid: int) -> bytes:
        """Issue, record and package a credential for the account ``uid``."""
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            raise RegisterRefused(f"uid {uid} has no account name on this server") from None
        if not ACCOUNT_NAME.fullmatch(user):
            raise RegisterRefused(f"account name {user!r} is not one remo accepts")
        role = self.role_for(uid, user)
        if role is None:
            raise RegisterRefused(f"account {user!r} is not allowed to register on this server")
        self.registry.refuse_if_banned(user)  # before any key is made
        taken = self._registrations.take(user)
        try:
            issued = self.ca.issue_client(user, role, validity=self.validity)
            self.registry.record(issued.certificate)
        except BaseException:
            self._registrations.give_back(user, taken)
            raise
        log.info("issued certificate %s to %s (uid %d) as %s", issued.serial, user, uid, role)
        return package.dumps(self.addresses, self.ca.cert_pem, issued.cert_pem, issued.key_pem)

    # -- serving -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the socket directory if needed and start listening."""
        self._prepare_dir()
        self._clear_stale()
        self._server = await asyncio.start_unix_server(
            self._tracked, path=os.fspath(self.socket_path), limit=MAX_REQUEST_LINE
        )
        os.chmod(self.socket_path, 0o666)
        log.info("register socket listening on %s", self.socket_path)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Connections still being answered end now (asyncio's server leaves them
        # running, and a loop closed under them leaks their sockets).
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    async def __aenter__(self) -> RegisterServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _prepare_dir(self) -> None:
        directory = self.socket_path.parent
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            st = directory.stat()
        except OSError as err:
            raise RegisterError(
                f"cannot create the register socket directory {directory}: {err.strerror or err}"
            ) from None
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            raise RegisterError(
                f"refusing to put the register socket in {directory}: it must belong to "
                f"root or uid {os.geteuid()} and be writable by its owner only"
            )

    def _clear_stale(self) -> None:
        path = os.fspath(self.socket_path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RegisterError(f"{path} exists and is not a socket; remove it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2.0)
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left behind by a server that died
            return
        finally:
            probe.close()
        raise RegisterError(f"another remo server is already listening on {path}")

    def _answer(self, uid: int, request: bytes) -> bytes:
        if request != REQUEST:
            raise RegisterRefused("unknown request: use a `remo register` of the same version")
        return self.issue_for_uid(uid)

    def _admit(self, uid: int) -> str | None:
        """Count a new connection of ``uid`` in, or say why it is turned away."""
        if self._connections.get(uid, 0) >= MAX_CONNECTIONS_PER_ACCOUNT:
            return (
                f"uid {uid} already has {MAX_CONNECTIONS_PER_ACCOUNT} register connections "
                "open; try again when they are done"
            )
        if sum(self._connections.values()) >= MAX_CONNECTIONS:
            return "the register socket is busy; try again in a few seconds"
        self._connections[uid] = self._connections.get(uid, 0) + 1
        return None

    def _leave(self, uid: int) -> None:
        left = self._connections.get(uid, 0) - 1
        if left > 0:
            self._connections[uid] = left
        else:
            self._connections.pop(uid, None)

    async def _tracked(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock)
            busy = self._admit(uid)
            if busy is not None:
                log.warning("register connection from uid %d turned away: %s", uid, busy)
                writer.write(b"error " + busy.encode() + b"\n")
                await asyncio.wait_for(writer.drain(), self.timeout)
                return
            try:
                await self._exchange(uid, reader, writer)
            finally:
                self._leave(uid)
        except (ConnectionError, OSError) as err:
            log.warning("register connection failed: %s", err)
        except TimeoutError:
            pass  # a client that does not take its answer: dropped
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _exchange(
        self, uid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One request, one answer; each side of it gets ``timeout`` seconds."""
        try:
            line = await asyncio.wait_for(reader.readline(), self.timeout)
            # Key generation and database writes: off the event loop.
            data = await asyncio.to_thread(self._answer, uid, line)
        except RemoError as err:
            log.warning("register request from uid %d refused: %s", uid, err)
            message = " ".join(str(err).split())
            writer.write(b"error " + message.encode("utf-8", "replace") + b"\n")
        except (TimeoutError, ValueError):
            return  # no request line in time, or an overlong one
        except Exception:
            log.exception("register request from uid %d failed", uid)
            writer.write(b"error internal error; see the remo server log\n")
        else:
            writer.write(b"ok %d\n" % len(data) + data)
        await asyncio.wait_for(writer.drain(), self.timeout)


# -- client side -------------------------------------------------------------------------


def _check_trusted(path: str) -> None:
    """Refuse a socket another unprivileged account could have planted."""
    try:
        st = os.lstat(path)
        dst = os.stat(os.path.dirname(path) or ".")
    except OSError:
        return  # connect() will report it
    if not stat.S_ISSOCK(st.st_mode):
        raise RegisterError(f"{path} is not a socket")
    owners_ok = dst.st_uid in (0, st.st_uid)
    if not owners_ok or st.st_uid not in (0, dst.st_uid) or dst.st_mode & 0o022:
        raise RegisterError(
            f"refusing to use {path}: the socket or its directory could belong to someone "
            "other than the remo server"
        )


def request_credential(
    socket_path: str | os.PathLike[str], *, timeout: float = 30.0, check_owner: bool = True
) -> bytes:
    """Ask the server listening on ``socket_path`` for a credential for our own account.

    Returns the credential file's bytes (write them with :func:`remo.pki.package.write`).
    Raises :class:`RegisterUnavailable` when no server listens there,
    :class:`RegisterRefused` when it refuses, :class:`RegisterError` otherwise.
    """
    path = os.fspath(socket_path)
    if check_owner:
        _check_trusted(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise RegisterUnavailable(
                f"no remo server is listening on {path}; start it with `remo server` "
                "(as root, with the same --state-dir)"
            ) from None
        except PermissionError:
            raise RegisterUnavailable(
                f"permission denied connecting to {path}; the server's socket directory "
                "must be reachable by every account"
            ) from None
        except OSError as err:
            if err.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise RegisterUnavailable(f"{path} is not a remo register socket") from None
            raise RegisterError(f"cannot connect to {path}: {err.strerror or err}") from None
        sock.sendall(REQUEST)
        with sock.makefile("rb") as stream:
            status = stream.readline(4096)
            if status.startswith(b"ok "):
                try:
                    length = int(status[3:].strip())
                except ValueError:
                    length = -1
                if not 0 < length <= MAX_RESPONSE:
                    raise RegisterError(f"the server on {path} sent a malformed answer")
                data = stream.read(length)
                if len(data) != length:
                    raise RegisterError(f"the server on {path} closed the connection early")
                return data
            if status.startswith(b"error "):
                message = status[6:].decode("utf-8", "replace").strip()
                raise RegisterRefused(f"the remo server refused: {message}")
            raise RegisterError(f"the server on {path} sent no answer; check the server log")
    except TimeoutError:
        raise RegisterError(f"the server on {path} did not answer within {timeout:g}s") from None
    finally:
        sock.close()


def request_credential_for_state_dir(
    state_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str] = DEFAULT_RUN_DIR,
    *,
    timeout: float = 30.0,
) -> bytes:
    """:func:`request_credential` on the socket of the server using ``state_dir``."""
    return request_credential(register_socket_path(state_dir, run_dir), timeout=timeout)

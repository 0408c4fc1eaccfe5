"""Where a profile's agent listens, and how the CLI and the agent talk (stdlib only).

The agent (:mod:`remo.cli.agent`) holds one authenticated connection to one server and
runs the CLI's verbs for every ``remo`` command of its user that selects the same
profile; :mod:`remo.cli.fast` is the other end, in each command. This module is what
both need, and imports nothing but the standard library: the command's hot path must
not pay for click, grpc or protobuf.

**Where.** One socket per selection of a profile (the ``--profile`` value, made
absolute when it is a path, ``$REMO_PROFILE``, and the config dir, which together decide
which credential a command uses) in a private directory: ``$XDG_RUNTIME_DIR/remo-agent``
or, without one, ``/tmp/remo-agent-<uid>``. The directory must be ours and 0700, or no
agent is used (another account could otherwise have made it first).

**Wire.** Frames of a 4-byte big-endian length and that much JSON (written and read
with the C parts of :mod:`json`, ``_json``: the ``json`` module itself imports ``re``,
``enum`` and ``collections``, ~10 ms of a command's ~25). A command sends
``{"op": "run", "argv", "env", "build"}`` with its descriptors 0, 1 and 2 attached
(SCM_RIGHTS): the agent runs the verb with them as its stdin, stdout and stderr, so
output goes straight to the command's own stdout, with no relay. The agent answers
``{"accepted": true}`` (or ``{"declined": why}``: the command then runs on its own),
and at the end ``{"exit": code}``. Meanwhile the command may send ``{"signal": n}``
(Ctrl-C, SIGTERM, SIGHUP). ``{"op": "status"}`` and ``{"op": "stop"}`` control it.
"""

# The command imports this module before anything else; the C module below costs it
# ~0.4 ms, where ``socket``, ``signal`` and ``json`` (their enums, ``re``, ``selectors``)
# cost ~17 ms of a ~40 ms command. ``os``, ``stat`` and ``sys`` are loaded at start-up
# anyway. Each other shared library (``_struct``, ``zlib``) would cost it ~0.3 ms more,
# and ``from __future__ import annotations`` ~0.2 ms (loading ``__future__``): the
# annotations below that name what only the type checker imports are quoted instead.
import _socket
import os
import stat
import sys

# (not typing.TYPE_CHECKING: importing typing costs the command ~5 ms; mypy knows the name)
TYPE_CHECKING = False

if TYPE_CHECKING:  # (typing costs the command ~5 ms to import: only for the checker)
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

#: The verbs an agent runs; every other one (login, register, server, admin, top, ui,
#: --help...) runs in the command's own process.
AGENT_VERBS = frozenset({"run", "ps", "status", "logs", "wait", "stop", "kill", "rm", "whoami"})
#: Seconds an agent waits for its next command before it exits.
DEFAULT_IDLE = 600.0
#: Variables that change what a verb prints: an agent started under other values
#: declines (the command runs on its own) rather than print differently.
ENV_KEYS = ("TZ", "LANG", "LC_ALL", "LC_TIME", "LC_CTYPE", "NO_COLOR", "TERM", "GRPC_VERBOSITY")
#: Variables that select the profile (with ``--profile``): part of the socket's name.
SELECTING_KEYS = ("REMO_PROFILE", "XDG_CONFIG_HOME", "HOME")

#: A frame's length: 4 bytes, big-endian.
_LENGTH_SIZE = 4
#: Longest runtime dir whose sockets (``<dir>/remo-agent/<16 hex>.sock.<pid>``) fit.
_MAX_RUNTIME_DIR = 60
MAX_FRAME = 1 << 20


class LinkError(Exception):
    """The agent cannot be used (none, not ours, gone, or it said no)."""


def agent_dir(env: "Mapping[str, str] | None" = None) -> str:
    """The private directory of this user's agent sockets."""
    environ = os.environ if env is None else env
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    # (a socket's path must fit in 108 bytes: a deep runtime dir falls back to /tmp)
    if runtime and os.path.isabs(runtime) and len(runtime) <= _MAX_RUNTIME_DIR:
        return os.path.join(runtime, "remo-agent")
    return f"/tmp/remo-agent-{os.getuid()}"


def check_private(directory: str) -> None:
    """Raise LinkError unless ``directory`` is a real directory of ours, mode 0700."""
    try:
        info = os.lstat(directory)
    except OSError as err:
        raise LinkError(f"{directory}: {err.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise LinkError(f"{directory} is not a directory of ours")
    if info.st_mode & 0o077:
        raise LinkError(f"{directory} is open to other accounts")


def make_private_dir(directory: str) -> None:
    """Create the agent directory (0700) if missing; LinkError if it is not private."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise LinkError(f"cannot create {directory}: {err.strerror}") from None
    check_private(directory)


def selection(argv: "Sequence[str]", env: "Mapping[str, str] | None" = None) -> str:
    """What selects the profile for this command line, as one string (see above)."""
    environ = os.environ if env is None else env
    parts = [profile_argument(argv) or "", *(environ.get(key, "") for key in SELECTING_KEYS)]
    # A relative path names another file from another directory: made absolute, so that
    # commands from elsewhere meet another agent (the agent itself runs from /).
    return dumps([_absolute(part) for part in parts])


def _absolute(value: str) -> str:
    """``value`` made absolute when it is a relative path (a profile's name stays)."""
    if value and not os.path.isabs(value) and ("/" in value or value.endswith(".remo")):
        return os.path.abspath(value)
    return value


def socket_path(chosen: str, env: "Mapping[str, str] | None" = None) -> str:
    """The socket of the agent for the selection ``chosen``."""
    # A name, not a secret: a 64-bit FNV-1a hash (hashlib would cost the command ~3 ms
    # to import, zlib ~0.3 ms); two selections that collide meet an agent that declines
    # the other.
    return os.path.join(agent_dir(env), f"{_fnv1a64(chosen.encode()):016x}.sock")


def _fnv1a64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def profile_argument(argv: "Sequence[str]") -> str | None:
    """The value of ``--profile`` on the command line (the last one wins), if any."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--profile" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--profile="):
            value = arg.split("=", 1)[1]
    return value


def verb_of(argv: "Sequence[str]") -> str | None:
    """The verb of a command line (its first word that is not a global option)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--profile":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def printing_env(env: "Mapping[str, str] | None" = None) -> dict[str, str]:
    """The variables of :data:`ENV_KEYS` that are set."""
    environ = os.environ if env is None else env
    return {key: environ[key] for key in ENV_KEYS if key in environ}


def build_id() -> str:
    """Which remo this is: an agent of another build (an upgrade since) declines."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        stamp = os.stat(os.path.join(here, "agent.py")).st_mtime_ns
    except OSError:
        stamp = 0
    return f"{here}:{stamp}"


def send(sock: _socket.socket, message: "Mapping[str, Any]", fds: "Sequence[int]" = ()) -> None:
    data = dumps(message).encode()
    frame = len(data).to_bytes(_LENGTH_SIZE, "big") + data
    if fds:
        # (socket.send_fds, without importing socket: an array of C ints)
        rights = b"".join(fd.to_bytes(_INT, sys.byteorder, signed=True) for fd in fds)
        sent = sock.sendmsg([frame], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        if sent < len(frame):
            sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def receive(sock: _socket.socket, max_fds: int = 0) -> "tuple[dict[str, Any] | None, list[int]]":
    """The next frame (None at end of stream) and any descriptors that came with it."""
    fds: list[int] = []
    if max_fds:
        head, fds = _receive_fds(sock, _LENGTH_SIZE, max_fds)
    else:
        head = sock.recv(_LENGTH_SIZE)
    try:
        while head and len(head) < _LENGTH_SIZE:
            more = sock.recv(_LENGTH_SIZE - len(head))
            if not more:
                break
            head += more
        if not head:
            return None, fds
        if len(head) < _LENGTH_SIZE:
            raise LinkError("a frame cut short")
        size = int.from_bytes(head, "big")
        if size > MAX_FRAME:
            raise LinkError(f"a frame of {size} bytes")
        body = b""
        while len(body) < size:
            more = sock.recv(size - len(body))
            if not more:
                raise LinkError("a frame cut short")
            body += more
        message = loads(body.decode())
        if not isinstance(message, dict):
            raise LinkError("a frame that is not an object")
        return message, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


#: sizeof(int): 4 on every system remo runs on (Linux, macOS).
_INT = 4


def _receive_fds(sock: _socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """Up to ``size`` bytes and the descriptors (SCM_RIGHTS) that came with them, each
    close-on-exec (socket.recv_fds, without importing socket)."""
    # (MSG_CMSG_CLOEXEC sets it as they arrive; macOS has no such flag: set after)
    cloexec = getattr(_socket, "MSG_CMSG_CLOEXEC", 0)
    data, ancillary, _flags, _address = sock.recvmsg(
        size, _socket.CMSG_SPACE(max_fds * _INT), cloexec
    )
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _INT
            fds += [
                int.from_bytes(payload[i : i + _INT], sys.byteorder, signed=True)
                for i in range(0, whole, _INT)
            ]
    if not cloexec:
        for fd in fds:
            os.set_inheritable(fd, False)
    return data, fds


class Socket(_socket.socket):
    """A unix socket that closes at the end of a ``with`` (as socket.socket does)."""

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def connect(path: str, timeout: float) -> "Socket":
    """A connection to the agent at ``path``; LinkError when there is none."""
    sock = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise LinkError(f"no agent at {path}: {err.strerror or err}") from None
    return sock


# -- the peer's account -------------------------------------------------------------------

#: macOS and the BSDs: ``getsockopt(SOL_LOCAL, LOCAL_PEERCRED)`` gives the peer's
#: ``struct xucred`` (<sys/un.h>, <sys/ucred.h>; what getpeereid(3) reads): a u_int
#: version (XUCRED_VERSION, 0), its uid_t uid, then a short and 16 gid_t groups.
SOL_LOCAL = 0
LOCAL_PEERCRED = 0x001
XUCRED_VERSION = 0
#: Its size: 2 u_int, a short (padded to 4) and 16 gid_t.
_XUCRED_SIZE = 76
#: Linux: ``getsockopt(SOL_SOCKET, SO_PEERCRED)`` gives ``struct ucred`` (pid, uid,
#: gid; unix(7)): three C ints.
_UCRED_SIZE = 12


def peer_uid(conn: _socket.socket) -> int:
    """The uid of the process at the other end of the unix socket ``conn``, as the kernel
    recorded it when that process connected. Raises OSError when it cannot tell."""
    import _struct  # (the agent's only: the command never asks)

    peercred = getattr(_socket, "SO_PEERCRED", None)
    if peercred is not None:
        data = conn.getsockopt(_socket.SOL_SOCKET, peercred, _UCRED_SIZE)
        _pid, uid, _gid = _struct.unpack("3i", data)
        return int(uid)
    data = conn.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, _XUCRED_SIZE)
    if len(data) < 8:
        raise OSError(f"LOCAL_PEERCRED gave {len(data)} bytes")
    version, uid = _struct.unpack_from("II", data)
    if version != XUCRED_VERSION:
        raise OSError(f"LOCAL_PEERCRED gave a struct xucred of version {version}")
    return int(uid)


# -- JSON, from json's C parts ---------------------------------------------------------------


def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class _Parsing:
    """What ``_json.make_scanner`` reads off a decoder: json.loads's defaults, but
    NaN and Infinity refused."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)


def _codec() -> "tuple[Callable[[object], str], Callable[[str], object]]":
    try:
        import _json
    except ImportError:  # (an interpreter without json's C parts: json itself)
        import json

        return json.dumps, json.loads
    encoder = _json.make_encoder(
        None, _no_default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, False
    )
    scanner = _json.make_scanner(_Parsing())  # type: ignore[arg-type]

    def encode(value: object) -> str:
        return "".join(encoder(value, 0))

    def decode(text: str) -> object:
        try:
            value, end = scanner(text, 0)
        except StopIteration as err:
            raise ValueError(f"not JSON at character {err.value}") from None
        if text[end:].strip(" \t\n\r"):
            raise ValueError(f"extra data at character {end}")
        return value

    return encode, decode


#: ``json.dumps`` and ``json.loads`` (ValueError if it is not JSON).
dumps, loads = _codec()

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

**Wire.** Frames of a 4-byte big-endian length and that much JSON. A command sends
``{"op": "run", "argv", "env", "build"}`` with its descriptors 0, 1 and 2 attached
(SCM_RIGHTS): the agent runs the verb with them as its stdin, stdout and stderr, so
output goes straight to the command's own stdout, with no relay. The agent answers
``{"accepted": true}`` (or ``{"declined": why}``: the command then runs on its own),
and at the end ``{"exit": code}``. Meanwhile the command may send ``{"signal": n}``
(Ctrl-C, SIGTERM, SIGHUP). ``{"op": "status"}`` and ``{"op": "stop"}`` control it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import zlib

# (not typing.TYPE_CHECKING: importing typing costs the command ~5 ms; mypy knows the name)
TYPE_CHECKING = False

if TYPE_CHECKING:  # (typing costs the command ~5 ms to import: only for the checker)
    from collections.abc import Mapping, Sequence
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

_LENGTH = struct.Struct("!I")
#: Longest runtime dir whose sockets (``<dir>/remo-agent/<16 hex>.sock.<pid>``) fit.
_MAX_RUNTIME_DIR = 60
MAX_FRAME = 1 << 20


class LinkError(Exception):
    """The agent cannot be used (none, not ours, gone, or it said no)."""


def agent_dir(env: Mapping[str, str] | None = None) -> str:
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


def selection(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """What selects the profile for this command line, as one string (see above)."""
    environ = os.environ if env is None else env
    parts = [profile_argument(argv) or "", *(environ.get(key, "") for key in SELECTING_KEYS)]
    # A relative path names another file from another directory: made absolute, so that
    # commands from elsewhere meet another agent (the agent itself runs from /).
    return json.dumps([_absolute(part) for part in parts])


def _absolute(value: str) -> str:
    """``value`` made absolute when it is a relative path (a profile's name stays)."""
    if value and not os.path.isabs(value) and ("/" in value or value.endswith(".remo")):
        return os.path.abspath(value)
    return value


def socket_path(chosen: str, env: Mapping[str, str] | None = None) -> str:
    """The socket of the agent for the selection ``chosen``."""
    # A name, not a secret: two checksums (hashlib would cost the command ~3 ms to
    # import); two selections that collide meet an agent that declines the other.
    data = chosen.encode()
    digest = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"
    return os.path.join(agent_dir(env), f"{digest}.sock")


def profile_argument(argv: Sequence[str]) -> str | None:
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


def verb_of(argv: Sequence[str]) -> str | None:
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


def printing_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
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


def send(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    frame = _LENGTH.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame], list(fds))
        if sent < len(frame):
            sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """The next frame (None at end of stream) and any descriptors that came with it."""
    fds: list[int] = []
    if max_fds:
        head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, max_fds, socket.MSG_CMSG_CLOEXEC)
    else:
        head = sock.recv(_LENGTH.size)
    try:
        while head and len(head) < _LENGTH.size:
            more = sock.recv(_LENGTH.size - len(head))
            if not more:
                break
            head += more
        if not head:
            return None, fds
        if len(head) < _LENGTH.size:
            raise LinkError("a frame cut short")
        (size,) = _LENGTH.unpack(head)
        if size > MAX_FRAME:
            raise LinkError(f"a frame of {size} bytes")
        body = b""
        while len(body) < size:
            more = sock.recv(size - len(body))
            if not more:
                raise LinkError("a frame cut short")
            body += more
        message = json.loads(body)
        if not isinstance(message, dict):
            raise LinkError("a frame that is not an object")
        return message, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def connect(path: str, timeout: float) -> socket.socket:
    """A connection to the agent at ``path``; LinkError when there is none."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise LinkError(f"no agent at {path}: {err.strerror or err}") from None
    return sock

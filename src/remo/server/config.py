"""Server settings: embedded defaults, overridden by a TOML file, overridden by flags.

Example ``/etc/remo/server.toml``::

    state_dir = "/var/lib/remo"
    listen = "0.0.0.0:7443"
    health_listen = "7444"  # plaintext health only, for probes (off by default; loopback)
    metrics_listen = "9464" # Prometheus metrics, plaintext HTTP (off by default; loopback)
    retention = "30d"       # purge finished jobs older than this ("forever" keeps them)
    exec_timeout = "30s"    # a start fails when its command has not exec'd by then
    register_rate = "5/10m" # credentials one account may get from `remo register`
    max_outputs_per_user = 2000  # job outputs one user may read at once (default: from
                            # the descriptor limit)
    advertise = ["build01.example.com"]
    backend = "local"       # or "slurm": jobs become Slurm batch jobs (docs/SLURM.md)

    [roles]                 # role given by `remo register`, by account
    alice = "admin"
    default = "operator"    # everyone else ("none" refuses them)

    [limits.default]        # for jobs that ask for none
    memory = "4G"
    output = "1G"           # stored output per job (default 4G); the rest is dropped
    [limits.max]            # no job may ask for more
    cpu = 4
    memory = "16G"
    pids = 4096

    [isolation]
    network = "host"        # default network of jobs: host or none
    force_network_none = false
    namespaces = true       # PID + mount namespaces for every job

    [slurm]                 # only read with backend = "slurm"
    shared_dir = "/srv/remo-slurm"  # seen by every node at the same path
    partition = "batch"     # default ("": Slurm's own default)
    partitions = ["gpu"]    # others a job may name (label slurm/partition=gpu)
    poll_interval = "1s"    # how often Slurm is asked about unfinished jobs

The file is checked whole against a strict schema (:mod:`remo.server.config_schema`)
before anything listens: an unknown key, a quoted ``"false"``, a size that does not
parse or a role that does not exist is an error, never a silent default. Every problem
is reported, one line each, ``FILE:LINE: dotted.key: what is wrong``, in one
:class:`ConfigError`. The schema (and pydantic) is imported only by :func:`load`, so
modules that need only :class:`ServerConfig` or the default paths stay light.
"""

from __future__ import annotations

import json
import re
import socket
import tomllib
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remo.core.errors import InvalidArgument
from remo.core.paths import default_run_dir, default_state_dir
from remo.core.spec import EXEC_TIMEOUT, Limits
from remo.core.units import format_size, parse_rate, parse_size
from remo.slurm.settings import SlurmSettings

if TYPE_CHECKING:
    from remo.server.config_schema import Problem, Settings

DEFAULT_PORT = 7443
DEFAULT_OUTPUT_CAP = 4 << 30
DEFAULT_RETENTION = 30 * 86400.0
#: Credentials one account may get from the register socket, per window in seconds
#: (:data:`remo.pki.register.DEFAULT_RATE`; kept here as numbers so that client
#: commands importing this module do not import the PKI).
DEFAULT_REGISTER_RATE = (5, 600.0)
BACKENDS = ("local", "slurm")


class ConfigError(InvalidArgument):
    """The configuration is wrong. ``lines`` holds one line per problem (the message is
    those lines joined): print them as they are, they do not fit on one line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class ServerConfig:
    state_dir: Path = field(default_factory=default_state_dir)
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    advertise: list[str] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)
    default_role: str | None = "operator"
    #: Jobs that ask for no output cap get this one, so no job can fill the disk.
    default_limits: Limits = field(default_factory=lambda: Limits(output_bytes=DEFAULT_OUTPUT_CAP))
    max_limits: Limits = field(default_factory=Limits)
    network: str = "host"
    force_network_none: bool = False
    namespaces: bool = True
    #: Finished jobs older than this (seconds) are purged; None keeps them forever.
    retention: float | None = DEFAULT_RETENTION
    #: A start fails when its command has not exec'd in this long (seconds): a program
    #: on a hung network filesystem. Raise it where programs load slowly.
    exec_timeout: float = EXEC_TIMEOUT
    register_run_dir: Path = field(default_factory=lambda: default_run_dir())
    #: Plaintext grpc.health.v1 only, for probes that cannot present a client
    #: certificate; off (None) unless configured.
    health_listen: str | None = None
    #: Prometheus metrics over plaintext HTTP (``GET /metrics``); off (None) unless
    #: configured. A bare port means loopback (:func:`local_listen`).
    metrics_listen: str | None = None
    #: (count, seconds): at most count credentials per account per window from the
    #: register socket, so that one account cannot fill the registry.
    register_rate: tuple[int, float] = DEFAULT_REGISTER_RATE
    #: Jobs' outputs one user may read at once (each Output one, each OutputMany one per
    #: job); None: a quarter of the server's budget, at most 10,000
    #: (:mod:`remo.server.output_budget`).
    max_outputs_per_user: int | None = None
    #: What runs jobs: ``local`` (this machine's supervisor) or ``slurm``.
    backend: str = "local"
    slurm: SlurmSettings = field(default_factory=SlurmSettings)

    def listen_host_port(self) -> tuple[str, int]:
        try:
            return split_listen(self.listen)
        except InvalidArgument as err:
            raise InvalidArgument(f"--listen {err}") from None

    def advertised_addresses(self, port: int) -> list[str]:
        """host:port entries written into credential packages."""
        host, _ = self.listen_host_port()
        names = list(self.advertise)
        if not names:
            names = [socket.getfqdn()] if host in ("0.0.0.0", "::") else [host]
        out = []
        for name in names:
            out.append(name if _has_port(name) else f"{name}:{port}")
        return out

    def certificate_names(self) -> list[str]:
        host, _ = self.listen_host_port()
        names = [n.rsplit(":", 1)[0] if _has_port(n) else n for n in self.advertise]
        if host not in ("0.0.0.0", "::"):
            names.append(host)
        else:
            names.append(socket.getfqdn())
        return names


def _has_port(name: str) -> bool:
    if name.startswith("["):
        return "]:" in name
    return name.count(":") == 1


def split_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port), without the brackets of an IPv6 host."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise InvalidArgument(f"must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def local_listen(text: str) -> str:
    """``HOST:PORT``, or a bare ``PORT`` meaning ``127.0.0.1:PORT``: the plaintext ports
    (health, metrics) listen on loopback unless the operator names another address."""
    address = f"127.0.0.1:{text}" if text.isascii() and text.isdigit() else text
    split_listen(address)
    return address


def load(path: str | None, **overrides: Any) -> ServerConfig:
    """Build the config: embedded defaults, then the TOML file at ``path``, then the
    non-None ``overrides`` (the command-line flags). Nothing is created or opened but
    the file. Raise :class:`ConfigError` naming every problem."""
    if path:
        # The schema (pydantic: ~0.2 s to import) is loaded only when there is a file
        # to check; without one the embedded defaults are ServerConfig's own (a unit
        # test keeps the two equal), and a restart answers that much sooner.
        from remo.server import config_schema

        text, data = _read(path)
        settings, problems = config_schema.check(data)
        lines = _describe_problems(problems, path, text)
        config = ServerConfig() if settings is None else _from_settings(settings)
    else:
        lines, config = [], ServerConfig()
    for key, value in overrides.items():
        if value is not None and value != []:
            setattr(config, key, Path(value) if key == "state_dir" else value)
    if overrides.get("listen") is not None:
        try:
            config.listen_host_port()
        except InvalidArgument as err:
            lines.append(str(err))
    if config.backend not in BACKENDS:
        lines.append(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    elif config.backend == "slurm":
        lines += config.slurm.check()
        if config.force_network_none or config.network == "none":
            lines.append("backend slurm: jobs cannot get network none (isolation.network)")
    if overrides.get("metrics_listen") is not None:
        try:
            config.metrics_listen = local_listen(overrides["metrics_listen"])
        except InvalidArgument as err:
            lines.append(f"--metrics-listen {err}")
    if lines:
        raise ConfigError(lines)
    config.state_dir = Path(config.state_dir).expanduser().resolve()
    return config


def _read(path: str) -> tuple[str, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ConfigError([f"cannot read config {path}: {err.strerror or err}"]) from None
    try:
        text = raw.decode()
        return text, tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not valid TOML: the file is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"\(at line (\d+)", str(err))
        prefix = f"{path}:{where[1]}" if where else path
        raise ConfigError([f"{prefix}: not valid TOML: {err}"]) from None


def _from_settings(settings: Settings) -> ServerConfig:
    config = ServerConfig(
        listen=settings.listen,
        health_listen=settings.health_listen,
        metrics_listen=settings.metrics_listen,
        advertise=list(settings.advertise),
        roles=settings.roles.accounts(),
        default_role=settings.roles.default,
        default_limits=settings.default_limits,
        max_limits=settings.limits.max.to_limits(),
        network=settings.isolation.network,
        force_network_none=settings.isolation.force_network_none,
        namespaces=settings.isolation.namespaces,
        retention=settings.retention,
        exec_timeout=settings.exec_timeout,
        register_rate=settings.register_rate,
        max_outputs_per_user=settings.max_outputs_per_user,
        backend=settings.backend,
        slurm=settings.slurm.to_settings(),
    )
    if settings.state_dir is not None:
        config.state_dir = Path(settings.state_dir)
    return config


# TOML keys, enough of the grammar to find where a key is written (tomllib gives no
# positions): bare or quoted parts joined by dots, at the start of a line.
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE_LINE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]")
_KEY_LINE = re.compile(rf"\s*({_DOTTED})\s*=")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _describe_problems(problems: list[Problem], source: str, text: str) -> list[str]:
    """``FILE:LINE: key: message`` for each problem, in the order of the file."""
    where = _key_lines(text)
    located = []
    for problem in problems:
        keys = tuple(str(p) for p in takewhile(lambda p: isinstance(p, str), problem.path))
        line = next((where[keys[:n]] for n in range(len(keys), 0, -1) if keys[:n] in where), 0)
        prefix = f"{source}:{line}" if line else source
        located.append((line or len(text), f"{prefix}: {_dotted(problem.path)}: {problem.message}"))
    return [message for _, message in sorted(located, key=lambda item: item[0])]


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The first line that writes each key path (and each of its tables), best effort:
    a line inside a multi-line string that looks like ``key =`` is counted too."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if header := _TABLE_LINE.match(line):
            table = key = _split_key(header[1])
        elif assignment := _KEY_LINE.match(line):
            key = table + _split_key(assignment[1])
        else:
            continue
        for n in range(1, len(key) + 1):
            lines.setdefault(key[:n], number)
    return lines


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_PART, dotted)
    return tuple(_unquote(p) for p in parts)


def _unquote(part: str) -> str:
    if part.startswith("'"):
        return part[1:-1]
    if part.startswith('"'):
        try:
            return str(json.loads(part))
        except ValueError:
            return part[1:-1]
    return part


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{_toml_key(part)}"
    return out


def effective_toml(config: ServerConfig) -> str:
    """Every setting of ``config``, defaults included, as TOML that :func:`load` reads
    back to the same values (unset limits are comments)."""
    retention = "forever" if config.retention is None else _duration(config.retention)
    lines = [
        f"state_dir = {json.dumps(str(config.state_dir))}",
        f"listen = {json.dumps(config.listen)}",
        (
            f"health_listen = {json.dumps(config.health_listen)}"
            if config.health_listen
            else '# health_listen: off (plaintext health for probes, e.g. "127.0.0.1:7444")'
        ),
        (
            f"metrics_listen = {json.dumps(config.metrics_listen)}"
            if config.metrics_listen
            else '# metrics_listen: off (Prometheus metrics over HTTP, e.g. "127.0.0.1:9464")'
        ),
        f"advertise = {json.dumps(config.advertise)}",
        f"retention = {json.dumps(retention)}",
        f"exec_timeout = {json.dumps(_duration(config.exec_timeout))}",
        f"register_rate = {json.dumps(register_rate_text(config.register_rate))}",
        (
            f"max_outputs_per_user = {config.max_outputs_per_user}"
            if config.max_outputs_per_user is not None
            else "# max_outputs_per_user: from the descriptor limit (a quarter, at most 10000)"
        ),
        f"backend = {json.dumps(config.backend)}",
        "",
        "[roles]",
        *(f"{_toml_key(name)} = {json.dumps(role)}" for name, role in config.roles.items()),
        f"default = {json.dumps(config.default_role or 'none')}",
    ]
    for table, limits in (("default", config.default_limits), ("max", config.max_limits)):
        lines += ["", f"[limits.{table}]", *_limit_lines(limits)]
    lines += [
        "",
        "[isolation]",
        f"network = {json.dumps(config.network)}",
        f"force_network_none = {json.dumps(config.force_network_none)}",
        f"namespaces = {json.dumps(config.namespaces)}",
        "",
        "[slurm]",
        f"shared_dir = {json.dumps(str(config.slurm.shared_dir))}",
        f"partition = {json.dumps(config.slurm.partition)}",
        f"partitions = {json.dumps(config.slurm.partitions)}",
        f"poll_interval = {json.dumps(_duration(config.slurm.poll_interval))}",
        f"inotify = {json.dumps(config.slurm.inotify)}",
        (
            f"slurm_conf = {json.dumps(str(config.slurm.slurm_conf))}"
            if config.slurm.slurm_conf
            else "# slurm_conf: Slurm's own ($SLURM_CONF, else /etc/slurm/slurm.conf)"
        ),
        f"python = {json.dumps(config.slurm.python)}",
    ]
    return "\n".join(lines) + "\n"


def register_rate_text(rate: tuple[int, float]) -> str:
    """``(5, 600.0)`` as it is written in the file: ``5/10m``."""
    return f"{rate[0]}/{_duration(rate[1])}"


def _limit_lines(limits: Limits) -> list[str]:
    values: list[tuple[str, str | None]] = [
        ("cpu", None if limits.cpu is None else repr(limits.cpu)),
        ("memory", _size(limits.memory)),
        ("io_read", _size(limits.io_read_bps, rate=True)),
        ("io_write", _size(limits.io_write_bps, rate=True)),
        ("pids", None if limits.pids is None else str(limits.pids)),
        ("output", _size(limits.output_bytes)),
    ]
    return [f"{key} = {value}" if value else f"# {key}: no limit" for key, value in values]


def _size(n: int | None, *, rate: bool = False) -> str | None:
    """A size (or rate) for people, exact: the bytes with a comment when rounding shows."""
    if n is None:
        return None
    text = format_size(n) + ("/s" if rate else "")
    exact = (parse_rate if rate else parse_size)(text) == n
    return json.dumps(text) if exact else f"{n}  # {text}"


def _duration(seconds: float) -> str:
    """``seconds`` in the largest unit that states it exactly: "30d", "2w", "90s"."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:f}".rstrip("0").rstrip(".") + "s"

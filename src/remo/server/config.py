"""Server settings: embedded defaults, overridden by a TOML file, overridden by flags.

Example ``/etc/remo/server.toml``::

    state_dir = "/var/lib/remo"
    listen = "0.0.0.0:7443"
    retention = "30d"       # purge finished jobs older than this ("forever" keeps them)
    exec_timeout = "30s"    # a start fails when its command has not exec'd by then
    advertise = ["build01.example.com"]

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
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remo.core.errors import InvalidArgument
from remo.core.spec import NETWORK_MODES, Limits
from remo.core.units import parse_cpu, parse_rate, parse_size
from remo.supervisor.options import EXEC_TIMEOUT

DEFAULT_PORT = 7443
DEFAULT_OUTPUT_CAP = 4 << 30
DEFAULT_RETENTION = 30 * 86400.0


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/remo")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "remo"


def default_run_dir() -> Path:
    """Where the register socket goes: /run/remo for root, the user's runtime dir else
    (a server run by an ordinary account cannot create /run/remo)."""
    if os.geteuid() == 0:
        return Path("/run/remo")
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/remo-{os.geteuid()}"
    return Path(runtime) / "remo"


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

    def listen_host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise InvalidArgument(f"--listen must be HOST:PORT, got {self.listen!r}")
        return host.strip("[]"), int(port)

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


def load(path: str | None, **overrides: Any) -> ServerConfig:
    """Build the config: defaults, then the TOML file at ``path``, then non-None overrides."""
    config = ServerConfig()
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise InvalidArgument(f"cannot read config {path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise InvalidArgument(f"config {path} is not valid TOML: {err}") from None
        _apply(config, data, path)
    for key, value in overrides.items():
        if value is not None and value != []:
            setattr(config, key, Path(value) if key == "state_dir" else value)
    config.state_dir = Path(config.state_dir).expanduser().resolve()
    config.listen_host_port()
    return config


def _apply(config: ServerConfig, data: dict[str, Any], path: str) -> None:
    known = {
        "state_dir",
        "listen",
        "advertise",
        "roles",
        "limits",
        "isolation",
        "retention",
        "exec_timeout",
    }
    unknown = set(data) - known
    if unknown:
        raise InvalidArgument(f"config {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    if "state_dir" in data:
        config.state_dir = Path(str(data["state_dir"]))
    if "retention" in data:
        text = str(data["retention"])
        config.retention = (
            None if text in ("forever", "never") else _duration(text, path, "retention")
        )
    if "exec_timeout" in data:
        config.exec_timeout = _duration(str(data["exec_timeout"]), path, "exec_timeout")
        if not 0 < config.exec_timeout <= 3600:
            raise InvalidArgument(f"config {path}: exec_timeout must be between 1s and 1h")
    if "listen" in data:
        config.listen = str(data["listen"])
    if "advertise" in data:
        config.advertise = [str(a) for a in data["advertise"]]
    roles = dict(data.get("roles", {}))
    default_role = roles.pop("default", "operator")
    config.default_role = None if default_role == "none" else str(default_role)
    config.roles = {str(k): str(v) for k, v in roles.items()}
    limits = data.get("limits", {})
    config.default_limits = _limits(limits.get("default", {}), path)
    if config.default_limits.output_bytes is None:
        config.default_limits = Limits(
            **{**config.default_limits.__dict__, "output_bytes": DEFAULT_OUTPUT_CAP}
        )
    config.max_limits = _limits(limits.get("max", {}), path)
    isolation = data.get("isolation", {})
    config.network = str(isolation.get("network", "host"))
    if config.network not in NETWORK_MODES:
        raise InvalidArgument(f"config {path}: isolation.network must be host or none")
    config.force_network_none = bool(isolation.get("force_network_none", False))
    config.namespaces = bool(isolation.get("namespaces", True))


def _duration(text: str, path: str, name: str) -> float:
    from remo.schedule.timeexpr import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except InvalidArgument as err:
        raise InvalidArgument(f"config {path}: {name}: {err}") from None


def _limits(table: dict[str, Any], path: str) -> Limits:
    try:
        limits = Limits(
            cpu=parse_cpu(str(table["cpu"])) if "cpu" in table else None,
            memory=parse_size(str(table["memory"])) if "memory" in table else None,
            io_read_bps=parse_rate(str(table["io_read"])) if "io_read" in table else None,
            io_write_bps=parse_rate(str(table["io_write"])) if "io_write" in table else None,
            pids=int(table["pids"]) if "pids" in table else None,
            output_bytes=parse_size(str(table["output"])) if "output" in table else None,
        )
        limits.validate()
    except (InvalidArgument, ValueError) as err:
        raise InvalidArgument(f"config {path}: {err}") from None
    return limits

"""What a caller asks for: :class:`JobSpec` and its :class:`Limits`.

Validation lives here so that every entry point (library, supervisor, gRPC) rejects the
same inputs with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from remo.core.errors import InvalidArgument
from remo.core.units import format_size

#: Unix account names remo accepts (the portable subset of useradd's rules).
ACCOUNT_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")

MAX_ARGV_BYTES = 1 << 20
"""Upper bound on the total size of argv plus env: beyond it exec fails with E2BIG anyway."""

NETWORK_MODES = ("host", "none")

#: The lowest io limit, in bytes per second. While a throttled read is queued, the page it
#: fills stays locked, and every process on the host that needs that page (to exec the same
#: program, say) waits with it: at 2 bytes/s, for hours. At this rate a readahead window
#: (128 KiB) takes at most two seconds.
MIN_IO_BPS = 64 << 10

#: How long a start waits for its command's exec before failing (seconds): a program on a
#: hung network filesystem never finishes its exec. Servers may raise it (exec_timeout).
EXEC_TIMEOUT = 30.0

#: Most tasks a pids limit may name: Linux's PID_MAX_LIMIT; pids.max refuses more (EINVAL).
MAX_PIDS = 1 << 22


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits; ``None`` means unlimited.

    cpu is in cores (0.5 = half of one core), memory in bytes, io in bytes per second,
    pids is the maximum number of tasks in the job, output_bytes caps the stored output
    (bytes beyond it are dropped, the job is not affected).
    """

    cpu: float | None = None
    memory: int | None = None
    io_read_bps: int | None = None
    io_write_bps: int | None = None
    pids: int | None = None
    output_bytes: int | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` if any limit is out of range."""
        if self.cpu is not None and not (0.001 <= self.cpu <= 4096):
            raise InvalidArgument(f"cpu limit must be between 0.001 and 4096 cores, got {self.cpu}")
        for name, value, low, high in (
            ("memory", self.memory, 1 << 20, 1 << 62),
            ("io read", self.io_read_bps, MIN_IO_BPS, 1 << 62),
            ("io write", self.io_write_bps, MIN_IO_BPS, 1 << 62),
            ("pids", self.pids, 1, MAX_PIDS),
            ("output", self.output_bytes, 0, 1 << 62),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{name} limit must be an integer, got {value!r}")
            if name.startswith("io") and value < low:
                floor, got = format_size(low), format_size(value)
                raise InvalidArgument(
                    f"{name} limit must be at least {floor}/s, got {got}/s"
                    " (slower reads would hold up other processes reading the same files)"
                )
            if not low <= value <= high:
                top = "2^62" if high == 1 << 62 else high
                raise InvalidArgument(f"{name} limit must be between {low} and {top}, got {value}")

    def check_cpus(self, available: int) -> None:
        """Raise :class:`InvalidArgument` if the cpu limit asks for more CPUs than the
        server has (a quota above them would never bind)."""
        if self.cpu is not None and self.cpu > available:
            raise InvalidArgument(
                f"cpu limit must be between 0.001 and {available:.2f} cores "
                f"(this server has {available} CPUs), got {self.cpu:g}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if data.get(k) is not None})

    def capped(self, maximum: Limits) -> Limits:
        """Return these limits filled with, and bounded by, ``maximum``."""
        values: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            mine, cap = getattr(self, name), getattr(maximum, name)
            values[name] = cap if mine is None else (mine if cap is None else min(mine, cap))
        return Limits(**values)


@dataclass(frozen=True)
class JobSpec:
    """A command to run: argv (no shell), environment, working directory, owner, limits.

    ``env=None`` gives the job a minimal environment (PATH, and HOME/USER/LOGNAME/SHELL
    of the owner when run as another account). ``owner=None`` means the account the
    supervisor runs as. ``network`` is ``host`` or ``none``.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    owner: str | None = None
    limits: Limits = field(default_factory=Limits)
    network: str = "host"
    private_tmp: bool = False

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` if the spec cannot possibly run."""
        if isinstance(self.argv, str | bytes):
            raise InvalidArgument("argv must be a list of strings, not a single string")
        if not self.argv:
            raise InvalidArgument("argv is empty: give the command to run")
        if not self.argv[0]:
            raise InvalidArgument("the command name (argv[0]) is empty")
        size = 0
        for i, arg in enumerate(self.argv):
            if not isinstance(arg, str):
                raise InvalidArgument(f"argument {i} is not a string")
            if "\0" in arg:
                raise InvalidArgument(f"argument {i} contains a NUL byte")
            size += len(arg.encode("utf-8", "surrogateescape")) + 1
        for key, value in (self.env or {}).items():
            if not key or "=" in key or "\0" in key:
                raise InvalidArgument(f"invalid environment variable name {key!r}")
            if "\0" in value:
                raise InvalidArgument(f"environment variable {key} contains a NUL byte")
            size += len(key) + len(value.encode("utf-8", "surrogateescape")) + 2
        if size > MAX_ARGV_BYTES:
            raise InvalidArgument(
                f"arguments and environment total {size} bytes; the limit is {MAX_ARGV_BYTES}"
            )
        if self.cwd is not None and ("\0" in self.cwd or not self.cwd.startswith("/")):
            raise InvalidArgument(f"cwd must be an absolute path, got {self.cwd!r}")
        if self.owner is not None and not ACCOUNT_NAME.fullmatch(self.owner):
            raise InvalidArgument(f"invalid account name {self.owner!r}")
        if self.network not in NETWORK_MODES:
            raise InvalidArgument(f"network must be one of {', '.join(NETWORK_MODES)}")
        self.limits.validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "env": dict(self.env) if self.env is not None else None,
            "cwd": self.cwd,
            "owner": self.owner,
            "limits": self.limits.to_dict(),
            "network": self.network,
            "private_tmp": self.private_tmp,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(
            argv=list(data["argv"]),
            env=data.get("env"),
            cwd=data.get("cwd"),
            owner=data.get("owner"),
            limits=Limits.from_dict(data.get("limits") or {}),
            network=data.get("network", "host"),
            private_tmp=bool(data.get("private_tmp", False)),
        )

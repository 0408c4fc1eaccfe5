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
from remo.core.units import format_size, parse_size

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

#: Bounds of the other limits: cores; bytes (the memory floor: less cannot run a process).
MIN_CPU, MAX_CPU = 0.001, 4096
MIN_MEMORY = 1 << 20
MAX_BYTES = 1 << 62

#: How messages name each :class:`Limits` field (see :meth:`Limits.validate`).
LIMIT_NAMES: Mapping[str, str] = {
    "cpu": "cpu limit",
    "memory": "memory limit",
    "io_read_bps": "io read limit",
    "io_write_bps": "io write limit",
    "pids": "pids limit",
    "output_bytes": "output limit",
}


#: A job's name: a letter first (so a name is never a job number), then letters,
#: digits, '.', '_', '-'; "NAME#K" is kept for the K-th run of a schedule NAME.
JOB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,62}")
#: A schedule id, which no name may look like.
SCHEDULE_LIKE = re.compile(r"s[0-9]+")
LABEL_KEY = re.compile(r"[A-Za-z0-9._/-]{1,63}")
MAX_LABELS = 32
MAX_LABEL_VALUE = 255


def check_name(name: str, *, run: bool = False) -> None:
    """Raise :class:`InvalidArgument` unless ``name`` is empty or a valid job name
    (``run``: also ``NAME#K``, as a schedule names its runs)."""
    if not name:
        return
    base, sep, number = name.partition("#") if run else (name, "", "")
    if (
        not JOB_NAME.fullmatch(base)
        or SCHEDULE_LIKE.fullmatch(base)
        or (sep and not number.isdigit())
    ):
        raise InvalidArgument(
            f"invalid name {name[:80]!r}: a letter, then up to 62 letters, digits, '.', "
            "'_' or '-' (and not s followed by digits, which is a schedule id)",
            field="name",
        )


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise :class:`InvalidArgument` unless ``labels`` are valid key/value tags."""
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} labels, got {len(labels)}", field="labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            raise InvalidArgument(
                f"invalid label key {str(key)[:80]!r}: 1 to 63 letters, digits, '.', '_', "
                "'-' or '/'",
                field="labels",
            )
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE or "\0" in value:
            raise InvalidArgument(
                f"label {key}: the value must be text of at most {MAX_LABEL_VALUE} characters",
                field="labels",
            )


#: The limit's field in remo.v1's Limits message (``BadRequest`` names it so).
LIMIT_FIELDS: Mapping[str, str] = {
    "cpu": "cpu_cores",
    "memory": "memory_bytes",
    "io_read_bps": "io_read_bps",
    "io_write_bps": "io_write_bps",
    "pids": "pids",
    "output_bytes": "output_bytes",
}


def out_of_range(name: str) -> dict[str, str]:
    """The ``field`` and ``reason`` of an :class:`InvalidArgument` for limit ``name``."""
    return {"field": f"limits.{LIMIT_FIELDS[name]}", "reason": "LIMIT_OUT_OF_RANGE"}


def effective_limits(requested: Limits, defaults: Limits, maximum: Limits) -> Limits:
    """A job's limits on a server: its defaults where the job asks for none; raises
    :class:`InvalidArgument` for a limit above the server's maximum (every backend)."""
    for name in Limits.__dataclass_fields__:
        mine, cap = getattr(requested, name), getattr(maximum, name)
        if mine is not None and cap is not None and mine > cap:
            raise InvalidArgument(
                f"{name} limit {mine} is above this server's maximum {cap}",
                **out_of_range(name),
            )
    values = {
        name: getattr(requested, name)
        if getattr(requested, name) is not None
        else getattr(defaults, name)
        for name in Limits.__dataclass_fields__
    }
    return Limits(**values).capped(maximum)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _amount(value: int, unit: str | None) -> str:
    """``value`` for a message: a count (``unit`` None), or bytes (``unit`` "" or "/s")
    in binary units when that is exact (``1 MiB``), else in bytes (``1048575 B``)."""
    if unit is None:
        return str(value)
    if value == 0:
        return "0"
    shown = format_size(value)
    try:
        exact = parse_size(shown) == value
    except InvalidArgument:
        exact = False
    return (shown if exact else f"{value} B") + unit


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

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """Raise :class:`InvalidArgument` if any limit is out of range.

        The message names the limit as in :data:`LIMIT_NAMES` ("memory limit must be
        between 1 MiB and 4 EiB, got 0"); ``names`` overrides some of those names, so a
        command line can name its options instead (``{"memory": "--memory"}``).
        """
        label = {**LIMIT_NAMES, **(names or {})}
        if self.cpu is not None and not (MIN_CPU <= self.cpu <= MAX_CPU):
            raise InvalidArgument(
                f"{label['cpu']} must be between {MIN_CPU:g} and {MAX_CPU} cores, "
                f"got {_number(self.cpu)}",
                **out_of_range("cpu"),
            )
        for name, value, low, high, unit in (
            ("memory", self.memory, MIN_MEMORY, MAX_BYTES, ""),
            ("io_read_bps", self.io_read_bps, MIN_IO_BPS, MAX_BYTES, "/s"),
            ("io_write_bps", self.io_write_bps, MIN_IO_BPS, MAX_BYTES, "/s"),
            ("pids", self.pids, 1, MAX_PIDS, None),
            ("output_bytes", self.output_bytes, 0, MAX_BYTES, ""),
        ):
            if value is None:
                continue
            what = label[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(
                    f"{what} must be a whole number, got {value!r}",
                    field=f"limits.{LIMIT_FIELDS[name]}",
                )
            if unit == "/s" and value < low:
                raise InvalidArgument(
                    f"{what} must be at least {_amount(low, unit)}, got {_amount(value, unit)}"
                    " (slower reads would hold up other processes reading the same files)",
                    **out_of_range(name),
                )
            if not low <= value <= high:
                raise InvalidArgument(
                    f"{what} must be between {_amount(low, unit)} and {_amount(high, unit)}, "
                    f"got {_amount(value, unit)}",
                    **out_of_range(name),
                )

    def check_cpus(self, available: int) -> None:
        """Raise :class:`InvalidArgument` if the cpu limit asks for more CPUs than the
        server has (a quota above them would never bind)."""
        if self.cpu is not None and self.cpu > available:
            raise InvalidArgument(
                f"{LIMIT_NAMES['cpu']} must be between {MIN_CPU:g} and {available} cores "
                f"(this server has {available} CPUs), got {_number(self.cpu)}",
                **out_of_range("cpu"),
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
    supervisor runs as. ``network`` is ``host`` or ``none``. ``name`` (optional) is
    unique among the owner's jobs that exist; ``labels`` are free key/value tags.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    owner: str | None = None
    limits: Limits = field(default_factory=Limits)
    network: str = "host"
    private_tmp: bool = False
    name: str = ""
    labels: Mapping[str, str] | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` if the spec cannot possibly run."""
        check_name(self.name, run=True)
        check_labels(self.labels or {})
        if isinstance(self.argv, str | bytes):
            raise InvalidArgument(
                "argv must be a list of strings, not a single string", field="argv"
            )
        if not self.argv:
            raise InvalidArgument("argv is empty: give the command to run", field="argv")
        if not self.argv[0]:
            raise InvalidArgument("the command name (argv[0]) is empty", field="argv")
        size = 0
        for i, arg in enumerate(self.argv):
            if not isinstance(arg, str):
                raise InvalidArgument(f"argument {i} is not a string", field="argv")
            if "\0" in arg:
                raise InvalidArgument(f"argument {i} contains a NUL byte", field="argv")
            size += len(arg.encode("utf-8", "surrogateescape")) + 1
        for key, value in (self.env or {}).items():
            if not key or "=" in key or "\0" in key:
                raise InvalidArgument(f"invalid environment variable name {key!r}", field="env")
            if "\0" in value:
                raise InvalidArgument(
                    f"environment variable {key} contains a NUL byte", field="env"
                )
            size += len(key) + len(value.encode("utf-8", "surrogateescape")) + 2
        if size > MAX_ARGV_BYTES:
            raise InvalidArgument(
                f"arguments and environment total {size} bytes; the limit is {MAX_ARGV_BYTES}",
                field="argv",
            )
        if self.cwd is not None and ("\0" in self.cwd or not self.cwd.startswith("/")):
            raise InvalidArgument(f"cwd must be an absolute path, got {self.cwd!r}", field="cwd")
        if self.owner is not None and not ACCOUNT_NAME.fullmatch(self.owner):
            raise InvalidArgument(f"invalid account name {self.owner!r}")
        if self.network not in NETWORK_MODES:
            raise InvalidArgument(
                f"network must be one of {', '.join(NETWORK_MODES)}", field="network"
            )
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
            "name": self.name,
            "labels": dict(self.labels) if self.labels else None,
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
            name=str(data.get("name") or ""),
            labels=data.get("labels") or None,
        )

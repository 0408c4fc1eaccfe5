"""The schema of ``server.toml``: every table, key and type, checked in one pass.

pydantic v2 rather than msgspec: it reports every error with its path in one pass
(msgspec stops at the first), and ``extra="forbid"`` plus strict mode refuse unknown keys
and a quoted "false" where a boolean belongs.

Values come out converted and range-checked by the same code as the API: sizes in bytes,
rates in bytes per second (:mod:`remo.core.units`), every limit through
:meth:`remo.core.spec.Limits.validate`, durations in seconds. :func:`check` returns
:class:`Problem` records (key path, message); :mod:`remo.server.config` adds the file
and line. Only :func:`remo.server.config.load` imports this module, so client commands
never pay for importing pydantic.

No ``from __future__ import annotations`` here: pydantic before 2.7 cannot read the
``__pydantic_extra__`` annotation of :class:`RolesTable` as a string.
"""

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from remo.core.errors import InvalidArgument
from remo.core.spec import EXEC_TIMEOUT, Limits
from remo.core.timeexpr import parse_duration
from remo.core.units import parse_cpu, parse_rate, parse_size
from remo.server.config import (
    DEFAULT_OUTPUT_CAP,
    DEFAULT_REGISTER_RATE,
    DEFAULT_RETENTION,
    local_listen,
    split_listen,
)
from remo.slurm.settings import DEFAULT_POLL_INTERVAL, DEFAULT_PYTHON, SlurmSettings

#: Spellings of "keep finished jobs forever" for ``retention``.
FOREVER = ("forever", "never")
MAX_EXEC_TIMEOUT = 3600.0
#: Most credentials per window ``register_rate`` may allow (the server remembers the
#: time of each for the window).
MAX_REGISTER_COUNT = 10_000


class Problem(NamedTuple):
    """One thing wrong with the settings: where (key path) and what."""

    path: tuple[str | int, ...]
    message: str


def _refuse(message: str) -> PydanticCustomError:
    # The message goes in the context: braces in user input must not be read as fields.
    return PydanticCustomError("remo", "{message}", {"message": message})


def shown(value: object) -> str:
    """``value`` as it would look in TOML, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _measure(parse: Callable[[str], Any] | None, limit: str, expected: str) -> WrapValidator:
    """A limit written as a number or, given ``parse``, as text ("4G"); range-checked by
    :meth:`Limits.validate` under its :class:`Limits` field name ``limit``."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            result = parse(value) if parse and isinstance(value, str) else handler(value)
            Limits(**{limit: result}).validate()
        except InvalidArgument as err:
            raise _refuse(str(err)) from None
        except ValidationError:
            raise _refuse(f"expected {expected}, got {shown(value)}") from None
        return result

    return WrapValidator(validate)


def _duration(forever: bool) -> PlainValidator:
    """A duration in quotes ("30s", "1h30m") in seconds; with ``forever``, also "forever"."""
    example = '"30d" or "forever"' if forever else '"30s" or "2m"'

    def validate(value: Any) -> float | None:
        if not isinstance(value, str):
            raise _refuse(f"expected a duration in quotes such as {example}, got {shown(value)}")
        if forever and value.strip() in FOREVER:
            return None
        try:
            return parse_duration(value).total_seconds()
        except InvalidArgument as err:
            raise _refuse(str(err)) from None

    return PlainValidator(validate)


def _exec_timeout_range(seconds: float) -> float:
    if not 0 < seconds <= MAX_EXEC_TIMEOUT:
        raise _refuse("must be between 1s and 1h")
    return seconds


def _listen(text: str) -> str:
    try:
        split_listen(text)
    except InvalidArgument as err:
        raise _refuse(str(err)) from None
    return text


def _local_listen(text: str) -> str:
    """A bare port means loopback: the plaintext ports (health for local probes, metrics
    for a local scraper or the operator's own proxy) are not exposed unless asked."""
    try:
        return local_listen(text)
    except InvalidArgument as err:
        raise _refuse(str(err)) from None


def _register_rate(value: Any) -> tuple[int, float]:
    """``"COUNT/DURATION"``: credentials one account may get per window, e.g. "5/10m"."""
    example = '"5/10m" (credentials per account per duration)'
    if not isinstance(value, str):
        raise _refuse(f"expected a rate in quotes such as {example}, got {shown(value)}")
    count, slash, window = value.partition("/")
    count = count.strip()
    if not slash or not (count.isascii() and count.isdigit()):
        raise _refuse(f"expected a rate such as {example}, got {shown(value)}")
    if not 1 <= int(count) <= MAX_REGISTER_COUNT:
        raise _refuse(f"the count must be between 1 and {MAX_REGISTER_COUNT}, got {count}")
    try:
        seconds = parse_duration(window).total_seconds()
    except InvalidArgument as err:
        raise _refuse(str(err)) from None
    return int(count), seconds


def _default_role(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return None if value == "none" else handler(value)


#: The values of :class:`Role` (a test keeps them in step): a Literal, because strict
#: mode takes an enum only as an enum member, never as its value read from a file.
RoleName = Literal["viewer", "operator", "admin"]
Cpu = Annotated[float, _measure(parse_cpu, "cpu", 'a number of cores such as 2 or "150%"')]
Memory = Annotated[int, _measure(parse_size, "memory", 'a size such as "4G" or a number of bytes')]
Output = Annotated[int, _measure(parse_size, "output_bytes", 'a size such as "1G" or a number')]
ReadRate = Annotated[int, _measure(parse_rate, "io_read_bps", 'a rate such as "50M" or "10MB/s"')]
WriteRate = Annotated[int, _measure(parse_rate, "io_write_bps", 'a rate such as "50M" or "10MB/s"')]
Pids = Annotated[int, _measure(None, "pids", "a whole number")]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LimitsTable(_Table):
    """``[limits.default]`` / ``[limits.max]``: what :class:`Limits` holds, as people write it."""

    cpu: Cpu | None = None
    memory: Memory | None = None
    io_read: ReadRate | None = None
    io_write: WriteRate | None = None
    pids: Pids | None = None
    output: Output | None = None

    def to_limits(self, output_default: int | None = None) -> Limits:
        return Limits(
            cpu=self.cpu,
            memory=self.memory,
            io_read_bps=self.io_read,
            io_write_bps=self.io_write,
            pids=self.pids,
            output_bytes=self.output if self.output is not None else output_default,
        )


class LimitsSection(_Table):
    """``[limits]``: only its two tables."""

    default: LimitsTable = Field(default_factory=LimitsTable)
    max: LimitsTable = Field(default_factory=LimitsTable)


class RolesTable(_Table):
    """``[roles]``: account = role, and ``default`` for everyone else ("none" refuses)."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, RoleName]

    default: Annotated[RoleName | None, WrapValidator(_default_role)] = "operator"

    def accounts(self) -> dict[str, str]:
        return dict(self.model_extra or {})


class IsolationTable(_Table):
    """``[isolation]``: the network of jobs and their namespaces."""

    network: Literal["host", "none"] = "host"
    force_network_none: bool = False
    namespaces: bool = True


def _poll_range(seconds: float) -> float:
    if not 0.05 <= seconds <= 60:
        raise _refuse("must be between 0.05s and 60s")
    return seconds


def _absolute(text: str) -> str:
    if not text.startswith("/"):
        raise _refuse(f"must be an absolute path, got {shown(text)}")
    return text


class SlurmSection(_Table):
    """``[slurm]``: where and how jobs go to Slurm (read with ``backend = "slurm"``)."""

    shared_dir: Annotated[str, AfterValidator(_absolute)] = str(SlurmSettings.shared_dir)
    partition: str = ""
    partitions: list[str] = []
    poll_interval: Annotated[float, _duration(forever=False), AfterValidator(_poll_range)] = (
        DEFAULT_POLL_INTERVAL
    )
    inotify: bool = False
    slurm_conf: Annotated[str, AfterValidator(_absolute)] | None = None
    python: Annotated[str, AfterValidator(_absolute)] = DEFAULT_PYTHON

    def to_settings(self) -> SlurmSettings:
        return SlurmSettings(
            shared_dir=Path(self.shared_dir),
            partition=self.partition,
            partitions=list(self.partitions),
            poll_interval=self.poll_interval,
            inotify=self.inotify,
            slurm_conf=Path(self.slurm_conf) if self.slurm_conf else None,
            python=self.python,
        )


class Settings(_Table):
    """The whole file. An empty file gives the embedded defaults."""

    state_dir: Annotated[str, Field(min_length=1)] | None = None
    listen: Annotated[str, AfterValidator(_listen)] = "0.0.0.0:7443"
    health_listen: Annotated[str, AfterValidator(_local_listen)] | None = None
    metrics_listen: Annotated[str, AfterValidator(_local_listen)] | None = None
    advertise: list[str] = []
    retention: Annotated[float | None, _duration(forever=True)] = DEFAULT_RETENTION
    exec_timeout: Annotated[
        float, _duration(forever=False), AfterValidator(_exec_timeout_range)
    ] = EXEC_TIMEOUT
    register_rate: Annotated[tuple[int, float], PlainValidator(_register_rate)] = (
        DEFAULT_REGISTER_RATE
    )
    # (model_validate: a typed __pydantic_extra__ reads as a constructor argument to mypy)
    max_outputs_per_user: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    roles: RolesTable = Field(default_factory=lambda: RolesTable.model_validate({}))
    limits: LimitsSection = Field(default_factory=LimitsSection)
    isolation: IsolationTable = Field(default_factory=IsolationTable)
    backend: Literal["local", "slurm"] = "local"
    slurm: SlurmSection = Field(default_factory=SlurmSection)

    @property
    def default_limits(self) -> Limits:
        """Jobs that ask for no output cap get one anyway, so no job can fill the disk."""
        return self.limits.default.to_limits(output_default=DEFAULT_OUTPUT_CAP)


def check(data: dict[str, Any]) -> tuple[Settings | None, list[Problem]]:
    """Validate parsed TOML: the settings, or None and every problem found."""
    try:
        return Settings.model_validate(data), []
    except ValidationError as err:
        return None, [_problem(e) for e in err.errors(include_url=False)]


def _problem(error: ErrorDetails) -> Problem:
    path = tuple(error["loc"])
    value = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        what = "table" if isinstance(value, dict) else "setting"
        return Problem(path, f"unknown {what}{_suggestion(path)}")
    expected = {
        "bool_type": "true or false",
        "string_type": "a string in quotes",
        "int_type": "a whole number",
        "float_type": "a number",
        "list_type": "a list",
        "model_type": "a table",
        "dict_type": "a table",
    }.get(kind)
    if expected:
        hint = " (without quotes)" if kind == "bool_type" and isinstance(value, str) else ""
        return Problem(path, f"expected {expected}{hint}, got {shown(value)}")
    if kind in ("enum", "literal_error"):
        choices = str(error.get("ctx", {}).get("expected", "")).replace("'", '"')
        note = ""
        if path == ("roles", "default"):
            choices = choices.replace(" or ", ", ") + ' or "none"'
        elif path[:1] == ("roles",) and value == "none":
            note = ' ("none" is only for roles.default)'
        return Problem(path, f"expected {choices}, got {shown(value)}{note}")
    return Problem(path, str(error["msg"]))


def _suggestion(path: tuple[str | int, ...]) -> str:
    close = difflib.get_close_matches(str(path[-1]), known_keys(path[:-1]), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def known_keys(table: tuple[str | int, ...]) -> list[str]:
    """The keys the schema allows in ``table`` (a path from the top of the file)."""
    model: type[BaseModel] = Settings
    for part in table:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)

"""The options of `remo run` as the command line gives them, checked and parsed before
anything is sent: environment, limits, labels, times, and text the API can carry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from remo.cli.common import parsed_option

if TYPE_CHECKING:
    from remo.core.spec import Limits


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("K=V", ...)`` as a dict; a usage error for an entry without ``=`` or name."""
    from remo.client.errors import UsageError

    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--env {pair!r}: expected NAME=VALUE (e.g. --env DEBUG=1)")
        if not name or "\0" in name or any(c.isspace() for c in name):
            raise UsageError(f"--env {pair!r}: invalid variable name {name!r}")
        env[name] = value
    return env


#: The option that sets each limit (messages name it, not the API's field).
LIMIT_OPTIONS = {
    "cpu": "--cpu",
    "memory": "--memory",
    "io_read_bps": "--io-read",
    "io_write_bps": "--io-write",
    "pids": "--pids",
}


def parse_pids(text: str) -> int:
    """A count of processes: digits only (the range is checked with the other limits)."""
    from remo.core.errors import InvalidArgument
    from remo.core.spec import MAX_PIDS

    digits = text.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise InvalidArgument(
            f"invalid number {text[:40]!r}: give a whole number from 1 to {MAX_PIDS}, e.g. 64"
        )
    return int(digits)


def parse_limits(
    cpu: str | None,
    memory: str | None,
    io_read: str | None,
    io_write: str | None,
    pids: str | None,
) -> Limits:
    """The limits the options ask for, checked as the server would check them."""
    from remo.client.errors import UsageError
    from remo.core.errors import InvalidArgument
    from remo.core.spec import Limits

    limits = Limits(pids=parsed_option("--pids", parse_pids, pids) if pids is not None else None)
    if cpu is not None or memory is not None or io_read is not None or io_write is not None:
        from remo.core.units import parse_cpu, parse_rate, parse_size

        limits = Limits(
            cpu=parsed_option("--cpu", parse_cpu, cpu) if cpu is not None else None,
            memory=parsed_option("--memory", parse_size, memory) if memory is not None else None,
            io_read_bps=(
                parsed_option("--io-read", parse_rate, io_read) if io_read is not None else None
            ),
            io_write_bps=(
                parsed_option("--io-write", parse_rate, io_write) if io_write is not None else None
            ),
            pids=limits.pids,
        )
    try:
        limits.validate(LIMIT_OPTIONS)
    except InvalidArgument as err:
        raise UsageError(str(err)) from None
    return limits


def in_option_terms(message: str) -> str:
    """A server's message about a limit ("cpu limit must be ...") in terms of the
    option that set it ("--cpu must be ...")."""
    from remo.core.spec import LIMIT_NAMES

    for field, name in LIMIT_NAMES.items():
        option = LIMIT_OPTIONS.get(field)
        if option and message.startswith(f"{name} "):
            return option + message[len(name) :]
    return message


def require_utf8(value: str, what: str) -> None:
    """A usage error unless ``value`` is text the API can carry (UTF-8): bytes that are
    not (``$'\\xff'``) reach Python as lone surrogates."""
    from remo.client.errors import UsageError

    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "surrogateescape").decode("latin-1")
        raise UsageError(
            f"{what} is not valid UTF-8 text ({shown!r} as Latin-1): remo passes "
            "arguments, environment and paths as UTF-8"
        ) from None


def parse_labels(labels: Sequence[str]) -> dict[str, str]:
    """``{"team": "ml"}`` from ``--label team=ml`` options; a usage error otherwise."""
    from remo.client.errors import UsageError

    tags: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: give KEY=VALUE, e.g. --label team=ml")
        tags[key] = value
    return tags


def parse_when(
    delay: str | None, at: str | None, every: str | None
) -> tuple[float | None, float | None, float | None]:
    """``(delay_seconds, at_unix, every_seconds)`` from ``--in``, ``--at``, ``--every``."""
    from remo.client.errors import UsageError

    if delay is not None and at is not None:
        raise UsageError("--in and --at both set the first run: give only one")
    if delay is None and at is None and every is None:
        return None, None, None
    from datetime import datetime

    from remo.core.timeexpr import parse_at, parse_duration

    delay_s = (
        parsed_option("--in", parse_duration, delay).total_seconds() if delay is not None else None
    )
    at_unix = None
    if at is not None:
        now = datetime.now().astimezone()
        at_unix = parsed_option("--at", lambda text: parse_at(text, now), at).timestamp()
    every_s = (
        parsed_option("--every", parse_duration, every).total_seconds()
        if every is not None
        else None
    )
    return delay_s, at_unix, every_s


def local_time(unix: float) -> str:
    """``2025-01-31 14:05:00 CET``: a moment in this machine's time zone."""
    from datetime import datetime

    return datetime.fromtimestamp(unix).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")

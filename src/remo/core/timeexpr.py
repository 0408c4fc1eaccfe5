"""When to run: the durations and times users type, and the arithmetic of recurring runs.

Pure functions, no I/O and no clock: callers pass ``now``, which keeps every rule
testable and lets the scheduler use one instant for a whole decision.

Why periods are computed in UTC: ``every 1d`` means "every 86400 seconds", not "at the
same wall-clock time every day". Python adds a timedelta to an aware datetime in wall
time of its zone, which across a DST change would make one period 23 or 25 hours long
(or land on a wall time that does not exist); converting to UTC first keeps every
period exactly ``every`` long. The price: a daily schedule created at 02:00 in
winter runs at 03:00 local time in summer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, tzinfo
from fractions import Fraction

from remo.core.errors import InvalidArgument
from remo.core.units import quote

_SECONDS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
#: Every spelling accepted (lower-cased), mapped to its canonical unit.
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "w"),
}
_CALENDAR_UNITS = {"mo", "mon", "month", "months", "y", "yr", "yrs", "year", "years"}
_PART = re.compile(r"(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*")
_MAX_INPUT = 100

DURATION_EXAMPLE = "e.g. '30s', '5m', '1h30m' or '2days'"
AT_EXAMPLE = "e.g. '02:00', '2026-12-01 02:00' or '2026-12-01T02:00+01:00'"

_TIME = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?")
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ]\s*"
    r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?P<frac>\.\d{1,6})?)?"
    r"\s*(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?"
)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _bad_duration(text: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid duration {quote(text)}: {why}, {DURATION_EXAMPLE}")


def parse_duration(text: str) -> timedelta:
    """A positive duration: ``5m``, ``5 minutes``, ``30sec``, ``2hrs``, ``1h30m``, ``1.5h``.

    Units are s, m, h, d and w with their usual spellings (``sec``, ``min``, ``hr``,
    ``day``, ``wk`` and plurals), case-insensitive except that a lone ``M`` is refused:
    it reads as months as easily as minutes. Components may be separated by spaces,
    each unit appears once, fractions are allowed, the result is rounded to the
    microsecond. A number without a unit, zero and negative durations are refused:
    "run every 0s" or "in 5" mean nothing safe to guess.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid duration {text!r}: expected text, {DURATION_EXAMPLE}")
    s = text.strip()
    if not s:
        raise _bad_duration(text, "it is empty")
    if len(s) > _MAX_INPUT:
        raise _bad_duration(text, "too long")
    if s.startswith("-"):
        raise _bad_duration(text, "must be positive")
    total = Fraction(0)
    seen: set[str] = set()
    pos = 0
    while pos < len(s):
        part = _PART.match(s, pos)
        if part is None:
            raise _bad_duration(text, f"unexpected {s[pos:]!r}")
        number, spelled = part["num"], part["unit"]
        if not spelled:
            raise _bad_duration(text, f"{number!r} has no unit (s, m, h, d or w)")
        if spelled == "M":
            raise _bad_duration(text, "'M' is ambiguous: write 'min' for minutes")
        if spelled.lower() in _CALENDAR_UNITS:
            raise _bad_duration(text, f"{spelled!r}: months and years vary, use days or weeks")
        unit = _UNITS.get(spelled.lower())
        if unit is None:
            raise _bad_duration(text, f"unknown unit {spelled!r}; use s, m, h, d or w")
        if unit in seen:
            raise _bad_duration(text, f"the {unit} unit is given twice")
        seen.add(unit)
        total += Fraction(number) * _SECONDS[unit]
        pos = part.end()
    micros = round(total * 1_000_000)
    if micros == 0:
        raise _bad_duration(text, "must be longer than zero")
    try:
        return timedelta(microseconds=micros)
    except OverflowError:
        raise _bad_duration(text, "too long") from None


def _local(naive: datetime, tz: tzinfo | None) -> datetime:
    """Attach ``tz`` (the server's local zone when ``None``) to a wall-clock time.

    A wall time skipped by a DST change resolves as PEP 495 says (fold=0: the offset
    from before the change), then normalises, so ``02:30`` on a spring-forward night in
    Paris becomes 03:30 CEST.
    """
    if tz is None:
        return naive.astimezone()  # the system's rules for that date, DST included
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz)


def _aware_now(now: datetime, tz: tzinfo | None) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        return _local(now, tz)
    return now


def parse_at(text: str, now: datetime, tz: tzinfo | None = None) -> datetime:
    """The moment ``text`` names, which must not be in the past; an aware datetime.

    Accepted: ``2026-12-01T02:00``, ``2026-12-01 02:00``, with seconds, with an offset
    (``+01:00``, ``+0100``) or ``Z``; and a bare time ``02:00`` meaning the next
    02:00 (today, or tomorrow if today's has passed). Times without an offset are
    wall-clock times in ``tz``, or in the server's local zone when ``tz`` is ``None``.
    A naive ``now`` is read the same way.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid time {text!r}: expected text, {AT_EXAMPLE}")
    now = _aware_now(now, tz)
    s = text.strip()
    if not s:
        raise InvalidArgument(f"invalid time {quote(text)}: it is empty, {AT_EXAMPLE}")
    if clock := _TIME.fullmatch(s):
        return _next_wall_time(text, clock, now, tz)
    stamp = _DATETIME.fullmatch(s)
    if stamp is None:
        why = "give a time too" if _DATE_ONLY.fullmatch(s) else "not a date and time"
        raise InvalidArgument(f"invalid time {quote(text)}: {why}, {AT_EXAMPLE}")
    offset = _iso_offset(stamp["tz"])
    if offset and (int(offset[1:3]) > 23 or int(offset[4:6]) > 59):
        raise InvalidArgument(f"invalid time {quote(text)}: no such UTC offset, {AT_EXAMPLE}")
    iso = f"{stamp['date']}T{int(stamp['h']):02d}:{stamp['m']}:{stamp['s'] or '00'}"
    iso += (stamp["frac"] or "") + offset
    try:
        when = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise InvalidArgument(f"invalid time {quote(text)}: {exc}, {AT_EXAMPLE}") from None
    if when.tzinfo is None:
        try:
            when = _local(when, tz)
        except (ValueError, OverflowError):  # year 1 or 9999 moved across an offset
            raise InvalidArgument(
                f"invalid time {quote(text)}: out of range, {AT_EXAMPLE}"
            ) from None
    if when < now:
        shown = now.astimezone(when.tzinfo).isoformat(" ", "seconds")
        raise InvalidArgument(f"invalid time {quote(text)}: it is in the past (now is {shown})")
    return when


def _iso_offset(spelled: str | None) -> str:
    if spelled is None:
        return ""
    if spelled in ("Z", "z"):
        return "+00:00"
    return spelled if ":" in spelled else f"{spelled[:3]}:{spelled[3:]}"


def _next_wall_time(text: str, clock: re.Match[str], now: datetime, tz: tzinfo | None) -> datetime:
    try:
        wall = time(int(clock["h"]), int(clock["m"]), int(clock["s"] or 0))
    except ValueError:
        raise InvalidArgument(
            f"invalid time {quote(text)}: no such time of day, e.g. '02:00'"
        ) from None
    today = now.astimezone(tz).date() if tz is not None else now.astimezone().date()
    when = _local(datetime.combine(today, wall), tz)
    if when <= now:  # already passed today: tomorrow's, a whole day later, has not
        when = _local(datetime.combine(today + timedelta(days=1), wall), tz)
    return when


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def _check_every(every: timedelta) -> None:
    if every <= timedelta(0):
        raise InvalidArgument(f"invalid period {str(every)!r}: must be longer than zero")


def next_run(first_due: datetime, every: timedelta | None, now: datetime) -> datetime | None:
    """The first due time strictly after ``now``, or ``None`` if there is none.

    Due times are ``first_due + k * every`` for k = 0, 1, 2...; a one-shot schedule
    (``every=None``) has only ``first_due``. Runs due at or before ``now`` are already
    due, so they are not "next". Arithmetic is in UTC (see the module docstring); the
    result is in ``first_due``'s zone. All datetimes must be timezone-aware.
    """
    first, current = _utc("first_due", first_due), _utc("now", now)
    if every is not None:
        _check_every(every)
    if current < first:
        return first_due
    if every is None:
        return None
    periods = (current - first) // every + 1
    return (first + periods * every).astimezone(first_due.tzinfo)


def missed_runs(last_due: datetime, every: timedelta, now: datetime) -> tuple[int, datetime]:
    """How many runs fell due after ``last_due`` up to ``now``, and the next due time after that.

    ``last_due`` is the due time of the last run that was handled. The count includes
    a run due exactly at ``now``; the next due time is strictly after ``now``. A server
    that was down for several periods sees a count above one and decides itself what
    to do (remo runs once, not once per missed period). Arithmetic is in UTC; the
    returned time is in ``last_due``'s zone.
    """
    _check_every(every)
    last, current = _utc("last_due", last_due), _utc("now", now)
    missed = max(0, (current - last) // every)
    return missed, (last + (missed + 1) * every).astimezone(last_due.tzinfo)

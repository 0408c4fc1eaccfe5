"""Durations, ``--at`` times and recurring-run arithmetic, as table tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remo.core.errors import InvalidArgument
from remo.core.timeexpr import missed_runs, next_run, parse_at, parse_duration

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
S, M, H, D = (timedelta(seconds=n) for n in (1, 60, 3600, 86400))


# ---------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", 5 * M),
        ("5min", 5 * M),
        ("5mins", 5 * M),
        ("5 minutes", 5 * M),
        ("1 minute", M),
        ("30s", 30 * S),
        ("30sec", 30 * S),
        ("30secs", 30 * S),
        ("30 seconds", 30 * S),
        ("1second", S),
        ("2h", 2 * H),
        ("2hr", 2 * H),
        ("2hrs", 2 * H),
        ("2hours", 2 * H),
        ("1 hour", H),
        ("2days", 2 * D),
        ("1d", D),
        ("1 day", D),
        ("1week", 7 * D),
        ("2w", 14 * D),
        ("3wks", 21 * D),
        ("1h30m", 90 * M),
        ("1h 30m", 90 * M),
        ("1d 2h 3m 4s", D + 2 * H + 3 * M + 4 * S),
        ("30m1h", 90 * M),
        ("1.5h", 90 * M),
        (".5m", 30 * S),
        ("0.001s", timedelta(milliseconds=1)),
        ("5H", 5 * H),
        ("5Min", 5 * M),
        ("  10s  ", 10 * S),
        ("1000000d", 1_000_000 * D),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("20mims", "unknown unit 'mims'"),
        ("5", "'5' has no unit"),
        ("", "empty"),
        ("   ", "empty"),
        ("-5m", "positive"),
        ("0s", "longer than zero"),
        ("0m0s", "longer than zero"),
        ("0.0000001s", "longer than zero"),
        ("5m5", "'5' has no unit"),
        ("1h30", "'30' has no unit"),
        ("m", "unexpected 'm'"),
        ("5 m x", "unexpected 'x'"),
        ("1h1h", "h unit is given twice"),
        ("1m 60min", "m unit is given twice"),
        ("1M", "ambiguous"),
        ("1mo", "months and years"),
        ("1 month", "months and years"),
        ("2y", "months and years"),
        ("5m-3s", "unexpected '-3s'"),
        ("+5m", "unexpected"),
        ("1e3s", "unknown unit 'e'"),
        ("5,5m", "'5' has no unit"),
        ("99999999999w", "too long"),
        ("1" * 101 + "s", "too long"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_duration(text)
    error = str(caught.value)
    assert error.startswith(f"invalid duration {repr(text)[:20]}")  # quotes the input
    assert "\n" not in error
    assert "e.g. '30s'" in error


def test_parse_duration_refuses_non_text() -> None:
    with pytest.raises(InvalidArgument, match="expected text"):
        parse_duration(300)  # type: ignore[arg-type]


# ---------------------------------------------------------------- parse_at


@pytest.fixture
def server_in_paris() -> Iterator[None]:
    """Make the process's local time zone Europe/Paris for the test's duration."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2026-12-01T02:00", UTC, datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        ("2026-12-01 02:00", UTC, datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        ("2026-12-01t02:00", UTC, datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        ("2026-12-01 2:00", UTC, datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        ("2026-12-01 02:00:30", UTC, datetime(2026, 12, 1, 2, 0, 30, tzinfo=UTC)),
        ("2026-12-01 02:00:30.25", UTC, datetime(2026, 12, 1, 2, 0, 30, 250000, tzinfo=UTC)),
        ("2026-12-01T02:00Z", PARIS, datetime(2026, 12, 1, 2, 0, tzinfo=UTC)),
        (
            "2026-12-01T02:00:00+01:00",
            UTC,
            datetime(2026, 12, 1, 1, 0, tzinfo=UTC),
        ),
        ("2026-12-01T02:00-0500", UTC, datetime(2026, 12, 1, 7, 0, tzinfo=UTC)),
        # naive times are wall-clock times in tz, with the offset of that date
        ("2026-12-01 02:00", PARIS, datetime(2026, 12, 1, 1, 0, tzinfo=UTC)),
        ("2026-07-01 02:00", PARIS, datetime(2026, 7, 1, 0, 0, tzinfo=UTC)),
        # a bare time is the next one: later today, else tomorrow
        ("13:00", UTC, datetime(2026, 6, 1, 13, 0, tzinfo=UTC)),
        ("02:00", UTC, datetime(2026, 6, 2, 2, 0, tzinfo=UTC)),
        ("12:00", UTC, datetime(2026, 6, 2, 12, 0, tzinfo=UTC)),  # now exactly: tomorrow
        ("12:00:01", UTC, datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)),
        ("9:15", UTC, datetime(2026, 6, 2, 9, 15, tzinfo=UTC)),
        ("14:30", PARIS, datetime(2026, 6, 1, 12, 30, tzinfo=UTC)),  # 14:00 Paris is now
        ("13:30", PARIS, datetime(2026, 6, 2, 11, 30, tzinfo=UTC)),
        # exactly now is not in the past
        ("2026-06-01 12:00", UTC, NOW),
    ],
)
def test_parse_at_accepts(text: str, tz: tzinfo, expected: datetime) -> None:
    got = parse_at(text, NOW, tz)
    assert got == expected
    assert got.utcoffset() is not None


def test_parse_at_keeps_the_zone_it_was_given() -> None:
    assert parse_at("2026-12-01 02:00", NOW, PARIS).tzinfo is PARIS
    offset = parse_at("2026-12-01T02:00+01:00", NOW, PARIS).utcoffset()
    assert offset == timedelta(hours=1)


def test_bare_time_uses_the_date_in_the_target_zone() -> None:
    # 23:30 UTC on June 1st is already 01:30 on June 2nd in Paris.
    now = datetime(2026, 6, 1, 23, 30, tzinfo=UTC)
    assert parse_at("02:00", now, PARIS) == datetime(2026, 6, 2, 2, 0, tzinfo=PARIS)


def test_bare_time_in_a_dst_gap_moves_forward() -> None:
    # Paris skips 02:00-03:00 on 2026-03-29: 02:30 that night is 03:30 CEST.
    now = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    got = parse_at("02:30", now, PARIS)
    assert got.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (got.hour, got.minute) == (3, 30)


def test_bare_time_is_tomorrows_wall_time_with_tomorrows_offset() -> None:
    # Asked at 03:00 CET on the eve of the change: tomorrow's 01:00 is still CET, and
    # tomorrow's 02:30 does not exist, so it becomes 03:30 CEST.
    now = datetime(2026, 3, 28, 2, 0, tzinfo=UTC)
    early = parse_at("01:00", now, PARIS)
    assert early.astimezone(UTC) == datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    skipped = parse_at("02:30", now, PARIS)
    assert skipped.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (skipped.day, skipped.hour, skipped.minute) == (29, 3, 30)


@pytest.mark.usefixtures("server_in_paris")
def test_naive_times_default_to_the_server_zone_with_dst() -> None:
    winter = parse_at("2026-12-01 02:00", NOW)
    summer = parse_at("2026-07-01 02:00", NOW)
    assert winter.utcoffset() == timedelta(hours=1)
    assert summer.utcoffset() == timedelta(hours=2)  # not the offset in force "now"
    assert parse_at("15:00", NOW) == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
    assert parse_at("13:00", NOW) == datetime(2026, 6, 2, 11, 0, tzinfo=UTC)


@pytest.mark.usefixtures("server_in_paris")
def test_naive_now_is_read_in_the_server_zone() -> None:
    naive_now = datetime(2026, 6, 1, 14, 0)  # 12:00 UTC
    assert parse_at("14:30", naive_now) == datetime(2026, 6, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tomorrow", "not a date and time"),
        ("2026-12-01", "give a time too"),
        ("2026-13-01 02:00", "month must be in 1..12"),
        ("2026-02-30 02:00", "day is out of range"),
        ("2026-12-01 24:00", "hour must be in 0..23"),
        ("2026-12-01 02:61", "minute must be in 0..59"),
        ("25:00", "no such time of day"),
        ("12:60", "no such time of day"),
        ("02:00pm", "not a date and time"),
        ("2026-12-01T02:00+2500", "no such UTC offset"),
        ("2026-12-01T02:00+01:60", "no such UTC offset"),
        ("2026-12-01T02:00 Europe/Paris", "not a date and time"),
        ("1780000000", "not a date and time"),
        ("2026-06-01 11:59", "in the past"),
        ("2026-06-01T12:00+00:01", "in the past"),
        ("2020-01-01T00:00Z", "in the past"),
    ],
)
def test_parse_at_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_at(text, NOW, UTC)
    error = str(caught.value)
    assert error.startswith(f"invalid time {text!r}")
    assert "\n" not in error


@pytest.mark.parametrize(
    ("text", "tz"),
    [
        ("0001-01-01T00:00", None),  # the server's zone: mktime() probes year 0
        ("0001-01-01 00:00", timezone(timedelta(hours=5))),
        ("9999-12-31 23:59", timezone(timedelta(hours=-5))),
    ],
)
def test_wall_times_at_the_ends_of_the_calendar_are_out_of_range(
    text: str, tz: tzinfo | None
) -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_at(text, NOW, tz)


def test_past_error_says_what_now_is() -> None:
    with pytest.raises(InvalidArgument, match=r"now is 2026-06-01 14:00:00\+02:00"):
        parse_at("2026-06-01 13:00", NOW, PARIS)


# ---------------------------------------------------------------- next_run


T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("every", "now", "expected"),
    [
        # one-shot
        (None, T0 - S, T0),
        (None, T0, None),
        (None, T0 + D, None),
        # recurring
        (H, T0 - D, T0),
        (H, T0 - S, T0),
        (H, T0, T0 + H),  # the run due now is already due: next is strictly after
        (H, T0 + S, T0 + H),
        (H, T0 + H - S, T0 + H),
        (H, T0 + 3 * H, T0 + 4 * H),
        (H, T0 + 3 * H + 30 * M, T0 + 4 * H),
        (90 * S, T0 + 10 * M, T0 + 630 * S),
        (timedelta(microseconds=1), T0 + S, T0 + S + timedelta(microseconds=1)),
        (M, T0 + 3650 * D, T0 + 3650 * D + M),  # ten years later, no loop
        (7 * D, T0 + 365 * D, T0 + 371 * D),
    ],
)
def test_next_run(every: timedelta | None, now: datetime, expected: datetime | None) -> None:
    assert next_run(T0, every, now) == expected


def test_next_run_counts_periods_in_utc_across_dst() -> None:
    # A daily schedule set for 02:00 in Paris the day before clocks go forward: every
    # period is exactly 24 hours, so after the change it runs at 03:00 local time.
    first = datetime(2026, 3, 28, 2, 0, tzinfo=PARIS)
    now = datetime(2026, 3, 29, 12, 0, tzinfo=PARIS)
    got = next_run(first, D, now)
    assert got is not None
    assert got.astimezone(UTC) - first.astimezone(UTC) == 2 * D
    assert got.tzinfo is PARIS
    assert (got.day, got.hour) == (30, 3)


def test_next_run_in_other_zones_compares_instants() -> None:
    first = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))  # 00:00 UTC
    assert next_run(first, H, T0) == T0 + H


@pytest.mark.parametrize("every", [timedelta(0), -H])
def test_next_run_refuses_empty_periods(every: timedelta) -> None:
    with pytest.raises(InvalidArgument, match="longer than zero"):
        next_run(T0, every, T0 - D)


def test_next_run_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(datetime(2026, 1, 1), H, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(T0, H, datetime(2026, 1, 1))


# ---------------------------------------------------------------- missed_runs


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0 - D, (0, T0 + H)),  # clock behind the last run: nothing missed
        (T0, (0, T0 + H)),
        (T0 + H - S, (0, T0 + H)),
        (T0 + H, (1, T0 + 2 * H)),  # due exactly now counts
        (T0 + 2 * H - S, (1, T0 + 2 * H)),
        (T0 + 3 * H - S, (2, T0 + 3 * H)),
        (T0 + 5 * H + 10 * M, (5, T0 + 6 * H)),  # down five periods: the caller runs once
        (T0 + 3650 * D, (87600, T0 + 3650 * D + H)),
    ],
)
def test_missed_runs(now: datetime, expected: tuple[int, datetime]) -> None:
    assert missed_runs(T0, H, now) == expected


def test_missed_runs_across_dst_uses_exact_periods() -> None:
    last = datetime(2026, 10, 24, 2, 0, tzinfo=PARIS)  # clocks go back on the 25th
    count, due = missed_runs(last, D, datetime(2026, 10, 27, 12, 0, tzinfo=PARIS))
    assert count == 3
    assert due.astimezone(UTC) - last.astimezone(UTC) == 4 * D
    assert (due.day, due.hour) == (28, 1)  # 24-hour periods: an hour earlier in winter


@pytest.mark.parametrize("every", [timedelta(0), -M])
def test_missed_runs_refuses_empty_periods(every: timedelta) -> None:
    with pytest.raises(InvalidArgument, match="longer than zero"):
        missed_runs(T0, every, T0 + D)


@given(
    every_s=st.integers(min_value=1, max_value=10 * 86400),
    elapsed_s=st.integers(min_value=0, max_value=400 * 86400),
)
def test_missed_runs_agrees_with_next_run(every_s: int, elapsed_s: int) -> None:
    every, now = timedelta(seconds=every_s), T0 + timedelta(seconds=elapsed_s)
    count, due = missed_runs(T0, every, now)
    assert due == next_run(T0, every, now)
    assert T0 + count * every <= now < due
    assert due - now <= every

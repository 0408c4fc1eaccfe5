"""Sizes, rates, CPU amounts and durations: what is accepted, what is refused, how it prints."""

from __future__ import annotations

import pytest

from remo.core.errors import InvalidArgument
from remo.core.units import (
    MAX_VALUE,
    format_duration,
    format_size,
    parse_cpu,
    parse_rate,
    parse_size,
)

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("512 b", 512),
        # bare prefixes are binary, any case
        ("512k", 512 * KiB),
        ("512K", 512 * KiB),
        ("2M", 2 * MiB),
        ("2m", 2 * MiB),
        ("2G", 2 * GiB),
        ("1T", TiB),
        ("1P", 1 << 50),
        ("7E", 7 << 60),
        # IEC spellings are binary
        ("1KiB", KiB),
        ("1.5GiB", 3 * GiB // 2),
        ("1.5 GiB", 3 * GiB // 2),
        ("1gib", GiB),
        ("4Mi", 4 * MiB),
        # a prefix with B is SI decimal
        ("100MB", 100_000_000),
        ("100mb", 100_000_000),
        ("1kB", 1000),
        ("1KB", 1000),
        ("2GB", 2_000_000_000),
        ("1TB", 10**12),
        # fractions round down to a whole byte
        (".5k", 512),
        ("1.3k", 1331),
        ("0.1", 0),
        ("  64M  ", 64 * MiB),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-1M", "negative"),
        ("M", "number"),
        ("12x", "unknown unit 'x'"),
        ("1.5.2G", "number"),
        ("1e6", "number"),
        ("1,5G", "number"),
        ("+5M", "number"),
        ("5 M B", "number"),
        ("10Mbit", "unknown unit 'Mbit'"),
        ("1GG", "unknown unit 'GG'"),
        ("8E", "too large"),
        ("9" * 30, "too large"),
        ("1" * 65, "too long"),
        ("1.", "number"),
        ("inf", "number"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_size(text)
    text_of = str(caught.value)
    assert "\n" not in text_of
    assert repr(text)[:20] in text_of  # quotes the input
    assert "e.g. '512M'" in text_of or "too large" in text_of


def test_parse_size_refuses_non_text() -> None:
    with pytest.raises(InvalidArgument, match="expected text"):
        parse_size(512)  # type: ignore[arg-type]


def test_largest_size() -> None:
    assert parse_size(str(MAX_VALUE)) == MAX_VALUE
    with pytest.raises(InvalidArgument, match="too large"):
        parse_size(str(MAX_VALUE + 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10M", 10 * MiB),
        ("10M/s", 10 * MiB),
        ("10MB/s", 10_000_000),
        ("500k/s", 500 * KiB),
        ("1GiB/sec", GiB),
        ("1 GiB / s", GiB),
        ("1gib/SEC", GiB),
        ("4096", 4096),
        ("1.5M/second", 3 * MiB // 2),
    ],
)
def test_parse_rate_accepts(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0", "more than 0"),
        ("0/s", "more than 0"),
        ("-10M/s", "negative"),
        ("10Mbps", "unknown unit 'Mbps'"),
        ("10M/min", "unknown unit|number"),
        ("10M/s/s", "number"),
        ("/s", "number"),
        ("fast", "unknown unit|number"),
    ],
)
def test_parse_rate_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_rate(text)
    assert repr(text) in str(caught.value)
    assert "rate" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1.0),
        ("1.5", 1.5),
        ("0.2", 0.2),
        (".5", 0.5),
        ("16", 16.0),
        ("150%", 1.5),
        ("50 %", 0.5),
        ("1%", 0.01),
        (" 2 ", 2.0),
    ],
)
def test_parse_cpu_accepts(text: str, expected: float) -> None:
    assert parse_cpu(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0", "more than 0"),
        ("0%", "more than 0"),
        ("-1", "negative"),
        ("abc", "number of cores"),
        ("1.5 cores", "number of cores"),
        ("500m", "number of cores"),
        ("150%%", "number of cores"),
        ("%", "number of cores"),
    ],
)
def test_parse_cpu_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_cpu(text)
    assert repr(text) in str(caught.value)
    assert "e.g. '1.5'" in str(caught.value)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (10 * KiB + 100, "10.1 KiB"),
        (MiB - 1, "1 MiB"),  # 1023.999 KiB rounds up into the next unit
        (MiB, "1 MiB"),
        (3 * GiB // 2, "1.5 GiB"),
        (10**12, "931.3 GiB"),
        (5 * TiB, "5 TiB"),
        (MAX_VALUE, "8 EiB"),
        (-1536, "-1.5 KiB"),
    ],
)
def test_format_size(n: int, expected: str) -> None:
    assert format_size(n) == expected


@pytest.mark.parametrize("n", [0, 1, 1000, 1024, 1536, 3 * GiB // 2, 5 * TiB, 7 << 60])
def test_format_size_reads_back(n: int) -> None:
    shown = format_size(n)
    assert abs(parse_size(shown) - n) <= n * 0.05 + 1


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (0.0004, "0ms"),
        (0.35, "350ms"),
        (0.57, "570ms"),
        (1, "1s"),
        (2.3, "2.3s"),
        (9.96, "9.9s"),  # rounded down, never up into the next unit
        (10, "10s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (192, "3m12s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (86399, "23h59m"),
        (86400, "1d0h"),
        (97200, "1d3h"),
        (10_000_000, "115d17h"),
        (-65, "-1m05s"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), -float("inf")])
def test_format_duration_refuses_non_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_duration(seconds)

"""Sizes, rates, CPU amounts and durations, as people type them and as remo prints them.

One module so that the CLI, the server configuration and the API all accept the same
spellings and reject the rest with the same one-line message. Pure functions, no I/O.

Size units follow GNU coreutils (``dd``, ``head -c``, ``truncate``, ``sort -S``):

- a bare prefix is binary, as in docker's ``--memory`` and systemd's ``MemoryMax=``:
  ``512k`` = 512 x 1024, ``2M`` = 2 x 1024^2, ``2G``, ``1T``, ``1P``, ``1E``;
- the IEC spellings are binary too: ``KiB``, ``MiB``, ``GiB``... (also ``Ki``, ``Mi``);
- a prefix followed by ``B`` is the SI decimal unit, as on disk labels and in
  ``ls --si``: ``100MB`` = 100 x 1000^2, ``1kB`` = 1000;
- no unit, or ``B``, means bytes.

Prefixes and the trailing ``B`` are case-insensitive (``512m``, ``1gib``, ``100mb``).
remo never measures in bits, so ``b`` is bytes too. Fractions are allowed
(``1.5GiB``) and rounded down to a whole byte.

CPU amounts are in cores: ``1.5`` is one and a half cores, ``0.2`` a fifth of one;
``150%`` (systemd's ``CPUQuota=`` style) means the same as ``1.5``.

Range checks that depend on what the value is for (a memory limit of at least 1 MiB...)
belong to the caller, e.g. :meth:`remo.core.spec.Limits.validate`.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from remo.core.errors import InvalidArgument

#: Largest value a parser returns: it must fit the int64 fields of the API and cgroups.
MAX_VALUE = (1 << 63) - 1

_MAX_INPUT = 64  # longer inputs are typos or abuse; also keeps int() far from its limits
_NUMBER = r"(?P<num>\d+(?:\.\d+)?|\.\d+)"
_SIZE = re.compile(_NUMBER + r"\s*(?P<unit>[A-Za-z]*)")
_RATE_SUFFIX = re.compile(r"\s*/\s*(?:s|sec|second)\s*$", re.IGNORECASE)
_CPU = re.compile(_NUMBER + r"\s*(?P<pct>%?)")
_PREFIXES = "kmgtpe"  # kilo/kibi ... exa/exbi
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

SIZE_EXAMPLE = "e.g. '512M', '1.5GiB' or '100MB'"
RATE_EXAMPLE = "e.g. '10M', '10MB/s' or '500k/s'"
CPU_EXAMPLE = "e.g. '1.5' (cores) or '150%'"


def quote(text: str) -> str:
    """The user's input for an error message: quoted, escaped, cut short if long."""
    if len(text) > 40:
        text = text[:40] + "..."
    return repr(text)


def _unit_factor(unit: str) -> int | None:
    """Bytes per ``unit`` (see the module docstring), or ``None`` if unknown."""
    u = unit.lower()
    if u in ("", "b"):
        return 1
    prefix, rest = u[0], u[1:]
    power = _PREFIXES.find(prefix) + 1
    if power == 0:
        return None
    if rest in ("", "i", "ib"):
        return 1 << (10 * power)
    if rest == "b":
        return int(1000**power)
    return None


def _size(text: str, what: str, example: str, original: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(
            f"invalid {what} {quote(original)}: give a number and an optional unit, {example}"
        )
    factor = _unit_factor(match["unit"])
    if factor is None:
        raise InvalidArgument(
            f"invalid {what} {quote(original)}: unknown unit {match['unit']!r}; "
            f"use K, M, G, T (x1024), KiB, MiB... or kB, MB... (x1000), {example}"
        )
    value = math.floor(Fraction(match["num"]) * factor)
    if value > MAX_VALUE:
        raise InvalidArgument(f"invalid {what} {quote(original)}: too large (at most 2^63-1 bytes)")
    return value


def _check_text(text: object, what: str, example: str) -> str:
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid {what} {text!r}: expected text, {example}")
    if not text.strip():
        raise InvalidArgument(f"invalid {what} {quote(text)}: it is empty, {example}")
    if len(text) > _MAX_INPUT:
        raise InvalidArgument(f"invalid {what} {quote(text)}: too long, {example}")
    if text.strip().startswith("-"):
        raise InvalidArgument(f"invalid {what} {quote(text)}: must not be negative, {example}")
    return text


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``"512"``, ``"512k"``, ``"2M"``, ``"1.5GiB"``, ``"100MB"``.

    See the module docstring for the units. Zero is allowed; negative values are not.
    """
    _check_text(text, "size", SIZE_EXAMPLE)
    return _size(text, "size", SIZE_EXAMPLE, text)


def parse_rate(text: str) -> int:
    """Bytes per second in ``text``: ``"10M"``, ``"10MB/s"``, ``"500k/s"``, ``"1GiB/sec"``.

    A size with an optional ``/s`` (or ``/sec``); the size units are those of
    :func:`parse_size`. Zero is refused: a rate limit of zero would stall all I/O (to
    remove a limit, leave it unset).
    """
    _check_text(text, "rate", RATE_EXAMPLE)
    value = _size(_RATE_SUFFIX.sub("", text), "rate", RATE_EXAMPLE, text)
    if value == 0:
        raise InvalidArgument(
            f"invalid rate {quote(text)}: must be more than 0 bytes/s, {RATE_EXAMPLE}"
        )
    return value


def parse_cpu(text: str) -> float:
    """Cores in ``text``: ``"1.5"``, ``"0.2"``, ``"2"``, or a percentage of one core, ``"150%"``."""
    _check_text(text, "cpu amount", CPU_EXAMPLE)
    match = _CPU.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(
            f"invalid cpu amount {quote(text)}: give a number of cores, {CPU_EXAMPLE}"
        )
    cores = Fraction(match["num"]) / (100 if match["pct"] else 1)
    if cores == 0:
        raise InvalidArgument(
            f"invalid cpu amount {quote(text)}: must be more than 0, {CPU_EXAMPLE}"
        )
    return float(cores)


def format_size(n: int) -> str:
    """``n`` bytes for people: ``"512 B"``, ``"1.5 KiB"``, ``"2 GiB"`` (binary units, 1 decimal).

    It uses spellings :func:`parse_size` accepts, so a shown size can be typed back.
    """
    if n < 0:
        return "-" + format_size(-n)
    power = 0
    while power < len(_BINARY) - 1 and n >= 1024 ** (power + 1):
        power += 1
    if power == 0:
        return f"{n} B"
    shown = f"{n / 1024**power:.1f}"
    if float(shown) >= 1024 and power < len(_BINARY) - 1:  # 1023.97 KiB shows as 1 MiB
        power += 1
        shown = f"{n / 1024**power:.1f}"
    return f"{shown.removesuffix('.0')} {_BINARY[power]}"


def format_duration(seconds: float) -> str:
    """A duration for people, at most two components, rounded down.

    ``"350ms"``, ``"4.2s"``, ``"45s"``, ``"3m12s"``, ``"2h05m"``, ``"1d3h"``. The shape
    depends only on the magnitude (``"5m00s"``, not ``"5m"``) so columns line up.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format a duration of {seconds} seconds")
    if seconds < 0:
        return "-" + format_duration(-seconds)
    # Round away float noise (2.3 * 10 == 22.999...) before rounding down.
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{math.floor(round(seconds * 1000, 6))}ms"
    if seconds < 10:
        tenths = math.floor(round(seconds * 10, 6))
        return f"{tenths // 10}s" if tenths % 10 == 0 else f"{tenths / 10:.1f}s"
    total = math.floor(round(seconds, 6))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{minutes}m{secs:02d}s"
    if total < 86400:
        hours, rest = divmod(total, 3600)
        return f"{hours}h{rest // 60:02d}m"
    days, rest = divmod(total, 86400)
    return f"{days}d{rest // 3600}h"

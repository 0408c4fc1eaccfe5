"""Delays for retry loops: one place for the doubling-with-a-cap every loop used.

Hand-written rather than tenacity: the loops differ in what they wait with (``time``,
``asyncio``, a deadline) and what they retry on, so only the delays are shared, and a
generator is all that takes (no dependency on the CLI's import path).
"""

from __future__ import annotations

from collections.abc import Iterator


def delays(first: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """``first``, then each delay ``factor`` times the last, capped at ``maximum``; endless."""
    if not 0 < first <= maximum or factor < 1:
        raise ValueError(f"bad backoff: first={first} maximum={maximum} factor={factor}")
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, maximum)

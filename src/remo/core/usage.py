"""What a running job uses now: one :class:`Sample` read from its cgroups, and the
:class:`LiveUsage` (rates) of two samples.

A sample is totals (CPU seconds, bytes read and written) and levels (memory now and at
its peak, processes); rates come from the difference of two samples over the time
between them, so "CPU %" means the last interval, as ``top`` and ``docker stats`` show.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Samples closer together than this give rates too noisy to show: the older one stays.
MIN_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a job's cgroups at ``at`` (monotonic seconds); None: not known."""

    at: float
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    peak_memory_bytes: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    processes: int | None = None


@dataclass(frozen=True, slots=True)
class LiveUsage:
    """A running job's usage now, and over the last ``interval_seconds``."""

    sample: Sample
    interval_seconds: float
    #: CPU used over the interval, in cores (1.0: one core busy all the time).
    cpu_cores: float | None = None
    io_read_bytes_per_second: float | None = None
    io_write_bytes_per_second: float | None = None


def rates(before: Sample, now: Sample) -> LiveUsage:
    """The usage over the time between two samples of one job (``before`` may be the
    job's start: a zero sample at its start time)."""
    interval = now.at - before.at
    if interval <= 0:
        return LiveUsage(now, 0.0)

    def per_second(a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return None
        return max(0.0, (b - a) / interval)

    return LiveUsage(
        now,
        interval,
        cpu_cores=per_second(before.cpu_seconds, now.cpu_seconds),
        io_read_bytes_per_second=per_second(before.io_read_bytes, now.io_read_bytes),
        io_write_bytes_per_second=per_second(before.io_write_bytes, now.io_write_bytes),
    )

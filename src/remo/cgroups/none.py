"""The ``none`` backend: no usable cgroups (not root, no cgroupfs, read-only mount).

Jobs still run, but nothing is limited or accounted, and the supervisor has to fall back
to killing the job's process group, which a process that called setsid(2) escapes.
:meth:`NoneDriver.warnings` says exactly that, so the server can log it at start-up.
"""

from __future__ import annotations

from remo.cgroups import base
from remo.core.outcome import Usage
from remo.core.spec import Limits
from remo.core.usage import Sample


class NoneGroup:
    """A job group that tracks nothing: every query answers "nothing known"."""

    def __init__(self, name: str) -> None:
        self.name = name

    def join_files(self) -> list[str]:
        return []

    def pids(self) -> list[int]:
        return []

    def signal_all(self, sig: int) -> None:
        """Nothing to signal: the supervisor signals the process group itself."""

    def kill(self) -> None:
        """Nothing to kill: the supervisor kills the process group itself."""

    def populated(self) -> bool:
        return False

    def usage(self) -> Usage:
        return Usage(cpu_seconds=None, peak_memory_bytes=None, oom_kills=0)

    def sample(self, at: float) -> Sample:
        return Sample(at)

    def destroy(self) -> None:
        """Nothing was created."""


class NoneDriver:
    """Refuses limits, hands out :class:`NoneGroup` otherwise."""

    name = "none"

    def __init__(self, reason: str) -> None:
        """``reason`` is a sentence saying why cgroups are off and what that costs."""
        self.reason = reason

    def warnings(self) -> list[str]:
        return [self.reason]

    def supported(self) -> frozenset[str]:
        return frozenset()

    def create(self, name: str, limits: Limits) -> NoneGroup:
        base.check_name(name)
        base.check_limits(limits, frozenset(), self.reason)
        return NoneGroup(name)

    def apply(self, group: base.JobGroup, limits: Limits) -> list[str]:
        base.check_limits(limits, frozenset(), self.reason)
        return []

    def open(self, name: str) -> NoneGroup | None:
        return None

    def list_names(self) -> list[str]:
        return []

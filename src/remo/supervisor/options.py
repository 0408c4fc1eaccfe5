"""How a state directory's supervisor runs: chosen by whoever starts it.

One value object, passed from :meth:`remo.worker.JobManager.open` through the launcher
to the supervisor's command line, so that adding a setting touches one place. The
settings apply when a supervisor is started; one that already runs keeps its own.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from remo.core.errors import InvalidArgument

#: A start fails when its command has not exec'd in this long. exec reads the program's
#: first pages; from a hung network filesystem that read never returns.
from remo.core.spec import EXEC_TIMEOUT

__all__ = ["EXEC_TIMEOUT", "SupervisorOptions"]


@dataclass(frozen=True)
class SupervisorOptions:
    """``linger``: seconds the supervisor stays after its last client left and its last
    job ended. ``namespaces``: jobs get PID and mount namespaces. ``cgroups``: jobs get
    cgroups (limits, usage figures, stop that reaches every process). ``exec_timeout``:
    seconds a start waits for its command to exec."""

    linger: float = 0.0
    namespaces: bool = True
    cgroups: bool = True
    exec_timeout: float = EXEC_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("linger", "exec_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}")
        if self.exec_timeout == 0:
            raise InvalidArgument("exec_timeout must be more than 0 seconds")
        object.__setattr__(self, "linger", float(self.linger))
        object.__setattr__(self, "exec_timeout", float(self.exec_timeout))

    def to_args(self) -> list[str]:
        """The supervisor's command-line arguments for these options."""
        args = ["--linger", repr(self.linger), "--exec-timeout", repr(self.exec_timeout)]
        if not self.namespaces:
            args.append("--no-namespaces")
        if not self.cgroups:
            args.append("--no-cgroups")
        return args

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--linger", type=float, default=0.0)
        parser.add_argument("--exec-timeout", type=float, default=EXEC_TIMEOUT)
        parser.add_argument("--no-namespaces", action="store_true")
        parser.add_argument("--no-cgroups", action="store_true")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SupervisorOptions:
        return cls(
            linger=args.linger,
            namespaces=not args.no_namespaces,
            cgroups=not args.no_cgroups,
            exec_timeout=args.exec_timeout,
        )

"""How a job ended, as one typed value: :data:`Outcome` and :class:`JobEnd`.

The supervisor decides a job's end once (:mod:`remo.supervisor.ending`) and passes it
as a :class:`JobEnd` to the store, which maps it to its columns in one place; the API
maps the stored :class:`~remo.core.status.JobStatus` in one place too. The outcome is a
sum type, as in pueue: a job either exited with a code, was ended by a signal, or remo
cannot know (its exit status was lost) — never a half-filled record.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from remo.core.status import JobState


@dataclass(frozen=True, slots=True)
class Exited:
    """The job's main process exited with ``code``."""

    code: int


@dataclass(frozen=True, slots=True)
class Signaled:
    """The job's main process was ended by ``signal``."""

    signal: int


@dataclass(frozen=True, slots=True)
class Lost:
    """Nobody recorded the job's exit status; ``why`` says how that happened."""

    why: str


Outcome = Exited | Signaled | Lost


@dataclass(frozen=True, slots=True)
class Usage:
    """What a job consumed, read once it has exited; ``None`` when the kernel cannot tell."""

    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    #: Processes of the job's cgroup the out-of-memory killer killed.
    oom_kills: int = 0


@dataclass(frozen=True, slots=True)
class Dropped:
    """Output the job's init dropped: past the job's cap, or while the disk was full."""

    bytes: int = 0
    disk_full: bool = False


@dataclass(frozen=True, slots=True)
class JobEnd:
    """Everything recorded when a job ends."""

    outcome: Outcome
    #: Someone asked remo to stop the job before it ended.
    stop_requested: bool = False
    usage: Usage = field(default_factory=Usage)
    dropped: Dropped = field(default_factory=Dropped)
    #: A note for the user; for :class:`Lost`, why it was lost comes first.
    note: str = ""
    ended_at: float = field(default_factory=time.time)

    @property
    def state(self) -> JobState:
        match self.outcome:
            case Lost():
                return JobState.LOST
            case _ if self.stop_requested:
                return JobState.STOPPED
            case Signaled():
                return JobState.KILLED
            case Exited(code):
                return JobState.SUCCEEDED if code == 0 else JobState.FAILED

    @property
    def exit_code(self) -> int | None:
        return self.outcome.code if isinstance(self.outcome, Exited) else None

    @property
    def signal(self) -> int | None:
        return self.outcome.signal if isinstance(self.outcome, Signaled) else None

    @property
    def oom_killed(self) -> bool:
        """The main process was the out-of-memory killer's victim.

        The kernel counts OOM kills per cgroup, not per process: the main process was
        the victim when it died of a SIGKILL remo did not send while the count rose.
        """
        return (
            self.signal == signal.SIGKILL and not self.stop_requested and self.usage.oom_kills > 0
        )

    @property
    def reason(self) -> str:
        """The one sentence ``status`` shows about how the job ended."""
        if isinstance(self.outcome, Lost):
            reason = self.outcome.why
            if self.note:
                reason = f"{reason}; {self.note}"
            if self.usage.oom_kills:
                reason += f" ({self.usage.oom_kills} out-of-memory kill(s) in the job's cgroup)"
            return reason
        if self.oom_killed and not self.note:
            return "killed by the out-of-memory killer: the job exceeded its memory limit"
        return self.note


def wait_status_outcome(wait_status: int) -> Exited | Signaled:
    """The outcome a ``waitpid`` status describes."""
    if os.WIFSIGNALED(wait_status):
        return Signaled(os.WTERMSIG(wait_status))
    return Exited(os.waitstatus_to_exitcode(wait_status))

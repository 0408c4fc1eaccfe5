"""What a job is doing or did: :class:`JobState` and :class:`JobStatus`."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field

from remo.core.spec import Limits
from remo.core.usage import LiveUsage


class JobState(enum.StrEnum):
    """Lifecycle of a job. Every state but ``queued`` and ``running`` is final.

    - ``queued``: waiting in a cluster scheduler's queue (the Slurm backend only;
      ``reason`` says why it waits, in the scheduler's words).
    - ``succeeded``: exited with code 0.
    - ``failed``: exited with a non-zero code.
    - ``stopped``: ended after someone asked remo to stop it.
    - ``killed``: died from a signal nobody asked remo to send (OOM killer, kill -9...).
    - ``lost``: remo lost track of it (supervisor died); ``reason`` says why.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    KILLED = "killed"
    LOST = "lost"
    QUEUED = "queued"

    @property
    def final(self) -> bool:
        return self not in (JobState.RUNNING, JobState.QUEUED)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job, as stored by the supervisor."""

    id: str
    owner: str
    argv: tuple[str, ...]
    state: JobState
    pid: int | None
    exit_code: int | None
    signal: int | None
    started_at: float
    ended_at: float | None
    limits: Limits = field(default_factory=Limits)
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    #: The job's main process was killed by the out-of-memory killer.
    oom_killed: bool = False
    #: Processes of the job the out-of-memory killer killed (the main one included).
    oom_kills: int = 0
    reason: str = ""
    cwd: str = ""
    output_bytes: int = 0
    output_truncated: bool = False
    #: Output bytes dropped: past the output cap, or while the server's disk was full.
    output_dropped_bytes: int = 0
    #: Some were dropped because the disk was full (else only past the cap).
    output_dropped_disk_full: bool = False
    isolation: tuple[str, ...] = ()
    schedule_id: str | None = None
    #: Name of the job's cgroup (the same in every hierarchy); empty without cgroups.
    cgroup: str = ""
    #: The job's name ("" without one; "NAME#K" for the K-th run of schedule NAME).
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    #: What the job uses now, when asked for (running jobs only).
    live: LiveUsage | None = None

    @property
    def ended(self) -> bool:
        return self.state.final

    @property
    def exit_status(self) -> int | None:
        """The shell-style exit status of a finished job: its exit code, or 128+N when
        signal N ended it (as a shell reports ``$?``). ``None`` while the job runs, or
        when remo lost track of it (state ``lost``)."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + self.signal
        return None


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 64`` for a number with no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

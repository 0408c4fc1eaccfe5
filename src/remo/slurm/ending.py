"""How a Slurm job ended: from the init's status file first, else from Slurm.

The init (:mod:`remo.slurm.jobinit`) writes the job's wait status when the job's main
process ends: that is the exit code or signal remo reports, as the local backend
does. When there is none, the init itself was killed (a stop's KILL, ``scancel``,
Slurm's time limit, the OOM killer) or never started (stopped in the queue), and
Slurm's final state says which.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from remo.core.outcome import Dropped, Exited, JobEnd, Lost, Outcome, Signaled, Usage
from remo.core.paths import STATUS_FILE
from remo.core.status import JobState
from remo.slurm.commands import QueueEntry

#: Slurm states in which it killed the job's processes itself.
KILLED_BY_SLURM = frozenset({"CANCELLED", "TIMEOUT", "DEADLINE", "PREEMPTED", "OUT_OF_MEMORY"})


@dataclass(frozen=True)
class InitStatus:
    """What the init wrote: ``wait_status`` None while the job runs."""

    wait_status: int | None
    written: int = 0
    dropped: int = 0
    disk_full: bool = False
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None


@dataclass(frozen=True)
class NeverRan:
    """The job left Slurm before its init started: nothing ran, no exit status."""

    state: JobState
    reason: str


def read_status(job_dir: Path) -> InitStatus | None:
    """The init's status file (None: the init has not started: the file is missing, or
    empty as the server made it; the init writes ``-`` first thing)."""
    try:
        text = (job_dir / STATUS_FILE).read_text().split()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not text:
        return None
    if text[0] == "-" or not text[0].lstrip("-").isdigit():
        return InitStatus(None)
    try:
        return InitStatus(
            int(text[0]),
            int(text[1]),
            int(text[2]),
            text[3] == "1",
            float(text[4]),
            int(text[5]),
        )
    except (IndexError, ValueError):  # a record cut short: the wait status is what counts
        return InitStatus(int(text[0]))


def outcome_of(wait_status: int) -> Outcome:
    if os.WIFSIGNALED(wait_status):
        return Signaled(os.WTERMSIG(wait_status))
    return Exited(os.WEXITSTATUS(wait_status))


def decide(
    status: InitStatus | None,
    entry: QueueEntry | None,
    stop_requested: bool,
    seen_running: bool = False,
) -> JobEnd | NeverRan | None:
    """The end of the job, or None while it goes on. ``entry`` is Slurm's view (None:
    Slurm has forgotten the job); ``seen_running``: a poll saw Slurm run it (Slurm's
    start time cannot tell: for a queued job it is the expected start)."""
    oom = entry is not None and entry.state == "OUT_OF_MEMORY"
    if status is not None and status.wait_status is not None:
        killed = os.WIFSIGNALED(status.wait_status) and os.WTERMSIG(status.wait_status) == 9
        if killed and entry is not None and not entry.final:
            return None  # was it the OOM killer? Slurm's final state will say
        return JobEnd(
            outcome_of(status.wait_status),
            stop_requested=stop_requested,
            usage=Usage(status.cpu_seconds, status.peak_memory_bytes, int(oom)),
            dropped=Dropped(status.dropped, status.disk_full),
        )
    if entry is not None and not entry.final:
        return None
    said = f"Slurm: {entry.state}" + (f" ({entry.reason})" if entry.reason else "") if entry else ""
    if status is None:  # the init never started
        if stop_requested:
            when = "as Slurm was starting it" if seen_running else "while queued"
            return NeverRan(JobState.STOPPED, f"stopped {when}: it never ran")
        why = said or "Slurm forgot the job before it ran"
        return NeverRan(JobState.LOST, f"ended by Slurm before it ran ({why})")
    if entry is not None and entry.state in KILLED_BY_SLURM:
        return JobEnd(
            Signaled(signal.SIGKILL),
            stop_requested=stop_requested,
            usage=Usage(oom_kills=int(oom)),
            note=said,
        )
    why = said or "Slurm forgot the job and its init recorded no end"
    return JobEnd(Lost(f"the job's init ended without recording the job's end ({why})"))

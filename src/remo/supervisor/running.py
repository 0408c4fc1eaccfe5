"""The supervisor's table of running jobs: :class:`RunningJob` and :class:`JobTable`."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from remo.cgroups.base import JobGroup
from remo.core.paths import StatePaths
from remo.core.usage import Sample
from remo.store.jobs import job_key


def instance_tag(paths: StatePaths) -> str:
    """A short tag of the state dir: several remo servers may share one ``remo`` cgroup
    parent (they run in the same cgroup), so each only ever touches its own groups."""
    return hashlib.sha256(str(paths.root).encode()).hexdigest()[:8]


@dataclass
class RunningJob:
    """A job between its start and the recording of its end."""

    owner: str
    seq: int
    #: The job's init (our child, or a re-adopted init after a supervisor restart).
    pid: int
    group: JobGroup | None
    #: Where the init records the job's own wait status and output counts.
    status_file: Path
    pid_namespace: bool = False
    #: Taken over from a previous supervisor: not our child, watched through a pidfd.
    adopted: bool = False
    stop_requested: bool = False
    #: When the stop escalates to SIGKILL (unix time), kept in the job's row too.
    kill_at: float | None = None
    kill_timer: asyncio.TimerHandle | None = None
    #: The last reading of its cgroups kept for rates (see remo.core.usage).
    last_sample: Sample | None = None
    ended: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def key(self) -> str:
        return job_key(self.owner, self.seq)


class JobTable:
    """Running jobs by their init's pid and by ``owner/n``."""

    def __init__(self) -> None:
        self._by_pid: dict[int, RunningJob] = {}
        self._by_key: dict[str, RunningJob] = {}

    def add(self, job: RunningJob) -> None:
        self._by_pid[job.pid] = job
        self._by_key[job.key] = job

    def remove(self, job: RunningJob) -> None:
        del self._by_pid[job.pid]
        del self._by_key[job.key]

    def get(self, key: str) -> RunningJob | None:
        return self._by_key.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def all(self) -> list[RunningJob]:
        return list(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_pid)

"""What the SDK returns: plain frozen values, the same from :class:`~remo.client.Client`
and :class:`~remo.client.AsyncClient`. A job is :class:`~remo.core.status.JobStatus`, the
type the local library (:class:`remo.worker.JobManager`) returns too."""

from __future__ import annotations

from dataclasses import dataclass, field

from remo.api.jobs import duration, seconds_of, timestamp
from remo.core.spec import Limits
from remo.core.status import JobState, JobStatus
from remo.v1 import jobs_pb2 as pb

__all__ = [
    "JobPage",
    "JobState",
    "JobStatus",
    "Limits",
    "OutputChunk",
    "RunResult",
    "Schedule",
    "ScheduleRun",
    "StartResult",
    "WhoAmI",
]

#: Schedule-run outcomes on the wire, and as this SDK names them.
OUTCOME_NAMES: dict[pb.ScheduleRunOutcome, str] = {
    pb.SCHEDULE_RUN_OUTCOME_STARTED: "started",
    pb.SCHEDULE_RUN_OUTCOME_SKIPPED: "skipped",
    pb.SCHEDULE_RUN_OUTCOME_FAILED: "failed",
    pb.SCHEDULE_RUN_OUTCOME_CAUGHT_UP: "caught-up",
}
ROLE_NAMES: dict[int, str] = {
    pb.ROLE_VIEWER: "viewer",
    pb.ROLE_OPERATOR: "operator",
    pb.ROLE_ADMIN: "admin",
}


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """A piece of a job's output: bytes of one ``stream`` (``"stdout"`` or
    ``"stderr"``); ``data`` starts at byte ``offset`` of the merged output (stdout and
    stderr interleaved as written: resume there whatever streams you read); ``time``
    is when its first byte reached the server (seconds since the epoch; None for
    output of jobs from before times were kept)."""

    offset: int
    data: bytes
    stream: str = "stdout"
    time: float | None = None

    @property
    def end(self) -> int:
        """The offset to resume at after this chunk."""
        return self.offset + len(self.data)


@dataclass(frozen=True)
class JobOutput:
    """What ``output_many`` yields: a ``chunk`` of job ``job_id``'s output (the id as it
    was passed), or, once that job's output has ended, ``chunk`` None; ``error`` then
    says why it ended early (the job was removed), empty when it ended normally."""

    job_id: str
    chunk: OutputChunk | None
    error: str = ""

    @property
    def ended(self) -> bool:
        """True for the last item of this job: nothing more comes for it."""
        return self.chunk is None


@dataclass(frozen=True)
class ScheduleRun:
    """One due time of a schedule and what happened then.

    ``outcome`` is ``started``, ``skipped`` (the previous run was still running),
    ``failed`` (could not start; ``detail`` says why) or ``caught-up`` (run at start-up
    for a time missed while the server was down).
    """

    due_at: float
    outcome: str
    job_id: str
    detail: str


@dataclass(frozen=True)
class Schedule:
    """A delayed or recurring job. ``every_seconds`` is 0 for a one-off. Times are
    unix seconds."""

    id: str
    owner: str
    argv: tuple[str, ...]
    every_seconds: float
    next_run_at: float | None
    created_at: float
    active: bool
    recent_runs: tuple[ScheduleRun, ...] = ()
    #: Its runs are named NAME#1, NAME#2...; NAME alone is the latest run.
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, msg: pb.Schedule) -> Schedule:
        return cls(
            id=msg.id,
            owner=msg.owner,
            argv=tuple(msg.argv),
            every_seconds=seconds_of(msg.period) if msg.HasField("period") else 0.0,
            next_run_at=seconds_of(msg.next_run_time) if msg.HasField("next_run_time") else None,
            created_at=seconds_of(msg.create_time),
            active=msg.active,
            recent_runs=tuple(
                ScheduleRun(
                    seconds_of(r.due_time), OUTCOME_NAMES.get(r.outcome, "?"), r.job_id, r.detail
                )
                for r in msg.recent_runs
            ),
            name=msg.name,
            labels=dict(msg.labels),
        )

    def to_pb(self) -> pb.Schedule:
        """The wire's message again (for JSON in the wire's vocabulary)."""
        outcomes = {name: number for number, name in OUTCOME_NAMES.items()}
        msg = pb.Schedule(
            id=self.id,
            owner=self.owner,
            argv=list(self.argv),
            create_time=timestamp(self.created_at),
            active=self.active,
            name=self.name,
            labels=self.labels,
            recent_runs=[
                pb.ScheduleRun(
                    due_time=timestamp(r.due_at),
                    outcome=outcomes.get(r.outcome, pb.SCHEDULE_RUN_OUTCOME_UNSPECIFIED),
                    job_id=r.job_id,
                    detail=r.detail,
                )
                for r in self.recent_runs
            ],
        )
        if self.every_seconds:
            msg.period.CopyFrom(duration(self.every_seconds))
        if self.next_run_at is not None:
            msg.next_run_time.CopyFrom(timestamp(self.next_run_at))
        return msg


@dataclass(frozen=True)
class StartResult:
    """What a start created: a job (started now) or a schedule."""

    job: JobStatus | None = None
    schedule: Schedule | None = None


@dataclass(frozen=True)
class JobPage:
    """One page of a job listing; pass ``next_page_token`` for the next ("": last)."""

    jobs: list[JobStatus]
    next_page_token: str


@dataclass(frozen=True)
class RunResult:
    """A job run to its end by ``run``: its final status and its output."""

    job: JobStatus
    #: The job's output (stdout and stderr as written), when collected.
    output: bytes

    @property
    def exit_status(self) -> int | None:
        """The shell-style exit status (see :attr:`JobStatus.exit_status`)."""
        return self.job.exit_status


@dataclass(frozen=True)
class WhoAmI:
    """Who the server thinks the caller is, and what it says about itself."""

    user: str
    role: str
    serial: str
    not_after: float
    server_version: str
    protections_off: tuple[str, ...]

    @classmethod
    def from_pb(cls, msg: pb.WhoAmIResponse) -> WhoAmI:
        return cls(
            user=msg.user,
            role=ROLE_NAMES.get(msg.role, "?"),
            serial=msg.serial,
            not_after=seconds_of(msg.expire_time),
            server_version=msg.server_version,
            protections_off=tuple(msg.protections_off),
        )

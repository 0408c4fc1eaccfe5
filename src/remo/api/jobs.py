"""Jobs, states and times between core types and remo.v1 messages: one mapping, shared
by the server (to the wire) and the client SDK (from the wire)."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from remo.api.limits import limits_from_pb, limits_to_pb
from remo.core.status import JobState, JobStatus
from remo.core.usage import LiveUsage, Sample
from remo.v1 import jobs_pb2 as pb

#: Jobs one OutputMany call may name (``OutputManyRequest.jobs``; the proto says so).
MAX_OUTPUT_MANY_JOBS = 1000

STATE_TO_PB: dict[JobState, pb.JobState] = {
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.STOPPED: pb.JOB_STATE_STOPPED,
    JobState.KILLED: pb.JOB_STATE_KILLED,
    JobState.LOST: pb.JOB_STATE_LOST,
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
}
STATE_FROM_PB: dict[int, JobState] = {v: k for k, v in STATE_TO_PB.items()}


def state_to_pb(state: JobState) -> pb.JobState:
    return STATE_TO_PB[state]


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """Unix seconds as a Timestamp (microsecond precision, as stored)."""
    msg = timestamp_pb2.Timestamp()
    msg.FromMicroseconds(round(seconds * 1_000_000))
    return msg


def seconds_of(msg: timestamp_pb2.Timestamp | duration_pb2.Duration) -> float:
    """A Timestamp as unix seconds, or a Duration as seconds."""
    return msg.seconds + msg.nanos / 1e9


def duration(seconds: float) -> duration_pb2.Duration:
    msg = duration_pb2.Duration()
    msg.FromMicroseconds(round(seconds * 1_000_000))
    return msg


def job_to_pb(status: JobStatus, shown_id: str) -> pb.Job:
    """``status`` as the wire's Job, named ``shown_id`` (as the caller names it)."""
    msg = pb.Job(
        id=shown_id,
        owner=status.owner,
        argv=list(status.argv),
        state=STATE_TO_PB[status.state],
        pid=status.pid or 0,
        start_time=timestamp(status.started_at),
        limits=limits_to_pb(status.limits),
        oom_killed=status.oom_killed,
        oom_kills=status.oom_kills,
        reason=status.reason,
        cwd=status.cwd,
        isolation=list(status.isolation),
        schedule_id=status.schedule_id or "",
        output_dropped_bytes=status.output_dropped_bytes,
        output_dropped_disk_full=status.output_dropped_disk_full,
        name=status.name,
        labels=status.labels,
    )
    if status.exit_code is not None:
        msg.exit_code = status.exit_code
    if status.signal is not None:
        msg.signal = status.signal
    if status.ended_at is not None:
        msg.end_time.CopyFrom(timestamp(status.ended_at))
    if status.cpu_seconds is not None:
        msg.cpu_time.CopyFrom(duration(status.cpu_seconds))
    if status.peak_memory_bytes is not None:
        msg.peak_memory_bytes = status.peak_memory_bytes
    if status.live is not None:
        msg.live_usage.CopyFrom(usage_to_pb(status.live))
    return msg


def job_from_pb(msg: pb.Job) -> JobStatus:
    """The wire's Job as a :class:`JobStatus`. A state this client does not know (a
    newer server's) is shown as running, or lost once ended, with the reason saying so."""
    reason = msg.reason
    ended_at = seconds_of(msg.end_time) if msg.HasField("end_time") else None
    state = STATE_FROM_PB.get(msg.state)
    if state is None:
        state = JobState.RUNNING if ended_at is None else JobState.LOST
        reason = reason or f"state {msg.state} reported by the server"
    return JobStatus(
        id=msg.id,
        owner=msg.owner,
        argv=tuple(msg.argv),
        state=state,
        pid=msg.pid or None,
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        signal=msg.signal if msg.HasField("signal") else None,
        started_at=seconds_of(msg.start_time),
        ended_at=ended_at,
        limits=limits_from_pb(msg.limits),
        cpu_seconds=seconds_of(msg.cpu_time) if msg.HasField("cpu_time") else None,
        peak_memory_bytes=(msg.peak_memory_bytes if msg.HasField("peak_memory_bytes") else None),
        oom_killed=msg.oom_killed,
        oom_kills=msg.oom_kills,
        reason=reason,
        cwd=msg.cwd,
        output_truncated=msg.output_dropped_bytes > 0,
        output_dropped_bytes=msg.output_dropped_bytes,
        output_dropped_disk_full=msg.output_dropped_disk_full,
        isolation=tuple(msg.isolation),
        schedule_id=msg.schedule_id or None,
        name=msg.name,
        labels=dict(msg.labels),
        live=usage_from_pb(msg.live_usage) if msg.HasField("live_usage") else None,
    )


def usage_to_pb(usage: LiveUsage) -> pb.LiveUsage:
    sample = usage.sample
    msg = pb.LiveUsage(interval=duration(usage.interval_seconds))
    for field, value in (
        ("cpu_cores", usage.cpu_cores),
        ("memory_bytes", sample.memory_bytes),
        ("peak_memory_bytes", sample.peak_memory_bytes),
        ("io_read_bytes_per_second", usage.io_read_bytes_per_second),
        ("io_write_bytes_per_second", usage.io_write_bytes_per_second),
        ("processes", sample.processes),
    ):
        if value is not None:
            setattr(msg, field, value)
    if sample.cpu_seconds is not None:
        msg.cpu_time.CopyFrom(duration(sample.cpu_seconds))
    return msg


def usage_from_pb(msg: pb.LiveUsage) -> LiveUsage:
    def opt(name: str) -> Any:
        return getattr(msg, name) if msg.HasField(name) else None

    sample = Sample(
        at=0.0,
        cpu_seconds=seconds_of(msg.cpu_time) if msg.HasField("cpu_time") else None,
        memory_bytes=opt("memory_bytes"),
        peak_memory_bytes=opt("peak_memory_bytes"),
        processes=opt("processes"),
    )
    return LiveUsage(
        sample,
        seconds_of(msg.interval),
        cpu_cores=opt("cpu_cores"),
        io_read_bytes_per_second=opt("io_read_bytes_per_second"),
        io_write_bytes_per_second=opt("io_write_bytes_per_second"),
    )

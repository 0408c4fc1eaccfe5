"""Translation between remo's core types and remo.v1 messages. No policy lives here."""

from __future__ import annotations

from remo.api.v1 import jobs_pb2 as pb
from remo.core.errors import InvalidArgument
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobStatus


def limits_from_pb(msg: pb.Limits) -> Limits:
    def opt(name: str) -> int | None:
        return int(getattr(msg, name)) if msg.HasField(name) else None

    return Limits(
        cpu=msg.cpu_cores if msg.HasField("cpu_cores") else None,
        memory=opt("memory_bytes"),
        io_read_bps=opt("io_read_bps"),
        io_write_bps=opt("io_write_bps"),
        pids=opt("pids"),
    )


def limits_to_pb(limits: Limits) -> pb.Limits:
    msg = pb.Limits()
    if limits.cpu is not None:
        msg.cpu_cores = limits.cpu
    for field, value in (
        ("memory_bytes", limits.memory),
        ("io_read_bps", limits.io_read_bps),
        ("io_write_bps", limits.io_write_bps),
        ("pids", limits.pids),
    ):
        if value is not None:
            setattr(msg, field, value)
    return msg


def spec_from_pb(request: pb.StartRequest, owner: str) -> JobSpec:
    """Build a spec for ``owner`` (taken from the certificate, never from the request)."""
    spec = JobSpec(
        argv=list(request.argv),
        env=dict(request.env) or None,
        cwd=request.cwd or None,
        owner=owner,
        limits=limits_from_pb(request.limits),
        network=request.network or "host",
        private_tmp=request.private_tmp,
    )
    spec.validate()
    return spec


def status_to_pb(status: JobStatus, shown_id: str) -> pb.JobStatus:
    msg = pb.JobStatus(
        id=shown_id,
        owner=status.owner,
        argv=list(status.argv),
        state=status.state.value,
        pid=status.pid or 0,
        started_at=status.started_at,
        limits=limits_to_pb(status.limits),
        oom_killed=status.oom_killed,
        reason=status.reason,
        cwd=status.cwd,
        isolation=list(status.isolation),
        schedule_id=status.schedule_id or "",
        output_truncated=status.output_truncated,
    )
    if status.exit_code is not None:
        msg.exit_code = status.exit_code
    if status.signal is not None:
        msg.signal = status.signal
    if status.ended_at is not None:
        msg.ended_at = status.ended_at
    if status.cpu_seconds is not None:
        msg.cpu_seconds = status.cpu_seconds
    if status.peak_memory_bytes is not None:
        msg.peak_memory_bytes = status.peak_memory_bytes
    return msg


def check_offset(offset: int) -> int:
    if offset < 0:
        raise InvalidArgument(f"offset must be >= 0, got {offset}")
    return offset

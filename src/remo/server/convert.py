"""Translation between remo's core types and remo.v1 messages. No policy lives here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from remo.api.limits import limits_from_pb, limits_to_pb
from remo.api.v1 import jobs_pb2 as pb
from remo.core.errors import InvalidArgument
from remo.core.spec import NETWORK_MODES, JobSpec
from remo.core.status import JobStatus
from remo.core.timeexpr import parse_at
from remo.schedule.store import Schedule

#: Longest period or delay a schedule may have (ten years).
MAX_SCHEDULE_SECONDS = 10 * 366 * 86400.0


@dataclass(frozen=True)
class NetworkPolicy:
    """The server's network settings: a default, and whether ``none`` is forced."""

    default: str = "host"
    force_none: bool = False

    def choose(self, requested: str) -> str:
        if requested and requested not in NETWORK_MODES:
            raise InvalidArgument(f"network must be one of {', '.join(NETWORK_MODES)}")
        if self.force_none:
            return "none"
        return requested or self.default


def due_times(when: pb.When) -> tuple[float, float | None]:
    """First due time (unix seconds) and period of a schedule request."""
    now = time.time()
    every = when.every_seconds or None
    if every is not None and not 1 <= every <= MAX_SCHEDULE_SECONDS:
        raise InvalidArgument("the period must be between 1 second and 10 years")
    if when.at:
        first = parse_at(when.at, datetime.now().astimezone()).timestamp()
    elif when.HasField("at_unix"):
        first = when.at_unix
        if first < now - 1:
            raise InvalidArgument("the requested time is in the past")
    else:
        if not 0 <= when.delay_seconds <= MAX_SCHEDULE_SECONDS:
            raise InvalidArgument("the delay must be between 0 and 10 years")
        first = now + when.delay_seconds
    if not first <= now + MAX_SCHEDULE_SECONDS:  # also refuses NaN and infinity
        raise InvalidArgument("the first run must be within 10 years")
    return first, every


def schedule_to_pb(schedule: Schedule, viewer: str) -> pb.Schedule:
    owner_prefix = "" if schedule.owner == viewer else f"{schedule.owner}/"
    msg = pb.Schedule(
        id=f"{owner_prefix}s{schedule.seq}",
        owner=schedule.owner,
        argv=list(schedule.spec.argv),
        every_seconds=schedule.every or 0.0,
        created_at=schedule.created_at,
        active=schedule.active,
        recent_runs=[
            pb.ScheduleRun(
                due_at=r.due_at,
                outcome=r.outcome,
                job_id=r.job_id.partition("/")[2]
                if r.job_id.startswith(f"{viewer}/")
                else r.job_id,
                detail=r.detail,
            )
            for r in schedule.recent
        ],
    )
    if schedule.next_due is not None:
        msg.next_run_at = schedule.next_due
    return msg


def spec_from_pb(request: pb.StartRequest, owner: str, network: str = "host") -> JobSpec:
    """Build a spec for ``owner`` (taken from the certificate, never from the request)."""
    spec = JobSpec(
        argv=list(request.argv),
        env=dict(request.env) or None,
        cwd=request.cwd or None,
        owner=owner,
        limits=limits_from_pb(request.limits),
        network=network,
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
        oom_kills=status.oom_kills,
        reason=status.reason,
        cwd=status.cwd,
        isolation=list(status.isolation),
        schedule_id=status.schedule_id or "",
        output_truncated=status.output_truncated,
        output_dropped_bytes=status.output_dropped_bytes,
        output_dropped_disk_full=status.output_dropped_disk_full,
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

"""Translation between remo's core types and remo.v1 messages. No policy lives here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remo.api.jobs import duration, seconds_of, timestamp
from remo.api.limits import limits_from_pb
from remo.core.errors import InvalidArgument
from remo.core.spec import JobSpec, check_name
from remo.core.timeexpr import parse_at
from remo.schedule.store import Schedule
from remo.v1 import jobs_pb2 as pb

#: Longest period or delay a schedule may have (ten years).
MAX_SCHEDULE_SECONDS = 10 * 366 * 86400.0


#: Schedule-run outcomes as stored, and on the wire.
OUTCOMES: dict[str, pb.ScheduleRunOutcome] = {
    "started": pb.SCHEDULE_RUN_OUTCOME_STARTED,
    "skipped": pb.SCHEDULE_RUN_OUTCOME_SKIPPED,
    "failed": pb.SCHEDULE_RUN_OUTCOME_FAILED,
    "caught-up": pb.SCHEDULE_RUN_OUTCOME_CAUGHT_UP,
}
NETWORKS: dict[int, str] = {pb.NETWORK_HOST: "host", pb.NETWORK_NONE: "none"}


@dataclass(frozen=True)
class NetworkPolicy:
    """The server's network settings: a default, and whether ``none`` is forced."""

    default: str = "host"
    force_none: bool = False

    def choose(self, requested: int) -> str:
        if requested and requested not in NETWORKS:
            raise InvalidArgument(f"unknown network {requested}", field="network")
        if self.force_none:
            return "none"
        return NETWORKS.get(requested) or self.default


def checked_seconds(msg: Any, field: str) -> float:
    """A request's Timestamp or Duration as seconds, refusing what protobuf calls
    malformed (nanos out of range, or of the other sign than seconds)."""
    if not -999_999_999 <= msg.nanos <= 999_999_999 or msg.seconds * msg.nanos < 0:
        raise InvalidArgument(f"{field}: malformed (nanos {msg.nanos})", field=field)
    return seconds_of(msg)


def due_times(when: pb.When) -> tuple[float, float | None]:
    """First due time (unix seconds) and period of a schedule request."""
    now = time.time()
    every = checked_seconds(when.period, "when.period") if when.HasField("period") else None
    if every is not None and not 1 <= every <= MAX_SCHEDULE_SECONDS:
        raise InvalidArgument(
            "the period must be between 1 second and 10 years", field="when.period"
        )
    first_run = when.WhichOneof("first_run")
    if first_run == "time_expression":
        first = parse_at(when.time_expression, datetime.now().astimezone()).timestamp()
    elif first_run == "time":
        first = checked_seconds(when.time, "when.time")
        if first < now - 1:
            raise InvalidArgument("the requested time is in the past", field="when.time")
    else:
        delay = checked_seconds(when.delay, "when.delay")
        if not 0 <= delay <= MAX_SCHEDULE_SECONDS:
            raise InvalidArgument("the delay must be between 0 and 10 years", field="when.delay")
        first = now + delay
    if not first <= now + MAX_SCHEDULE_SECONDS:  # also refuses NaN and infinity
        raise InvalidArgument("the first run must be within 10 years", field="when")
    return first, every


def schedule_to_pb(schedule: Schedule, viewer: str) -> pb.Schedule:
    owner_prefix = "" if schedule.owner == viewer else f"{schedule.owner}/"
    msg = pb.Schedule(
        id=f"{owner_prefix}s{schedule.seq}",
        owner=schedule.owner,
        argv=list(schedule.spec.argv),
        create_time=timestamp(schedule.created_at),
        active=schedule.active,
        name=schedule.spec.name,
        labels=dict(schedule.spec.labels or {}),
        recent_runs=[
            pb.ScheduleRun(
                due_time=timestamp(r.due_at),
                outcome=OUTCOMES.get(r.outcome, pb.SCHEDULE_RUN_OUTCOME_UNSPECIFIED),
                job_id=r.job_id.partition("/")[2]
                if r.job_id.startswith(f"{viewer}/")
                else r.job_id,
                detail=r.detail,
            )
            for r in schedule.recent
        ],
    )
    if schedule.every:
        msg.period.CopyFrom(duration(schedule.every))
    if schedule.next_due is not None:
        msg.next_run_time.CopyFrom(timestamp(schedule.next_due))
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
        name=request.name,
        labels=dict(request.labels) or None,
    )
    check_name(request.name)  # a user's name: never "NAME#K", which runs of schedules get
    spec.validate()
    return spec


def check_offset(offset: int) -> int:
    if offset < 0:
        raise InvalidArgument(f"offset must be >= 0, got {offset}", field="offset")
    return offset

"""The one table that turns remo errors into gRPC status codes."""

from __future__ import annotations

import grpc

from remo.core.errors import (
    CgroupError,
    InvalidArgument,
    JobNotFound,
    JobStillRunning,
    RemoError,
    ResourceExhausted,
    StartFailed,
    SupervisorUnavailable,
)
from remo.server.ids import is_schedule_id

STATUS_CODES: list[tuple[type[RemoError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (StartFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (JobStillRunning, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (SupervisorUnavailable, grpc.StatusCode.UNAVAILABLE),
    (CgroupError, grpc.StatusCode.INTERNAL),
]


def status_code(err: RemoError) -> grpc.StatusCode:
    for cls, code in STATUS_CODES:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


def public_message(err: RemoError, shown_id: str | None = None) -> str:
    """One sentence for the user; job and schedule ids are shown as the caller named them."""
    if isinstance(err, JobNotFound):
        named = shown_id or err.job_id
        return f"no {'schedule' if is_schedule_id(named) else 'job'} {named}"
    if isinstance(err, JobStillRunning):
        named = shown_id or err.job_id
        return (
            f"job {named} is still running: stop it first (remo stop {named}), "
            f"or stop and remove it at once with remo rm --stop {named}"
        )
    if isinstance(err, StartFailed):
        return str(err)
    return str(err)

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
    """One sentence for the user; job ids are shown as the caller named them."""
    if isinstance(err, JobNotFound):
        return f"no job {shown_id or err.job_id}"
    if isinstance(err, JobStillRunning):
        return f"job {shown_id or err.job_id} is still running: stop it first (remo stop)"
    if isinstance(err, StartFailed):
        return str(err)
    return str(err)

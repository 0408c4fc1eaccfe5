"""Errors on the wire: the one table that turns remo errors into gRPC status codes, and
the ``google.rpc.Status`` every refusal carries (an ``ErrorInfo`` with a stable reason;
a ``BadRequest`` naming the field for bad input), built with grpcio-status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from remo.core.errors import (
    CgroupError,
    InvalidArgument,
    JobNotFound,
    JobNotRunning,
    JobStillRunning,
    NameTaken,
    PermissionDenied,
    RemoError,
    ResourceExhausted,
    StartFailed,
    StdinNotOpen,
    SupervisorUnavailable,
)
from remo.server.ids import is_schedule_id

#: ``ErrorInfo.domain`` of every remo error.
DOMAIN = "remo"

STATUS_CODES: list[tuple[type[RemoError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (StartFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (JobStillRunning, grpc.StatusCode.FAILED_PRECONDITION),
    (JobNotRunning, grpc.StatusCode.FAILED_PRECONDITION),
    (StdinNotOpen, grpc.StatusCode.FAILED_PRECONDITION),
    (NameTaken, grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (SupervisorUnavailable, grpc.StatusCode.UNAVAILABLE),
    (CgroupError, grpc.StatusCode.INTERNAL),
]


def status_code(err: RemoError) -> grpc.StatusCode:
    for cls, code in STATUS_CODES:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


def refusal(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    *,
    metadata: Mapping[str, str] | None = None,
    field: str = "",
) -> grpc.Status:
    """A status to abort a call with: ``code`` and ``message``, and in the
    ``grpc-status-details-bin`` trailer an ``ErrorInfo`` (and a ``BadRequest`` when a
    ``field`` is at fault)."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))
    details = [info]
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        details.append(bad)
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=details)
    )


def status_of(err: RemoError, shown_id: str | None = None) -> grpc.Status:
    """The status for ``err``; ids in the message as the caller named them."""
    reason = err.reason
    if isinstance(err, JobNotFound) and is_schedule_id(shown_id or err.job_id):
        reason = "SCHEDULE_NOT_FOUND"
    return refusal(
        status_code(err),
        public_message(err, shown_id),
        reason,
        metadata=err.metadata(),
        field=err.field if isinstance(err, InvalidArgument) else "",
    )


def unauthenticated(err: Exception, reason: str) -> grpc.Status:
    """The status of a call whose certificate is refused (``err`` says why)."""
    return refusal(grpc.StatusCode.UNAUTHENTICATED, str(err), reason)


async def abort(context: Any, status: grpc.Status) -> None:
    """End the call with ``status`` (raises, as ``context.abort`` does)."""
    await context.abort(status.code, status.details, status.trailing_metadata)


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
    if isinstance(err, JobNotRunning):
        return f"job {shown_id or err.job_id} is not running"
    if isinstance(err, StdinNotOpen):
        return str(err).replace(err.job_id, shown_id or err.job_id, 1)
    return str(err)

"""Framing for the supervisor socket: a 4-byte big-endian length, then a JSON object.

JSON keeps the protocol debuggable with ``socat``; messages are small (a job spec is at
most ~1 MiB of argv), so its cost does not show next to fork and exec.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
from typing import Any

from remo.core.errors import (
    InvalidArgument,
    JobNotFound,
    JobNotRunning,
    JobStillRunning,
    NameTaken,
    RemoError,
    ResourceExhausted,
    StartFailed,
    SupervisorUnavailable,
)
from remo.core.usage import LiveUsage, Sample

MAX_MESSAGE = 8 << 20
_HEADER = struct.Struct(">I")


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Read one message; None on a clean EOF between messages."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise ConnectionError("supervisor connection closed mid-message") from err
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ConnectionError(f"supervisor message of {size} bytes is too large")
    body = await reader.readexactly(size)
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ConnectionError("supervisor message is not an object")
    return message


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def error_to_wire(err: RemoError) -> dict[str, Any]:
    """Serialize an error so the other side can raise the same class."""
    wire: dict[str, Any] = {"type": type(err).__name__, "message": str(err), "reason": err.reason}
    if isinstance(err, StartFailed):
        wire.update(stage=err.stage, errno=err.errno, detail=err.detail)
    if isinstance(err, JobNotFound | JobStillRunning | JobNotRunning):
        wire.update(job_id=err.job_id)
    if isinstance(err, InvalidArgument):
        wire.update(field=err.field)
    if isinstance(err, NameTaken):
        wire.update(name=err.name)
    return wire


def error_from_wire(wire: dict[str, Any]) -> RemoError:
    kind = wire.get("type")
    message = str(wire.get("message", "supervisor error"))
    if kind == "StartFailed":
        return StartFailed(str(wire["stage"]), wire.get("errno"), str(wire["detail"]))
    if kind == "JobNotFound":
        return JobNotFound(str(wire["job_id"]))
    if kind == "JobStillRunning":
        return JobStillRunning(str(wire["job_id"]))
    if kind == "JobNotRunning":
        return JobNotRunning(str(wire["job_id"]))
    if kind == "NameTaken":
        return NameTaken(str(wire["name"]))
    reason = str(wire.get("reason") or "")
    if kind == "InvalidArgument":
        return InvalidArgument(message, field=str(wire.get("field") or ""), reason=reason)
    if kind == "ResourceExhausted":
        return ResourceExhausted(message, reason=reason)
    if kind == "RemoError":
        return RemoError(message)  # a fault of the supervisor's: INTERNAL, not a retry
    if kind == "CgroupError":
        return RemoError(message)  # a server-side fault, not "supervisor unavailable"
    return SupervisorUnavailable(message)


def usage_to_wire(usage: LiveUsage) -> dict[str, Any]:
    """A :class:`LiveUsage` as JSON (the ``usage`` operation's answer)."""
    return {
        "sample": dataclasses.asdict(usage.sample),
        "interval_seconds": usage.interval_seconds,
        "cpu_cores": usage.cpu_cores,
        "io_read_bytes_per_second": usage.io_read_bytes_per_second,
        "io_write_bytes_per_second": usage.io_write_bytes_per_second,
    }


def usage_from_wire(wire: dict[str, Any]) -> LiveUsage:
    return LiveUsage(
        Sample(**wire["sample"]),
        float(wire["interval_seconds"]),
        cpu_cores=wire.get("cpu_cores"),
        io_read_bytes_per_second=wire.get("io_read_bytes_per_second"),
        io_write_bytes_per_second=wire.get("io_write_bytes_per_second"),
    )

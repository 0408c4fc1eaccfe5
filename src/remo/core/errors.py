"""The exceptions remo raises. One base class, a few data-carrying subclasses.

Each error has a stable ``reason`` (the ``ErrorInfo.reason`` a program acts on; the list
is in proto/remo/v1/jobs.proto and docs/API.md) and, for bad input, the ``field`` it
concerns. The API layer maps each class to exactly one gRPC status code
(:mod:`remo.server.errors`); nothing below that layer knows about gRPC.
"""

from __future__ import annotations

import errno as errno_mod
import os


class RemoError(Exception):
    """Base class of every error remo raises on purpose."""

    #: The stable name of what went wrong (``ErrorInfo.reason`` on the wire).
    reason = "INTERNAL"

    def metadata(self) -> dict[str, str]:
        """Facts a program may act on (``ErrorInfo.metadata``); values are strings."""
        return {}


class InvalidArgument(RemoError):
    """Raised when a request is malformed: empty argv, NUL in an argument, bad limits.

    ``field`` names the request field at fault (``argv``, ``limits.memory_bytes``), when
    one is; ``reason`` may be narrower than ``BAD_REQUEST`` (``LIMIT_OUT_OF_RANGE``).
    """

    reason = "BAD_REQUEST"

    def __init__(self, message: str, *, field: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.field = field
        if reason:
            self.reason = reason


class JobNotFound(RemoError):
    """Raised when no job (visible to the caller) has the given id."""

    reason = "JOB_NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class StartFailed(RemoError):
    """Raised by ``start`` when the job could not be started.

    ``stage`` names the step that failed (``exec``, ``chdir``, ``cgroup``, ``user``,
    ``namespace``...), ``errno`` carries the OS reason when there is one.
    """

    reason = "START_FAILED"

    def __init__(self, stage: str, err: int | None, detail: str) -> None:
        self.stage = stage
        self.errno = err
        self.detail = detail
        reason = os.strerror(err) if err else ""
        text = f"{detail}: {reason}" if reason else detail
        super().__init__(text)

    @property
    def errno_name(self) -> str:
        """Symbolic errno name such as ``ENOENT`` (empty when there is none)."""
        return errno_mod.errorcode.get(self.errno or 0, "")

    def metadata(self) -> dict[str, str]:
        return {"stage": self.stage, "errno": self.errno_name}


class CgroupError(RemoError):
    """Raised when a cgroup file cannot be written or read; names path, file and operation."""

    def __init__(self, path: str, file: str, op: str, err: OSError) -> None:
        super().__init__(f"cgroup {op} {path}/{file}: {err.strerror or err}")
        self.path = path
        self.file = file
        self.op = op
        self.errno = err.errno


class PermissionDenied(RemoError):
    """Raised when the caller's role does not allow the request."""

    reason = "ROLE_NOT_ALLOWED"


class SupervisorUnavailable(RemoError):
    """Raised when the supervisor process cannot be reached or started."""

    reason = "SERVER_UNAVAILABLE"


class ResourceExhausted(RemoError):
    """Raised when the server cannot take more work right now: its disk is full
    (``SERVER_DISK_FULL``)."""

    reason = "SERVER_DISK_FULL"

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class TooManyOutputs(ResourceExhausted):
    """Raised when a read of job output would take the caller (or the server) past the
    outputs it may hold open at once (``TOO_MANY_OUTPUTS``)."""

    reason = "TOO_MANY_OUTPUTS"


class JobStillRunning(RemoError):
    """Raised when an operation needs a finished job (``remove``) but the job is running."""

    reason = "JOB_STILL_RUNNING"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is still running: stop it first")
        self.job_id = job_id


class NameTaken(RemoError):
    """Raised when a start names a job with a name one of the owner's jobs or schedules
    already has."""

    reason = "NAME_TAKEN"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the name {name!r} is taken by another of your jobs or schedules: remove it "
            "(remo rm) or choose another"
        )
        self.name = name

    def metadata(self) -> dict[str, str]:
        return {"name": self.name}


class JobNotRunning(RemoError):
    """Raised when an operation needs a running job (``kill``) but the job has ended."""

    reason = "JOB_NOT_RUNNING"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is not running")
        self.job_id = job_id


class StdinNotOpen(RemoError):
    """Raised when writing to a job's stdin that is not open for writing: the job was
    started without stdin, its stdin was written (and closed) already, or nobody wrote
    to it in time after the start and it was closed."""

    reason = "STDIN_NOT_OPEN"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id} has no stdin open for writing "
            "(started without stdin, written already, or closed after a minute unused)"
        )
        self.job_id = job_id

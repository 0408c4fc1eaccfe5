"""The exceptions remo raises. One base class, a few data-carrying subclasses.

The API layer maps each class to exactly one gRPC status code
(:mod:`remo.server.errors`); nothing below that layer knows about gRPC.
"""

from __future__ import annotations

import errno as errno_mod
import os


class RemoError(Exception):
    """Base class of every error remo raises on purpose."""


class InvalidArgument(RemoError):
    """Raised when a request is malformed: empty argv, NUL in an argument, bad limits."""


class JobNotFound(RemoError):
    """Raised when no job (visible to the caller) has the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class StartFailed(RemoError):
    """Raised by ``start`` when the job could not be started.

    ``stage`` names the step that failed (``exec``, ``chdir``, ``cgroup``, ``user``,
    ``namespace``...), ``errno`` carries the OS reason when there is one.
    """

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


class CgroupError(RemoError):
    """Raised when a cgroup file cannot be written or read; names path, file and operation."""

    def __init__(self, path: str, file: str, op: str, err: OSError) -> None:
        super().__init__(f"cgroup {op} {path}/{file}: {err.strerror or err}")
        self.path = path
        self.file = file
        self.op = op
        self.errno = err.errno


class SupervisorUnavailable(RemoError):
    """Raised when the supervisor process cannot be reached or started."""


class ResourceExhausted(RemoError):
    """Raised when the server cannot take more work right now (disk full, too many jobs)."""


class JobStillRunning(RemoError):
    """Raised when an operation needs a finished job (``remove``) but the job is running."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is still running: stop it first")
        self.job_id = job_id

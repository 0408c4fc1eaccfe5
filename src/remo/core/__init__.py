"""Plain data types shared by every layer of remo. No I/O happens here."""

from remo.core.errors import (
    CgroupError,
    InvalidArgument,
    JobNotFound,
    RemoError,
    StartFailed,
    SupervisorUnavailable,
)
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState, JobStatus

__all__ = [
    "CgroupError",
    "InvalidArgument",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStatus",
    "Limits",
    "RemoError",
    "StartFailed",
    "SupervisorUnavailable",
]

"""The remo client SDK: talk to a remo server from Python.

::

    from remo.client import Client

    with Client.from_profile() as remo:          # the default profile, or "build01"
        job = remo.start(["make", "test"]).job
        for chunk in remo.output(job.id, follow=True):
            sys.stdout.buffer.write(chunk.data)
        print(remo.wait(job.id).exit_code)

- :mod:`remo.client.connection`: :class:`Client` and the types it returns;
- :mod:`remo.client.profiles`: installed credentials (``remo login``) and which one to use;
- :mod:`remo.client.errors`: the errors raised, each with its CLI exit code.

Importing this package is cheap: grpc is loaded on first use of :class:`Client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remo.client.errors import (
    AuthError,
    ClientError,
    ConnectionFailed,
    CredentialProblem,
    NotFound,
    ProfileError,
    RemoteError,
    UsageError,
)

if TYPE_CHECKING:
    from remo.client.connection import (
        Client,
        JobList,
        OutputChunk,
        Schedule,
        ScheduleRun,
        StartResult,
        WhoAmI,
        job_exit_code,
    )

_LAZY = {
    "Client",
    "JobList",
    "OutputChunk",
    "Schedule",
    "ScheduleRun",
    "StartResult",
    "WhoAmI",
    "job_exit_code",
}

__all__ = [
    "AuthError",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "CredentialProblem",
    "JobList",
    "NotFound",
    "OutputChunk",
    "ProfileError",
    "RemoteError",
    "Schedule",
    "ScheduleRun",
    "StartResult",
    "UsageError",
    "WhoAmI",
    "job_exit_code",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from remo.client import connection

        return getattr(connection, name)
    raise AttributeError(f"module 'remo.client' has no attribute {name!r}")

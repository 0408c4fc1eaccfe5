"""The remo client SDK: talk to a remo server from Python (guide: docs/SDK.md).

::

    from remo.client import Client

    with Client.from_profile() as remo:          # the default profile, or "build01"
        result = remo.run(["make", "test"])
        print(result.exit_status)

- :class:`Client` (blocking, :mod:`remo.client.sync`) and :class:`AsyncClient`
  (asyncio, :mod:`remo.client.aio`): the same methods, the same types
  (:mod:`remo.client.types`);
- :mod:`remo.client.profiles`: installed credentials (``remo login``) and which to use;
- :mod:`remo.client.errors`: the errors raised, each with the server's ``reason`` and
  the CLI's exit code.

Importing this package is cheap: grpc is loaded on first use of a client. Nothing here
is Linux-only: the client runs on macOS too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remo.client.errors import (
    AuthError,
    ClientError,
    ConnectionFailed,
    CredentialProblem,
    CredentialRevoked,
    InvalidRequest,
    JobNotRunning,
    JobStillRunning,
    LimitOutOfRange,
    NameTaken,
    NotFound,
    PermissionDenied,
    ProfileError,
    RemoteError,
    ServerFull,
    StartFailed,
    StdinNotOpen,
    TooManyOutputs,
    Unauthenticated,
    UsageError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from remo.client.aio import AsyncClient
    from remo.client.follow import AsyncFollow, Follow
    from remo.client.sync import Client
    from remo.client.types import (
        JobOutput,
        JobPage,
        JobState,
        JobStatus,
        Limits,
        OutputChunk,
        RunResult,
        Schedule,
        ScheduleRun,
        StartResult,
        WhoAmI,
    )

_LAZY = {
    "Client": "remo.client.sync",
    "AsyncClient": "remo.client.aio",
    "Follow": "remo.client.follow",
    "AsyncFollow": "remo.client.follow",
    **dict.fromkeys(
        (
            "JobOutput",
            "JobPage",
            "JobState",
            "JobStatus",
            "Limits",
            "OutputChunk",
            "RunResult",
            "Schedule",
            "ScheduleRun",
            "StartResult",
            "WhoAmI",
        ),
        "remo.client.types",
    ),
}

__all__ = [
    "AsyncClient",
    "AsyncFollow",
    "AuthError",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "CredentialProblem",
    "CredentialRevoked",
    "Follow",
    "InvalidRequest",
    "JobNotRunning",
    "JobOutput",
    "JobPage",
    "JobState",
    "JobStatus",
    "JobStillRunning",
    "LimitOutOfRange",
    "Limits",
    "NameTaken",
    "NotFound",
    "OutputChunk",
    "PermissionDenied",
    "ProfileError",
    "RemoteError",
    "RunResult",
    "Schedule",
    "ScheduleRun",
    "ServerFull",
    "StartFailed",
    "StartResult",
    "StdinNotOpen",
    "TooManyOutputs",
    "Unauthenticated",
    "UsageError",
    "WaitTimeout",
    "WhoAmI",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'remo.client' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

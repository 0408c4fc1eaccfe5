"""What the ``remo`` verbs share: the profile option, connecting, id checks, hints.

Kept apart from :mod:`remo.cli.main` (which loads the verbs) so that the verbs import
this module and never the group that imports them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from remo.client.connection import Client

PROFILE_KEY = "remo.profile"
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

#: Whether a verb connected to a server (the group's error report differs if not).
connected = False


def remember_profile(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[PROFILE_KEY] = value


def profile_option(func: F) -> F:
    """``--profile FILE_OR_NAME`` on a verb (same as the global one, which it overrides)."""
    return click.option(
        "--profile",
        metavar="FILE_OR_NAME",
        expose_value=False,
        callback=remember_profile,
        help="Credential file or installed profile to use "
        "(default: $REMO_PROFILE, then the default profile).",
    )(func)


def chosen_profile() -> str | None:
    """The ``--profile`` value given on the command line, if any."""
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get(PROFILE_KEY) if ctx is not None else None
    return value if isinstance(value, str) else None


def connect() -> Client:
    """A client for the selected profile; checks the credential before any network I/O."""
    # grpc core prints handshake failures on stderr at INFO level; remo explains them.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from remo.client.connection import Client

    global connected
    connected = True
    return Client.from_profile(chosen_profile())


def hint_command(verb: str, job_id: str) -> str:
    """``remo <verb> [--profile P] <id>`` as the user would retype it."""
    profile = chosen_profile()
    flag = f" --profile {_shell_quote(profile)}" if profile else ""
    return f"remo {verb}{flag} {job_id}"


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


_ID = re.compile(r"^(?:(?P<owner>[a-z_][a-z0-9_.-]{0,31})/)?(?P<schedule>s)?(?P<n>[0-9]{1,18})$")


def check_id(value: str, *, schedules: bool = True, jobs: bool = True) -> str:
    """``value`` if it is a job id (N, USER/N) or schedule id (sN, USER/sN), else exit 2."""
    from remo.client.errors import UsageError

    match = _ID.match(value.strip())
    kinds = [
        k for k, ok in (("N or USER/N for a job", jobs), ("sN for a schedule", schedules)) if ok
    ]
    if match is None:
        raise UsageError(f"invalid id {value[:40]!r}: use {' or '.join(kinds)}")
    if match["schedule"] and not schedules:
        raise UsageError(f"{value} is a schedule; this command takes a job id (N or USER/N)")
    if not match["schedule"] and not jobs:
        raise UsageError(f"{value} is a job; this command takes a schedule id (sN)")
    return value.strip()


def is_schedule(job_id: str) -> bool:
    match = _ID.match(job_id)
    return bool(match and match["schedule"])

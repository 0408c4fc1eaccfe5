"""What the ``remo`` verbs share: the profile option, connecting, id checks, hints.

Kept apart from :mod:`remo.cli.main` (which loads the verbs) so that the verbs import
this module and never the group that imports them.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from remo.client.sync import Client

PROFILE_KEY = "remo.profile"
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

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


def json_option(what: str) -> Callable[[F], F]:
    """``--json``: print ``what`` as JSON for scripts instead of text."""
    return click.option(
        "--json", "as_json", is_flag=True, help=f"Print {what} as JSON (docs/CLI.md)."
    )


def parsed_option(option: str, parse: Callable[[str], T], value: str) -> T:
    """``parse(value)``, with any error turned into a usage error naming ``option``."""
    from remo.client.errors import UsageError
    from remo.core.errors import InvalidArgument

    try:
        return parse(value)
    except (InvalidArgument, ValueError) as err:
        raise UsageError(f"{option}: {err}") from None


def chosen_profile(ctx: click.Context | None = None) -> str | None:
    """The ``--profile`` value given on the command line, if any."""
    ctx = ctx or click.get_current_context(silent=True)
    value = ctx.meta.get(PROFILE_KEY) if ctx is not None else None
    return value if isinstance(value, str) else None


def connect() -> Client:
    """A client for the selected profile; checks the credential before any network I/O.
    In the agent (:mod:`remo.cli.agent`): its shared client, which closing leaves open."""
    # grpc core prints handshake failures on stderr at INFO level; remo explains them.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    shared = getattr(_agent, "client", None)
    if shared is not None:
        return _Borrowed(shared)  # type: ignore[return-value]
    from remo.client.sync import Client

    global connected
    connected = True
    client = Client.from_profile(chosen_profile())
    interrupt_outside_grpc()
    return client


def interrupt_outside_grpc() -> None:
    """In the main thread, from now on: Ctrl-C cancels the calls the command waits for
    inside grpc and is raised once grpc's wait returned, never in grpc's own code,
    whose half-updated state could leave the channel's close hanging for ever (see
    :func:`remo.client.calls.interrupt`). SIGINT ignored by our parent stays ignored."""
    import signal

    from remo.client import calls

    if threading.current_thread() is not threading.main_thread():
        return
    calls.track_calls()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, calls.interrupting(lambda _signum: KeyboardInterrupt()))


#: In the agent, per command thread: the shared client and the command's terminal width.
_agent = threading.local()


def bind_agent_client(client: Client | None, columns: int | None) -> None:
    """For the agent: what :func:`connect` and :func:`terminal_columns` give this thread."""
    _agent.client = client
    _agent.columns = columns


class _Borrowed:
    """The agent's client, lent to one command: closing it keeps it open for the next."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Borrowed:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


def terminal_columns(default: int = 100) -> int:
    """The width of the terminal the command writes to (``$COLUMNS`` first, as
    :func:`shutil.get_terminal_size` does, then the command's own stdout)."""
    columns = getattr(_agent, "columns", None)
    if isinstance(columns, int):
        return columns
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return default


def hint_command(verb: str, job_id: str) -> str:
    """``remo <verb> [--profile P] <id>`` as the user would retype it."""
    profile = chosen_profile()
    flag = f" --profile {_shell_quote(profile)}" if profile else ""
    return f"remo {verb}{flag} {job_id}"


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


_ID = re.compile(
    r"^(?:(?P<owner>[a-z_][a-z0-9_.-]{0,31})/)?"
    r"(?:(?P<schedule>s)?(?P<n>[0-9]{1,18})|(?P<name>[A-Za-z][A-Za-z0-9._-]{0,62}(?:#[0-9]{1,9})?))$"
)


def check_id(value: str, *, schedules: bool = True, jobs: bool = True) -> str:
    """``value`` if it is a job id (N, USER/N, a name) or schedule id (sN, USER/sN),
    else exit 2."""
    from remo.client.errors import UsageError

    match = _ID.match(value.strip())
    kinds = [
        k
        for k, ok in (("N, USER/N or a name for a job", jobs), ("sN for a schedule", schedules))
        if ok
    ]
    if match is None:
        raise UsageError(f"invalid id {value[:40]!r}: use {' or '.join(kinds)}")
    if match["schedule"] and not schedules:
        raise UsageError(f"{value} is a schedule; this command takes a job id or name")
    if not match["schedule"] and not jobs:
        raise UsageError(f"{value} is a job; this command takes a schedule id (sN)")
    return value.strip()


def is_schedule(job_id: str) -> bool:
    match = _ID.match(job_id)
    return bool(match and match["schedule"])


# -- shell completion of ids ---------------------------------------------------------------

#: Seconds a completion may wait for the server: a shell waiting on <Tab> must not hang.
COMPLETION_TIMEOUT = 2.0


def complete_ids(
    *, jobs: str = "all", schedules: bool = False
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """A ``shell_complete`` for an ID argument: the caller's ids, asked of the server.

    ``jobs`` is ``all``, ``running`` or ``finished`` (which jobs are offered);
    ``schedules`` adds the schedules' ids. Any failure (no profile, server down, slow
    network) completes nothing, silently: a completion never prints an error.
    """

    def complete(
        ctx: click.Context, _param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        try:
            return _server_ids(ctx, incomplete, jobs, schedules)
        except Exception:
            return []

    return complete


def _server_ids(
    ctx: click.Context, incomplete: str, jobs: str, schedules: bool
) -> list[CompletionItem]:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # nothing on the user's terminal
    from click.shell_completion import CompletionItem

    from remo.client.sync import Client

    global connected
    connected = True  # (the process then ends without tearing grpc down)
    client = Client.from_profile(chosen_profile(ctx), timeout=COMPLETION_TIMEOUT)
    with client:
        found = client.list_page(page_size=1000, states=["running"] if jobs == "running" else ())
        active = client.schedules() if schedules else []
    items = [
        CompletionItem(job.id, help=f"{job.state.value}: {command_line(job.argv)}")
        for job in found.jobs
        if jobs != "finished" or job.ended_at is not None
    ]
    items += [
        CompletionItem(job.name, help=f"{job.id}, {job.state.value}: {command_line(job.argv)}")
        for job in found.jobs
        if job.name and (jobs != "finished" or job.ended_at is not None)
    ]
    items += [CompletionItem(s.id, help=f"schedule: {command_line(s.argv)}") for s in active]
    return [item for item in items if item.value.startswith(incomplete)]


# -- showing what users typed ----------------------------------------------------------------


def _escaped(text: str) -> str:
    """``text`` with what a terminal would act on (newlines, escapes, bidi controls)
    written as backslash escapes, as bash's ``$'...'`` quoting reads them back."""
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append({"\\": "\\\\", "'": "\\'"}.get(ch, ch))
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch == " " for ch in text)


def shell_word(arg: str) -> str:
    """``arg`` quoted for a shell, on one line: ``$'a\\nb'`` when it holds a newline or
    another character a terminal would act on, else as :func:`shlex.quote` does."""
    import shlex

    if _printable(arg):
        return shlex.quote(arg)
    return "$'" + _escaped(arg) + "'"


def command_line(argv: Sequence[str]) -> str:
    """A command as one line a shell (bash, zsh) reads back as the same argv."""
    return " ".join(shell_word(arg) for arg in argv)


def one_line(text: str) -> str:
    """Free text (a reason, a path) on one line, control characters escaped."""
    if _printable(text):
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escaped(ch) for ch in text)

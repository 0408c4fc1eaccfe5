"""The ``remo`` command: a click group whose verbs are imported only when used.

Start-up cost matters (``remo run -- true`` should beat ``ssh host true`` by far), so
this module imports click and the standard library only; each verb lives in its own
module, loaded on demand, and grpc is imported only by verbs that connect.

Errors: every remo error becomes one line on stderr, ``remo: <message>``, and an exit
code (see :mod:`remo.client.errors`): 2 usage, 3 connection/TLS, 4 credential or
authorization, 5 not found, 6 other server-side failure, 130 interrupted. ``remo run``
and ``remo wait`` otherwise exit with the job's own code (128+N when a signal N killed it).
Set ``REMO_DEBUG=1`` to get a traceback for unexpected errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from remo.cli import common
from remo.cli.common import EXIT_INTERRUPTED, remember_profile

#: Verb -> (module, attribute). Modules that do not exist (yet) are left out.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("remo.cli.run", "command"),
    "ps": ("remo.cli.ps", "command"),
    "status": ("remo.cli.status", "command"),
    "logs": ("remo.cli.logs", "command"),
    "stop": ("remo.cli.stop", "command"),
    "kill": ("remo.cli.kill", "command"),
    "top": ("remo.cli.top", "command"),
    "ui": ("remo.cli.ui", "command"),
    "wait": ("remo.cli.wait", "command"),
    "rm": ("remo.cli.rm", "command"),
    "login": ("remo.cli.login", "command"),
    "whoami": ("remo.cli.whoami", "command"),
    "register": ("remo.cli.register", "command"),
    "server": ("remo.cli.server_cmd", "command"),
    "admin": ("remo.cli.admin", "group"),
    "agent": ("remo.cli.agent_cmd", "group"),
}

#: Words other tools use for a verb, suggested when typed.
SYNONYMS = {
    "list": "ps",
    "ls": "ps",
    "remove": "rm",
    "delete": "rm",
    "del": "rm",
    "terminate": "stop",
    "start": "run",
    "exec": "run",
    "show": "status",
    "info": "status",
    "log": "logs",
    "tail": "logs",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _report(err: BaseException) -> int:
    """Print ``err`` as one line and return the exit code."""
    from remo.client.errors import exit_code_of, message_of

    click.echo(f"remo: {message_of(err)}", err=True)
    return exit_code_of(err)


class RemoGroup(click.Group):
    """A group that imports its verbs lazily and reports every error as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [n for n in COMMANDS if _available(COMMANDS[n][0])]
        return names + sorted(set(self.commands) - set(names))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None or not _available(target[0]):
            return None
        module = importlib.import_module(target[0])
        command = getattr(module, target[1])
        if not isinstance(command, click.Command):
            raise TypeError(f"{target[0]}.{target[1]} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, and a mistyped verb gets the closest ones suggested."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as err:
            name = str(args[0]) if args else ""
            if not name or name.startswith("-") or self.get_command(ctx, name) is not None:
                raise
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            if name.lower() in SYNONYMS:
                close = [SYNONYMS[name.lower()]]
            if not close:
                raise
            options = " or ".join(repr(c) for c in close)
            raise click.UsageError(
                f"No such command {name!r}. Did you mean {options}?", ctx
            ) from err

    def invoke(self, ctx: click.Context) -> Any:
        """Run the verb. A closed pipe (remo logs 12 | head) ends it here, before
        click's own handling (which exits 1): quietly, with 141 as SIGPIPE would."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _silence_stdout()
            raise click.exceptions.Exit(141) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        """Run the command line; never returns, never shows a traceback for user errors."""
        from remo.core.errors import RemoError

        code: int
        try:
            result = super().main(
                args, prog_name or "remo", complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else err.format_message())
            code = 0
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
            click.echo(f"remo: {_one_line(err.format_message())}{hint}", err=True)
            code = 2
        except click.ClickException as err:
            click.echo(f"remo: {_one_line(err.format_message())}", err=True)
            code = err.exit_code
        except click.exceptions.Exit as err:
            code = err.exit_code
        except (click.Abort, KeyboardInterrupt):
            click.echo("remo: interrupted", err=True)
            code = EXIT_INTERRUPTED
        except RemoError as err:
            code = _report(err)
        except BrokenPipeError:
            # The reader went away (remo logs 12 | head): stop quietly, as a shell tool
            # killed by SIGPIPE would (128 + 13).
            _silence_stdout()
            code = 141
        except Exception as err:
            if _interrupted(err):
                click.echo("remo: interrupted", err=True)
                code = EXIT_INTERRUPTED
            elif os.environ.get("REMO_DEBUG"):
                raise
            else:
                click.echo(
                    f"remo: internal error: {type(err).__name__}: {_one_line(str(err))} "
                    "(set REMO_DEBUG=1 for details)",
                    err=True,
                )
                code = 1
        sys.exit(code)


def _interrupted(err: BaseException) -> bool:
    """Whether Ctrl-C caused ``err``: Python wraps a KeyboardInterrupt raised while a
    class is made (``__set_name__``, during an import) in a RuntimeError."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _available(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(
    "remo",
    cls=RemoGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: the job's own code for `run` and `wait` (128+N after signal N); "
    "otherwise 0 ok, 2 usage, 3 connection or TLS, 4 credential or permission, "
    "5 no such job or schedule, 6 other server-side failure, 130 interrupted. See docs/CLI.md.",
)
@click.option(
    "--profile",
    metavar="FILE_OR_NAME",
    expose_value=False,
    callback=remember_profile,
    help="Credential file or installed profile to use (also $REMO_PROFILE).",
)
@click.option(
    "--no-agent",
    is_flag=True,
    expose_value=False,
    help="Run this command on its own, not through the profile's agent (also $REMO_NO_AGENT=1).",
)
@click.version_option(package_name="remo", prog_name="remo", message="%(prog)s %(version)s")
def cli() -> None:
    """Run commands on a remote Linux server, under limits, as your own account.

    \b
    Set up once:
      remo register                      on the server: writes ./<host>.remo for you
      remo login ./build01.remo          on your machine: installs it as a profile
    \b
    Then:
      remo run -- make -j8 test          run, stream the output, exit with its code
      remo run -d --memory 2G -- ./t.sh  start in the background, print the job id
      remo ps                            your jobs
      remo top                           your running jobs live: CPU, memory, IO
      remo ui                            a web dashboard of all your servers
      remo logs -f 12                    whole output of job 12, then follow it
      remo stop 12                       SIGTERM, then SIGKILL after a grace period
      remo kill -s HUP 12                one signal to every process of job 12
      remo run --every 1d -- ./report.sh run daily
      remo whoami                        who the server takes you for

    Run `remo COMMAND --help` for each command's options and examples.
    """


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``remo`` console script.

    After a verb that connected, the process ends with ``os._exit`` once stdout and
    stderr are flushed: tearing down grpc's threads and the interpreter's modules
    would add tens of milliseconds to every command and does nothing useful here.
    """
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="remo")
    except SystemExit as done:
        if not common.connected:
            raise
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                code = code or 1
        os._exit(code)
    raise AssertionError("cli.main returned")  # pragma: no cover


if __name__ == "__main__":
    main()

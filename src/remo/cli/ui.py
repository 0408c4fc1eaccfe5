"""`remo ui`: the web dashboard of every server you have a profile for, served on this
machine (127.0.0.1 only) and opened in your browser. See docs/UI.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from remo.cli.common import chosen_profile


def _extra_credential() -> Path | None:
    """A credential file named with --profile or $REMO_PROFILE (as a path, not an
    installed profile's name): the dashboard shows it beside the profiles."""
    from remo.client import profiles

    for value in (chosen_profile(), os.environ.get(profiles.ENV_PROFILE, "")):
        if value:
            selected = profiles.resolve(
                value, "--profile" if value == chosen_profile() else profiles.ENV_PROFILE
            )
            return selected.path if selected.name is None else None
    return None


@click.command("ui")
@click.option(
    "-p",
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default="a free port",
    help="Port on 127.0.0.1 to serve on.",
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
def command(port: int, no_browser: bool) -> None:
    """Open a web dashboard of your jobs on every server you have a profile for.

    Serves a page on 127.0.0.1 (this machine only) that lists the jobs and schedules
    of each installed profile's server, shows a job's output live and its usage over
    time, and starts, stops, kills and removes jobs with your own credentials. The URL
    it prints holds a random token: only whoever has it can use the page. Stop it with
    Ctrl-C. A credential file named with `remo --profile FILE ui` or $REMO_PROFILE
    is shown beside the installed profiles.

    \b
    Examples:
      remo ui                       open the dashboard in your browser
      remo ui --no-browser          print the URL (open it yourself, or over ssh -L)
      remo ui --port 8765
    """
    import asyncio

    from remo.client.errors import ProfileError
    from remo.ui.app import listen, serve
    from remo.ui.guard import Secrets
    from remo.ui.servers import Servers

    servers = Servers(extra=_extra_credential())
    if not servers.names():
        raise ProfileError(
            "no remo profile: run `remo register` on the server, copy the file it writes "
            "here, then `remo login FILE`"
        )
    try:
        sock = listen(port)
    except OSError as err:
        from remo.client.errors import UsageError

        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}") from None

    def ready(url: str) -> None:
        names = ", ".join(servers.names())
        click.echo(f"remo ui: {names} at {url}")
        click.echo("(the URL holds the token that lets you in: do not share it; Ctrl-C stops)")
        sys.stdout.flush()
        if not no_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        asyncio.run(serve(servers, sock, Secrets(), ready))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    click.echo("remo ui: stopped", err=True)

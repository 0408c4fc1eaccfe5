"""`remo register`: get a credential file for your own account, on the server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from remo.core.errors import RemoError


@click.command("register")
@click.option(
    "--state-dir",
    metavar="DIR",
    help="State dir of the server to register with, as the server was started with it "
    "(only its name is used: it need not be readable).",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False),
    help="Register socket path (instead of --state-dir).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Where to write the credential (default ./<hostname>.remo).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def command(
    state_dir: str | None, socket_path: str | None, output: str | None, force: bool
) -> None:
    """Get a credential file for your account from the remo server on this machine.

    Run it as the user who wants access: the server learns who you are from the
    kernel, not from anything you type. Copy the file to your own machine and run
    `remo login FILE` there. With several servers on this machine, name one by the
    state dir it was started with (its start-up message says so).

    \b
    Examples:
      remo register -o ~/build01.remo
      remo register --state-dir /srv/remo-gpu
    """
    from remo.core.paths import default_run_dir
    from remo.pki.register import DEFAULT_RUN_DIR, register_socket_path, request_credential

    target = Path(output or f"{socket.gethostname()}.remo")
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists; choose another name with -o, or --force")
    if not socket_path:
        if state_dir:
            socket_path = str(register_socket_path(state_dir))
            if not os.path.exists(socket_path):  # a server run by an ordinary account
                own = register_socket_path(state_dir, default_run_dir())
                socket_path = str(own) if own.exists() else socket_path
        else:
            # One server on this machine is the common case: use its socket.
            found = sorted(DEFAULT_RUN_DIR.glob("register-*.sock")) or sorted(
                default_run_dir().glob("register-*.sock")
            )
            if len(found) > 1:
                raise click.UsageError(
                    "several remo servers run here; name one with --state-dir DIR"
                )
            socket_path = str(found[0] if found else register_socket_path("/var/lib/remo"))
    data = request_credential(socket_path)
    from remo.pki import package

    package.write(target, data)
    try:
        credential = package.parse(data, path=str(target))
    except RemoError:
        credential = None
    who = f" for {credential.user} ({credential.role})" if credential else ""
    click.echo(f"wrote {target}{who} (mode 0600)")
    click.echo(f"on your machine, once the file is there: remo login {_shown_path(target)}")


def _shown_path(path: Path) -> str:
    """``path`` as ``remo login`` takes it: as given, ``./`` before a bare file name
    (whose name could also be a profile's), quoted for a shell."""
    import shlex

    text = str(path)
    if os.sep not in text:
        text = f".{os.sep}{text}"
    return shlex.quote(text)

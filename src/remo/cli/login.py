"""`remo login`: install a credential file as a profile on this machine."""

from __future__ import annotations

import os

import click


@click.command("login")
@click.option("--default", "make_default", is_flag=True, help="Make it the default profile.")
@click.argument("file", metavar="FILE")
def command(make_default: bool, file: str) -> None:
    """Install the credential FILE that `remo register` wrote on the server.

    The file is checked (complete, not expired, private: mode 0600), then copied to
    ~/.config/remo/profiles/NAME.remo, where NAME is the file name without .remo.
    The first profile becomes the default; others are picked with --profile NAME
    or $REMO_PROFILE. Installing a file with an existing name replaces that profile.
    With --default and the NAME of an installed profile, makes that one the default.

    \b
    Examples:
      scp build01:build01.remo . && remo login ./build01.remo
      remo login --default ./gpu02.remo
      remo login --default build01
    """
    from remo.client import profiles

    if make_default and not os.path.exists(file) and profiles.valid_name(file):
        profiles.set_default(file)
        click.echo(f"the default profile is now {file}")
        return
    done = profiles.install(file, make_default=make_default)
    cred = done.credential
    verb = "replaced" if done.replaced else "installed"
    until = cred.not_after.strftime("%Y-%m-%d")
    click.echo(
        f"{verb} profile {done.name}: {cred.user} ({cred.role.value}) at "
        f"{cred.addresses[0]}, valid until {until}"
        + ("; it is the default" if done.default else f"; use it with --profile {done.name}")
    )

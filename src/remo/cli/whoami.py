"""`remo whoami`: who the server takes you for, with which credential, and its version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from remo.cli.common import connect, json_option, profile_option

if TYPE_CHECKING:
    from remo.client.sync import Client
    from remo.client.types import WhoAmI


@click.command("whoami")
@json_option("the answer")
@profile_option
def command(as_json: bool) -> None:
    """Ask the server who you are: account, role, credential, server version.

    Useful to check a credential (the server checks it as for any call: a revoked or
    expired one is refused) and which profile a command would use.

    \b
    Examples:
      remo whoami
      remo --profile gpu02 whoami
      remo whoami --json | jq -r .expire_time
    """
    with connect() as client:
        me = client.whoami()
        answer = whoami_json(client, me)
    if as_json:
        from remo.cli.ps import print_json

        print_json(answer)
        return
    from remo.cli.run_options import local_time
    from remo.cli.status import key_values

    expires = local_time(me.not_after or client.credential.not_after.timestamp())
    lines = [
        ("user", me.user),
        ("role", me.role),
        ("server", f"{client.address} (remo {me.server_version or 'unknown version'})"),
        ("credential", client.credential.path),
        ("serial", me.serial),
        ("expires", expires),
    ]
    lines += [("protection off", text) for text in me.protections_off]
    click.echo(key_values(lines))


def whoami_json(client: Client, me: WhoAmI) -> dict[str, Any]:
    """The JSON object of `remo whoami --json`: remo.v1's ``WhoAmIResponse`` (its
    names and values), with the server's address and the credential's path added."""
    from remo.cli.ps import iso_utc

    return {
        "user": me.user,
        "role": f"ROLE_{me.role.upper()}",
        "serial": me.serial,
        "expire_time": iso_utc(me.not_after or client.credential.not_after.timestamp()),
        "server_version": me.server_version,
        "protections_off": list(me.protections_off),
        "server": client.address,
        "credential": client.credential.path,
    }

"""`remo admin`: issue, revoke and list credentials (root on the server only)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import click

from remo.core.errors import RemoError

_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default="/var/lib/remo",
    show_default=True,
    help="State dir of the server.",
)


@click.group("admin")
def group() -> None:
    """Manage the credentials a remo server has issued (root on the server only)."""
    if os.geteuid() != 0:
        raise RemoError("remo admin needs root on the server (the CA key is root's)")


@group.command("issue")
@_STATE_DIR
@click.option("--user", required=True, help="Unix account on the server the credential acts as.")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    default="operator",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Credential file to write (0600).",
)
@click.option(
    "--days", type=click.IntRange(1, 3650), default=365, show_default=True, help="Validity."
)
@click.option(
    "--address",
    multiple=True,
    metavar="HOST:PORT",
    help="Server address(es) for the file (default: where the server last listened).",
)
def issue(
    state_dir: str, user: str, role: str, output: str, days: int, address: tuple[str, ...]
) -> None:
    """Issue a credential for USER with ROLE.

    \b
    Example:
      remo admin issue --user alice --role viewer -o alice.remo
    """
    from remo.pki import package
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    addresses = list(address) or _last_addresses(Path(state_dir))
    ca = CertificateAuthority.load(state_dir)
    issued = ca.issue_client(user, role, validity=timedelta(days=days))
    with Registry.open(state_dir, ca.certificate) as registry:
        registry.record(issued.certificate)
    package.save(output, addresses, ca.cert_pem, issued.cert_pem, issued.key_pem)
    click.echo(f"wrote {output}: {user} ({role}), serial {issued.serial}, valid {days} days")


@group.command("revoke")
@_STATE_DIR
@click.option("--user", help="Revoke every credential of this account.")
@click.option("--serial", help="Revoke one credential by serial (see `remo admin list`).")
def revoke(state_dir: str, user: str | None, serial: str | None) -> None:
    """Revoke credentials; the server refuses them on the very next call.

    \b
    Examples:
      remo admin revoke --user alice
      remo admin revoke --serial 3f9c...
    """
    if bool(user) == bool(serial):
        raise click.UsageError("give exactly one of --user or --serial")
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state_dir)
    with Registry.open(state_dir, ca.certificate) as registry:
        if serial:
            record = registry.revoke(serial)
            if record is None:
                raise RemoError(f"no credential with serial {serial} was issued here")
            click.echo(f"revoked {record.serial} ({record.user}, {record.role})")
        else:
            assert user is not None
            records = registry.revoke_user(user)
            if not records:
                raise RemoError(f"{user} has no valid credential issued here")
            click.echo(f"revoked {len(records)} credential(s) of {user}")


@group.command("list")
@_STATE_DIR
def list_(state_dir: str) -> None:
    """List every credential issued by this server."""
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state_dir)
    with Registry.open(state_dir, ca.certificate) as registry:
        records = registry.list_records()
    click.echo(f"{'SERIAL':34} {'USER':16} {'ROLE':9} {'EXPIRES':20} STATUS")
    for r in records:
        status = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "valid"
        click.echo(
            f"{r.serial:34} {r.user:16} {r.role.value:9} {r.not_after:%Y-%m-%d %H:%M}Z     {status}"
        )


def _last_addresses(state_dir: Path) -> list[str]:
    try:
        lines = (state_dir / "addresses").read_text().split()
    except OSError:
        lines = []
    if not lines:
        raise click.UsageError("the server has not run yet; give --address HOST:PORT")
    return lines

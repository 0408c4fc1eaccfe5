"""`remo admin`: issue, revoke and list credentials (root on the server only)."""

from __future__ import annotations

import asyncio
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
@click.option(
    "--user",
    help="Ban this account: revoke all its credentials, refuse new ones, pause its schedules.",
)
@click.option("--serial", help="Revoke one credential (see `remo admin list`); may re-register.")
@click.option(
    "--stop-jobs", is_flag=True, help="With --user: also stop the account's running jobs."
)
def revoke(state_dir: str, user: str | None, serial: str | None, stop_jobs: bool) -> None:
    """Revoke credentials; the server refuses them on the very next call.

    --serial revokes one credential: the account may `remo register` again and get a
    new one. --user bans the account: every credential of it is refused, `remo
    register` refuses it, its schedules skip their runs (each skip recorded with the
    reason), and none of its jobs can obtain a credential — until `remo admin allow
    USER`. --stop-jobs also stops its running jobs (TERM, then KILL after 10 s).

    \b
    Examples:
      remo admin revoke --serial 3f9c...
      remo admin revoke --user alice --stop-jobs
    """
    if bool(user) == bool(serial):
        raise click.UsageError("give exactly one of --user or --serial")
    if stop_jobs and not user:
        raise click.UsageError("--stop-jobs goes with --user")
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state_dir)
    with Registry.open(state_dir, ca.certificate) as registry:
        if serial:
            record = registry.revoke(serial)
            if record is None:
                raise RemoError(f"no credential with serial {serial} was issued here")
            click.echo(f"revoked {record.serial} ({record.user}, {record.role})")
            return
        assert user is not None
        since, records = registry.ban(user)
    click.echo(
        f"banned {user} (since {since:%Y-%m-%d %H:%M}Z): revoked {len(records)} credential(s);"
        f" lift with `remo admin allow {user}`"
    )
    if stop_jobs:
        stopped = asyncio.run(_stop_jobs_of(state_dir, user))
        click.echo(f"stopped {stopped} running job(s) of {user}")


async def _stop_jobs_of(state_dir: str, user: str) -> int:
    from remo.slurm.admin import stop_jobs_of
    from remo.worker import JobManager

    in_slurm = await stop_jobs_of(Path(state_dir), user)  # a server with the Slurm backend
    if in_slurm is not None:
        return in_slurm
    async with JobManager.open(state_dir) as jobs:
        running = await jobs.list(user, running_only=True, limit=1 << 20)
        await asyncio.gather(*(jobs.stop(job.id) for job in running))
    return len(running)


@group.command("allow")
@_STATE_DIR
@click.argument("user")
def allow(state_dir: str, user: str) -> None:
    """Lift the ban of USER: it may `remo register` again and its schedules fire again.

    Credentials revoked by the ban stay revoked.
    """
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state_dir)
    with Registry.open(state_dir, ca.certificate) as registry:
        if not registry.allow(user):
            raise RemoError(f"{user} is not banned")
    click.echo(f"allowed {user} again: it may register a new credential")


@group.command("list")
@_STATE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON (docs/CLI.md).")
def list_(state_dir: str, as_json: bool) -> None:
    """List every credential issued by this server, and the banned accounts.

    \b
    Examples:
      remo admin list
      remo admin list --json | jq -r '.credentials[] | select(.user == "alice") | .serial'
    """
    from remo.pki.ca import CertificateAuthority
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(state_dir)
    with Registry.open(state_dir, ca.certificate) as registry:
        records = registry.list_records()
        banned = registry.banned()
    if as_json:
        from remo.cli.ps import iso_utc, print_json

        print_json(
            {
                "credentials": [
                    {
                        "serial": r.serial,
                        "user": r.user,
                        "role": r.role.value,
                        "issued_at": iso_utc(r.issued_at.timestamp()),
                        "expires_at": iso_utc(r.not_after.timestamp()),
                        "revoked_at": iso_utc(r.revoked_at.timestamp()) if r.revoked_at else None,
                    }
                    for r in records
                ],
                "banned": [
                    {"user": name, "banned_at": iso_utc(since.timestamp())}
                    for name, since in banned
                ],
            }
        )
        return
    click.echo(f"{'SERIAL':34} {'USER':16} {'ROLE':9} {'EXPIRES':20} STATUS")
    for r in records:
        status = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "valid"
        click.echo(
            f"{r.serial:34} {r.user:16} {r.role.value:9} {r.not_after:%Y-%m-%d %H:%M}Z     {status}"
        )
    if banned:
        click.echo("")
        click.echo(f"{'BANNED ACCOUNT':16} SINCE")
        for name, since in banned:
            click.echo(f"{name:16} {since:%Y-%m-%d %H:%M}Z")


def _last_addresses(state_dir: Path) -> list[str]:
    try:
        lines = (state_dir / "addresses").read_text().split()
    except OSError:
        lines = []
    if not lines:
        raise click.UsageError("the server has not run yet; give --address HOST:PORT")
    return lines

"""`remo server`: run the remo server on this machine."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from remo.server.app import RunningServer
    from remo.server.config import ServerConfig

from remo.client.errors import EXIT_USAGE
from remo.core.errors import RemoError


@click.command("server")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Keys, database, job output (default /var/lib/remo as root).",
)
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default 0.0.0.0:7443).")
@click.option(
    "--advertise",
    metavar="HOST[:PORT]",
    multiple=True,
    help="Name clients use to reach this server (server certificate, credential files). "
    "Repeatable.",
)
@click.option(
    "--metrics-listen",
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics over plaintext HTTP at /metrics (off by default; a bare "
    "port means 127.0.0.1; see docs/OPERATIONS.md).",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "slurm"]),
    help="What runs jobs: this machine (local, the default) or a Slurm cluster (slurm; "
    "settings in the [slurm] table of --config, see docs/SLURM.md).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML settings file (see docs/CONFIG.md).",
)
@click.option(
    "--check-config",
    "check_file",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[FILE]",
    help="Check the settings (FILE, else the --config file, else the embedded defaults; "
    "with the flags), print every effective setting and exit: 0 if valid, 2 if not. "
    "Starts nothing.",
)
def command(
    state_dir: str | None,
    listen: str | None,
    advertise: tuple[str, ...],
    metrics_listen: str | None,
    backend: str | None,
    config_file: str | None,
    check_file: str | None,
) -> None:
    """Run the remo server: mutual TLS 1.3 on HOST:PORT, jobs under cgroup limits.

    The first start creates the server's CA and certificate in the state dir; later
    starts reuse them. Users then run `remo register` on this machine to get their
    credential file. Stopping the server (Ctrl-C, SIGTERM) leaves running jobs running.

    \b
    Example:
      sudo remo server --advertise build01.example.com
      remo server --check-config /etc/remo/server.toml
    """
    if check_file and config_file and check_file != config_file:
        raise click.UsageError("name the file once: --check-config FILE or --config FILE")
    flags = {
        "state_dir": state_dir,
        "listen": listen,
        "advertise": list(advertise),
        "metrics_listen": metrics_listen,
        "backend": backend,
    }
    source = check_file or config_file
    config = _load(source, flags, checking=check_file is not None)
    if check_file is not None:
        from remo.server.config import effective_toml

        click.echo(f"# remo server settings: embedded defaults, {source or 'no file'}, flags")
        click.echo(effective_toml(config), nl=False)
        return
    # grpc must not be imported before this: it fixes the TLS policy at import time.
    # grpc logs every refused handshake at INFO; keep the server's own log readable.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from remo.server.tls import ensure_tls13_only_env

    ensure_tls13_only_env()
    import asyncio
    import logging

    from remo.server import app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(app.serve_forever(config, lambda srv: _announce(srv, str(config.state_dir))))
    except OSError as err:
        raise RemoError(f"cannot start the server: {err.strerror or err}") from None


def _load(path: str | None, flags: dict[str, Any], *, checking: bool) -> ServerConfig:
    """The validated settings, or every problem printed (one per line) and exit 2.

    Printed here rather than raised to the group, which puts an error on one line."""
    from remo.server.config import ConfigError, load

    try:
        return load(path, **flags)
    except ConfigError as err:
        for line in err.lines:
            click.echo(line, err=True)
        count = f"{len(err.lines)} error{'s' if len(err.lines) > 1 else ''}"
        outcome = "" if checking else "; the server was not started"
        click.echo(f"remo: {count} in the server settings{outcome}", err=True)
        raise click.exceptions.Exit(EXIT_USAGE) from None


def _announce(srv: RunningServer, state_dir: str) -> None:
    lines = [
        f"remo server listening on {', '.join(srv.addresses)} "
        f"(port {srv.port}; TLS 1.3 only, client certificate required)",
        f"  state dir: {state_dir}",
        f"  cgroups:   {srv.cgroup_mode}",
        "  jobs run as: "
        + (
            "their owners' accounts"
            if os.geteuid() == 0
            else f"this account (uid {os.geteuid()}) — not root"
        ),
    ]
    if srv.metrics_port is not None:
        lines.append(f"  metrics:   port {srv.metrics_port}, GET /metrics (plaintext HTTP)")
    for warning in srv.protections_off:
        lines.append(f"  protection off: {warning}")
    lines.append(
        f"  get a credential (as the user, on this machine): remo register --state-dir {state_dir}"
    )
    click.echo("\n".join(lines), err=True)

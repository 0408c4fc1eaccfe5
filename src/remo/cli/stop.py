"""`remo stop`: end a job and every process it started."""

from __future__ import annotations

import click

from remo.cli.common import check_id, complete_ids, connect, json_option, profile_option


def parse_grace(value: str) -> float:
    """Seconds from ``10``, ``2.5``, ``30s`` or ``1m``; a usage error otherwise."""
    from remo.client.errors import UsageError

    try:
        seconds = float(value)
    except ValueError:
        from remo.core.errors import InvalidArgument
        from remo.core.timeexpr import parse_duration

        try:
            seconds = parse_duration(value).total_seconds()
        except InvalidArgument as err:
            raise UsageError(f"--grace: {err}") from None
    if not 0 <= seconds <= 3600:  # also refuses nan
        raise UsageError(f"--grace {value!r}: give 0 to 3600 seconds")
    return seconds


@click.command("stop")
@click.option(
    "--grace",
    metavar="SECONDS",
    help="Time between SIGTERM and SIGKILL: 10, 30s, 2m (default: the server's, 10s).",
)
@json_option("the job as it ended")
@profile_option
@click.argument("job_id", metavar="ID", shell_complete=complete_ids(jobs="running"))
def command(grace: str | None, as_json: bool, job_id: str) -> None:
    """Stop job ID: SIGTERM to all its processes, SIGKILL to any left after the grace period.

    No process of the job survives. Stopping a job that has already ended changes
    nothing and is not an error.

    \b
    Examples:
      remo stop 12
      remo stop --grace 1m 12        give it a minute to shut down cleanly
      remo stop --grace 0 12         SIGKILL at once
      remo stop --json 12 | jq .signal
    """
    job_id = check_id(job_id, schedules=False)
    seconds = parse_grace(grace) if grace is not None else None
    from remo.cli.ps import exit_text

    with connect() as client:
        job = client.stop(job_id, grace=seconds)
    if as_json:
        from remo.cli.ps import job_json, print_json

        print_json(job_json(job))
    elif job.state.value == "stopped":
        click.echo(f"job {job.id} stopped ({exit_text(job)})")
    else:
        click.echo(f"job {job.id} had already ended: {job.state.value} ({exit_text(job)})")

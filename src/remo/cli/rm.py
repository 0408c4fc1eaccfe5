"""`remo rm`: forget a finished job (record and output), or cancel a schedule."""

from __future__ import annotations

import click

from remo.cli.common import check_id, connect, is_schedule, profile_option


@click.command("rm")
@click.option(
    "--stop",
    "stop_first",
    is_flag=True,
    help="Stop the job first if it still runs (for a schedule: stop its running runs).",
)
@profile_option
@click.argument("job_id", metavar="ID")
def command(stop_first: bool, job_id: str) -> None:
    """Remove job ID's record and output, or cancel schedule sN.

    A running job is not removed unless --stop is given.

    \b
    Examples:
      remo rm 12
      remo rm --stop 12              stop it, then remove it
      remo rm s3                     no more runs of schedule s3
    """
    job_id = check_id(job_id)
    schedule = is_schedule(job_id)
    with connect() as client:
        if stop_first and not schedule:
            client.stop(job_id)
        client.remove(job_id, stop_running=stop_first and schedule)
    click.echo(f"removed {'schedule' if schedule else 'job'} {job_id}")

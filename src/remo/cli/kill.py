"""`remo kill`: send one signal to every process of a job (``docker kill -s``)."""

from __future__ import annotations

import click

from remo.cli.common import check_id, complete_ids, connect, json_option, profile_option


@click.command("kill")
@click.option(
    "-s",
    "--signal",
    "signal_name",
    default="KILL",
    show_default=True,
    metavar="SIGNAL",
    help="The signal, by name (HUP, SIGUSR1) or number.",
)
@json_option("the job after the signal")
@profile_option
@click.argument("job_id", metavar="ID", shell_complete=complete_ids(jobs="running"))
def command(signal_name: str, as_json: bool, job_id: str) -> None:
    """Send SIGNAL to every process of running job ID, once.

    Unlike `remo stop`, nothing follows: no grace period, no SIGKILL. Use it to ask
    a server to reload (HUP), to pause and resume (STOP, CONT), or to end a job at
    once (KILL, the default). A job that has already ended is an error.

    \b
    Examples:
      remo kill 12                   SIGKILL every process of job 12
      remo kill -s HUP 12            ask it to reload
      remo kill -s USR1 --json 12
    """
    job_id = check_id(job_id, schedules=False)
    from remo.client.calls import signal_number

    number = signal_number(signal_name)
    with connect() as client:
        job = client.kill(job_id, number)
    if as_json:
        from remo.cli.ps import job_json, print_json

        print_json(job_json(job))
    else:
        from remo.core.status import signal_name as name_of

        click.echo(f"sent {name_of(number)} to job {job.id} ({job.state.value})")

"""`remo logs`: a job's output from the first byte (or any offset), optionally live."""

from __future__ import annotations

import sys

import click

from remo.cli.common import check_id, complete_ids, connect, hint_command, profile_option


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the job ends.")
@click.option(
    "--from",
    "offset",
    type=click.IntRange(min=0),
    default=0,
    metavar="OFFSET",
    help="Start at this byte of the output (default: the first).",
)
@profile_option
@click.argument("job_id", metavar="ID", shell_complete=complete_ids())
def command(follow: bool, offset: int, job_id: str) -> None:
    """Print the output (stdout and stderr combined) of job ID, byte for byte.

    Without -f, prints what there is now and exits; with -f, follows the output live
    until the job ends and every byte has been printed. Any number of terminals can
    follow the same job. A dropped connection is resumed where it stopped.

    \b
    Examples:
      remo logs 12
      remo logs -f 12
      remo logs --from 1048576 12 > rest.log
    """
    job_id = check_id(job_id, schedules=False)
    from remo.client.errors import ConnectionFailed

    out = sys.stdout.buffer
    position = offset
    with connect() as client:
        try:
            for chunk in client.output(job_id, offset=position, follow=follow):
                out.write(chunk.data)
                out.flush()
                position = chunk.end
        except ConnectionFailed as err:
            if position == offset:
                raise
            again = hint_command(f"logs{' -f' if follow else ''} --from {position}", job_id)
            raise ConnectionFailed(f'{err}; to carry on, run "{again}"', code=err.code) from err

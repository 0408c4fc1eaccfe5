"""`remo wait`: block until a job ends, exit with its exit code."""

from __future__ import annotations

import click

from remo.cli.common import check_id, complete_ids, connect, json_option, profile_option


@click.command("wait")
@json_option("the job as it ended")
@profile_option
@click.argument("job_id", metavar="ID", shell_complete=complete_ids(jobs="running"))
@click.pass_context
def command(ctx: click.Context, as_json: bool, job_id: str) -> None:
    """Wait until job ID has ended and exit with its exit code (128+N after signal N).

    Prints nothing (with --json: the ended job); survives server restarts and short
    network outages.

    \b
    Examples:
      remo wait 12 && echo "job 12 succeeded"
      id=$(remo run -d -- ./build.sh) && remo wait "$id"; echo "exit $?"
      remo wait --json 12 | jq .peak_memory_bytes
    """
    job_id = check_id(job_id, schedules=False)
    from remo.client.errors import JobLost

    with connect() as client:
        job = client.wait(job_id)
    if as_json:
        from remo.cli.ps import job_json, print_json

        print_json(job_json(job))
    code = job.exit_status
    if code is None:
        raise JobLost(f"job {job.id} was lost: {job.reason or 'no exit status recorded'}")
    ctx.exit(code)

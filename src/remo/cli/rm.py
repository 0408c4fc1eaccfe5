"""`remo rm`: forget a finished job (record and output), cancel a schedule, or forget
all your finished jobs at once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from remo.cli.common import (
    check_id,
    complete_ids,
    connect,
    is_schedule,
    json_option,
    parsed_option,
    profile_option,
)

if TYPE_CHECKING:
    from remo.client.sync import Client

#: Jobs asked for per ListJobs call while removing in bulk (the server's largest page).
LIST_BATCH = 1000


@click.command("rm")
@click.option(
    "--stop",
    "stop_first",
    is_flag=True,
    help="Stop the job first if it still runs (for a schedule: stop its running runs).",
)
@click.option("--finished", is_flag=True, help="Remove every job of yours that has ended (no ID).")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="With --finished: only jobs that ended more than DURATION ago: 12h, 7d.",
)
@json_option("the removed ids")
@profile_option
@click.argument(
    "job_id",
    metavar="[ID]",
    required=False,
    shell_complete=complete_ids(jobs="finished", schedules=True),
)
def command(
    stop_first: bool, finished: bool, older_than: str | None, as_json: bool, job_id: str | None
) -> None:
    """Remove job ID's record and output, or cancel schedule sN.

    A running job is not removed unless --stop is given. --finished removes all
    your jobs that have ended (running ones stay), --older-than only those that
    ended longer ago than that; it prints how many it removed.

    \b
    Examples:
      remo rm 12
      remo rm --stop 12              stop it, then remove it
      remo rm s3                     no more runs of schedule s3
      remo rm --finished --older-than 7d
      remo rm --json --finished | jq '.removed | length'
    """
    from remo.client.errors import UsageError

    if finished:
        if job_id is not None:
            raise UsageError("--finished removes all your finished jobs: give no ID with it")
        if stop_first:
            raise UsageError("--stop goes with an ID; --finished leaves running jobs alone")
        age = _parse_age(older_than) if older_than is not None else None
        with connect() as client:
            removed = remove_finished(client, age)
        if as_json:
            from remo.cli.ps import print_json

            print_json({"removed": removed})
        else:
            since = f" that ended more than {older_than} ago" if older_than else ""
            click.echo(f"removed {len(removed)} finished job(s){since}")
        return
    if older_than is not None:
        raise UsageError("--older-than goes with --finished (remo rm --finished --older-than 7d)")
    if job_id is None:
        raise UsageError(
            "give the ID to remove (remo rm 12), or --finished for all your finished jobs"
        )
    job_id = check_id(job_id)
    schedule = is_schedule(job_id)
    with connect() as client:
        if stop_first and not schedule:
            client.stop(job_id)
        client.remove(job_id, stop_running=stop_first and schedule)
    if as_json:
        from remo.cli.ps import print_json

        print_json({"removed": [job_id]})
    else:
        click.echo(f"removed {'schedule' if schedule else 'job'} {job_id}")


def _parse_age(text: str) -> float:
    from remo.core.timeexpr import parse_duration

    return parsed_option("--older-than", parse_duration, text).total_seconds()


def remove_finished(client: Client, older_than: float | None = None) -> list[str]:
    """Remove the caller's jobs that have ended (more than ``older_than`` seconds ago);
    their ids, newest first. Jobs that vanish meanwhile (the server's retention) are
    skipped; any other error stops the removal (what was removed stays removed)."""
    from remo.client.errors import ClientError, NotFound
    from remo.core.status import JobState

    cutoff = time.time() - older_than if older_than is not None else None
    removed: list[str] = []
    finished = [state for state in JobState if state.final]
    token = ""
    while True:
        # Page tokens are positions (keyset): removing what a page showed does not move
        # the next page.
        page = client.list_page(page_size=LIST_BATCH, page_token=token, states=finished)
        batch = [job.id for job in page.jobs if cutoff is None or (job.ended_at or 0) <= cutoff]
        token = page.next_page_token
        for job_id in batch:
            try:
                client.remove(job_id)
            except NotFound:
                continue
            except ClientError as err:
                if not removed:
                    raise
                raise type(err)(
                    f"{err} (after removing {len(removed)} job(s))", code=err.code
                ) from err
            removed.append(job_id)
        if not token:
            return removed

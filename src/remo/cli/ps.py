"""`remo ps`: your jobs (and schedules) as a table, or as JSON for scripts.

The JSON built here (:func:`job_json`, :func:`schedule_json`) is the API's: remo.v1's
``Job`` and ``Schedule`` in protobuf's JSON mapping, shared by every verb's ``--json``
and described in docs/CLI.md.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from remo.cli.common import command_line, connect, one_line, profile_option

if TYPE_CHECKING:
    from remo.client.sync import Client
    from remo.client.types import Schedule
    from remo.core.status import JobStatus


def iso_utc(unix: float | None) -> str | None:
    """``2025-01-31T13:05:01.123Z`` (ISO 8601, UTC), or None for "not set"."""
    if not unix:
        return None
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def wire_json(message: Any) -> dict[str, Any]:
    """A remo.v1 message as JSON in the API's own vocabulary (protobuf's JSON mapping,
    field names as in the proto): what ``--json`` prints, so scripts and programs that
    call the API read the same names, enum values and RFC 3339 times."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def job_json(job: JobStatus) -> dict[str, Any]:
    """The JSON object of one job: remo.v1's ``Job`` (see docs/CLI.md, "JSON output")."""
    from remo.api.jobs import job_to_pb

    return wire_json(job_to_pb(job, job.id))


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """The JSON object of one schedule: remo.v1's ``Schedule``."""
    return wire_json(schedule.to_pb())


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def exit_text(job: JobStatus) -> str:
    """The EXIT column: the code, the signal's name, or ``-`` while running."""
    if job.exit_code is not None:
        return str(job.exit_code)
    if job.signal is not None:
        from remo.core.status import signal_name

        return signal_name(job.signal)
    return "-"


def command_text(argv: Sequence[str]) -> str:
    """The command on one line, as a shell would read it back (newlines as ``\\n``)."""
    return command_line(argv)


def short_time(unix: float | None, now: float | None = None) -> str:
    """A local time, without the date when it is within the next/last 20 hours."""
    if unix is None:
        return "-"
    from datetime import datetime

    moment = datetime.fromtimestamp(unix).astimezone()
    if abs(unix - (now or time.time())) < 20 * 3600:
        return moment.strftime("%H:%M:%S %Z").strip()
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None) -> str:
    """Left-aligned columns; the last column is cut to ``width`` when given. A cell
    never breaks its line: control characters in it are shown escaped."""
    rows = [[one_line(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])]
        line = "  ".join([*cells, row[-1]])
        if width is not None and len(line) > width:
            line = line[: max(width - 3, 0)] + "..."
        lines.append(line.rstrip())
    return "\n".join(lines)


def jobs_table(jobs: Sequence[JobStatus], width: int | None, now: float | None = None) -> str:
    from remo.core.units import format_duration

    current = now or time.time()
    named = any(job.name for job in jobs)  # a NAME column only when a job has one
    rows = [
        [
            job.id,
            *([one_line(job.name) or "-"] if named else []),
            job.state.value + (" (oom)" if job.oom_killed else ""),
            format_duration(max(0.0, current - job.started_at)) if job.started_at else "-",
            exit_text(job),
            command_text(job.argv),
        ]
        for job in jobs
    ]
    headers = ["ID", *(["NAME"] if named else []), "STATE", "AGE", "EXIT", "COMMAND"]
    return table(headers, rows, width)


def schedules_table(
    schedules: Sequence[Schedule], width: int | None, now: float | None = None
) -> str:
    from remo.core.units import format_duration

    rows = [
        [
            s.id,
            short_time(s.next_run_at, now) if s.active else "inactive",
            format_duration(s.every_seconds) if s.every_seconds else "once",
            command_text(s.argv),
        ]
        for s in schedules
    ]
    return table(["SCHEDULE", "NEXT RUN", "EVERY", "COMMAND"], rows, width)


def since_seconds(text: str) -> float:
    """Seconds of ``--since DURATION``; a usage error naming the option otherwise."""
    from remo.cli.common import parsed_option
    from remo.core.timeexpr import parse_duration

    return parsed_option("--since", parse_duration, text).total_seconds()


def started_since(client: Client, cutoff: float, **filters: Any) -> list[JobStatus]:
    """Every job started at or after ``cutoff`` (unix time), newest first: pages are
    read until one reaches an older job (keyset pages come newest first)."""
    found: list[JobStatus] = []
    token = ""
    while True:
        page = client.list_page(page_size=1000, page_token=token, **filters)
        for job in page.jobs:
            if job.started_at < cutoff:
                return found
            found.append(job)
        token = page.next_page_token
        if not token:
            return found


def terminal_width() -> int | None:
    """The width to cut lines at when stdout is a terminal; None otherwise."""
    if not sys.stdout.isatty():
        return None
    from remo.cli.common import terminal_columns

    return terminal_columns(100)


STATE_NAMES = ("queued", "running", "succeeded", "failed", "stopped", "killed", "lost")


@click.command("ps")
@click.option("-a", "--all", "all_users", is_flag=True, help="Every user's jobs (admins only).")
@click.option("--running", is_flag=True, help="Only jobs that are still running.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATE_NAMES),
    help="Only jobs in this state (repeatable).",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show at most this many jobs, the newest.",
)
@click.option("--all-pages", is_flag=True, help="Every job, however many (no --limit).")
@click.option(
    "--since",
    metavar="DURATION",
    help="Every job started in the last DURATION (10m, 2h, 7d), however many.",
)
@click.option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only jobs with this label (repeatable: all of them).",
)
@click.option("--schedules", is_flag=True, help="List schedules instead of jobs.")
@click.option("-q", "--quiet", is_flag=True, help="Print the ids only, one per line.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list for scripts (docs/CLI.md).")
@profile_option
def command(
    all_users: bool,
    running: bool,
    states: tuple[str, ...],
    limit: int,
    all_pages: bool,
    since: str | None,
    labels: tuple[str, ...],
    schedules: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """List your jobs, newest first, and your schedules.

    Shows the newest 100 jobs (--limit N for another number, --all-pages for every
    one) and says when there are more. Other users' jobs are listed with --all
    (admins only); their ids are USER/N. With -q, prints only the ids (the schedules'
    with --schedules), one per line. With --json, prints a JSON list of the API's Job
    objects (Schedule objects with --schedules), described in docs/CLI.md.

    \b
    Examples:
      remo ps
      remo ps --running
      remo ps --state failed --limit 10
      remo ps --label team=ml
      remo ps --since 2h --state failed
      remo ps -q --running | xargs -n1 remo stop
      remo ps --json | jq '.[] | select(.state == "JOB_STATE_FAILED") | .id'
      remo ps --schedules
    """
    if quiet and as_json:
        from remo.client.errors import UsageError

        raise UsageError("-q and --json both choose the output: give only one")
    from remo.cli.run_options import parse_labels

    wanted = ("running",) if running else states
    tags = parse_labels(labels)
    more = False
    with connect() as client:
        if schedules:
            jobs = []
            active = client.schedules(all_users=all_users)
        else:
            active = [] if quiet or as_json else client.schedules(all_users=all_users)
            if since is not None:
                cutoff = time.time() - since_seconds(since)
                jobs = started_since(
                    client, cutoff, all_users=all_users, states=wanted, labels=tags
                )
            elif all_pages:
                jobs = client.list(all_users=all_users, states=wanted, labels=tags)
            else:
                # One more than shown tells whether there are more (pages of at most
                # 1000 are read one after the other for a larger limit).
                jobs = client.list(all_users=all_users, states=wanted, labels=tags, limit=limit + 1)
                more, jobs = len(jobs) > limit, jobs[:limit]
    now = time.time()
    if quiet:
        for item in active if schedules else jobs:
            click.echo(item.id)
    elif as_json:
        if schedules:
            print_json([schedule_json(s) for s in active])
        else:
            print_json([job_json(j) for j in jobs])
    elif schedules:
        click.echo(schedules_table(active, terminal_width(), now) if active else "no schedules")
    else:
        width = terminal_width()
        if jobs:
            click.echo(jobs_table(jobs, width, now))
        else:
            click.echo("no jobs" + (" running" if running else ""))
        if active:
            click.echo()
            click.echo(schedules_table(active, width, now))
    if more:
        click.echo(
            f"remo: showing the newest {limit} jobs; there are more "
            "(--limit N, --since DURATION or --all-pages to see them, --state to filter)",
            err=True,
        )

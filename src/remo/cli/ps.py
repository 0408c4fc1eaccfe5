"""`remo ps`: your jobs (and schedules) as a table, or as JSON for scripts.

The JSON shapes built here (:func:`job_json`, :func:`schedule_json`) are shared with
`remo status --json` and documented in docs/CLI.md; keys are only ever added.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from remo.cli.common import command_line, connect, one_line, profile_option

if TYPE_CHECKING:
    from remo.client.connection import Schedule
    from remo.core.status import JobStatus


def iso_utc(unix: float | None) -> str | None:
    """``2025-01-31T13:05:01.123Z`` (ISO 8601, UTC), or None for "not set"."""
    if not unix:
        return None
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def job_json(job: JobStatus, now: float | None = None) -> dict[str, Any]:
    """The JSON object of one job (see docs/CLI.md, "JSON output")."""
    end = job.ended_at if job.ended_at is not None else (now or time.time())
    limits = job.limits
    return {
        "id": job.id,
        "owner": job.owner,
        "argv": list(job.argv),
        "state": job.state.value,
        "exit_code": job.exit_code,
        "signal": job.signal,
        "pid": job.pid,
        "started_at": iso_utc(job.started_at),
        "ended_at": iso_utc(job.ended_at),
        "duration_seconds": round(max(0.0, end - job.started_at), 3) if job.started_at else None,
        "cpu_seconds": job.cpu_seconds,
        "peak_memory_bytes": job.peak_memory_bytes,
        "oom_killed": job.oom_killed,
        "oom_kills": job.oom_kills,
        "limits": {
            "cpu_cores": limits.cpu,
            "memory_bytes": limits.memory,
            "io_read_bps": limits.io_read_bps,
            "io_write_bps": limits.io_write_bps,
            "pids": limits.pids,
        },
        "reason": job.reason,
        "cwd": job.cwd,
        "isolation": list(job.isolation),
        "schedule_id": job.schedule_id,
        "output_truncated": job.output_truncated,
        "output_dropped_bytes": job.output_dropped_bytes,
        "output_dropped_disk_full": job.output_dropped_disk_full,
    }


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """The JSON object of one schedule (see docs/CLI.md, "JSON output")."""
    return {
        "id": schedule.id,
        "owner": schedule.owner,
        "argv": list(schedule.argv),
        "every_seconds": schedule.every_seconds or None,
        "next_run_at": iso_utc(schedule.next_run_at),
        "created_at": iso_utc(schedule.created_at),
        "active": schedule.active,
        "recent_runs": [
            {
                "due_at": iso_utc(run.due_at),
                "outcome": run.outcome,
                "job_id": run.job_id or None,
                "detail": run.detail,
            }
            for run in schedule.recent_runs
        ],
    }


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
    rows = [
        [
            job.id,
            job.state.value + (" (oom)" if job.oom_killed else ""),
            format_duration(max(0.0, current - job.started_at)) if job.started_at else "-",
            exit_text(job),
            command_text(job.argv),
        ]
        for job in jobs
    ]
    return table(["ID", "STATE", "AGE", "EXIT", "COMMAND"], rows, width)


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


def terminal_width() -> int | None:
    """The width to cut lines at when stdout is a terminal; None otherwise."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((100, 24)).columns


@click.command("ps")
@click.option("-a", "--all", "all_users", is_flag=True, help="Every user's jobs (admins only).")
@click.option("--running", is_flag=True, help="Only jobs that are still running.")
@click.option("--schedules", is_flag=True, help="List schedules instead of jobs.")
@click.option("-q", "--quiet", is_flag=True, help="Print the ids only, one per line.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list for scripts (docs/CLI.md).")
@profile_option
def command(all_users: bool, running: bool, schedules: bool, quiet: bool, as_json: bool) -> None:
    """List your jobs, newest first, and your schedules.

    Other users' jobs are listed with --all (admins only); their ids are USER/N.
    With -q, prints only the jobs' ids (the schedules' with --schedules), newest
    first, one per line. With --json, prints a JSON list of job objects (or schedule
    objects with --schedules) whose keys are documented in docs/CLI.md.

    \b
    Examples:
      remo ps
      remo ps --running
      remo ps -q --running | xargs -n1 remo stop
      remo ps --json | jq '.[] | select(.state == "failed") | .id'
      remo ps --schedules
    """
    if quiet and as_json:
        from remo.client.errors import UsageError

        raise UsageError("-q and --json both choose the output: give only one")
    with connect() as client:
        listing = client.list(all_users=all_users, running_only=running)
    now = time.time()
    if quiet:
        for item in listing.schedules if schedules else listing.jobs:
            click.echo(item.id)
        return
    if as_json:
        if schedules:
            print_json([schedule_json(s) for s in listing.schedules])
        else:
            print_json([job_json(j, now) for j in listing.jobs])
        return
    width = terminal_width()
    if schedules:
        if listing.schedules:
            click.echo(schedules_table(listing.schedules, width, now))
        else:
            click.echo("no schedules")
        return
    if listing.jobs:
        click.echo(jobs_table(listing.jobs, width, now))
    else:
        click.echo("no jobs" + (" running" if running else ""))
    if listing.schedules:
        click.echo()
        click.echo(schedules_table(listing.schedules, width, now))

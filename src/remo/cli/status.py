"""`remo status`: everything remo knows about one job or schedule."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from remo.cli.common import check_id, complete_ids, connect, is_schedule, one_line, profile_option

if TYPE_CHECKING:
    from remo.client.types import Schedule
    from remo.core.spec import Limits
    from remo.core.status import JobStatus


def when_text(unix: float | None) -> str:
    if not unix:
        return "-"
    from remo.cli.run_options import local_time

    return local_time(unix)


def limits_text(limits: Limits) -> str:
    from remo.core.units import format_size

    parts = []
    if limits.cpu is not None:
        parts.append(f"cpu {limits.cpu:g} cores")
    if limits.memory is not None:
        parts.append(f"memory {format_size(limits.memory)}")
    if limits.io_read_bps is not None:
        parts.append(f"io read {format_size(limits.io_read_bps)}/s")
    if limits.io_write_bps is not None:
        parts.append(f"io write {format_size(limits.io_write_bps)}/s")
    if limits.pids is not None:
        parts.append(f"pids {limits.pids}")
    return ", ".join(parts) or "none"


def job_lines(job: JobStatus, now: float | None = None) -> list[tuple[str, str]]:
    """The human view of a job, as (key, value) pairs."""
    from remo.cli.ps import command_text
    from remo.core.status import signal_name
    from remo.core.units import format_duration, format_size

    current = now or time.time()
    lines: list[tuple[str, str]] = [("job", job.id)]
    if job.name:
        lines.append(("name", job.name))
    lines.append(("state", job.state.value))
    if job.exit_code is not None:
        lines.append(("exit code", str(job.exit_code)))
    if job.signal is not None:
        lines.append(("signal", f"{job.signal} ({signal_name(job.signal)})"))
    lines += [
        ("command", command_text(job.argv)),
        ("owner", job.owner),
        ("pid", str(job.pid) if job.pid else "-"),
        ("cwd", job.cwd or "-"),
        ("started", when_text(job.started_at)),
        ("ended", when_text(job.ended_at) if job.ended_at is not None else "-"),
    ]
    if job.started_at:
        end = job.ended_at if job.ended_at is not None else current
        running = "" if job.ended_at is not None else " so far"
        lines.append(("duration", format_duration(max(0.0, end - job.started_at)) + running))
    if job.live is not None:
        lines += live_lines(job)
    else:
        cpu = format_duration(job.cpu_seconds) if job.cpu_seconds is not None else "-"
        lines.append(("cpu time", cpu))
        peak = job.peak_memory_bytes
        lines.append(("peak memory", format_size(peak) if peak is not None else "-"))
    lines += [
        ("limits", limits_text(job.limits)),
        ("oom killed", "yes" if job.oom_killed else "no"),
    ]
    if job.oom_kills:
        lines.append(("oom kills", f"{job.oom_kills} process(es)"))
    lines += [
        ("isolation", ", ".join(job.isolation) or "none"),
    ]
    if job.schedule_id:
        lines.append(("schedule", job.schedule_id))
    if job.labels:
        lines.append(("labels", labels_text(job.labels)))
    if job.output_truncated:
        lines.append(("output", dropped_text(job)))
    if job.reason:
        lines.append(("reason", job.reason))
    return lines


def cpu_text(cores: float | None, limit: float | None) -> str:
    """``0.50 cores (50%)``, with the limit when there is one: ``of 1``."""
    if cores is None:
        return "-"
    shown = f"{cores:.2f} cores ({cores * 100:.0f}%)"
    return f"{shown} of {limit:g}" if limit else shown


def live_lines(job: JobStatus) -> list[tuple[str, str]]:
    """A running job's usage now: CPU over the last interval, memory, IO, processes."""
    from remo.core.units import format_duration, format_size

    live = job.live
    assert live is not None
    sample = live.sample

    def size(value: int | None) -> str:
        return format_size(value) if value is not None else "-"

    def rate(value: float | None) -> str:
        return f"{format_size(round(value))}/s" if value is not None else "-"

    memory = size(sample.memory_bytes)
    if sample.peak_memory_bytes is not None:
        memory += f" (peak {size(sample.peak_memory_bytes)})"
    if job.limits.memory:
        memory += f" of {format_size(job.limits.memory)}"
    total = format_duration(sample.cpu_seconds) if sample.cpu_seconds is not None else "-"
    return [
        (
            "cpu now",
            f"{cpu_text(live.cpu_cores, job.limits.cpu)} over {live.interval_seconds:.1f}s",
        ),
        ("cpu time", f"{total} so far"),
        ("memory", memory),
        (
            "io",
            f"read {rate(live.io_read_bytes_per_second)}, "
            f"write {rate(live.io_write_bytes_per_second)}",
        ),
        ("processes", str(sample.processes) if sample.processes is not None else "-"),
    ]


def labels_text(labels: dict[str, str]) -> str:
    """``team=ml, tier=gpu``, sorted by key."""
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


def dropped_text(job: JobStatus) -> str:
    """What was dropped of the job's output, and why."""
    if not job.output_dropped_bytes:  # recorded before drops were counted
        return "truncated at the server's size limit"
    why = "the server's disk was full" if job.output_dropped_disk_full else "size limit"
    return f"{job.output_dropped_bytes} bytes dropped ({why})"


def schedule_lines(schedule: Schedule) -> list[tuple[str, str]]:
    from remo.cli.ps import command_text
    from remo.core.units import format_duration

    every = format_duration(schedule.every_seconds) if schedule.every_seconds else "once"
    named = [("name", schedule.name)] if schedule.name else []
    tagged = [("labels", labels_text(schedule.labels))] if schedule.labels else []
    return [
        ("schedule", schedule.id),
        *named,
        ("command", command_text(schedule.argv)),
        *tagged,
        ("owner", schedule.owner),
        ("every", every),
        ("next run", when_text(schedule.next_run_at) if schedule.active else "-"),
        ("active", "yes" if schedule.active else "no"),
        ("created", when_text(schedule.created_at)),
    ]


def key_values(lines: list[tuple[str, str]]) -> str:
    """One ``key  value`` line each (control characters in a value shown escaped)."""
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {one_line(v)}" for k, v in lines)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (docs/CLI.md).")
@profile_option
@click.argument("job_id", metavar="ID", shell_complete=complete_ids(schedules=True))
def command(as_json: bool, job_id: str) -> None:
    """Show the state of job ID: exit code or signal, times, CPU, memory, limits.

    ID is a job number (12), another user's job (alice/12, admins only), or a
    schedule (s3), for which the schedule and its recent runs are shown.

    \b
    Examples:
      remo status 12
      remo status --json 12 | jq .exit_code
      remo status s3
    """
    job_id = check_id(job_id)
    from remo.cli.ps import job_json, print_json, schedule_json, table

    with connect() as client:
        if is_schedule(job_id):
            schedule = client.schedule_status(job_id)
            if as_json:
                print_json(schedule_json(schedule))
                return
            click.echo(key_values(schedule_lines(schedule)))
            if schedule.recent_runs:
                click.echo()
                rows = [
                    [when_text(r.due_at), r.outcome, r.job_id or "-", r.detail]
                    for r in schedule.recent_runs
                ]
                click.echo(table(["DUE", "OUTCOME", "JOB", "DETAIL"], rows, None))
            return
        job = client.status(job_id)
    if as_json:
        print_json(job_json(job))
    else:
        click.echo(key_values(job_lines(job)))

"""Jobs and schedules as the page reads them: small JSON objects with plain numbers
(unix seconds, bytes, cores) that the page formats, and the command already written
as a shell would read it back (as ``remo ps`` shows it)."""

from __future__ import annotations

from typing import Any

from remo.cli.common import command_line
from remo.client.types import Schedule
from remo.core.spec import Limits
from remo.core.status import JobStatus, signal_name


def exit_text(job: JobStatus) -> str:
    """The EXIT column, as ``remo ps`` has it: the code, the signal's name, or ``-``."""
    if job.exit_code is not None:
        return str(job.exit_code)
    if job.signal is not None:
        return signal_name(job.signal)
    return "-"


def limits_view(limits: Limits) -> dict[str, Any]:
    return {
        "cpu": limits.cpu,
        "memory": limits.memory,
        "io_read_bps": limits.io_read_bps,
        "io_write_bps": limits.io_write_bps,
        "pids": limits.pids,
        "output_bytes": limits.output_bytes,
    }


def job_row(job: JobStatus, server: str) -> dict[str, Any]:
    """One row of the jobs table."""
    live = job.live
    sample = live.sample if live is not None else None
    return {
        "server": server,
        "id": job.id,
        "name": job.name,
        "owner": job.owner,
        "state": job.state.value,
        "oom": job.oom_killed,
        "labels": job.labels,
        "command": command_line(job.argv),
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "exit": exit_text(job),
        "cpu_cores": live.cpu_cores if live is not None else None,
        "memory_bytes": sample.memory_bytes if sample is not None else None,
        "cpu_limit": job.limits.cpu,
        "memory_limit": job.limits.memory,
    }


def job_detail(job: JobStatus, server: str) -> dict[str, Any]:
    """Everything the job page shows: the row, its limits, what it used, why it ended."""
    live = job.live
    sample = live.sample if live is not None else None
    return {
        **job_row(job, server),
        "argv": list(job.argv),
        "cwd": job.cwd,
        "pid": job.pid,
        "exit_code": job.exit_code,
        "signal": job.signal,
        "exit_status": job.exit_status,
        "reason": job.reason,
        "limits": limits_view(job.limits),
        "cpu_seconds": job.cpu_seconds,
        "peak_memory_bytes": job.peak_memory_bytes,
        "oom_kills": job.oom_kills,
        "isolation": list(job.isolation),
        "schedule_id": job.schedule_id,
        "output_dropped_bytes": job.output_dropped_bytes,
        "live": None
        if live is None or sample is None
        else {
            "interval": live.interval_seconds,
            "cpu_cores": live.cpu_cores,
            "cpu_seconds": sample.cpu_seconds,
            "memory_bytes": sample.memory_bytes,
            "peak_memory_bytes": sample.peak_memory_bytes,
            "io_read_bps": live.io_read_bytes_per_second,
            "io_write_bps": live.io_write_bytes_per_second,
            "processes": sample.processes,
        },
    }


def schedule_row(schedule: Schedule, server: str) -> dict[str, Any]:
    """One row of the schedules table, with its recent runs' outcomes."""
    return {
        "server": server,
        "id": schedule.id,
        "name": schedule.name,
        "owner": schedule.owner,
        "command": command_line(schedule.argv),
        "every_seconds": schedule.every_seconds,
        "next_run_at": schedule.next_run_at if schedule.active else None,
        "active": schedule.active,
        "labels": schedule.labels,
        "recent_runs": [
            {"due_at": r.due_at, "outcome": r.outcome, "job_id": r.job_id, "detail": r.detail}
            for r in schedule.recent_runs
        ],
    }

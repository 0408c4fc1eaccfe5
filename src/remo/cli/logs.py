"""`remo logs`: a job's output, both streams or one, whole or the tail, optionally live;
several jobs' in one stream, each line prefixed with its job (:mod:`remo.cli.logs_many`)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, BinaryIO

import click

from remo.cli.common import check_id, complete_ids, connect, hint_command, profile_option

if TYPE_CHECKING:
    from remo.client.types import OutputChunk


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the job ends.")
@click.option("--stdout", "only_stdout", is_flag=True, help="Only what the job wrote to stdout.")
@click.option("--stderr", "only_stderr", is_flag=True, help="Only what the job wrote to stderr.")
@click.option(
    "-t",
    "--timestamps",
    is_flag=True,
    help="Start each line with the time it arrived (RFC 3339, UTC, milliseconds).",
)
@click.option(
    "-n",
    "--tail",
    "tail",
    type=click.IntRange(min=0),
    metavar="N",
    help="Only the last N lines (of the streams shown; of each job).",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only output that arrived since: a duration (10m, 2h) or a time "
    "('2026-12-01 14:00', 14:00, RFC 3339).",
)
@click.option(
    "--from",
    "offset",
    type=click.IntRange(min=0),
    metavar="OFFSET",
    help="Start at this byte of the output (both streams as written; default: the first). "
    "One job only.",
)
@profile_option
@click.argument(
    "job_ids", metavar="ID [ID]...", nargs=-1, required=True, shell_complete=complete_ids()
)
def command(
    follow: bool,
    only_stdout: bool,
    only_stderr: bool,
    timestamps: bool,
    tail: int | None,
    since: str | None,
    offset: int | None,
    job_ids: tuple[str, ...],
) -> None:
    """Print the output of job ID: what it wrote to stdout and stderr, in the order it
    wrote it, byte for byte.

    Without -f, prints what there is now and exits; with -f, follows the output live
    until the job ends and every byte has been printed. Any number of terminals can
    follow the same job. A dropped connection is resumed where it stopped. --tail,
    --since and --from choose where to start (the latest of them wins); --stdout or
    --stderr keep one stream; all of them combine with -f and --timestamps.

    Several IDs (up to 1,000): their output in one stream, each whole line started by
    its job as named, padded (`train | epoch 1`, coloured on a terminal unless NO_COLOR
    is set); a line is shown once its newline (or its job's end) has come. --tail and
    --since apply to each job; -f follows until every one has ended. A job whose output
    is cut short (removed meanwhile) is reported on stderr and the exit code is 1.

    \b
    Examples:
      remo logs 12
      remo logs -f 12
      remo logs --tail 20 -f train          the last 20 lines, then live
      remo logs --stderr --since 10m 12     errors of the last 10 minutes
      remo logs -t 12                        2026-12-06T10:00:01.234Z hello
      remo logs --from 1048576 12 > rest.log
      remo logs -f 12 13 train              several jobs, each line prefixed with its job
    """
    ids = [check_id(job_id, schedules=False) for job_id in job_ids]
    from remo.client.errors import ConnectionFailed, UsageError

    if only_stdout and only_stderr:
        raise UsageError("--stdout and --stderr together are the default: give one or neither")
    since_unix = parse_since(since) if since is not None else None
    if len(ids) > 1:
        from remo.cli import logs_many

        logs_many.check_ids(ids, offset)
        with connect() as client:
            failed = logs_many.print_many(
                client,
                ids,
                follow=follow,
                stdout=not only_stderr,
                stderr=not only_stdout,
                tail_lines=tail,
                since=since_unix,
                timestamps=timestamps,
            )
        if failed:
            raise click.exceptions.Exit(1)
        return
    job_id = ids[0]
    offset = offset or 0
    out = sys.stdout.buffer
    printer = TimedLines(out) if timestamps else None
    position = offset
    with connect() as client:
        try:
            for chunk in client.output(
                job_id,
                offset=position,
                follow=follow,
                stdout=not only_stderr,
                stderr=not only_stdout,
                tail_lines=tail,
                since=since_unix,
                timestamps=timestamps,
            ):
                if printer is not None:
                    printer.write(chunk)
                else:
                    out.write(chunk.data)
                out.flush()
                position = chunk.end
        except ConnectionFailed as err:
            if position == offset:
                raise
            again = hint_command(f"logs{' -f' if follow else ''} --from {position}", job_id)
            raise ConnectionFailed(f'{err}; to carry on, run "{again}"', code=err.code) from err


class TimedLines:
    """Writes output with each line started by the time its first byte arrived."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.at_line_start = True

    def write(self, chunk: OutputChunk) -> None:
        stamp = rfc3339_ms(chunk.time).encode() + b" "
        for line in chunk.data.splitlines(keepends=True):
            if self.at_line_start:
                self.out.write(stamp)
            self.out.write(line)
            self.at_line_start = line.endswith(b"\n")


def rfc3339_ms(unix: float | None) -> str:
    """``2026-12-06T10:00:01.234Z``; a dash-filled stand-in for untimed output."""
    if unix is None:
        return "-" * 24
    whole = int(unix)
    millis = min(int((unix - whole) * 1000), 999)  # truncated, as clocks show time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def parse_since(text: str) -> float:
    """Unix time of ``--since``: a duration ago, or a time (local unless it says its
    offset; a bare ``HH:MM`` is its latest occurrence)."""
    from datetime import datetime, timedelta

    from remo.client.errors import UsageError
    from remo.core.errors import InvalidArgument
    from remo.core.timeexpr import parse_duration

    spelled = text.strip()
    try:
        return time.time() - parse_duration(spelled).total_seconds()
    except InvalidArgument:
        pass
    now = datetime.now().astimezone()
    try:
        if len(spelled) <= 8 and ":" in spelled:  # 14:00 or 14:00:30: today's, or yesterday's
            clock = datetime.strptime(spelled, "%H:%M:%S" if spelled.count(":") == 2 else "%H:%M")
            when = now.replace(
                hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0
            )
            return (when - timedelta(days=1) if when > now else when).timestamp()
        when = datetime.fromisoformat(spelled.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a duration (10m, 2h, 1d) or a time "
            "('2026-12-01 14:00', 14:00, 2026-12-01T14:00:00Z)"
        ) from None
    return (when if when.tzinfo else when.astimezone()).timestamp()

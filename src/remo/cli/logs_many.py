"""`remo logs` of several jobs: one OutputMany stream, each line started by the job it
came from (``train | epoch 1``), as ``docker compose logs`` prints its services'."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

import click

from remo.cli.common import one_line
from remo.cli.logs import rfc3339_ms

if TYPE_CHECKING:
    from remo.client.sync import Client
    from remo.client.types import OutputChunk

#: The prefixes' colours (SGR codes), one per job in the order named, as docker
#: compose cycles them: cyan, yellow, green, magenta, blue, then their bright kinds.
COLORS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)


def check_ids(job_ids: Sequence[str], offset: int | None) -> None:
    """Usage errors of a several-job ``logs``, before anything is sent."""
    from remo.client.errors import UsageError
    from remo.client.many import check_job_ids

    if offset is not None:
        raise UsageError(
            "--from OFFSET is a byte of one job's output: give one ID with it "
            "(--tail or --since choose where several jobs start)"
        )
    check_job_ids(job_ids)


def color_wanted() -> bool:
    """Coloured prefixes: only on a terminal, never with $NO_COLOR set (no-color.org)
    or on a terminal that says it has no colours (TERM=dumb)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def print_many(
    client: Client,
    job_ids: Sequence[str],
    *,
    follow: bool,
    stdout: bool,
    stderr: bool,
    tail_lines: int | None,
    since: float | None,
    timestamps: bool,
) -> int:
    """Print the output of ``job_ids``, each line prefixed; how many jobs' output ended
    with an error (each reported on stderr as it ends)."""
    out = sys.stdout.buffer
    lines = PrefixedLines(out, job_ids, color=color_wanted(), timestamps=timestamps)
    failed = 0
    try:
        for item in client.output_many(
            job_ids,
            follow=follow,
            stdout=stdout,
            stderr=stderr,
            tail_lines=tail_lines,
            since=since,
            timestamps=timestamps,
        ):
            if item.chunk is not None:
                if not lines.write(item.job_id, item.chunk):
                    continue
            else:
                lines.end(item.job_id)
            out.flush()
            if item.chunk is None and item.error:
                failed += 1
                click.echo(f"remo: job {item.job_id}: {one_line(item.error)}", err=True)
    except BaseException:
        # Interrupted or cut off: the partial lines held back are shown all the same.
        with contextlib.suppress(OSError, ValueError):
            lines.end_all()
            out.flush()
        raise
    return failed


class PrefixedLines:
    """Several jobs' output, a whole line at a time, each line started by its job's
    prefix (padded to the longest name) and, with timestamps, the time its first byte
    arrived. A job's partial last line is held until its newline or its end."""

    def __init__(
        self, out: BinaryIO, job_ids: Sequence[str], *, color: bool, timestamps: bool
    ) -> None:
        self.out = out
        self.timestamps = timestamps
        width = max(len(job_id) for job_id in job_ids)
        self.prefixes: dict[str, bytes] = {}
        for i, job_id in enumerate(job_ids):
            label = f"{job_id.ljust(width)} |"
            if color:
                label = f"\x1b[{COLORS[i % len(COLORS)]}m{label}\x1b[0m"
            self.prefixes[job_id] = f"{label} ".encode()
        #: Each job's partial line and the time its first byte arrived.
        self.held: dict[str, tuple[bytes, float | None]] = {}

    def _head(self, job_id: str, when: float | None) -> bytes:
        prefix = self.prefixes[job_id]
        return prefix + rfc3339_ms(when).encode() + b" " if self.timestamps else prefix

    def write(self, job_id: str, chunk: OutputChunk) -> bool:
        """Write the lines ``chunk`` completes; whether anything was written."""
        data = chunk.data
        first = data.find(b"\n")
        held = self.held.pop(job_id, None)
        if first < 0:
            if data or held is not None:
                self.held[job_id] = (held[0] + data, held[1]) if held else (data, chunk.time)
            return False
        parts = []
        if held is not None:
            parts.append(self._head(job_id, held[1]) + held[0] + data[: first + 1])
            data = data[first + 1 :]
        lines = data.split(b"\n")
        rest = lines.pop()
        if lines:
            head = self._head(job_id, chunk.time)
            parts.append(head + (b"\n" + head).join(lines) + b"\n")
        if rest:
            self.held[job_id] = (rest, chunk.time)
        self.out.write(b"".join(parts))
        return True

    def end(self, job_id: str) -> None:
        """The job's output has ended: its partial line, if any, with a newline added."""
        held = self.held.pop(job_id, None)
        if held is not None:
            self.out.write(self._head(job_id, held[1]) + held[0] + b"\n")

    def end_all(self) -> None:
        for job_id in list(self.held):
            self.end(job_id)

"""`remo top`: a live view of your running jobs and what they use, refreshed every second.

One ListJobs call per refresh (running jobs with their live usage), whatever the number
of jobs. Keys: ``c`` sorts by CPU (the default), ``m`` by memory, ``a`` by age, ``q``
quits (Ctrl-C too). Drawn with rich's Live display on the terminal's alternate screen.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from remo.cli.common import connect, profile_option

if TYPE_CHECKING:
    from remo.client.sync import Client
    from remo.core.status import JobStatus

#: Sort keys: the key pressed, the column it names, how to order (largest first).
SORTS: dict[str, tuple[str, Any]] = {
    "c": ("CPU", lambda job: (job.live.cpu_cores or 0.0) if job.live else 0.0),
    "m": ("MEMORY", lambda job: (job.live.sample.memory_bytes or 0) if job.live else 0),
    "a": ("AGE", lambda job: -job.started_at),
}


@click.command("top")
@click.option("-a", "--all", "all_users", is_flag=True, help="Every user's jobs (admins only).")
@click.option(
    "-n",
    "--interval",
    type=click.FloatRange(min=0.2),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Print the table once and exit (for scripts).")
@profile_option
def command(all_users: bool, interval: float, once: bool) -> None:
    """Show your running jobs live: CPU, memory, IO, processes, against their limits.

    Sorted by CPU; press m to sort by memory, a by age, c by CPU again, q to quit.

    \b
    Examples:
      remo top
      remo top --all            every user's jobs (admins)
      remo top --once           one table, no screen handling
    """
    from rich.console import Console

    console = Console()
    with connect() as client:
        if once or not sys.stdin.isatty():
            console.print(render(running(client, all_users), "c"))
            return
        live_view(console, client, all_users, interval)


def running(client: Client, all_users: bool) -> list[JobStatus]:
    """The running jobs, with what they use now: one call."""
    page = client.list_page(
        page_size=1000, states=["running"], all_users=all_users, live_usage=True
    )
    return page.jobs


def live_view(console: Any, client: Client, all_users: bool, interval: float) -> None:
    from rich.live import Live

    sort = "c"
    with cbreak(), Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            live.update(render(running(client, all_users), sort), refresh=True)
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                key = read_key(left)
                if key in ("q", "\x03"):
                    return
                if key in SORTS:
                    sort = key
                    break


def render(jobs: list[JobStatus], sort: str) -> Any:
    """The table of ``jobs``, sorted by ``sort`` (a key of :data:`SORTS`)."""
    from rich.table import Table

    from remo.cli.ps import command_text
    from remo.cli.status import cpu_text
    from remo.core.units import format_duration, format_size

    title, key = SORTS[sort]
    table = Table(
        title=f"remo top: {len(jobs)} running, by {title.lower()}"
        "  (c cpu, m memory, a age, q quit)",
        title_justify="left",
        expand=True,
    )
    for column in ("ID", "NAME", "CPU", "MEMORY", "IO R/W", "PROCS", "AGE", "COMMAND"):
        table.add_column(
            column, no_wrap=column != "COMMAND", style="bold" if column == title else ""
        )
    now = time.time()
    for job in sorted(jobs, key=key, reverse=True):
        live = job.live
        sample = live.sample if live else None
        memory = "-"
        if sample is not None and sample.memory_bytes is not None:
            memory = format_size(sample.memory_bytes)
            if job.limits.memory:
                memory += f" / {format_size(job.limits.memory)}"
        io = "-"
        if live and live.io_read_bytes_per_second is not None:
            io = (
                f"{format_size(round(live.io_read_bytes_per_second))}/s "
                f"{format_size(round(live.io_write_bytes_per_second or 0))}/s"
            )
        table.add_row(
            job.id,
            job.name or "-",
            cpu_text(live.cpu_cores, job.limits.cpu) if live else "-",
            memory,
            io,
            str(sample.processes) if sample and sample.processes is not None else "-",
            format_duration(max(0.0, now - job.started_at)),
            command_text(job.argv),
        )
    return table


@contextlib.contextmanager
def cbreak() -> Iterator[None]:
    """Keys arrive one by one, unechoed, while the view is up (the terminal's modes are
    restored afterwards, also after an error)."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_key(timeout: float) -> str | None:
    """One key pressed within ``timeout`` seconds, or None."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    return os.read(sys.stdin.fileno(), 1).decode(errors="replace").lower()

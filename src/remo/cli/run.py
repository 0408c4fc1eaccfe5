"""`remo run`: start a command on the server, stream its output, exit with its code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from remo.cli.common import EXIT_INTERRUPTED, connect, hint_command, profile_option

if TYPE_CHECKING:
    from remo.client.connection import Client
    from remo.core.spec import Limits
    from remo.core.status import JobStatus

T = TypeVar("T")


def _parsed(option: str, parse: Callable[[str], T], value: str) -> T:
    """``parse(value)``, with any error turned into a usage error naming ``option``."""
    from remo.client.errors import UsageError
    from remo.core.errors import InvalidArgument

    try:
        return parse(value)
    except (InvalidArgument, ValueError) as err:
        raise UsageError(f"{option}: {err}") from None


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("K=V", ...)`` as a dict; a usage error for an entry without ``=`` or name."""
    from remo.client.errors import UsageError

    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--env {pair!r}: expected NAME=VALUE (e.g. --env DEBUG=1)")
        if not name or "\0" in name or any(c.isspace() for c in name):
            raise UsageError(f"--env {pair!r}: invalid variable name {name!r}")
        env[name] = value
    return env


def parse_limits(
    cpu: str | None,
    memory: str | None,
    io_read: str | None,
    io_write: str | None,
    pids: int | None,
) -> Limits:
    """The limits the options ask for, checked as the server would check them."""
    from remo.client.errors import UsageError
    from remo.core.errors import InvalidArgument
    from remo.core.spec import Limits

    limits = Limits(pids=pids)
    if cpu is not None or memory is not None or io_read is not None or io_write is not None:
        from remo.core.units import parse_cpu, parse_rate, parse_size

        limits = Limits(
            cpu=_parsed("--cpu", parse_cpu, cpu) if cpu is not None else None,
            memory=_parsed("--memory", parse_size, memory) if memory is not None else None,
            io_read_bps=(
                _parsed("--io-read", parse_rate, io_read) if io_read is not None else None
            ),
            io_write_bps=(
                _parsed("--io-write", parse_rate, io_write) if io_write is not None else None
            ),
            pids=pids,
        )
    try:
        limits.validate()
    except InvalidArgument as err:
        raise UsageError(str(err)) from None
    return limits


def parse_when(
    delay: str | None, at: str | None, every: str | None
) -> tuple[float | None, float | None, float | None]:
    """``(delay_seconds, at_unix, every_seconds)`` from ``--in``, ``--at``, ``--every``."""
    from remo.client.errors import UsageError

    if delay is not None and at is not None:
        raise UsageError("--in and --at both set the first run: give only one")
    if delay is None and at is None and every is None:
        return None, None, None
    from datetime import datetime

    from remo.core.timeexpr import parse_at, parse_duration

    delay_s = _parsed("--in", parse_duration, delay).total_seconds() if delay is not None else None
    at_unix = None
    if at is not None:
        now = datetime.now().astimezone()
        at_unix = _parsed("--at", lambda text: parse_at(text, now), at).timestamp()
    every_s = (
        _parsed("--every", parse_duration, every).total_seconds() if every is not None else None
    )
    return delay_s, at_unix, every_s


def local_time(unix: float) -> str:
    """``2025-01-31 14:05:00 CET``: a moment in this machine's time zone."""
    from datetime import datetime

    return datetime.fromtimestamp(unix).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Start and print the job id; do not stream.")
@click.option("--cpu", metavar="CORES", help="CPU limit in cores: 1.5, 0.2, 150%.")
@click.option("--memory", metavar="SIZE", help="Memory limit: 512M, 2G, 1.5GiB (x1024), 100MB.")
@click.option(
    "--io-read", metavar="RATE", help="Disk read limit per second: 10M, 500k/s (at least 64k)."
)
@click.option(
    "--io-write", metavar="RATE", help="Disk write limit per second: 10M, 500k/s (at least 64k)."
)
@click.option(
    "--pids",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N processes at once (remo's own init is not counted).",
)
@click.option(
    "-e", "--env", multiple=True, metavar="NAME=VALUE", help="Set a variable; repeatable."
)
@click.option("--cwd", metavar="DIR", help="Absolute working directory on the server.")
@click.option(
    "--network",
    type=click.Choice(["host", "none"]),
    help="host (default): the server's network; none: no network at all.",
)
@click.option("--private-tmp", is_flag=True, help="Give the job its own empty /tmp.")
@click.option("--in", "delay", metavar="DURATION", help="Run later: 30s, 5m, 2h, 1d.")
@click.option("--at", metavar="TIME", help="Run at a time: 02:00, '2026-12-01 02:00'.")
@click.option("--every", metavar="DURATION", help="Run again every DURATION: 1h, 1d.")
@profile_option
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARG]...")
@click.pass_context
def command(
    ctx: click.Context,
    detach: bool,
    cpu: str | None,
    memory: str | None,
    io_read: str | None,
    io_write: str | None,
    pids: int | None,
    env: tuple[str, ...],
    cwd: str | None,
    network: str | None,
    private_tmp: bool,
    delay: str | None,
    at: str | None,
    every: str | None,
    argv: tuple[str, ...],
) -> None:
    """Run CMD on the server: stream its output here, exit with its exit code.

    The command runs without a shell, as your account on the server, in your home
    directory unless --cwd says otherwise. Output is stdout and stderr combined,
    byte for byte. Ctrl-C detaches and leaves the job running. Exit code: the job's
    (128+N if signal N killed it).

    \b
    Examples:
      remo run -- make -j8 test
      remo run -d --memory 2G --cpu 1.5 -- ./train.sh      prints the job id
      remo run --env RUST_LOG=debug --cwd /srv/app -- ./server
      remo run --network none --pids 64 -- ./untrusted
      remo run --in 5m -- ./backup.sh                       once, in 5 minutes
      remo run --at 02:00 -- ./backup.sh                    once, at the next 02:00
      remo run --every 1d --in 2h -- ./report.sh            in 2 hours, then daily
    """
    from remo.client.errors import UsageError

    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or not argv[0]:
        raise UsageError("give the command to run after --, e.g. remo run -- make test")
    variables = parse_env(env)
    limits = parse_limits(cpu, memory, io_read, io_write, pids)
    if cwd is not None and not cwd.startswith("/"):
        raise UsageError(f"--cwd {cwd!r}: give an absolute path on the server")
    delay_s, at_unix, every_s = parse_when(delay, at, every)
    scheduled = delay_s is not None or at_unix is not None or every_s is not None

    with connect() as client:
        result = client.start(
            list(argv),
            env=variables,
            cwd=cwd,
            limits=limits,
            network=network,
            private_tmp=private_tmp,
            delay=delay_s,
            at=at_unix,
            every=every_s,
        )
        if result.schedule is not None:
            sched = result.schedule
            when = local_time(sched.next_run_at) if sched.next_run_at is not None else "never"
            click.echo(f"schedule {sched.id}: next run at {when}")
            return
        job = result.job
        if job is None:
            raise UsageError("the server answered without a job or a schedule")
        if scheduled:
            click.echo(
                f"remo: warning: the server does not support schedules; it started job "
                f"{job.id} now",
                err=True,
            )
        if detach:
            click.echo(job.id)
            return
        ctx.exit(_attach(client, job))


def _attach(client: Client, job: JobStatus) -> int:
    """Stream the job's output until it ends; its exit code. Ctrl-C detaches."""
    from remo.client.connection import job_exit_code
    from remo.client.errors import ConnectionFailed, JobLost

    out = sys.stdout.buffer
    position = 0
    try:
        for chunk in client.output(job.id, follow=True):
            out.write(chunk.data)
            out.flush()
            position = chunk.end
        final = client.wait(job.id)
    except ConnectionFailed as err:
        again = hint_command(f"logs -f --from {position}", job.id)
        raise ConnectionFailed(
            f'{err}; job {job.id} may still be running: follow it with "{again}"',
            code=err.code,
        ) from err
    except KeyboardInterrupt:
        click.echo(
            f"detached from job {job.id} (still running): follow with "
            f'"{hint_command("logs -f", job.id)}", stop with "{hint_command("stop", job.id)}"',
            err=True,
        )
        return EXIT_INTERRUPTED
    note = ending_note(final)
    if note:
        click.echo(f"remo: {note}", err=True)
    code = job_exit_code(final)
    if code is None:
        raise JobLost(f"job {final.id} was lost: {final.reason or 'no exit status recorded'}")
    return code


def ending_note(job: JobStatus) -> str:
    """A line worth telling the user about how the job ended, or ``""``."""
    from remo.core.status import signal_name

    if job.oom_killed:
        from remo.core.units import format_size

        limit = f" (memory limit {format_size(job.limits.memory)})" if job.limits.memory else ""
        return f"job {job.id} was killed by the out-of-memory killer{limit}"
    if job.oom_kills:
        how = f"exited {job.exit_code}" if job.exit_code is not None else job.state.value
        return (
            f"{job.oom_kills} process(es) of job {job.id} were killed by the out-of-memory "
            f"killer; the job {how}"
        )
    if job.signal is not None and job.state.value in ("killed", "stopped"):
        by = "stopped with" if job.state.value == "stopped" else "killed by"
        return f"job {job.id} was {by} {signal_name(job.signal)}"
    if job.output_truncated:
        from remo.cli.status import dropped_text

        return f"job {job.id}'s output: {dropped_text(job)}"
    return ""

"""`remo run`: start a command on the server, stream its output, exit with its code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import click

from remo.cli.common import EXIT_INTERRUPTED, connect, hint_command, profile_option
from remo.cli.run_options import (
    in_option_terms,
    local_time,
    parse_env,
    parse_labels,
    parse_limits,
    parse_when,
    require_utf8,
)

if TYPE_CHECKING:
    from remo.client.sync import Client
    from remo.core.status import JobStatus


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Start and print the job id; do not stream.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With -d (or a schedule): print the job (schedule) as JSON (docs/CLI.md).",
)
@click.option("--cpu", metavar="CORES", help="CPU limit in cores: 1.5, 0.2, 150%.")
@click.option("--memory", metavar="SIZE", help="Memory limit: 512M, 2G, 1.5GiB (x1024), 100MB.")
@click.option(
    "--io-read", metavar="RATE", help="Disk read limit per second: 10M, 500k/s (at least 64k)."
)
@click.option(
    "--io-write", metavar="RATE", help="Disk write limit per second: 10M, 500k/s (at least 64k)."
)
@click.option(
    "--pids", metavar="N", help="At most N processes at once (remo's own init is not counted)."
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
@click.option("--name", metavar="NAME", help="Name the job (then use it wherever an id goes).")
@click.option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Tag the job (repeatable); remo ps --label KEY=VALUE filters by it.",
)
@click.option(
    "-i/-I",
    "--stdin/--no-stdin",
    "stdin",
    default=None,
    help="Send this terminal's stdin to the job (-i), or give it /dev/null (-I). "
    "Default: send it when it is a pipe or a file.",
)
@click.option("--in", "delay", metavar="DURATION", help="Run later: 30s, 5m, 2h, 1d.")
@click.option("--at", metavar="TIME", help="Run at a time: 02:00, '2026-12-01 02:00'.")
@click.option("--every", metavar="DURATION", help="Run again every DURATION: 1h, 1d.")
@profile_option
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARG]...")
@click.pass_context
def command(
    ctx: click.Context,
    detach: bool,
    as_json: bool,
    cpu: str | None,
    memory: str | None,
    io_read: str | None,
    io_write: str | None,
    pids: str | None,
    env: tuple[str, ...],
    cwd: str | None,
    network: str | None,
    private_tmp: bool,
    name: str | None,
    labels: tuple[str, ...],
    stdin: bool | None,
    delay: str | None,
    at: str | None,
    every: str | None,
    argv: tuple[str, ...],
) -> None:
    """Run CMD on the server: stream its output here, exit with its exit code.

    The command runs without a shell, as your account on the server, in your home
    directory unless --cwd says otherwise. The job's stdout comes to your stdout and
    its stderr to your stderr, byte for byte. Your stdin goes to the job when it is a
    pipe or a file (cat data.csv | remo run -- wc -l), until its end of file; a
    terminal's only with -i. Ctrl-C (or SIGTERM, SIGHUP) detaches: the job keeps
    running, its stdin is closed. Exit code: the job's (128+N if signal N killed it).
    With -d, prints only the job id (a schedule's id with --in/--at/--every) on
    stdout; detached jobs and schedules read /dev/null.

    \b
    Examples:
      remo run -- make -j8 test
      cat data.csv | remo run -- wc -l
      remo run -- make 2>errors.log                   the job's stderr into a file
      remo run -d --memory 2G --cpu 1.5 -- ./train.sh      prints the job id
      id=$(remo run -d -- ./build.sh) && remo wait "$id"
      remo run -d --json -- ./build.sh | jq .pid
      remo run --env RUST_LOG=debug --cwd /srv/app -- ./server
      remo run --network none --pids 64 -- ./untrusted
      remo run -d --name train --label team=ml -- ./train.sh   then: remo logs -f train
      remo run --in 5m -- ./backup.sh                       once, in 5 minutes
      remo run --at 02:00 -- ./backup.sh                    once, at the next 02:00
      remo run --every 1d --in 2h -- ./report.sh            in 2 hours, then daily
    """
    from remo.client.errors import UsageError

    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or not argv[0]:
        raise UsageError("give the command to run after --, e.g. remo run -- make test")
    for i, arg in enumerate(argv):
        require_utf8(arg, f"argument {i}" if i else "the command name")
    for item in env:
        require_utf8(item, "--env")
    require_utf8(cwd or "", "--cwd")
    require_utf8(name or "", "--name")
    for item in labels:
        require_utf8(item, "--label")
    variables = parse_env(env)
    tags = parse_labels(labels)
    limits = parse_limits(cpu, memory, io_read, io_write, pids)
    if cwd is not None and not cwd.startswith("/"):
        raise UsageError(f"--cwd {cwd!r}: give an absolute path on the server")
    delay_s, at_unix, every_s = parse_when(delay, at, every)
    scheduled = delay_s is not None or at_unix is not None or every_s is not None
    if as_json and not (detach or scheduled):
        raise UsageError("--json goes with -d (or --in/--at/--every): a streamed run prints output")
    if stdin and (detach or scheduled):
        raise UsageError(
            "-i/--stdin goes with a run you stay attached to: detached jobs and schedules "
            "read /dev/null"
        )
    send_stdin = not (detach or scheduled) and (stdin if stdin is not None else stdin_is_data())

    from remo.client.errors import InvalidRequest

    with connect() as client:
        try:
            result = client.start(
                list(argv),
                env=variables,
                cwd=cwd,
                limits=limits,
                network=network,
                private_tmp=private_tmp,
                name=name or "",
                labels=tags,
                delay=delay_s,
                at=at_unix,
                every=every_s,
                stdin=send_stdin,
            )
        except InvalidRequest as err:
            raise InvalidRequest(
                in_option_terms(str(err)), code=err.code, reason=err.reason, fields=err.fields
            ) from None
        if result.schedule is not None:
            sched = result.schedule
            when = local_time(sched.next_run_at) if sched.next_run_at is not None else "never"
            sentence = f"schedule {sched.id}: next run at {when}"
            if as_json:
                from remo.cli.ps import print_json, schedule_json

                print_json(schedule_json(sched))
            elif detach:
                click.echo(sched.id)
                click.echo(sentence, err=True)
            else:
                click.echo(sentence)
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
            if as_json:
                from remo.cli.ps import job_json, print_json

                print_json(job_json(job))
            else:
                click.echo(job.id)
            return
        ctx.exit(_attach(client, job, send_stdin))


#: Signals that detach `remo run` as Ctrl-C does: a closed terminal (SIGHUP), a
#: service manager or `kill` (SIGTERM). The job is not remo run's to end.
DETACHING_SIGNALS = ("SIGTERM", "SIGHUP")


class _Detach(Exception):
    """Raised in the main thread by a detaching signal's handler."""


@contextlib.contextmanager
def _signals_detach() -> Iterator[None]:
    """While streaming: SIGTERM and SIGHUP raise :class:`_Detach`, as SIGINT raises
    KeyboardInterrupt (outside grpc's code, as :func:`common.interrupt_outside_grpc`
    has it). The previous handlers come back afterwards."""
    import threading

    from remo.client import calls

    detach = calls.interrupting(_Detach)

    if threading.current_thread() is not threading.main_thread():
        yield  # in the agent: the command forwards these signals as Ctrl-C
        return

    previous = {}
    for name in DETACHING_SIGNALS:
        number = getattr(signal, name)
        previous[number] = signal.signal(number, detach)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stdin_is_data() -> bool:
    """Whether our stdin is something to send: a pipe or a file, not a terminal, not
    /dev/null (the job reads /dev/null anyway: no stream needed) and not closed."""
    import stat

    try:
        fd = sys.stdin.fileno()
        mine = os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        return False
    if os.isatty(fd):
        return False
    if stat.S_ISCHR(mine.st_mode):
        try:
            null = os.stat(os.devnull)
        except OSError:
            return True
        return (mine.st_rdev, mine.st_ino) != (null.st_rdev, null.st_ino)
    return True


def _attach(client: Client, job: JobStatus, send_stdin: bool = False) -> int:
    """Stream the job's stdout here to stdout and its stderr to stderr until it ends
    (sending our stdin to it meanwhile when asked); its exit code. Ctrl-C, SIGTERM and
    SIGHUP detach."""
    import threading

    from remo.client.errors import ConnectionFailed, JobLost

    out = sys.stdout.buffer
    err_out = sys.stderr.buffer
    position = 0
    if send_stdin:
        # Read as the job reads (gRPC's flow control pulls the next chunk); the job's
        # stdin closes at our end of file, or when we detach or exit.
        _enlarge_pipe(sys.stdin.fileno())
        # (sys.stdin is this thread's: in the agent, the command's own stdin)
        writer = threading.Thread(
            target=_send_stdin,
            args=(client, job.id, sys.stdin.buffer),
            name="remo-stdin",
            daemon=True,
        )
        writer.start()
    try:
        with _signals_detach():
            # (the server ends the follow with the job's final status: no call after it)
            followed = client.follow(job.id)
            for chunk in followed:
                sink = err_out if chunk.stream == "stderr" else out
                sink.write(chunk.data)
                sink.flush()
                position = chunk.end
            final = followed.status
            assert final is not None
    except ConnectionFailed as err:
        again = hint_command(f"logs -f --from {position}", job.id)
        raise ConnectionFailed(
            f'{err}; job {job.id} may still be running: follow it with "{again}"',
            code=err.code,
        ) from err
    except BrokenPipeError:
        # The reader of our output went away (remo run -- ... | head -1): the job is
        # not ours to end; say how to find it, then leave as SIGPIPE would (141).
        click.echo(
            f"remo: output closed; job {job.id} keeps running: "
            f'"{hint_command("logs", job.id)}", "{hint_command("stop", job.id)}"',
            err=True,
        )
        raise
    except (KeyboardInterrupt, _Detach):
        with contextlib.suppress(OSError, ValueError):
            out.flush()
        stdin_note = "; its stdin is closed" if send_stdin else ""
        click.echo(
            f"detached from job {job.id} (still running{stdin_note}): follow with "
            f'"{hint_command("logs -f", job.id)}", stop with "{hint_command("stop", job.id)}"',
            err=True,
        )
        return EXIT_INTERRUPTED
    note = ending_note(final)
    if note:
        click.echo(f"remo: {note}", err=True)
    code = final.exit_status
    if code is None:
        raise JobLost(f"job {final.id} was lost: {final.reason or 'no exit status recorded'}")
    return code


def _enlarge_pipe(fd: int) -> None:
    """A pipe on our stdin holds 64 KiB: each read, hence each message to the server,
    would be at most that. 1 MiB (the usual most an account may ask) quarters the
    messages and the CPU they cost; best effort."""
    import fcntl
    import stat

    with contextlib.suppress(OSError, AttributeError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)


def _send_stdin(client: Client, job_id: str, source: BinaryIO) -> None:
    """Send our stdin to the job until its end. A failure is not ours to report: the
    job sees its stdin closed, and its output and exit code say the rest."""
    from remo.client.errors import ClientError

    with contextlib.suppress(ClientError, OSError, ValueError):
        client.write_stdin(job_id, source)


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

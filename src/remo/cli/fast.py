"""The ``remo`` command's entry point: through the profile's agent when it can, else
in this process — the same verbs, output and exit codes either way.

Every command used to pay the interpreter, click, ``import grpc`` and a TLS handshake
before its first byte reached the server (~100 ms here). As ssh's ControlMaster does,
the first command of a profile starts an agent (:mod:`remo.cli.agent`) that keeps the
connection; later commands hand it their command line and their stdin, stdout and
stderr over a private unix socket and wait for the exit code, importing nothing but
the standard library. When there is no agent, or it cannot answer, or declines (another
build, another environment, a changed profile), the command runs here as before; when
none runs, it is started for the next command (``REMO_AGENT_IDLE``: seconds it waits
for one, default 600; ``0`` turns agents off). ``--no-agent`` or ``REMO_NO_AGENT=1``
bypass it.
"""

import os
import sys

from remo.cli import agent_link as link

# (not typing.TYPE_CHECKING: importing typing costs the command ~5 ms; mypy knows the name;
# and no ``from __future__ import annotations``, ~0.2 ms: such annotations are quoted)
TYPE_CHECKING = False

if TYPE_CHECKING:  # (the hot path imports no more than it must)
    import signal as _signal
    from collections.abc import Sequence
    from typing import NoReturn
else:
    # signal's own module wraps these in enums: importing enum costs the command ~5 ms
    import _signal

#: How long a command waits for the agent to take it before running on its own.
ACCEPT_TIMEOUT = 2.0
#: After a forwarded Ctrl-C, how long to wait for the agent's exit code.
INTERRUPT_GRACE = 2.0
EXIT_INTERRUPTED = 130
#: Signals forwarded to the agent while it runs the command.
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


def main(argv: "Sequence[str] | None" = None) -> "NoReturn":
    args = list(sys.argv[1:] if argv is None else argv)
    if _agent_wanted(args):
        try:
            code = _through_agent(args)
        except KeyboardInterrupt:  # before the handlers that forward it were in place
            _say("interrupted")
            code = EXIT_INTERRUPTED
        if code is not None:
            # Nothing of ours is buffered (the agent wrote to our descriptors): leave
            # without the interpreter's clean-up, ~2 ms of a ~15 ms command.
            os._exit(code)
    from remo.cli.main import main as direct

    direct(args)


def idle_seconds() -> float:
    """``REMO_AGENT_IDLE`` (seconds; default 600; 0: no agents)."""
    raw = os.environ.get("REMO_AGENT_IDLE", "")
    try:
        return max(0.0, float(raw)) if raw else link.DEFAULT_IDLE
    except ValueError:
        return link.DEFAULT_IDLE


def _agent_wanted(args: list[str]) -> bool:
    if "--no-agent" in args[: args.index("--") if "--" in args else len(args)]:
        return False
    if os.environ.get("REMO_NO_AGENT", "") not in ("", "0") or os.environ.get("REMO_DEBUG"):
        return False
    if idle_seconds() == 0:
        return False
    if link.verb_of(args) not in link.AGENT_VERBS:
        return False
    head = args[: args.index("--") if "--" in args else len(args)]
    return not any(a in ("-h", "--help", "--version") for a in head)


def _through_agent(args: list[str]) -> int | None:
    """Run the command through the agent; its exit code, or None to run it here."""
    chosen = link.selection(args)
    path = link.socket_path(chosen)
    try:
        link.check_private(os.path.dirname(path))
        sock = link.connect(path, ACCEPT_TIMEOUT)
    except link.LinkError:
        _start_agent(chosen, path)
        return None
    # Held from the request on until they are forwarded (see _wait_for_exit): one that
    # came between the agent's acceptance and our handlers would end this command
    # alone, the agent running on with our descriptors.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)
    try:
        code = _through(sock, args, chosen)
    finally:
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
    if code == RESTART:  # (only now: a child inherits the mask)
        _start_agent(chosen, path)
        return None
    return code


#: What :func:`_through` returns for an agent that asks to be replaced (never an exit code).
RESTART = -1


def _through(sock: "link.Socket", args: list[str], chosen: str) -> int | None:
    """The command through the connected agent: its exit code; None when the agent
    declines it, RESTART when it asks to be replaced."""
    with sock:
        try:
            request = {
                "op": "run",
                "argv": args,
                "env": link.printing_env(),
                "columns": _columns(),
                "selection": chosen,
                "build": link.build_id(),
            }
            link.send(sock, request, [0, 1, 2])
            answer, _ = link.receive(sock)
        except (OSError, link.LinkError, ValueError):
            return None
        if answer is None or not answer.get("accepted"):
            return RESTART if answer is not None and answer.get("restart") else None
        return _wait_for_exit(sock)


def _wait_for_exit(sock: link.Socket) -> int:
    """Forward Ctrl-C, SIGTERM and SIGHUP while the agent runs the command; its code."""
    interrupted: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        interrupted.append(signum)
        try:  # noqa: SIM105 - contextlib costs the hot path ~3 ms to import
            link.send(sock, {"signal": signum})
        except OSError:
            pass
        raise _Forwarded  # out of the wait: it goes on, bounded now

    for signum in FORWARDED:
        _signal.signal(signum, forward)
    sock.settimeout(None)
    held = True
    while True:
        try:
            if held:  # (one that came meanwhile is forwarded now)
                held = False
                _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
            answer, _ = link.receive(sock)
        except _Forwarded:
            # the agent answers an interrupt with the command's own words and exit
            # code; if it does not in time, this command ends as interrupted
            sock.settimeout(INTERRUPT_GRACE)
            continue
        except (OSError, link.LinkError, ValueError):
            answer = None
        if answer is not None and "exit" in answer:
            return int(answer["exit"])
        if answer is None:
            # The agent went away (or did not answer the interrupt in time).
            if interrupted:
                _say("interrupted")
                return EXIT_INTERRUPTED
            _say("the agent that ran this command ended before it did; run it again")
            return 1


class _Forwarded(Exception):
    """Raised by the signal handler once it forwarded a signal to the agent."""


def _say(text: str) -> None:
    try:  # noqa: SIM105 - as above
        os.write(2, f"remo: {text}\n".encode())
    except OSError:
        pass


def _columns() -> int | None:
    try:
        return os.get_terminal_size(1).columns
    except OSError:
        return None


def _start_agent(chosen: str, path: str) -> None:
    """Start the agent for the next command; never fails this one."""
    idle = idle_seconds()
    if idle == 0:
        return
    try:
        link.make_private_dir(os.path.dirname(path))
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            argv = [sys.executable, "-m", "remo.cli.agent", path, chosen, repr(idle)]
            # Its own session: no terminal's signals reach it; the command is not
            # waited for and needs no reaping of it (it outlives us).
            import subprocess

            subprocess.Popen(
                argv,
                stdin=devnull,
                stdout=devnull,
                stderr=devnull,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(devnull)
    except (OSError, link.LinkError):
        pass


if __name__ == "__main__":
    main()

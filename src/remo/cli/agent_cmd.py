"""`remo agent status|stop`: the profile's agent, which keeps the connection for later
commands (see docs/CLI.md, "The agent")."""

from __future__ import annotations

import os
import sys
import time

import click

from remo.cli import agent_link as link
from remo.cli.common import profile_option


@click.group("agent")
def group() -> None:
    """The agent that keeps this profile's connection open for later commands.

    The first command of a profile starts it; later ones (run, ps, status, logs, wait,
    stop, kill, rm, whoami) go through it and skip the connection set-up. It exits
    after $REMO_AGENT_IDLE seconds without a command (default 600; 0: no agents), when
    the profile file changes, or on `remo agent stop`. --no-agent or REMO_NO_AGENT=1
    run one command without it.
    """


def _ask(op: str) -> dict[str, object] | None:
    path = link.socket_path(link.selection(sys.argv[1:]))
    try:
        link.check_private(os.path.dirname(path))
        with link.connect(path, 5.0) as sock:
            link.send(sock, {"op": op})
            answer, _ = link.receive(sock)
    except (OSError, link.LinkError, ValueError):
        return None
    return answer


@group.command("status")
@profile_option
def status() -> None:
    """Whether this profile's agent runs, and what it does."""
    answer = _ask("status")
    if answer is None or "pid" not in answer:
        click.echo("no agent runs for this profile (the next command starts one)")
        return
    started = float(str(answer.get("started", 0)))
    click.echo(
        f"agent {answer.get('pid')} for {answer.get('profile')} ({answer.get('server')}): "
        f"up {time.time() - started:.0f}s, {answer.get('commands')} command(s), "
        f"{answer.get('running')} running now, exits after "
        f"{float(str(answer.get('idle_timeout', 0))):g}s idle"
    )


@group.command("stop")
@profile_option
def stop() -> None:
    """Stop this profile's agent (commands in progress finish first)."""
    answer = _ask("stop")
    click.echo("agent stopped" if answer else "no agent runs for this profile")

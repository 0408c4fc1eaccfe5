"""`remo top` in a real terminal (tmux): it shows the running jobs, reorders on a key,
and quits on q, against a real server."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_daily import ok
from tests.support import wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=False, timeout=10
    ).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def row_of(text: str, job_id: str) -> int:
    """The line number of the job's row (its id first on the line, after the border)."""
    for number, line in enumerate(text.splitlines()):
        cells = line.replace("│", " ").split()
        if cells and cells[0] == job_id:
            return number
    return -1


async def test_top_shows_jobs_sorts_on_keys_and_quits(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    busy = await ok(cli_env, "run", "-d", "--cpu", "0.5", "--", "sh", "-c", "while :; do :; done")
    busy_id = busy.stdout.strip()
    hold = (
        "import time; b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(120)"
    )
    big_id = (await ok(cli_env, "run", "-d", "--", "/usr/bin/python3", "-c", hold)).stdout.strip()
    script = tmp_path / "top.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in cli_env.items())
    remo = Path(sys.executable).with_name("remo")
    script.write_text(f"{exports}exec {remo} top --interval 0.5\n")
    session = f"remo-top-{os.getpid()}"
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "30", f"bash {script}")
    try:

        def sorted_by(word: str, first: str, second: str) -> bool:
            text = screen(session)
            a, b = row_of(text, first), row_of(text, second)
            return f"by {word}" in text and 0 <= a < b

        # By CPU: the busy loop first; the memory holder idles.
        await wait_until(lambda: sorted_by("cpu", busy_id, big_id), 15, what="sorted by cpu")
        tmux("send-keys", "-t", session, "m")
        await wait_until(lambda: sorted_by("memory", big_id, busy_id), 10, what="by memory")
        tmux("send-keys", "-t", session, "q")
        await wait_until(
            lambda: session not in tmux("list-sessions", "-F", "#{session_name}"),
            10,
            what="top to quit on q",
        )
    finally:
        tmux("kill-session", "-t", session)
        for job_id in (busy_id, big_id):
            await ok(cli_env, "stop", "--grace", "0", job_id)

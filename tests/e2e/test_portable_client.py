"""The client side runs where Linux-only code cannot: the CLI's user-facing verbs and the
SDK, driven against a real server with every Linux-only module and call blocked (what a
macOS machine lacks) and every server-side package of remo unimportable."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import me
from tests.support import wait_until

pytestmark = pytest.mark.root

#: Run before the code under test: an import blocker and the Linux-only calls removed.
PRELUDE = r"""
import os, select, signal, socket, sys
BLOCKED = ("remo.supervisor", "remo.cgroups", "remo.output", "remo.worker", "remo.server",
           "remo.store", "remo.schedule", "ctypes", "remo.core.memory")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
            raise ImportError(f"{name} is blocked: Linux-only or server-side")
        return None

sys.meta_path.insert(0, Blocker())
LINUX_ONLY = {
    os: ("pidfd_open", "memfd_create", "eventfd", "sched_setaffinity", "sched_getaffinity",
         "splice", "posix_fadvise"),
    select: ("epoll",),
    signal: ("pidfd_send_signal",),
    socket: ("SO_PEERCRED",),
}
for module, names in LINUX_ONLY.items():
    for name in names:
        if hasattr(module, name):
            delattr(module, name)
"""

SDK = r"""
from remo.client import Client
with Client.from_file(sys.argv[1]) as remo:
    result = remo.run(["sh", "-c", "echo portable"])
    assert result.exit_status == 0 and result.output == b"portable\n", result
    assert remo.whoami().user
    print("sdk ok")
"""

CLI = r"""
from remo.cli.main import main
main(sys.argv[1:])
"""


async def _python(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRELUDE + code, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_blocker_blocks() -> None:
    code, out = await _python("import remo.worker")
    assert code != 0 and "blocked" in out
    code, out = await _python("import select; print(hasattr(select, 'epoll'))")
    assert (code, out.strip()) == (0, "False")


async def test_the_sdk_runs_without_linux_only_code(credential: Path) -> None:
    code, out = await _python(SDK, str(credential))
    assert (code, out.strip().splitlines()[-1]) == (0, "sdk ok"), out


async def test_the_user_verbs_run_without_linux_only_code(cli_env: dict[str, str]) -> None:
    for args, expected in (
        (["run", "--", "echo", "from", "the", "cli"], "from the cli"),
        (["ps", "-q"], "1"),
        (["status", "1"], "succeeded"),
        (["logs", "1"], "from the cli"),
        (["wait", "1"], ""),
        (["whoami"], me()[0]),
        (["rm", "1"], ""),
    ):
        code, out = await _python(CLI, *args, env=cli_env)
        assert code == 0 and expected in out, (args, out)


#: The command's side of the agent (remo.cli.fast), with what macOS's socket module lacks
#: removed from the C module it uses as well.
FAST = r"""
import _socket
for name in ("SO_PEERCRED", "MSG_CMSG_CLOEXEC"):
    if hasattr(_socket, name):
        delattr(_socket, name)
from remo.cli.fast import main
main(sys.argv[1:])
"""


def _agent_status(env: dict[str, str]) -> dict[str, object] | None:
    from remo.cli import agent_link

    path = agent_link.socket_path(agent_link.selection([], env), env)
    try:
        with agent_link.connect(path, 5.0) as sock:
            agent_link.send(sock, {"op": "status"})
            answer, _ = agent_link.receive(sock)
    except (OSError, agent_link.LinkError):
        return None
    return answer if answer and "pid" in answer else None


async def test_the_fast_entry_point_runs_through_the_agent_without_linux_only_code(
    cli_env: dict[str, str],
) -> None:
    """`remo` as installed: the first command runs on its own and starts the agent (which
    runs here, on Linux), the next ones go through it, the command's side portable."""
    code, out = await _python(FAST, "whoami", env=cli_env)
    assert code == 0 and me()[0] in out, out
    before = await wait_until(lambda: _agent_status(cli_env), 30, what="the agent")
    verbs = (
        (["run", "--", "echo", "through", "the", "agent"], "through the agent"),
        (["status", "1"], "succeeded"),
        (["whoami"], me()[0]),
    )
    for args, expected in verbs:
        code, out = await _python(FAST, *args, env=cli_env)
        assert code == 0 and expected in out, (args, out)
    after = _agent_status(cli_env)
    assert after is not None and after["pid"] == before["pid"]
    assert int(str(after["commands"])) == int(str(before["commands"])) + len(verbs)

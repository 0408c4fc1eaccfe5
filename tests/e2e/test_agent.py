"""The profile's agent (remo.cli.fast, remo.cli.agent): commands through it answer as
they do on their own, it is private to its account, and it steps aside when it must."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from remo.cli import agent_link
from tests.e2e.conftest import Server
from tests.support import wait_until

pytestmark = pytest.mark.root


async def remo(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``remo`` as installed (through the agent unless told otherwise)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remo.cli.fast", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def status_of_agent(env: dict[str, str]) -> dict[str, object] | None:
    path = agent_link.socket_path(agent_link.selection([], env), env)
    try:
        with agent_link.connect(path, 5.0) as sock:
            agent_link.send(sock, {"op": "status"})
            answer, _ = agent_link.receive(sock)
    except (OSError, agent_link.LinkError):
        return None
    return answer if answer and "pid" in answer else None


async def agent_up(env: dict[str, str]) -> dict[str, object]:
    """Start the agent (a first command does) and wait until it listens."""
    await remo(env, "whoami")
    return await wait_until(lambda: status_of_agent(env), 30, what="the agent to listen")


#: Commands whose output does not depend on when they run.
SAME_EITHER_WAY = [
    ("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"),
    ("logs", "1"),
    ("logs", "--stderr", "-n", "1", "1"),
    ("status", "99"),
    ("logs", "nosuchname"),
    ("stop", "1"),
    ("kill", "1"),
    ("run", "--cpu", "lots", "--", "true"),
    ("ps", "--state", "bogus"),
    ("wait", "1"),
]


async def test_commands_answer_the_same_through_the_agent(
    server: Server, cli_env: dict[str, str]
) -> None:
    first = await agent_up(cli_env)
    direct_env = {**cli_env, "REMO_NO_AGENT": "1"}
    for args in SAME_EITHER_WAY:
        through = await remo(cli_env, *args)
        direct = await remo(direct_env, *args)
        assert through == direct, args
    assert (await remo(cli_env, "run", "--", "wc", "-c", stdin=b"12345")) == (0, "5\n", "")
    again = status_of_agent(cli_env)
    assert again is not None and again["pid"] == first["pid"]
    assert int(str(again["commands"])) >= len(SAME_EITHER_WAY) + 1  # they went through it
    # --no-agent on the command line, as REMO_NO_AGENT
    assert (await remo(cli_env, "--no-agent", "status", "99"))[0] == 5
    code, out, _ = await remo(cli_env, "agent", "status")
    assert code == 0 and f"agent {first['pid']}" in out


async def test_ctrl_c_through_the_agent_detaches(server: Server, cli_env: dict[str, str]) -> None:
    await agent_up(cli_env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remo.cli.fast", "run", "--", "sh", "-c",
        "echo started; exec sleep 60", env=cli_env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"started\n"
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err
    assert err.decode().startswith("detached from job "), err
    job_id = err.decode().split()[3]
    status = json.loads((await remo(cli_env, "status", "--json", job_id))[1])
    assert status["state"] == "JOB_STATE_RUNNING"
    assert (await remo(cli_env, "stop", "--grace", "0", job_id))[0] == 0


async def test_a_killed_agent_is_replaced(server: Server, cli_env: dict[str, str]) -> None:
    first = await agent_up(cli_env)
    os.kill(int(str(first["pid"])), signal.SIGKILL)  # started by our command
    await wait_until(lambda: not Path(f"/proc/{first['pid']}").exists(), 10)
    # its socket is still there, nobody listens: the command runs on its own ...
    assert await remo(cli_env, "status", "99") == (5, "", "remo: no job 99\n")
    # ... and starts a new agent for the next one
    second = await wait_until(lambda: status_of_agent(cli_env), 30, what="a new agent")
    assert second["pid"] != first["pid"]
    assert await remo(cli_env, "status", "99") == (5, "", "remo: no job 99\n")


def cpu_seconds(pid: int) -> float | None:
    """CPU time the process's threads ran so far (schedstat), or None once it has exited
    (a zombie until whoever adopted it reaps it). A thread that ends meanwhile is left
    out of the sum."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return None
    total = 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


async def test_a_stopped_agent_leaves_without_spinning(
    server: Server, cli_env: dict[str, str]
) -> None:
    """``remo agent stop`` wakes the agent's accept loop at once, and it leaves having
    used little CPU (it used to shut its listener down, which left the loop retrying
    accept at full speed for a second: ~1 s of a core, slowing the next command)."""
    if not Path("/proc/self/schedstat").exists():
        pytest.skip("the kernel keeps no schedstat")
    agent = await agent_up(cli_env)
    pid = int(str(agent["pid"]))
    before = cpu_seconds(pid)
    assert before is not None
    assert (await remo(cli_env, "agent", "stop"))[0] == 0
    used = 0.0

    def gone() -> bool:
        nonlocal used
        now = cpu_seconds(pid)
        if now is None:
            return True
        used = now - before
        return False

    await wait_until(gone, 30, what="the agent to leave")
    assert used < 0.5, f"the stopped agent ran {used:.2f} s of CPU before it left"


async def test_a_changed_profile_makes_the_agent_step_aside(
    server: Server, cli_env: dict[str, str], tmp_path: Path
) -> None:
    first = await agent_up(cli_env)
    credential = Path(cli_env["REMO_PROFILE"])
    renewed = server.credential(*_me())
    credential.write_bytes(renewed.read_bytes())  # a renewed credential, same file
    assert (await remo(cli_env, "status", "99"))[0] == 5  # declined: run on its own
    await wait_until(lambda: not Path(f"/proc/{first['pid']}").exists(), 30, what="it to exit")
    second = await wait_until(lambda: status_of_agent(cli_env), 30, what="a new agent")
    assert second["pid"] != first["pid"]


async def test_a_revoked_credential_fails_through_the_agent(
    server: Server, cli_env: dict[str, str]
) -> None:
    await agent_up(cli_env)
    direct = {**cli_env, "REMO_NO_AGENT": "1"}
    assert (await remo(cli_env, "whoami"))[0] == 0
    done = subprocess.run(
        [sys.executable, "-m", "remo", "admin", "revoke", "--user", _me()[0],
         "--state-dir", str(server.state_dir)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    through, alone = await remo(cli_env, "whoami"), await remo(direct, "whoami")
    assert through[0] == alone[0] == 4
    assert through == alone


async def test_the_agent_refuses_another_account(
    server: Server, cli_env: dict[str, str], unix_users: tuple[str, ...]
) -> None:
    await agent_up(cli_env)
    path = agent_link.socket_path(agent_link.selection([], cli_env), cli_env)
    runtime = Path(cli_env["XDG_RUNTIME_DIR"])  # (short: the agent's dir is in it)
    probe = "\n".join(
        [
            "import socket, struct, sys",
            "s = socket.socket(socket.AF_UNIX)",
            "try:",
            "    s.connect(sys.argv[1])",
            "except OSError as e:",
            "    print('refused', e.errno); sys.exit()",
            'body = b\'{"op": "status"}\'',
            "try:",
            "    s.sendall(struct.pack('!I', len(body)) + body)",
            "    print('answer', s.recv(100))",
            "except OSError:",
            "    print('answer', b'')",
        ]
    )
    as_bob = ["setpriv", "--reuid=remo-bob", "--regid=remo-bob", "--clear-groups"]

    def attempt() -> str:
        return subprocess.run(
            [*as_bob, "/usr/bin/python3", "-c", probe, path],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    # The directory keeps other accounts out ...
    assert attempt().startswith("refused 13")
    # ... and were it open, the agent itself would not answer them.
    for part in (runtime, runtime / "remo-agent"):
        part.chmod(0o755)
    os.chmod(path, 0o666)
    try:
        assert attempt() == "answer b''"
    finally:
        for part in (runtime, runtime / "remo-agent"):
            part.chmod(0o700)
    # an agent dir open to others is not used at all
    (runtime / "remo-agent").chmod(0o755)
    try:
        assert await remo(cli_env, "status", "99") == (5, "", "remo: no job 99\n")
        before = status_of_agent(cli_env)
        assert before is not None
        commands = before["commands"]
        await remo(cli_env, "status", "99")
        after = status_of_agent(cli_env)
        assert after is not None and after["commands"] == commands  # not through it
    finally:
        (runtime / "remo-agent").chmod(0o700)


def _me() -> tuple[str, str]:
    from tests.e2e.conftest import me

    return me()


async def test_a_relative_profile_path_is_read_from_the_commands_directory(
    server: Server, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """``REMO_PROFILE=./me.remo`` names another file in another directory: the command
    from each directory uses its own, through an agent or not."""
    serials = {}
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        issued = server.credential(*_me())
        (directory / "me.remo").write_bytes(issued.read_bytes())
        (directory / "me.remo").chmod(0o600)
        serials[name] = issued.name.rsplit("-", 1)[1].removesuffix(".remo")
    env = {**cli_env, "REMO_PROFILE": "./me.remo"}

    async def serial_from(name: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remo.cli.fast", "whoami", "--json", env=env,
            cwd=tmp_path / name, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        return str(json.loads(out)["serial"])

    for _ in range(3):  # the first starts an agent; the next ones go through one
        for name in ("a", "b"):
            assert (await serial_from(name)).startswith(serials[name])
    # ... and they did go through one each, which reads the file of its directory
    here = os.getcwd()
    for name in ("a", "b"):
        os.chdir(tmp_path / name)
        try:
            status = await wait_until(lambda: status_of_agent(env), 30, what="an agent")
        finally:
            os.chdir(here)
        assert status["profile"] == str(tmp_path / name / "me.remo")
        assert int(str(status["commands"])) >= 1


async def test_ctrl_c_ends_a_wait_through_the_agent(
    server: Server, cli_env: dict[str, str]
) -> None:
    """A command blocked in a call (remo wait) is interrupted in the agent as it would
    be on its own: one line, exit 130. The agent then steps aside (an interrupt raised in
    a thread may leave grpc's locks held, see remo.cli.agent): it exits once its commands
    are done, whatever its channels' state, and the next command starts a new one."""
    await agent_up(cli_env)
    _, out, _ = await remo(cli_env, "run", "-d", "--", "sleep", "60")
    job_id = out.strip()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remo.cli.fast", "wait", job_id, env=cli_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        agent = status_of_agent(cli_env)
        assert agent is not None
        await wait_until(lambda: (status_of_agent(cli_env) or {}).get("running") == 1, 30)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        # (click writes a newline before it: a terminal's ^C ends no line)
        assert (proc.returncode, err.decode()) == (130, "\nremo: interrupted\n")
        gone = Path(f"/proc/{agent['pid']}")
        await wait_until(lambda: not gone.exists(), 30, what="the interrupted agent to exit")
        assert await remo(cli_env, "status", "99") == (5, "", "remo: no job 99\n")
        after = await wait_until(lambda: status_of_agent(cli_env), 30, what="a new agent")
        assert after["pid"] != agent["pid"]
    finally:
        await remo(cli_env, "stop", "--grace", "0", job_id)

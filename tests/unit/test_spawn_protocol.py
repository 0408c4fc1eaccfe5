"""The supervisor ↔ init wire (remo.supervisor.spawn): the request a waiting init is sent,
and the one-line report it answers with. Over socketpairs, without forking an init."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.core.errors import StartFailed
from remo.supervisor import spawner
from remo.supervisor.accounts import Account
from remo.supervisor.namespaces import Isolation
from remo.supervisor.spawn import Spawned, SpawnRequest, parse_report, read_report
from tests.support import wait_until_sync

ALICE = Account("alice", 1001, 1002, "/home/alice", "/bin/sh", True, (1002, 27))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the supervisor's end, the init's end), as the spawner makes them: SOCK_STREAM."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    with ours, theirs:
        yield ours, theirs


def test_a_request_encodes_everything_the_init_reads() -> None:
    request = SpawnRequest(
        argv=["sh", "-c", "echo é"],
        env={"PATH": "/usr/bin", "X": "a=b"},
        cwd="/home/alice",
        account=ALICE,
        isolation=Isolation(pid=True, mount=True, network_none=True, private_tmp=True),
        output_cap=1 << 20,
        stdin=True,
    )
    assert json.loads(request.encode()) == {
        "argv": ["sh", "-c", "echo é"],
        "env": {"PATH": "/usr/bin", "X": "a=b"},
        "cwd": "/home/alice",
        "account": {
            "name": "alice",
            "uid": 1001,
            "gid": 1002,
            "home": "/home/alice",
            "shell": "/bin/sh",
            "switch": True,
            "groups": [1002, 27],
        },
        "network_none": True,
        "private_tmp": True,
        "output_cap": 1 << 20,
        "stdin": True,
    }
    plain = json.loads(SpawnRequest(["true"], {}, "/", ALICE).encode())
    assert (plain["network_none"], plain["private_tmp"], plain["output_cap"]) == (
        False,
        False,
        None,
    )


@pytest.mark.parametrize("size", [0, 3 << 20], ids=["small", "past-one-read"])
def test_a_framed_request_is_what_the_init_receives(
    pair: tuple[socket.socket, socket.socket], size: int
) -> None:
    ours, theirs = pair
    ours.setblocking(True)
    request = SpawnRequest(["printf", "x" * size], {"PATH": "/bin"}, "/", ALICE)
    body = request.encode()
    # (the init's end would fill up before a large request is sent: send alongside)
    sender = threading.Thread(
        target=ours.sendall, args=(spawner.REQUEST_HEADER.pack(len(body)) + body,)
    )
    sender.start()
    try:
        assert spawner._receive(theirs) == json.loads(body)
    finally:
        sender.join()


def test_a_request_cut_short_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.setblocking(True)
    ours.sendall(spawner.REQUEST_HEADER.pack(100) + b'{"argv": ')
    ours.shutdown(socket.SHUT_WR)
    with pytest.raises(ValueError, match="cut short"):
        spawner._receive(theirs)


def test_no_request_at_all_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.shutdown(socket.SHUT_WR)
    with pytest.raises(ValueError, match="no request"):
        spawner._receive(theirs)


async def test_read_report_takes_a_line_sent_in_pieces_and_closes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b"job 4")
    # runs once read_report has taken the first piece and waits for more
    asyncio.get_running_loop().call_soon(theirs.sendall, b"2\n")
    assert await read_report(ours) == b"job 42\n"
    assert ours.fileno() == -1


async def test_read_report_of_an_init_that_died_mid_line(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b'{"stage": "ex')
    theirs.close()
    assert await read_report(ours) == b'{"stage": "ex'


async def test_read_report_of_a_connection_reset(pair: tuple[socket.socket, socket.socket]) -> None:
    """An init killed with our bytes unread resets the connection: what came is kept."""
    ours, theirs = pair
    ours.send(b"F")  # never read by the init
    theirs.sendall(b"job")
    theirs.close()
    assert await read_report(ours) == b"job"


def test_a_job_report_gives_the_pids_without_a_pid_namespace() -> None:
    assert parse_report(100, b"job 4242\n", pid_namespace=False) == Spawned(100, 4242)


def test_in_a_pid_namespace_the_job_pid_is_the_inits_child_as_the_host_sees_it() -> None:
    """The init reports its namespace's pid (2, say); the host's is its only child's."""
    with subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True) as init:
        try:
            children = Path(f"/proc/{init.pid}/task/{init.pid}/children")
            child = int(wait_until_sync(lambda: children.read_text().split(), 5)[0])
            assert parse_report(init.pid, b"job 2\n", pid_namespace=True) == Spawned(
                init.pid, child
            )
        finally:
            os.killpg(init.pid, signal.SIGKILL)
    # gone: the job's pid is unknown (0), not an error
    assert parse_report(init.pid, b"job 2\n", pid_namespace=True) == Spawned(init.pid, 0)


def test_a_failure_report_raises_the_inits_reason() -> None:
    failure = {"stage": "chdir", "errno": errno.ENOENT, "detail": "cannot enter /nowhere"}
    with pytest.raises(StartFailed) as caught:
        parse_report(100, json.dumps(failure).encode() + b"\n", pid_namespace=True)
    assert (caught.value.stage, caught.value.errno) == ("chdir", errno.ENOENT)
    assert str(caught.value) == "cannot enter /nowhere: No such file or directory"
    no_errno = {"stage": "setup", "detail": "job set-up failed: boom"}
    with pytest.raises(StartFailed) as caught:
        parse_report(100, json.dumps(no_errno).encode(), pid_namespace=False)
    assert (caught.value.stage, caught.value.errno) == ("setup", None)


@pytest.mark.parametrize(
    "report",
    [
        b"",  # it died before reporting
        b"job 42",  # cut short
        b"job 42\njob 43\n",
        b"job -1\n",
        b"job 42 \n",
        b'{"stage": "ex',
        b'{"errno": 2}\n',  # no stage
        b'{"stage": "exec"}\n',  # no detail
        b"[1, 2]\n",
        b"\xff\xfe\n",
    ],
)
def test_anything_else_is_a_setup_failure(report: bytes) -> None:
    with pytest.raises(StartFailed) as caught:
        parse_report(100, report, pid_namespace=False)
    assert (caught.value.stage, caught.value.errno) == ("setup", None)
    assert caught.value.detail == "the job's init ended before starting it"

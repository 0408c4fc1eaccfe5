"""remo.cli.agent_link, the part of the agent's protocol that needs no agent: the peer's
uid (Linux's SO_PEERCRED; macOS's LOCAL_PEERCRED driven with a fake socket), the frames
and the descriptors they carry, and the JSON written with json's C parts."""

from __future__ import annotations

import _socket
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from remo.cli import agent_link as link


def test_the_peer_of_a_real_unix_socket_is_this_process_uid() -> None:
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with here, there:
        assert link.peer_uid(here) == os.getuid()


class _MacSocket:
    """What macOS's getsockopt(SOL_LOCAL, LOCAL_PEERCRED) gives: a struct xucred."""

    def __init__(self, version: int, uid: int) -> None:
        # u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]
        self.data = struct.pack("IIh16I", version, uid, 1, 20, *([0] * 15))
        self.asked: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        self.asked.append((level, option, size))
        return self.data[:size]


@pytest.fixture
def without_so_peercred(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on macOS: no SO_PEERCRED in the socket module."""
    monkeypatch.delattr(_socket, "SO_PEERCRED", raising=False)


@pytest.mark.usefixtures("without_so_peercred")
def test_without_so_peercred_the_uid_comes_from_local_peercred() -> None:
    fake = _MacSocket(version=0, uid=501)
    assert link.peer_uid(fake) == 501  # type: ignore[arg-type]
    # SOL_LOCAL (0), LOCAL_PEERCRED (1), sizeof(struct xucred) (76 on macOS)
    assert fake.asked == [(0, 1, 76)]


@pytest.mark.usefixtures("without_so_peercred")
def test_an_unknown_xucred_version_or_a_short_answer_is_no_uid() -> None:
    with pytest.raises(OSError, match="version 7"):
        link.peer_uid(_MacSocket(version=7, uid=501))  # type: ignore[arg-type]
    short = _MacSocket(version=0, uid=501)
    short.data = short.data[:6]
    with pytest.raises(OSError, match="6 bytes"):
        link.peer_uid(short)  # type: ignore[arg-type]


MESSAGES = [
    {"op": "run", "argv": ["run", "--", "sh", "-c", 'echo "a\\b"\n\t'], "columns": None},
    {"argv": ["\udcff\udcfe", "é", "日本", "\U0001f600", ""], "env": {"LANG": "C.UTF-8"}},
    {"exit": 130, "accepted": True, "restart": False, "started": 1765000000.125},
    {"nested": {"list": [1, -2, 3.5, None, [], {}]}},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_frames_are_json_as_the_json_module_writes_and_reads_it(message: dict[str, object]) -> None:
    text = link.dumps(message)
    assert text == json.dumps(message)
    assert link.loads(text) == message == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "NaN", '{"a": Infinity}', "[1,]"])
def test_what_is_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # (what json.loads raises too)
        link.loads(text)


@pytest.mark.parametrize("cloexec_flag", [True, False], ids=["linux", "no-MSG_CMSG_CLOEXEC"])
def test_a_frame_carries_descriptors_that_are_not_inherited(
    cloexec_flag: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not cloexec_flag:  # as on macOS: close-on-exec set after they arrived
        monkeypatch.delattr(_socket, "MSG_CMSG_CLOEXEC", raising=False)
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    try:
        link.send(here, {"op": "run", "argv": ["x"]}, [write_end, write_end, read_end])
        message, fds = link.receive(there, max_fds=3)
        assert message == {"op": "run", "argv": ["x"]}
        assert len(fds) == 3
        assert not any(os.get_inheritable(fd) for fd in fds)
        os.write(fds[0], b"through the passed descriptor")
        assert os.read(read_end, 100) == b"through the passed descriptor"
        for fd in fds:
            os.close(fd)
        here.close()
        assert link.receive(there) == (None, [])  # the end of the stream
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
        here.close()
        there.close()


def test_a_frame_cut_short_is_a_link_error() -> None:
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with here, there:
        here.sendall(struct.pack("!I", 10) + b'{"a"')
        here.shutdown(socket.SHUT_WR)
        with pytest.raises(link.LinkError, match="cut short"):
            link.receive(there)


def test_the_commands_side_imports_no_enum_re_or_socket_module() -> None:
    """What a command through the agent pays for: the entry point's imports (socket,
    signal and json would bring enum, re, selectors and collections: ~17 ms)."""
    code = (
        "import sys; before = set(sys.modules); import remo.cli.fast; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )  # (what the interpreter's start-up loaded, site's .pth files included, is not ours)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(done.stdout.split())
    assert "remo.cli.fast" in loaded
    heavy = {"enum", "re", "socket", "signal", "json", "selectors", "collections", "typing"}
    assert loaded & heavy == set()
    # nor these, ~0.2-0.3 ms each: shared libraries to load, or a module to read
    assert loaded & {"_struct", "zlib", "__future__"} == set()


def test_socket_names_are_16_hex_digits_and_differ_by_selection() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    one = link.socket_path(link.selection(["--profile", "a"], {}), env)
    other = link.socket_path(link.selection(["--profile", "b"], {}), env)
    assert one != other
    for path in (one, other):
        directory, name = os.path.split(path)
        assert directory == "/run/user/1000/remo-agent"
        digest, suffix = name.split(".", 1)
        assert suffix == "sock"
        assert len(digest) == 16
        int(digest, 16)
    assert link.socket_path(link.selection(["--profile", "a"], {}), env) == one


def test_the_agents_workers_are_reused_and_end_when_idle() -> None:
    import threading
    import time

    from remo.cli.agent import Workers

    workers = Workers(idle=0.3)
    ran: list[int] = []
    done = threading.Semaphore(0)

    def work(n: int) -> None:
        ran.append(threading.get_ident())
        done.release()

    before = threading.active_count()
    for n in range(20):
        workers.submit(work, n)
        assert done.acquire(timeout=10)
        time.sleep(0.01)  # (the thread is waiting again before the next)
    assert len(set(ran)) == 1  # one thread did them all, in turn
    # work that comes while every thread is busy gets a thread of its own
    gate = threading.Event()
    workers.submit(gate.wait, 10)
    workers.submit(work, 99)
    assert done.acquire(timeout=10)
    gate.set()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before  # idle for 0.3 s: ended
    # and a thread is started again for the next work
    workers.submit(work, 100)
    assert done.acquire(timeout=10)


def test_an_agent_started_while_another_holds_the_lock_leaves_before_importing_grpc(
    tmp_path: Path,
) -> None:
    """Every command that finds no agent starts one; all but the first must leave at
    once, not after importing grpc and click (~0.1 s of CPU each)."""
    import fcntl

    directory = tmp_path / "remo-agent"
    directory.mkdir(mode=0o700)
    path = directory / "0123456789abcdef.sock"
    code = (
        "import sys, runpy; sys.argv = ['agent', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('remo.cli.agent', run_name='__main__')\n"
        "finally:\n"
        "    print(' '.join(sorted(sys.modules)))\n"
    )
    chosen = json.dumps(["", "", "", "", ""])
    with open(f"{path}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), chosen, "600"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "REMO_PROFILE": str(tmp_path / "none.remo")},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "remo.cli.agent_link" in loaded  # (the agent's module ran, as __main__)
    assert not {"grpc", "click", "remo.client"} & loaded
    assert not path.exists()  # no socket of its own

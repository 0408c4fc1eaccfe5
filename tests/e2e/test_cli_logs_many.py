"""`remo logs ID ID...`: several jobs' output in one stream through the real CLI and a
real server, each whole line started by its job as the user named it (`train | epoch
1`), as `docker compose logs` prints its services'."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from remo.cli.main import cli
from remo.client.types import JobOutput, OutputChunk
from tests.e2e.conftest import CLI_MODULE, Server, start_cli
from tests.e2e.test_cli_daily import ok, remo
from tests.support import wait_until

STAMPED = re.compile(rb"^(\S+) +\| (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.*)$")
#: Waits on the release file the tests' jobs poll for (no timing in the tests: they wait
#: on what the jobs print, then release them).
HOLD = 'while [ ! -e "$0" ]; do sleep 0.05; done'


async def finished(env: dict[str, str], script: str, *, name: str = "") -> str:
    """The id of a job that ran ``sh -c script`` to its end."""
    named = ["--name", name] if name else []
    job_id = (await ok(env, "run", "-d", *named, "--", "sh", "-c", script)).stdout.strip()
    await remo(env, "wait", job_id)
    return job_id


def by_job(out: bytes) -> dict[bytes, list[bytes]]:
    """Each job's lines (prefix, padding and bar taken off), in the order printed;
    every line must be ``NAME<spaces> | text``."""
    lines: dict[bytes, list[bytes]] = defaultdict(list)
    assert out.endswith(b"\n"), out
    for line in out[:-1].split(b"\n"):
        name, bar, text = line.partition(b" | ")
        assert bar, line
        lines[name.rstrip(b" ")].append(text)
    return dict(lines)


async def test_two_finished_jobs_each_line_with_its_job_aligned(
    server: Server, cli_env: dict[str, str]
) -> None:
    short = await finished(cli_env, "echo hello; echo world >&2; echo bye")
    await finished(cli_env, "for i in 1 2 3; do echo epoch $i; done", name="train")
    done = await remo(cli_env, "logs", short, "train")
    assert (done.code, done.stderr) == (0, "")
    width = len("train")
    lines = by_job(done.stdout.encode())
    assert lines[b"train"] == [b"epoch 1", b"epoch 2", b"epoch 3"]
    # both streams (their relative order is as the two pipes were read: not fixed)
    assert sorted(lines[short.encode()]) == [b"bye", b"hello", b"world"]
    assert [line for line in lines[short.encode()] if line != b"world"] == [b"hello", b"bye"]
    assert lines.keys() == {short.encode(), b"train"}
    # every prefix padded to the longest name; no colour on a pipe
    for line in done.stdout.splitlines():
        assert line.startswith((f"{short:<{width}} | ", "train | ")), line
    assert "\x1b" not in done.stdout
    assert f"{short:<{width}} | hello\n" in done.stdout  # e.g. "1     | hello"


async def test_one_job_is_printed_as_ever_without_a_prefix(
    server: Server, cli_env: dict[str, str]
) -> None:
    job_id = await finished(cli_env, "printf 'x\\n\\377y'")
    code, out, _ = await cli_bytes(cli_env, "logs", job_id)
    assert (code, out) == (0, b"x\n\xffy")  # byte for byte: no prefix, no newline added


async def test_a_partial_last_line_gets_its_newline(
    server: Server, cli_env: dict[str, str]
) -> None:
    first = await finished(cli_env, "printf 'no newline'")
    second = await finished(cli_env, "printf 'x\\ny'")
    code, out, _ = await cli_bytes(cli_env, "logs", first, second)
    assert code == 0
    assert by_job(out) == {first.encode(): [b"no newline"], second.encode(): [b"x", b"y"]}


async def test_tail_stderr_and_timestamps_apply_to_each_job(
    server: Server, cli_env: dict[str, str]
) -> None:
    script = "for i in 1 2 3 4 5; do echo {t}$i; echo {t}err$i >&2; done"
    one = await finished(cli_env, script.format(t="a"))
    two = await finished(cli_env, script.format(t="b"))
    _, out, _ = await cli_bytes(cli_env, "logs", "--stdout", "--tail", "2", one, two)
    assert by_job(out) == {one.encode(): [b"a4", b"a5"], two.encode(): [b"b4", b"b5"]}
    _, out, _ = await cli_bytes(cli_env, "logs", "--stderr", one, two)
    assert by_job(out) == {
        one.encode(): [f"aerr{i}".encode() for i in range(1, 6)],
        two.encode(): [f"berr{i}".encode() for i in range(1, 6)],
    }
    _, out, _ = await cli_bytes(cli_env, "logs", "-t", "--stdout", "-n", "1", one, two)
    found = sorted(STAMPED.match(line).group(1, 3) for line in out.splitlines())  # type: ignore[union-attr]
    assert found == [(one.encode(), b"a5"), (two.encode(), b"b5")]


async def test_output_that_is_not_utf8_survives(server: Server, cli_env: dict[str, str]) -> None:
    one = await finished(cli_env, "printf '\\377\\376bad\\n\\000ok\\n'")
    two = await finished(cli_env, "printf '\\303(\\n'")
    code, out, err = await cli_bytes(cli_env, "logs", one, two)
    assert (code, err) == (0, b"")
    assert by_job(out) == {one.encode(): [b"\xff\xfebad", b"\x00ok"], two.encode(): [b"\xc3("]}


async def test_following_two_running_jobs_until_both_end(
    server: Server, cli_env: dict[str, str]
) -> None:
    release = server.tmp / "release"
    a_script = f"printf 'a1\\nhalf'; {HOLD}; echo ' done'; echo a3"
    b_script = f"echo b1; {HOLD}; printf 'b-last'"
    a = (await ok(cli_env, "run", "-d", "--", "sh", "-c", a_script, str(release))).stdout.strip()
    await ok(cli_env, "run", "-d", "--name", "train", "--", "sh", "-c", b_script, str(release))
    follower = await start_cli(cli_env, "logs", "-f", a, "train")
    assert follower.stdout is not None
    seen = b""
    try:
        while b"| a1\n" not in seen or b"| b1\n" not in seen:
            seen += await asyncio.wait_for(follower.stdout.readline(), 60)
    finally:
        release.touch()  # the jobs end whatever happened
    rest, err = await asyncio.wait_for(follower.communicate(), 60)
    assert (follower.returncode, err) == (0, b"")
    # "half" was held until its newline came; b's last line got one at its end
    assert by_job(seen + rest) == {
        a.encode(): [b"a1", b"half done", b"a3"],
        b"train": [b"b1", b"b-last"],
    }


async def test_ctrl_c_while_following_several(server: Server, cli_env: dict[str, str]) -> None:
    release = server.tmp / "release"
    ids = [
        (await ok(cli_env, "run", "-d", "--", "sh", "-c", script, str(release))).stdout.strip()
        # ("held" in the same write as "one": it has come once "one" has, however busy)
        for script in (f"printf 'one\\nheld'; {HOLD}", f"echo two; {HOLD}")
    ]
    try:
        follower = await start_cli(cli_env, "logs", "-f", *ids)
        assert follower.stdout is not None
        seen = b""
        while b"| one\n" not in seen or b"| two\n" not in seen:
            seen += await asyncio.wait_for(follower.stdout.readline(), 60)
        follower.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(follower.communicate(), 60)
    finally:
        release.touch()
    assert follower.returncode == 130, err
    assert err.decode().endswith("remo: interrupted\n"), err  # as `logs -f` of one job
    assert by_job(seen + rest)[ids[0].encode()] == [b"one", b"held"]  # nothing seen is lost


async def test_refused_before_anything_is_printed(server: Server, cli_env: dict[str, str]) -> None:
    job_id = await finished(cli_env, "echo hi")
    done = await remo(cli_env, "logs", job_id, "999999")
    assert (done.code, done.stdout) == (5, "")
    assert done.error == "remo: no job 999999"
    done = await remo(cli_env, "logs", job_id, "nosuchname")
    assert (done.code, done.stdout) == (5, "")
    assert "nosuchname" in done.error
    for args, needle in [
        (["--from", "3", job_id, job_id + "0"], "--from"),
        (["--from", "0", "1", "2"], "--from"),
        ([job_id, "train", job_id], f"job {job_id} is named twice"),
        ([str(n) for n in range(1, 1002)], "at most 1,000 jobs"),
        (["1", "s3"], "s3 is a schedule"),
        (["--stdout", "--stderr", "1", "2"], "give one or neither"),
    ]:
        done = await remo(cli_env, "logs", *args)
        assert (done.code, done.stdout) == (2, ""), (args, done)
        assert needle in done.error, (args, done.error)


async def test_colour_on_a_terminal_unless_no_color(
    server: Server, cli_env: dict[str, str]
) -> None:
    one = await finished(cli_env, "echo hi")
    two = await finished(cli_env, "echo there")
    env = {**cli_env, "TERM": "xterm"}
    out = await on_terminal(env, "logs", one, two)
    assert f"\x1b[36m{one} |\x1b[0m hi".encode() in out, out
    assert f"\x1b[33m{two} |\x1b[0m there".encode() in out, out
    out = await on_terminal({**env, "NO_COLOR": "1"}, "logs", one, two)
    assert b"\x1b" not in out and f"{one} | hi".encode() in out, out
    out = await on_terminal(env, "logs", one)
    assert out.replace(b"\r\n", b"\n") == b"hi\n"  # one job: its bytes, nothing added


def test_a_job_cut_short_is_reported_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(No server: an output that cannot be read is hard to make on purpose.)"""

    class Fake:
        def __enter__(self) -> Fake:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def output_many(self, job_ids: list[str], **_: object) -> Iterator[JobOutput]:
            assert job_ids == ["7", "train"]
            yield JobOutput("7", OutputChunk(0, b"part"))
            yield JobOutput("train", OutputChunk(0, b"epoch 1\nepo"))
            yield JobOutput("7", None, "could not read the output: Input/output error")
            yield JobOutput("train", OutputChunk(11, b"ch 2\n"))
            yield JobOutput("train", None)

    monkeypatch.setattr("remo.cli.logs.connect", Fake)
    result = CliRunner().invoke(cli, ["logs", "7", "train"])
    assert result.exit_code == 1
    assert result.stdout_bytes == (b"train | epoch 1\n7     | part\ntrain | epoch 2\n")
    assert result.stderr == "remo: job 7: could not read the output: Input/output error\n"


async def cli_bytes(env: dict[str, str], *args: str) -> tuple[int, bytes, bytes]:
    proc = await start_cli(env, *args)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def on_terminal(env: dict[str, str], *args: str) -> bytes:
    """What the CLI writes when its stdout is a terminal (a pseudo-terminal here)."""
    master, slave = os.openpty()
    got: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                return
            if not data:
                return
            got.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", CLI_MODULE, *args, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        os.close(slave)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        await wait_until(lambda: not reader.is_alive(), 30, what="the terminal's output")
    finally:
        os.close(master)
    return b"".join(got)

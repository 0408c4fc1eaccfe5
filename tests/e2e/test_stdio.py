"""A job's stdin, stdout and stderr through the real CLI and a real server: stdin in,
the two output streams kept apart and timed, tails and times, resumes and old jobs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import grpc
import pytest

from remo.client import Client
from remo.core import output_format
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, reason_of, start_cli
from tests.e2e.process import ServerProcess
from tests.e2e.test_cli_daily import ok, remo
from tests.support import wait_until, wait_until_sync

RFC3339_MS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.*)$")
GIB = 1 << 30


async def cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout: float = 120
) -> tuple[int, bytes, bytes]:
    """The CLI with ``stdin`` on a pipe (None: /dev/null); code, stdout, stderr."""
    pipe = asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE
    proc = await start_cli(env, *args, stdin=pipe)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err


def job_dir(server: Server, job_id: str) -> Path:
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
    return server.state_dir / "jobs" / user / job_id


# -- stdin --------------------------------------------------------------------------------


async def test_piped_stdin_reaches_the_job(server: Server, cli_env: dict[str, str]) -> None:
    assert await cli(cli_env, "run", "--", "wc", "-l", stdin=b"a\nb\n") == (0, b"2\n", b"")
    # an empty pipe is an empty stdin: the job reads end of file at once
    assert await cli(cli_env, "run", "--", "wc", "-c", stdin=b"") == (0, b"0\n", b"")


async def test_no_stdin_detached_and_schedules_read_dev_null(
    server: Server, cli_env: dict[str, str]
) -> None:
    code, out, _ = await cli(cli_env, "run", "--no-stdin", "--", "wc", "-c", stdin=b"ignored")
    assert (code, out) == (0, b"0\n")
    code, out, _ = await cli(cli_env, "run", "-d", "--", "wc", "-c", stdin=b"ignored")
    assert code == 0
    job_id = out.decode().strip()
    await ok(cli_env, "wait", job_id)
    assert (await ok(cli_env, "logs", job_id)).stdout == "0\n"
    done = await remo(cli_env, "run", "-d", "-i", "--", "cat")
    assert done.code == 2
    assert "-i/--stdin goes with a run you stay attached to" in done.error
    done = await remo(cli_env, "run", "--in", "1h", "-i", "--", "cat")
    assert done.code == 2


async def test_a_gib_of_stdin_arrives_byte_exact(server: Server, cli_env: dict[str, str]) -> None:
    proc = await start_cli(cli_env, "run", "--", "sha256sum", stdin=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    expected = hashlib.sha256()
    block = bytearray(os.urandom(1 << 20))
    for i in range(GIB >> 20):
        block[:8] = i.to_bytes(8, "big")  # every MiB differs: a lost or doubled one shows
        expected.update(block)
        proc.stdin.write(block)
        await proc.stdin.drain()
    proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err
    assert out.split()[0].decode() == expected.hexdigest()


def vm_rss(pid: int | str) -> int:
    """Resident memory of a process in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no VmRSS for {pid}")


async def test_a_job_that_never_reads_keeps_memory_bounded(
    server: Server, cli_env: dict[str, str]
) -> None:
    # The job never reads its stdin while the client offers 1 GiB: the pipe fills, the
    # server stops taking from the stream, flow control stops the client, the client
    # stops reading its own stdin. What was taken from the source stays small.
    proc = await start_cli(
        cli_env,
        "run",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 600",
        stdin=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    server_before = vm_rss("self")
    offered = 0

    async def offer() -> None:
        nonlocal offered
        assert proc.stdin is not None
        block = b"x" * (1 << 20)
        while offered < GIB:
            proc.stdin.write(block)
            await proc.stdin.drain()
            offered += len(block)

    feeder = asyncio.create_task(offer())
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        last = -1

        def stalled() -> bool:
            nonlocal last
            now, last = last, offered
            return now == offered and offered > 0

        await wait_until(stalled, 120, what="the client to stop taking stdin", interval=0.5)
        assert offered <= 256 << 20, f"{offered >> 20} MiB taken by a job that reads nothing"
        assert vm_rss(proc.pid) < 256 << 20
        assert vm_rss("self") - server_before < 128 << 20
    finally:
        feeder.cancel()
        jobs = [j for j in await server.running.jobs.list() if j.state.value == "running"]
        for job in jobs:
            await server.running.jobs.stop(job.id, grace=0)
        await asyncio.wait_for(proc.communicate(), 60)


async def test_ctrl_c_detaches_and_closes_the_jobs_stdin(
    server: Server, cli_env: dict[str, str]
) -> None:
    proc = await start_cli(
        cli_env,
        "run",
        "-i",
        "--",
        "sh",
        "-c",
        "echo ready; cat; echo got-eof",
        stdin=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdin.write(b"hello\n")
    await proc.stdin.drain()
    assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
    assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"hello\n"
    proc.send_signal(signal.SIGINT)
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130
    assert "detached from job 1 (still running; its stdin is closed)" in err.decode()
    # the job read end of file: it goes on to its end by itself
    assert (await ok(cli_env, "wait", "1")).code == 0
    assert (await ok(cli_env, "logs", "1")).stdout == "ready\nhello\ngot-eof\n"


async def test_write_stdin_refusals(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    viewer_channel, viewer = server.stub(server.credential("root", "viewer"))
    async with channel, viewer_channel:

        async def requests(job_id: str, data: bytes) -> AsyncIterator[pb.WriteStdinRequest]:
            yield pb.WriteStdinRequest(id=job_id, data=data)

        plain = (await stub.Start(pb.StartRequest(argv=["cat"]))).job
        fed = (await stub.Start(pb.StartRequest(argv=["cat"], stdin=True))).job
        try:
            with pytest.raises(grpc.RpcError) as caught:
                await stub.WriteStdin(requests(plain.id, b"x"))
            assert reason_of(caught.value) == "STDIN_NOT_OPEN"
            with pytest.raises(grpc.RpcError) as caught:
                await viewer.WriteStdin(requests(fed.id, b"x"))
            assert reason_of(caught.value) == "ROLE_NOT_ALLOWED"
            reply = await stub.WriteStdin(requests(fed.id, b"once\n"))
            assert (reply.written_bytes, reply.job_stopped_reading) == (5, False)
            with pytest.raises(grpc.RpcError) as caught:  # once per job
                await stub.WriteStdin(requests(fed.id, b"twice\n"))
            assert reason_of(caught.value) == "STDIN_NOT_OPEN"
            with pytest.raises(grpc.RpcError) as caught:
                await stub.WriteStdin(requests("99", b"x"))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            ended = (await stub.Wait(pb.WaitRequest(id=fed.id))).job
            assert ended.state == pb.JOB_STATE_SUCCEEDED
            with pytest.raises(grpc.RpcError) as caught:
                when = pb.When()
                when.delay.seconds = 3600
                await stub.Start(pb.StartRequest(argv=["cat"], stdin=True, when=when))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "stdin goes with a job started now" in str(caught.value.details())
        finally:
            await stub.Stop(pb.StopRequest(id=plain.id))


# -- stdout and stderr --------------------------------------------------------------------

#: Writes to stdout and stderr in turn, each after the test saw the one before: the
#: order across the two streams is then known (writes closer together than the init
#: can read them are ordered stream by stream, see docs/CLI.md).
TURNS = (
    'w() { while [ ! -e "$1" ]; do sleep 0.02; done; }; '
    'echo out; w "$0/1"; echo err >&2; w "$0/2"; echo out2; w "$0/3"; echo err2 >&2'
)


async def test_run_keeps_stdout_and_stderr_apart_and_logs_filters(
    server: Server, cli_env: dict[str, str]
) -> None:
    turns = server.tmp / "turns"
    turns.mkdir()
    proc = await start_cli(cli_env, "run", "--", "sh", "-c", TURNS, str(turns))
    assert proc.stdout is not None and proc.stderr is not None
    for turn, (stream, line) in enumerate(
        [(proc.stdout, b"out\n"), (proc.stderr, b"err\n"), (proc.stdout, b"out2\n")], 1
    ):
        assert await asyncio.wait_for(stream.readline(), 60) == line
        (turns / str(turn)).touch()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, out, err) == (0, b"", b"err2\n")
    assert (await ok(cli_env, "logs", "1")).stdout == "out\nerr\nout2\nerr2\n"
    assert (await ok(cli_env, "logs", "--stdout", "1")).stdout == "out\nout2\n"
    assert (await ok(cli_env, "logs", "--stderr", "1")).stdout == "err\nerr2\n"
    assert (await ok(cli_env, "logs", "--stderr", "--tail", "1", "1")).stdout == "err2\n"
    done = await remo(cli_env, "logs", "--stdout", "--stderr", "1")
    assert done.code == 2


async def test_timestamps_are_rfc3339_and_in_order(server: Server, cli_env: dict[str, str]) -> None:
    script = "for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; done"
    await cli(cli_env, "run", "--", "sh", "-c", script)
    lines = (await ok(cli_env, "logs", "-t", "1")).stdout.splitlines()
    assert len(lines) == 10
    stamps = []
    for line in lines:
        match = RFC3339_MS.match(line)
        assert match, line
        stamps.append(datetime.fromisoformat(match.group(1).replace("Z", "+00:00")))
    assert stamps == sorted(stamps)
    texts = [RFC3339_MS.match(line).group(2) for line in lines]  # type: ignore[union-attr]
    # each stream in order (across streams: as the init read them, see the test above)
    assert [t for t in texts if t.startswith("line")] == [f"line{i}" for i in range(1, 6)]
    assert [t for t in texts if t.startswith("err")] == [f"err{i}" for i in range(1, 6)]
    # with a stream filter and a tail
    lines = (await ok(cli_env, "logs", "-t", "--stderr", "-n", "2", "1")).stdout.splitlines()
    assert [RFC3339_MS.match(line).group(2) for line in lines] == ["err4", "err5"]  # type: ignore[union-attr]


async def test_tail_and_since(server: Server, cli_env: dict[str, str]) -> None:
    await cli(cli_env, "run", "--", "seq", "1", "100000")
    assert (await ok(cli_env, "logs", "--tail", "3", "1")).stdout == "99998\n99999\n100000\n"
    assert (await ok(cli_env, "logs", "--tail", "0", "1")).stdout == ""
    assert (await ok(cli_env, "logs", "-n", "1", "--since", "1h", "1")).stdout == "100000\n"
    assert (await ok(cli_env, "logs", "--since", "2099-01-01T00:00:00Z", "1")).stdout == ""
    whole = (await ok(cli_env, "logs", "--since", "2000-01-01 00:00", "1")).stdout
    assert whole.count("\n") == 100000
    # a last line without a newline counts as a line, as in tail -n
    await cli(cli_env, "run", "--", "printf", "a\\nb\\nc")
    assert (await ok(cli_env, "logs", "--tail", "2", "2")).stdout == "b\nc"
    done = await remo(cli_env, "logs", "--since", "yesterday-ish", "1")
    assert done.code == 2
    assert "--since 'yesterday-ish'" in done.error


async def test_tail_with_follow_then_live(server: Server, cli_env: dict[str, str]) -> None:
    release = server.tmp / "release"
    script = 'seq 1 10; while [ ! -e "$0" ]; do sleep 0.05; done; echo live'
    _code, out, _ = await cli(cli_env, "run", "-d", "--", "sh", "-c", script, str(release))
    job_id = out.decode().strip()
    follower = await start_cli(cli_env, "logs", "-f", "--tail", "2", job_id)
    assert follower.stdout is not None
    try:
        await wait_until(lambda: (job_dir(server, job_id) / "stdout").stat().st_size >= 21)
        assert await asyncio.wait_for(follower.stdout.readline(), 60) == b"9\n"
        assert await asyncio.wait_for(follower.stdout.readline(), 60) == b"10\n"
    finally:
        release.touch()  # the job ends whatever happened
    rest, _ = await asyncio.wait_for(follower.communicate(), 60)
    assert rest == b"live\n"
    assert follower.returncode == 0


async def test_jobs_from_the_old_layout_stay_readable(
    server: Server, cli_env: dict[str, str]
) -> None:
    await cli(cli_env, "run", "--", "sh", "-c", "echo one; echo two >&2")
    directory = job_dir(server, "1")
    merged = (await ok(cli_env, "logs", "1")).stdout.encode()
    # the layout before stdout and stderr were kept apart: one `output` file
    for name in ("stdout", "stderr", "records"):
        (directory / name).unlink()
    (directory / output_format.LEGACY_OUTPUT_FILE).write_bytes(merged)
    assert (await ok(cli_env, "logs", "1")).stdout == "one\ntwo\n"
    assert (await ok(cli_env, "logs", "--tail", "1", "1")).stdout == "two\n"
    assert (await ok(cli_env, "logs", "--stderr", "1")).stdout == ""  # untold: all stdout
    stamped = (await ok(cli_env, "logs", "-t", "1")).stdout
    assert stamped == f"{'-' * 24} one\n{'-' * 24} two\n"


async def test_bad_output_requests_are_refused_by_field(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["true"]))).job
        bad = [
            (pb.OutputRequest(id=job.id, streams=[7]), "streams"),
            (pb.OutputRequest(id=job.id, tail_lines=-1), "tail_lines"),
            (pb.OutputRequest(id=job.id, end_offset=-5), "end_offset"),
        ]
        for request, field in bad:
            with pytest.raises(grpc.RpcError) as caught:
                async for _ in stub.Output(request):
                    pass
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in str(caught.value.details())


async def test_end_offset_and_tail_scroll_back(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["seq", "1", "1000"]))).job
        await stub.Wait(pb.WaitRequest(id=job.id))

        async def read(**kw: object) -> tuple[int, bytes]:
            pieces = [m async for m in stub.Output(pb.OutputRequest(id=job.id, **kw))]  # type: ignore[arg-type]
            return (pieces[0].offset if pieces else -1), b"".join(p.data for p in pieces)

        whole = b"".join(b"%d\n" % i for i in range(1, 1001))
        start, last = await read(tail_lines=2)
        assert last == b"999\n1000\n"
        start, before = await read(tail_lines=2, end_offset=start)  # the two lines before
        assert before == b"997\n998\n"
        assert whole[start : start + len(before)] == before


# -- resuming -----------------------------------------------------------------------------


def test_a_follow_resumes_exactly_across_a_server_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    credential = server.credential(tmp_path / "me.remo")
    release = tmp_path / "release"
    # Interleaved stdout and stderr, waiting in the middle for the restart.
    script = (
        'i=0; while [ $i -lt 3000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); '
        'if [ $i -eq 1500 ]; then while [ ! -e "$0" ]; do sleep 0.05; done; fi; done'
    )
    server.start()
    got: dict[str, list[tuple[int, bytes]]] = {"all": [], "stderr": []}
    try:
        with Client.from_file(credential) as control:
            job = control.start(["sh", "-c", script, str(release)]).job
            assert job is not None

        def follow(name: str, **window: bool) -> None:
            with Client.from_file(credential, reconnect_timeout=60) as client:
                for chunk in client.output(job.id, follow=True, **window):
                    got[name].append((chunk.offset, chunk.data))

        followers = [
            threading.Thread(target=follow, args=("all",), daemon=True),
            threading.Thread(target=follow, args=("stderr",), kwargs={"stdout": False}),
        ]
        for thread in followers:
            thread.start()
        wait_until_sync(
            lambda: sum(len(d) for _, d in got["stderr"]) >= len(b"err 1499\n") * 1000,
            60,
            what="the first half",
        )
        server.stop()
        release.touch()  # the job goes on while no server runs
        server.start()
        for thread in followers:
            thread.join(120)
            assert not thread.is_alive()
    finally:
        release.touch()
        server.stop()
    directory = tmp_path / "state" / "jobs" / ("root" if os.geteuid() == 0 else "") / job.id
    assert directory.is_dir(), directory
    stdout = (directory / "stdout").read_bytes()
    stderr = (directory / "stderr").read_bytes()
    merged = b"".join(d for _, d in got["all"])
    assert len(merged) == len(stdout) + len(stderr)
    assert b"".join(d for _, d in got["stderr"]) == stderr
    assert stderr == b"".join(b"err %d\n" % i for i in range(3000))
    assert sorted(merged.splitlines()) == sorted((stdout + stderr).splitlines())
    # offsets are consecutive in the merged stream: nothing lost, nothing doubled
    position = 0
    for offset, data in got["all"]:
        assert offset == position
        position += len(data)

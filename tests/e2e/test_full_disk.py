"""A full disk never crashes the server: starts fail clearly, everything else goes on."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from remo.api.jobs import duration
from remo.v1 import jobs_pb2 as pb
from tests.conftest import remo_processes
from tests.e2e.conftest import Server, needs_root, serve
from tests.support import wait_until

pytestmark = needs_root


@asynccontextmanager
async def server_on_a_small_disk(tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose state dir is a 24 MiB tmpfs, unmounted once its supervisor left."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "remo-full-disk", str(state)], check=True
    )
    try:
        async with serve(tmp_path) as server:
            yield server
    finally:
        # The supervisor leaves its state dir once idle (if it has not in 15 s, the
        # unmount below is a lazy one).
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: not remo_processes(state), 15)
        result = subprocess.run(["umount", str(state)], check=False, capture_output=True)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(state)], check=False)
        assert not os.path.ismount(state)


def fill_until_enospc(directory: Path) -> Path:
    """Fill the filesystem; returns the filler, and fails unless ENOSPC really came."""
    filler = directory / "filler"
    block = b"\0" * (64 << 10)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    return filler


def dropped_while_full(state: Path, job_id: str) -> bool:
    """Whether the init of ``root``'s job ``job_id`` has dropped output because the disk
    was full (it keeps its counts in the job's status record as it goes)."""
    fields = (state / "jobs" / "root" / job_id / ".status").read_text().split()
    return len(fields) == 4 and int(fields[2]) > 0 and fields[3] == "1"


async def kill_supervisor(state: Path) -> None:
    """SIGKILL the supervisor of ``state`` (not its spawner or inits) and wait until it
    is gone."""
    (supervisor,) = [
        pid
        for pid in remo_processes(state)
        if b"remo.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]
    os.kill(supervisor, signal.SIGKILL)
    await wait_until(lambda: not Path(f"/proc/{supervisor}").exists(), 10)


async def test_full_disk(tmp_path: Path) -> None:
    """While the disk is full, starts are refused and reads go on; the job is not blocked:
    what it writes meanwhile is dropped and counted, and once space returns its output
    is written again and ends with a notice of what was lost."""
    space_back = tmp_path / "space-back"  # (outside the full disk)
    async with server_on_a_small_disk(tmp_path) as server:
        state = server.state_dir
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            # 1 KiB lines: far more than the slack of the output file's last page.
            script = (
                "echo line 1; until [ -e {flag} ]; do head -c 1023 /dev/zero | tr '\\0' x;"
                " echo; sleep 0.01; done; echo back; exit 4"
            )
            argv = ["sh", "-c", script.format(flag=space_back)]
            job = (await stub.Start(pb.StartRequest(argv=argv))).job
            async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
                if chunk.data:
                    break  # it is writing: now take the space away
            filler = fill_until_enospc(state)

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Start(pb.StartRequest(argv=["true"]))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "disk is full" in (caught.value.details() or "")
            # reads keep working while the disk is full
            now = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
            assert now.state == pb.JOB_STATE_RUNNING
            assert (await stub.ListJobs(pb.ListJobsRequest())).jobs
            first = [c async for c in stub.Output(pb.OutputRequest(id=job.id))]
            assert b"".join(c.data for c in first).startswith(b"line 1\n")

            await wait_until(
                lambda: dropped_while_full(state, job.id), 30, what="output dropped on ENOSPC"
            )
            filler.unlink()  # space returns
            space_back.touch()
            status = (await asyncio.wait_for(stub.Wait(pb.WaitRequest(id=job.id)), 30)).job
            assert status.state == pb.JOB_STATE_FAILED and status.exit_code == 4  # never blocked
            assert status.output_dropped_bytes > 0 and status.output_dropped_disk_full
            output = b"".join([c.data async for c in stub.Output(pb.OutputRequest(id=job.id))])
            assert output.startswith(b"line 1\n")
            # written again once space returned, then the notice of what was dropped
            notice = (
                f"\n[remo: the server's disk was full; {status.output_dropped_bytes} bytes"
                " were dropped]\n"
            )
            assert output.endswith(b"back\n" + notice.encode())
            again = (await stub.Start(pb.StartRequest(argv=["echo", "back"]))).job
            waited = (await stub.Wait(pb.WaitRequest(id=again.id))).job
            assert waited.state == pb.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize("ending", ["exits", "stopped"])
async def test_output_dropped_on_a_full_disk_is_always_accounted(
    tmp_path: Path, ending: str
) -> None:
    """A job writes while the disk is full, then exits or is stopped with SIGKILL while
    it is still full (its init is killed with it before any final record): what was
    dropped is counted in its status either way, never silent."""
    async with server_on_a_small_disk(tmp_path) as server:
        state = server.state_dir
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            # 1 KiB lines: far more than the slack of the output file's last page.
            script = (
                "trap '' TERM; echo started; while :; do head -c 1023 /dev/zero | tr '\\0' x;"
                " echo; [ -e {flag} ] && break; done; exit 3"
            )
            flag = tmp_path / "enough"
            argv = ["sh", "-c", script.format(flag=flag)]
            job = (await stub.Start(pb.StartRequest(argv=argv))).job
            async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
                if b"started" in chunk.data:
                    break
            filler = fill_until_enospc(state)
            await wait_until(
                lambda: dropped_while_full(state, job.id), 30, what="output dropped on ENOSPC"
            )
            if ending == "stopped":  # its SIGKILL takes the init too: no final record
                ended = asyncio.ensure_future(
                    stub.Stop(pb.StopRequest(id=job.id, grace=duration(0.5)))
                )
            else:
                flag.touch()
                ended = asyncio.ensure_future(stub.Wait(pb.WaitRequest(id=job.id)))
            # The job ends while the disk is still full...
            await wait_until(
                lambda: not os.path.exists(f"/proc/{job.pid}"), 30, what="the job's end"
            )
            filler.unlink()  # ...and the end is recorded once space returns
            status = (await asyncio.wait_for(ended, 60)).job  # StopResponse or WaitResponse
    if ending == "stopped":
        assert status.state == pb.JOB_STATE_STOPPED and status.signal == 9
    else:
        assert status.state == pb.JOB_STATE_FAILED and status.exit_code == 3
    assert status.output_dropped_bytes > 0 and status.output_dropped_disk_full


async def test_an_end_waiting_for_space_survives_a_supervisor_kill(tmp_path: Path) -> None:
    """A job ends while the disk is full: its final row cannot be written, and the
    supervisor retries. Killed meanwhile, the next supervisor still records exactly how
    the job ended (the init's record is kept until the row is written), not ``lost``."""
    ended = tmp_path / "end-now"  # (outside the full disk)
    async with server_on_a_small_disk(tmp_path) as server:
        state = server.state_dir
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            script = f"echo started; until [ -e {ended} ]; do sleep 0.01; done; exit 3"
            job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", script]))).job
            async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
                if b"started" in chunk.data:
                    break
            filler = fill_until_enospc(state)
            ended.touch()
            log = state / "supervisor.log"
            await wait_until(
                lambda: "cannot record the end" in log.read_text(), 30, what="a retried end"
            )
            await kill_supervisor(state)
            filler.unlink()  # space returns; the next call starts a new supervisor
            status = (await asyncio.wait_for(stub.Wait(pb.WaitRequest(id=job.id)), 30)).job
            assert (status.state, status.exit_code) == (pb.JOB_STATE_FAILED, 3), status


async def test_a_stop_taken_on_a_full_disk_survives_a_supervisor_kill(tmp_path: Path) -> None:
    """A stop whose row cannot be written (the disk is full) is still a stop for the
    next supervisor: the job that ends of it is ``stopped``, not ``failed``."""
    go = tmp_path / "go"  # (outside the full disk)
    async with server_on_a_small_disk(tmp_path) as server:
        state = server.state_dir
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            script = (
                f"trap 'until [ -e {go} ]; do sleep 0.01; done; exit 7' TERM;"
                " echo started; while :; do sleep 0.01; done"
            )
            job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", script]))).job
            async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
                if b"started" in chunk.data:
                    break
            filler = fill_until_enospc(state)
            stopping = asyncio.ensure_future(
                stub.Stop(pb.StopRequest(id=job.id, grace=duration(60)))
            )
            log = state / "supervisor.log"
            await wait_until(
                lambda: "cannot record the stop" in log.read_text(), 30, what="a stop not stored"
            )
            # The caller goes away: nobody sends the stop again to the next supervisor.
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            await kill_supervisor(state)
            filler.unlink()
            go.touch()
            status = (await asyncio.wait_for(stub.Wait(pb.WaitRequest(id=job.id)), 60)).job
            assert (status.state, status.exit_code) == (pb.JOB_STATE_STOPPED, 7), status

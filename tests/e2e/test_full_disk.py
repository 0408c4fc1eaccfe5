"""A full disk never crashes the server: starts fail clearly, everything else goes on."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from remo.api.v1 import jobs_pb2 as pb
from tests.conftest import remo_processes
from tests.e2e.conftest import Server, needs_root, serve

pytestmark = needs_root


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as f:
        block = b"\0" * (64 << 10)
        with contextlib.suppress(OSError):
            while True:
                f.write(block)
                f.flush()
    return filler


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
        deadline = time.monotonic() + 15
        while remo_processes(state) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the supervisor leaves its state dir once idle
        result = subprocess.run(["umount", str(state)], check=False, capture_output=True)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(state)], check=False)
        assert not os.path.ismount(state)


async def test_full_disk(tmp_path: Path) -> None:
    async with server_on_a_small_disk(tmp_path) as server:
        state = server.state_dir
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            script = "for i in $(seq 1 40); do echo line $i; sleep 0.05; done; exit 4"
            job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", script]))).job
            async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
                if chunk.data:
                    break  # it is writing: now take the space away
            filler = fill(state)

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Start(pb.StartRequest(argv=["true"]))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "disk is full" in (caught.value.details() or "")
            # reads keep working while the disk is full
            assert (await stub.Status(pb.JobRef(id=job.id))).state in ("running", "failed")
            assert (await stub.List(pb.ListRequest())).jobs
            first = [c async for c in stub.Output(pb.OutputRequest(id=job.id))]
            assert b"".join(c.data for c in first).startswith(b"line 1\n")

            await asyncio.sleep(2.5)  # the job ends while the disk is still full
            filler.unlink()  # space returns
            status = await asyncio.wait_for(stub.Wait(pb.JobRef(id=job.id)), 30)
            assert status.state == "failed" and status.exit_code == 4
            output = b"".join([c.data async for c in stub.Output(pb.OutputRequest(id=job.id))])
            assert output.startswith(b"line 1\n")
            if b"dropped" in output:
                assert b"disk was full" in output
            again = (await stub.Start(pb.StartRequest(argv=["echo", "back"]))).job
            assert (await stub.Wait(pb.JobRef(id=again.id))).state == "succeeded"
    assert errno.ENOSPC  # the error the filler ran into


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
            # The init keeps its drop count in the status record as it goes.
            record = state / "jobs" / "root" / job.id / ".status"
            for _ in range(3000):
                fields = record.read_text().split()
                if len(fields) == 4 and fields[0] == "-" and int(fields[2]) > 0:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("nothing was dropped while the disk was full")
            if ending == "stopped":  # its SIGKILL takes the init too: no final record
                ended = asyncio.ensure_future(
                    stub.Stop(pb.StopRequest(id=job.id, grace_seconds=0.5))
                )
            else:
                flag.touch()
                ended = asyncio.ensure_future(stub.Wait(pb.JobRef(id=job.id)))
            # The job ends while the disk is still full...
            for _ in range(3000):
                if not os.path.exists(f"/proc/{job.pid}"):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the job did not end")
            filler.unlink()  # ...and the end is recorded once space returns
            status = await asyncio.wait_for(ended, 60)
    if ending == "stopped":
        assert status.state == "stopped" and status.signal == 9
    else:
        assert status.state == "failed" and status.exit_code == 3
    assert status.output_truncated and status.output_dropped_disk_full
    assert status.output_dropped_bytes > 0

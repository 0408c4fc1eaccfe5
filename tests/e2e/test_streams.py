"""Output streams over the real server: disconnects leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import resource

import grpc

from remo.api.jobs import duration
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server
from tests.support import wait_until


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_clients_disconnecting_mid_stream_leave_nothing(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        script = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.01)"
        job = (await stub.Start(pb.StartRequest(argv=["python3", "-c", script]))).job
        watcher = server.running.jobs._watcher

        async def follow_then_vanish() -> None:
            call = stub.Output(pb.OutputRequest(id=job.id, follow=True))
            async for chunk in call:
                assert chunk.data
                break
            call.cancel()

        await follow_then_vanish()  # warm up: first-use allocations are not leaks
        await asyncio.sleep(0.2)
        fds, tasks = open_fds(), len(asyncio.all_tasks())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(20):
            await asyncio.gather(*(follow_then_vanish() for _ in range(10)))

        await wait_until(
            lambda: watcher.watch_count == 0,
            5,
            what="the followers' inotify watches to go: one outlived its client",
        )
        await wait_until(
            lambda: len(asyncio.all_tasks()) <= tasks,
            5,
            what=lambda: f"the streams' tasks to end: {len(asyncio.all_tasks())} > {tasks}",
        )
        assert open_fds() <= fds
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
        assert grown_kib < 32 * 1024, f"server grew by {grown_kib} KiB over 200 streams"
        await stub.Stop(pb.StopRequest(id=job.id, grace=duration(0)))


async def test_resume_from_offset_is_exact(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["seq", "1", "20000"]))).job
        await stub.Wait(pb.WaitRequest(id=job.id))
        whole = b"".join([c.data async for c in stub.Output(pb.OutputRequest(id=job.id))])
        received = b""
        async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
            assert chunk.offset == len(received)
            received += chunk.data[:1000]
            break
        async for chunk in stub.Output(pb.OutputRequest(id=job.id, offset=len(received))):
            assert chunk.offset >= len(received)
            received += chunk.data
        assert received == whole == "".join(f"{i}\n" for i in range(1, 20001)).encode()
        for bad in (-1, -(1 << 62)):
            call = stub.Output(pb.OutputRequest(id=job.id, offset=bad))
            try:
                async for _ in call:
                    pass
                raise AssertionError("negative offset accepted")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        beyond = [c async for c in stub.Output(pb.OutputRequest(id=job.id, offset=1 << 60))]
        assert beyond == []

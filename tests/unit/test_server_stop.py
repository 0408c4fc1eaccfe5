"""How the server stops serving: no new call is taken, unary calls in progress get to
finish (for up to SHUTDOWN_GRACE), and then follows and Wait, which end only with their
job, are ended with UNAVAILABLE instead of being waited for.

A grpc.aio server on loopback with the same interceptor and stop as ``remo server``,
and a servicer whose calls end only when the test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from remo.server import app
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc as pb_grpc


class Held(pb_grpc.JobServiceServicer):
    """GetJob answers once released; Output sends one chunk and Wait nothing, ever."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.status_called = asyncio.Event()
        self.waiting = asyncio.Event()

    async def GetJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobResponse:
        self.status_called.set()
        await self.release.wait()
        return pb.GetJobResponse(job=pb.Job(id=request.id, state=pb.JOB_STATE_RUNNING))

    async def Output(
        self, request: pb.OutputRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.OutputResponse]:
        yield pb.OutputResponse(offset=0, data=b"first\n")
        await asyncio.Event().wait()

    async def Wait(
        self, request: pb.WaitRequest, context: grpc.aio.ServicerContext
    ) -> pb.WaitResponse:
        self.waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
async def served() -> AsyncIterator[tuple[grpc.aio.Server, app.UnaryCallsInFlight, Held, str]]:
    calls = app.UnaryCallsInFlight()
    server = grpc.aio.server(interceptors=[calls])
    servicer = Held()
    pb_grpc.add_JobServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield server, calls, servicer, f"127.0.0.1:{port}"
    await server.stop(None)


async def test_follows_do_not_hold_the_stop_once_unary_calls_are_done(
    served: tuple[grpc.aio.Server, app.UnaryCallsInFlight, Held, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a grace of an hour, the stop still ends as soon as the unary call in
    progress has its answer: a follow or a Wait (which end only with their job) is not
    waited for, but ended with UNAVAILABLE."""
    server, calls, servicer, address = served
    monkeypatch.setattr(app, "SHUTDOWN_GRACE", 3600.0)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.JobServiceStub(channel)
        follow = stub.Output(pb.OutputRequest(id="1", follow=True))
        assert (await follow.read()).data == b"first\n"
        wait = asyncio.ensure_future(stub.Wait(pb.WaitRequest(id="1")))
        status = asyncio.ensure_future(stub.GetJob(pb.GetJobRequest(id="1")))
        await servicer.status_called.wait()
        await servicer.waiting.wait()
        assert calls.count == 1  # GetJob; Wait and Output are not counted

        stopping = asyncio.create_task(app._stop_serving([server], calls))
        servicer.release.set()
        assert (await status).job.id == "1"  # the unary call in progress got its answer
        await asyncio.wait_for(stopping, 60)  # (an hour if the follows held it)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await follow.read()
        assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as waited:
            await wait
        assert waited.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetJob(pb.GetJobRequest(id="1"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_unary_call_longer_than_the_grace_is_cut_with_unavailable(
    served: tuple[grpc.aio.Server, app.UnaryCallsInFlight, Held, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, calls, servicer, address = served
    monkeypatch.setattr(app, "SHUTDOWN_GRACE", 0.1)
    async with grpc.aio.insecure_channel(address) as channel:
        status = asyncio.ensure_future(
            pb_grpc.JobServiceStub(channel).GetJob(pb.GetJobRequest(id="1"))
        )
        await servicer.status_called.wait()
        await app._stop_serving([server], calls)
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await status
    assert cut.value.code() is grpc.StatusCode.UNAVAILABLE
    assert calls.count == 0

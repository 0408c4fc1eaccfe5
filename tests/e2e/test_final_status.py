"""A follow asked for it ends with the job's final status in the same stream
(``OutputRequest.final_status``): ``remo run`` and the SDK's ``run``/``follow`` need no
call after the last byte."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from remo.client import AsyncClient, Client
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, me

pytestmark = pytest.mark.root


async def messages(server: Server, request: pb.OutputRequest) -> list[pb.OutputResponse]:
    channel, stub = server.stub(server.credential(*me()))
    async with channel:
        return [m async for m in stub.Output(request)]


async def test_the_last_message_of_a_follow_is_the_ended_jobs_status(server: Server) -> None:
    channel, stub = server.stub(server.credential(*me()))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", "echo out; exit 3"]))).job
    got = await messages(server, pb.OutputRequest(id=job.id, follow=True, final_status=True))
    *output, last = got
    assert b"".join(m.data for m in output) == b"out\n"
    assert not any(m.HasField("job") for m in output)
    assert last.HasField("job") and not last.data
    assert (last.job.id, last.job.state, last.job.exit_code) == (
        job.id,
        pb.JOB_STATE_FAILED,
        3,
    )
    # asked by no one, sent to no one: a plain follow, or a read that does not follow
    plain = await messages(server, pb.OutputRequest(id=job.id, follow=True))
    unfollowed = await messages(server, pb.OutputRequest(id=job.id, final_status=True))
    assert [m.data for m in plain] == [m.data for m in unfollowed] == [b"out\n"]
    assert not any(m.HasField("job") for m in plain + unfollowed)
    # another operator learns nothing of it, final status included
    other_channel, other = server.stub(server.credential("someone-else", "operator"))
    async with other_channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            request = pb.OutputRequest(id=job.id, follow=True, final_status=True)
            _ = [m async for m in other.Output(request)]
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_follow_that_stops_at_end_offset_has_no_final_status(server: Server) -> None:
    channel, stub = server.stub(server.credential(*me()))
    async with channel:
        argv = ["sh", "-c", "echo 12345; exec sleep 60"]
        job = (await stub.Start(pb.StartRequest(argv=argv))).job
        try:
            request = pb.OutputRequest(id=job.id, follow=True, final_status=True, end_offset=3)
            got = await messages(server, request)
        finally:
            await stub.Kill(pb.KillRequest(id=job.id, signal=9))
    assert [(m.data, m.HasField("job")) for m in got] == [(b"123", False)]
    # nor once the job has ended: the bytes after end_offset were not sent
    ended = await messages(server, request)
    assert [(m.data, m.HasField("job")) for m in ended] == [(b"123", False)]


async def test_the_sdk_follows_to_the_end_without_another_call(
    credential: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("a call after the followed output")

    def work() -> None:  # (the server shares this loop: the sync client runs aside)
        with Client.from_file(credential) as remo:
            job = remo.start(["sh", "-c", "echo one; echo two >&2; exit 4"]).job
            assert job is not None
            monkeypatch.setattr(remo, "status", no_call)
            monkeypatch.setattr(remo, "wait", no_call)
            followed = remo.follow(job.id)
            assert followed.status is None
            chunks = [(c.stream, c.data) for c in followed]
            assert followed.status is not None and followed.status.exit_code == 4
            assert sorted(chunks) == [("stderr", b"two\n"), ("stdout", b"one\n")]
            assert remo.run(["sh", "-c", "echo ran; exit 5"]).job.exit_code == 5

    await asyncio.to_thread(work)
    async with AsyncClient.from_file(credential) as aremo:
        monkeypatch.setattr(aremo, "status", no_call)
        monkeypatch.setattr(aremo, "wait", no_call)
        result = await aremo.run(["sh", "-c", "echo async; exit 6"])
        assert (result.job.exit_code, result.output) == (6, b"async\n")

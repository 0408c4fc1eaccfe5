"""The outputs one user reads at once are bounded (``max_outputs_per_user``): a caller
past its share is refused as RESOURCE_EXHAUSTED (``TOO_MANY_OUTPUTS``) before anything
is opened, other users keep theirs, and a place comes back when its stream ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from remo.client import AsyncClient, TooManyOutputs
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, me, reason_of, serve
from tests.support import wait_until

pytestmark = pytest.mark.root

PLACES = 3


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Server]:
    async with serve(tmp_path, max_outputs_per_user=PLACES) as server:
        yield server


async def first_message(call: grpc.aio.UnaryStreamCall) -> None:
    """Wait until the server sends the call's first message: it holds its places then."""
    assert await call.read() is not grpc.aio.EOF


async def refusal_of(call: grpc.aio.UnaryStreamCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    return refused.value


async def test_a_user_past_its_share_is_refused_and_others_are_not(small: Server) -> None:
    channel, stub = small.stub(small.credential(*me()))
    other_channel, other = small.stub(small.credential("auditor", "admin"))
    async with channel, other_channel:
        ids = [
            (await stub.Start(pb.StartRequest(argv=["sh", "-c", "echo up; exec sleep 300"]))).job.id
            for _ in range(PLACES)
        ]
        follows = [stub.Output(pb.OutputRequest(id=i, follow=True)) for i in ids[:2]]
        try:
            for call in follows:
                await first_message(call)
            # two held: a call for two more does not fit, and takes nothing
            many = stub.OutputMany(
                pb.OutputManyRequest(jobs=[pb.OutputRequest(id=i, follow=True) for i in ids[:2]])
            )
            refused = await refusal_of(many)
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(refused) == "TOO_MANY_OUTPUTS"
            assert f"at most {PLACES} at once" in (refused.details() or "")
            third = stub.Output(pb.OutputRequest(id=ids[2], follow=True))
            follows.append(third)
            await first_message(third)  # the last place
            fourth = stub.Output(pb.OutputRequest(id=ids[0], follow=True))
            assert reason_of(await refusal_of(fourth)) == "TOO_MANY_OUTPUTS"
            # another user's share is its own
            theirs = other.Output(pb.OutputRequest(id=f"{me()[0]}/{ids[0]}", follow=True))
            await first_message(theirs)
            theirs.cancel()
            # a place comes back when its stream ends (here: the client goes away)
            follows.pop(0).cancel()

            async def admitted() -> bool:
                call = stub.Output(pb.OutputRequest(id=ids[0]))
                try:
                    await first_message(call)
                except grpc.aio.AioRpcError as err:
                    assert reason_of(err) == "TOO_MANY_OUTPUTS", err
                    return False
                call.cancel()
                return True

            await wait_until(admitted, timeout=30)
        finally:
            for call in follows:
                call.cancel()
            for job_id in ids:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Kill(pb.KillRequest(id=job_id, signal=9))


async def test_the_sdk_raises_too_many_outputs_with_a_one_line_message(small: Server) -> None:
    async with AsyncClient.from_file(small.credential(*me())) as remo:
        done = [(await remo.run(["echo", str(i)])).job for i in range(PLACES + 1)]
        with pytest.raises(TooManyOutputs) as refused:
            async for _ in remo.output_many([job.id for job in done]):
                pass
    assert refused.value.reason == "TOO_MANY_OUTPUTS"
    assert "\n" not in str(refused.value)
    assert refused.value.exit_code == 6

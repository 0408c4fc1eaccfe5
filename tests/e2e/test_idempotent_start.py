"""Start is safe to retry: the same request id never starts a second job.

A client whose Start reply is lost (the API server died after the supervisor started
the job) cannot tell whether the job runs; it retries with the same request id and gets
the job the first attempt started — through the same server, through a new one, or
while the first attempt is still under way.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest

from remo.api.jobs import duration
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, needs_root, serve

pytestmark = needs_root


async def test_a_repeated_start_returns_the_first_ones_job(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        rid = uuid.uuid4().hex
        request = pb.StartRequest(argv=["sleep", "30"], request_id=rid)
        concurrent = await asyncio.gather(*(stub.Start(request) for _ in range(3)))
        again = await stub.Start(request)
        ids = {r.job.id for r in [*concurrent, again]}
        other = await stub.Start(pb.StartRequest(argv=["true"], request_id=uuid.uuid4().hex))
        plain = [await stub.Start(pb.StartRequest(argv=["true"])) for _ in range(2)]
        listed = await stub.ListJobs(pb.ListJobsRequest())
        for job in listed.jobs:
            if job.state == pb.JOB_STATE_RUNNING:
                await stub.Stop(pb.StopRequest(id=job.id, grace=duration(0)))
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Start(pb.StartRequest(argv=["true"], request_id="no spaces/allowed"))
    assert len(ids) == 1
    assert other.job.id not in ids and len({p.job.id for p in plain}) == 2
    assert len(listed.jobs) == 4  # one for the repeated id, one other, two without an id
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_start_retried_through_a_new_api_server_finds_its_job(tmp_path: Path) -> None:
    rid = uuid.uuid4().hex
    request = pb.StartRequest(argv=["sleep", "30"], request_id=rid)
    async with serve(tmp_path) as server:
        credential = server.credential("root", "admin")
        channel, stub = server.stub(credential)
        async with channel:
            started = (await stub.Start(request)).job
    # The API server is gone (its reply might have been lost); the job runs on.
    async with serve(tmp_path) as server:
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            retried = (await stub.Start(request)).job
            listed = await stub.ListJobs(pb.ListJobsRequest())
            await stub.Stop(pb.StopRequest(id=started.id, grace=duration(0)))
    assert retried.id == started.id and retried.pid == started.pid
    assert len(listed.jobs) == 1

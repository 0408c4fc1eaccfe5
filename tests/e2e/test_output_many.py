"""OutputMany against a real server: several jobs' output in one stream, each job's bytes
once and in order, its end marked, every job checked before the first message, and the
readers gone with the client."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import grpc
import pytest

from remo.client import AsyncClient, Client, JobOutput, NotFound, UsageError
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, reason_of
from tests.e2e.test_authz import ALICE, BOB
from tests.support import wait_until, wait_until_sync

pytestmark = pytest.mark.root

COUNT = "for i in $(seq 1 {n}); do echo {tag}-$i; done"


def by_job(items: list[JobOutput]) -> tuple[dict[str, bytes], list[str]]:
    """Each job's bytes joined, and the jobs in the order their ends came."""
    data: dict[str, bytes] = defaultdict(bytes)
    ended = []
    for item in items:
        if item.chunk is None:
            assert item.job_id not in ended, f"job {item.job_id} ended twice"
            ended.append(item.job_id)
        else:
            assert item.job_id not in ended, f"output of job {item.job_id} after its end"
            assert item.chunk.offset == len(data[item.job_id]), "a gap or a repeat"
            data[item.job_id] += item.chunk.data
    return data, ended


async def test_following_several_jobs_gives_each_ones_lines_in_order(credential: Path) -> None:
    async with AsyncClient.from_file(credential) as remo:
        jobs = [
            (await remo.start(["sh", "-c", f"sleep 0.3; {COUNT.format(n=2000, tag=t)}"])).job
            for t in ("a", "b", "c")
        ]
        ids = [job.id for job in jobs if job is not None]
        items = [item async for item in remo.output_many(ids, follow=True, timeout=60)]
    data, ended = by_job(items)
    assert sorted(ended) == sorted(ids)
    for job_id, tag in zip(ids, "abc", strict=True):
        assert data[job_id] == "".join(f"{tag}-{i}\n" for i in range(1, 2001)).encode()
    assert all(item.error == "" for item in items)


async def test_without_follow_it_reads_what_there_is_and_ends(credential: Path) -> None:
    def work() -> tuple[dict[str, bytes], list[str], list[str]]:
        with Client.from_file(credential) as remo:
            done = remo.run(["sh", "-c", "echo out; echo err >&2"])
            running = remo.start(["sh", "-c", "echo first; exec sleep 60"]).job
            assert running is not None
            wait_until_sync(lambda: list(remo.output(running.id)), what="the first line")
            items = list(remo.output_many([done.job.id, running.id], stderr=False))
            remo.stop(running.id, grace=0)
            data, ended = by_job(items)
            return data, ended, [done.job.id, running.id]

    data, ended, ids = await asyncio.to_thread(work)
    assert data[ids[0]] == b"out\n"  # stderr left out
    assert data[ids[1]] == b"first\n"
    assert sorted(ended) == sorted(ids)


async def test_tail_applies_to_each_job(credential: Path) -> None:
    async with AsyncClient.from_file(credential) as remo:
        ids = []
        for tag in "xy":
            result = await remo.run(["sh", "-c", COUNT.format(n=10, tag=tag)])
            ids.append(result.job.id)
        items = [item async for item in remo.output_many(ids, tail_lines=2)]
    data, _ = by_job_from_tail(items)
    assert data == {ids[0]: b"x-9\nx-10\n", ids[1]: b"y-9\ny-10\n"}


def by_job_from_tail(items: list[JobOutput]) -> tuple[dict[str, bytes], list[str]]:
    data: dict[str, bytes] = defaultdict(bytes)
    ended = []
    for item in items:
        if item.chunk is None:
            ended.append(item.job_id)
        else:
            data[item.job_id] += item.chunk.data
    return dict(data), ended


async def test_a_job_the_caller_may_not_read_refuses_the_whole_call(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    async with AsyncClient.from_file(server.credential(ALICE, "operator")) as alice:
        hers = (await alice.start(["sh", "-c", "echo secret"])).job
        assert hers is not None
    async with AsyncClient.from_file(server.credential(BOB, "operator")) as bob:
        his = (await bob.start(["true"])).job
        assert his is not None
        with pytest.raises(NotFound, match=f"{ALICE}/{hers.id}"):
            async for _ in bob.output_many([his.id, f"{ALICE}/{hers.id}"]):
                raise AssertionError("a message came before the refusal")
    async with AsyncClient.from_file(server.credential(ALICE, "viewer")) as viewer:
        items = [item async for item in viewer.output_many([hers.id], follow=True)]
    assert b"".join(i.chunk.data for i in items if i.chunk is not None) == b"secret\n"


async def test_bad_requests_are_refused_in_one_line(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["true"]))).job
        cases = [
            (pb.OutputManyRequest(), "jobs"),
            (pb.OutputManyRequest(jobs=[pb.OutputRequest(id=job.id)] * 1001), "1001"),
            (pb.OutputManyRequest(jobs=[pb.OutputRequest(id=job.id, offset=-1)]), "jobs[0]"),
            (pb.OutputManyRequest(jobs=[pb.OutputRequest(id="999999")]), "no job 999999"),
        ]
        for request, said in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stub.OutputMany(request):
                    pass
            assert said in (caught.value.details() or ""), caught.value.details()
            assert reason_of(caught.value) in ("BAD_REQUEST", "JOB_NOT_FOUND")
    async with AsyncClient.from_file(server.credential("root", "admin")) as remo:
        with pytest.raises(UsageError, match="list of job ids"):
            async for _ in remo.output_many("12"):  # type: ignore[arg-type]
                pass


async def test_an_ended_job_ends_at_once_and_the_others_go_on(server: Server) -> None:
    """An ended job's end comes while another is still followed; removing the ended one
    then changes nothing for the other (its end comes when it is stopped)."""
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        ended = (await stub.Start(pb.StartRequest(argv=["sh", "-c", "echo done"]))).job
        await stub.Wait(pb.WaitRequest(id=ended.id))
        live = (
            await stub.Start(pb.StartRequest(argv=["sh", "-c", "echo go; read x; echo more"]))
        ).job
        request = pb.OutputManyRequest(
            jobs=[
                pb.OutputRequest(id=ended.id, follow=True),
                pb.OutputRequest(id=live.id, follow=True),
            ]
        )
        call = stub.OutputMany(request)
        seen: list[pb.JobOutputPiece] = []
        async for message in call:
            seen.extend(message.pieces)
            if any(p.job == 0 and p.end for p in seen) and any(p.job == 1 for p in seen):
                break
        await stub.Remove(pb.RemoveRequest(id=ended.id))  # ended already: its end came
        await stub.Stop(pb.StopRequest(id=live.id))
        async for message in call:
            seen.extend(message.pieces)
    ends = [p for p in seen if p.end]
    assert sorted(p.job for p in ends) == [0, 1]
    assert all(p.error == "" for p in ends)
    assert b"".join(p.data for p in seen if p.job == 1).startswith(b"go\n")


async def test_a_client_that_goes_away_leaves_no_reader(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    watcher = server.running.jobs._watcher  # type: ignore[attr-defined]
    async with channel:
        script = "while :; do echo tick; sleep 0.01; done"
        jobs = [
            (await stub.Start(pb.StartRequest(argv=["sh", "-c", script]))).job for _ in range(5)
        ]
        tasks = len(asyncio.all_tasks())
        for _ in range(10):
            request = pb.OutputManyRequest(
                jobs=[pb.OutputRequest(id=job.id, follow=True) for job in jobs]
            )
            call = stub.OutputMany(request)
            async for message in call:
                assert message.pieces
                break
            call.cancel()
        await wait_until(
            lambda: watcher.watch_count == 0,
            5,
            what="the readers' inotify watches to go: one outlived its client",
        )
        await wait_until(
            lambda: len(asyncio.all_tasks()) <= tasks,
            5,
            what=lambda: f"the readers' tasks to end: {len(asyncio.all_tasks())} > {tasks}",
        )
        for job in jobs:
            await stub.Stop(pb.StopRequest(id=job.id, grace=None))

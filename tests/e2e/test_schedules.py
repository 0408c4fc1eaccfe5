"""Delayed and recurring jobs through the real server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from remo.api.v1 import jobs_pb2 as pb
from remo.server.app import running
from remo.server.config import ServerConfig
from tests.e2e.conftest import Server, needs_root

pytestmark = needs_root


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Re-check a condition observable only through the API until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_delayed_run_starts_within_a_second_of_due(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        created = await stub.Start(pb.StartRequest(argv=["true"], when=pb.When(delay_seconds=2)))
        schedule = created.schedule
        assert schedule.id == "s1" and schedule.next_run_at > time.time() + 1

        async def ran() -> bool:
            s = await stub.ScheduleStatus(pb.JobRef(id=schedule.id))
            return any(r.job_id for r in s.recent_runs)

        await eventually(ran)
        run = (await stub.ScheduleStatus(pb.JobRef(id=schedule.id))).recent_runs[0]
        job = await stub.Status(pb.JobRef(id=run.job_id))
        assert run.outcome == "started"
        assert 0 <= job.started_at - schedule.next_run_at <= 1.0
        assert job.schedule_id == "root/s1"
        listed = await stub.List(pb.ListRequest())
        assert not listed.schedules  # a one-shot schedule is done after its run


async def test_recurring_runs_skips_overlap_and_rm_stops_it(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        created = await stub.Start(
            pb.StartRequest(argv=["sleep", "1.5"], when=pb.When(every_seconds=1))
        )
        sid = created.schedule.id

        async def runs() -> list[pb.ScheduleRun]:
            return list((await stub.ScheduleStatus(pb.JobRef(id=sid))).recent_runs)

        async def started_twice_and_skipped() -> bool:
            outcomes = [r.outcome for r in await runs()]
            return outcomes.count("started") >= 2 and "skipped" in outcomes

        await eventually(started_twice_and_skipped)
        history = list(reversed(await runs()))
        assert history[0].outcome == "started"
        skipped = next(r for r in history if r.outcome == "skipped")
        assert "still running" in skipped.detail
        dues = [r.due_at for r in history]
        assert all(abs((b - a) - 1.0) < 1e-6 for a, b in itertools.pairwise(dues))
        listed = await stub.List(pb.ListRequest())
        assert [s.id for s in listed.schedules] == [sid]

        await stub.Remove(pb.RemoveRequest(id=sid, stop_running=True))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ScheduleStatus(pb.JobRef(id=sid))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        count = len((await stub.List(pb.ListRequest())).jobs)
        await asyncio.sleep(2.5)  # two periods: nothing new may start
        assert len((await stub.List(pb.ListRequest())).jobs) == count
        running_jobs = await stub.List(pb.ListRequest(running_only=True))
        assert not running_jobs.jobs


async def test_missed_runs_run_once_after_restart(tmp_path: Path) -> None:
    config = ServerConfig(
        state_dir=tmp_path / "state", listen="127.0.0.1:0", register_run_dir=tmp_path / "run"
    )
    async with running(config) as srv:
        server = Server(srv, config.state_dir, tmp_path)
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            created = await stub.Start(
                pb.StartRequest(argv=["true"], when=pb.When(delay_seconds=1, every_seconds=1))
            )
    await asyncio.sleep(3.5)  # the server is down across three due times
    async with running(config) as srv:
        # a new port: issue a credential that points at it
        server = Server(srv, config.state_dir, tmp_path)
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:

            async def caught_up() -> bool:
                s = await stub.ScheduleStatus(pb.JobRef(id=created.schedule.id))
                return any(r.outcome == "caught-up" for r in s.recent_runs)

            await eventually(caught_up)
            schedule = await stub.ScheduleStatus(pb.JobRef(id=created.schedule.id))
            caught = [r for r in schedule.recent_runs if r.outcome == "caught-up"]
            assert len(caught) == 1
            assert "missed" in caught[0].detail
            assert schedule.next_run_at > caught[0].due_at
            await stub.Remove(pb.RemoveRequest(id=created.schedule.id))

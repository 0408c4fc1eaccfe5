"""Delayed and recurring jobs through the real server.

What the timer decides (periods, overlaps, catching up, runs after a removal) is tested
on a clock the tests move, in tests/unit/test_schedule_timer.py; here, that a real
server wires it to real jobs, on the real clock, in as little real time as that takes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import grpc
import pytest

from remo.api.v1 import jobs_pb2 as pb
from remo.schedule.store import ScheduleStore
from tests.e2e.conftest import Server, needs_root, serve
from tests.support import wait_until

pytestmark = needs_root


async def test_delayed_run_starts_within_a_second_of_due(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        # One job first: what is measured below is the timer, not a server that has
        # just started (its first inits may still be forking).
        warm = (await stub.Start(pb.StartRequest(argv=["true"]))).job
        await stub.Wait(pb.JobRef(id=warm.id))
        asked = time.time()
        created = await stub.Start(pb.StartRequest(argv=["true"], when=pb.When(delay_seconds=0.3)))
        schedule = created.schedule
        assert schedule.id == "s1"
        assert asked + 0.3 <= schedule.next_run_at <= time.time() + 0.3

        async def ran() -> pb.ScheduleRun | None:
            s = await stub.ScheduleStatus(pb.JobRef(id=schedule.id))
            return next((r for r in s.recent_runs if r.job_id), None)

        run = await wait_until(ran, 15)
        job = await stub.Status(pb.JobRef(id=run.job_id))
        assert run.outcome == "started"
        assert 0 <= job.started_at - schedule.next_run_at <= 1.0
        assert job.schedule_id == "root/s1"
        listed = await stub.List(pb.ListRequest())
        assert not listed.schedules  # a one-shot schedule is done after its run


async def test_a_recurring_schedule_runs_a_job_and_rm_stops_it(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        created = await stub.Start(
            pb.StartRequest(argv=["sleep", "30"], when=pb.When(every_seconds=60))
        )
        sid = created.schedule.id

        async def first_run() -> str:
            runs = (await stub.ScheduleStatus(pb.JobRef(id=sid))).recent_runs
            return runs[0].job_id if runs else ""

        job_id = await wait_until(first_run, 15)
        assert (await stub.Status(pb.JobRef(id=job_id))).state == "running"
        schedule = await stub.ScheduleStatus(pb.JobRef(id=sid))
        assert schedule.next_run_at == pytest.approx(created.schedule.next_run_at + 60)
        listed = await stub.List(pb.ListRequest())
        assert [s.id for s in listed.schedules] == [sid]

        await stub.Remove(pb.RemoveRequest(id=sid, stop_running=True))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ScheduleStatus(pb.JobRef(id=sid))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await stub.Status(pb.JobRef(id=job_id))).state == "stopped"
        assert not (await stub.List(pb.ListRequest())).schedules
        assert not (await stub.List(pb.ListRequest(running_only=True))).jobs


async def test_missed_runs_run_once_after_restart(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            created = await stub.Start(
                pb.StartRequest(argv=["true"], when=pb.When(delay_seconds=3600, every_seconds=1))
            )
    # While the server is down, its due time and three more periods pass: moved into
    # the past here rather than waited for.
    store = ScheduleStore(server.state_dir / "schedules.db")
    try:
        down = store.get(f"root/{created.schedule.id}")
        store.set_next(down, time.time() - 3.5)
    finally:
        store.close()
    async with serve(tmp_path) as server:
        # a new port: issue a credential that points at it
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:

            async def caught_up() -> list[pb.ScheduleRun]:
                s = await stub.ScheduleStatus(pb.JobRef(id=created.schedule.id))
                return [r for r in s.recent_runs if r.outcome == "caught-up"]

            [caught] = await wait_until(caught_up, 15)
            missed = re.fullmatch(
                r"due while the server was down; ([0-9]+) run\(s\) missed, run once now",
                caught.detail,
            )
            assert missed, caught.detail
            # the one due 3.5 s ago and the three since (more if the start was slow)
            assert 4 <= int(missed[1]) <= time.time() - caught.due_at + 1
            assert caught.job_id
            schedule = await stub.ScheduleStatus(pb.JobRef(id=created.schedule.id))
            assert caught.due_at < schedule.next_run_at <= time.time() + 1
            await stub.Remove(pb.RemoveRequest(id=created.schedule.id))

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

from remo.api.jobs import duration, seconds_of
from remo.schedule.store import ScheduleStore
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, needs_root, serve
from tests.support import wait_until

pytestmark = needs_root


async def test_delayed_run_starts_within_a_second_of_due(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        # One job first: what is measured below is the timer, not a server that has
        # just started (its first inits may still be forking).
        warm = (await stub.Start(pb.StartRequest(argv=["true"]))).job
        await stub.Wait(pb.WaitRequest(id=warm.id))
        asked = time.time()
        when = pb.When(delay=duration(0.3))
        created = await stub.Start(pb.StartRequest(argv=["true"], when=when))
        schedule = created.schedule
        assert schedule.id == "s1"
        next_run = seconds_of(schedule.next_run_time)
        assert asked + 0.3 <= next_run <= time.time() + 0.3

        async def ran() -> pb.ScheduleRun | None:
            s = (await stub.GetSchedule(pb.GetScheduleRequest(id=schedule.id))).schedule
            return next((r for r in s.recent_runs if r.job_id), None)

        run = await wait_until(ran, 15)
        job = (await stub.GetJob(pb.GetJobRequest(id=run.job_id))).job
        assert run.outcome == pb.SCHEDULE_RUN_OUTCOME_STARTED
        assert 0 <= seconds_of(job.start_time) - next_run <= 1.0
        assert job.schedule_id == schedule.id  # as the caller names it
        listed = await stub.ListSchedules(pb.ListSchedulesRequest())
        assert not listed.schedules  # a one-shot schedule is done after its run


async def test_a_recurring_schedule_runs_a_job_and_rm_stops_it(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        created = await stub.Start(
            pb.StartRequest(argv=["sleep", "30"], when=pb.When(period=duration(60)))
        )
        sid = created.schedule.id

        async def first_run() -> str:
            runs = (await stub.GetSchedule(pb.GetScheduleRequest(id=sid))).schedule.recent_runs
            return runs[0].job_id if runs else ""

        job_id = await wait_until(first_run, 15)
        job = (await stub.GetJob(pb.GetJobRequest(id=job_id))).job
        assert job.state == pb.JOB_STATE_RUNNING
        schedule = (await stub.GetSchedule(pb.GetScheduleRequest(id=sid))).schedule
        assert seconds_of(schedule.next_run_time) == pytest.approx(
            seconds_of(created.schedule.next_run_time) + 60
        )
        listed = await stub.ListSchedules(pb.ListSchedulesRequest())
        assert [s.id for s in listed.schedules] == [sid]

        await stub.Remove(pb.RemoveRequest(id=sid, stop_running=True))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSchedule(pb.GetScheduleRequest(id=sid))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        job = (await stub.GetJob(pb.GetJobRequest(id=job_id))).job
        assert job.state == pb.JOB_STATE_STOPPED
        assert not (await stub.ListSchedules(pb.ListSchedulesRequest())).schedules
        running = pb.ListJobsRequest(states=[pb.JOB_STATE_RUNNING])
        assert not (await stub.ListJobs(running)).jobs


async def test_missed_runs_run_once_after_restart(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        channel, stub = server.stub(server.credential("root", "admin"))
        async with channel:
            when = pb.When(delay=duration(3600), period=duration(1))
            created = await stub.Start(pb.StartRequest(argv=["true"], when=when))
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
                request = pb.GetScheduleRequest(id=created.schedule.id)
                s = (await stub.GetSchedule(request)).schedule
                caught_up = pb.SCHEDULE_RUN_OUTCOME_CAUGHT_UP
                return [r for r in s.recent_runs if r.outcome == caught_up]

            [caught] = await wait_until(caught_up, 15)
            missed = re.fullmatch(
                r"due while the server was down; ([0-9]+) run\(s\) missed, run once now",
                caught.detail,
            )
            assert missed, caught.detail
            # the one due 3.5 s ago and the three since (more if the start was slow)
            due = seconds_of(caught.due_time)
            assert 4 <= int(missed[1]) <= time.time() - due + 1
            assert caught.job_id
            request = pb.GetScheduleRequest(id=created.schedule.id)
            schedule = (await stub.GetSchedule(request)).schedule
            assert due < seconds_of(schedule.next_run_time) <= time.time() + 1
            await stub.Remove(pb.RemoveRequest(id=created.schedule.id))

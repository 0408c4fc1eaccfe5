"""How a job's end is decided (`remo.supervisor.ending.judge`) and recorded (`JobEnd`).

Pure functions: no processes, no cgroups. Wait statuses are built the way the kernel
encodes them (exit code << 8, or the signal number).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.core.outcome import Dropped, Exited, JobEnd, Lost, Signaled, Usage
from remo.core.status import JobState
from remo.supervisor.ending import READOPTED, judge
from remo.supervisor.jobfiles import InitRecord, read_init_record, remove_init_record
from remo.supervisor.running import RunningJob


def exited(code: int) -> int:
    return code << 8


def killed_by(sig: int) -> int:
    return int(sig)


@pytest.fixture
def job() -> Iterator[RunningJob]:
    loop = asyncio.new_event_loop()
    try:
        yield RunningJob(
            "alice", 3, 1234, None, Path("/nonexistent/status"), ended=loop.create_future()
        )
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("outcome", "stop", "state"),
    [
        (Exited(0), False, JobState.SUCCEEDED),
        (Exited(2), False, JobState.FAILED),
        (Signaled(9), False, JobState.KILLED),
        (Signaled(15), True, JobState.STOPPED),
        (Exited(0), True, JobState.STOPPED),
        (Lost("gone"), False, JobState.LOST),
        (Lost("gone"), True, JobState.LOST),
    ],
)
def test_state_follows_from_the_outcome(outcome: Exited, stop: bool, state: JobState) -> None:
    assert JobEnd(outcome, stop).state is state


def test_exit_code_and_signal_are_exclusive() -> None:
    assert (JobEnd(Exited(3)).exit_code, JobEnd(Exited(3)).signal) == (3, None)
    assert (JobEnd(Signaled(9)).exit_code, JobEnd(Signaled(9)).signal) == (None, 9)
    assert (JobEnd(Lost("x")).exit_code, JobEnd(Lost("x")).signal) == (None, None)


def test_oom_kill_of_the_main_process() -> None:
    oom = JobEnd(Signaled(signal.SIGKILL), usage=Usage(oom_kills=1))
    assert oom.oom_killed
    assert "out-of-memory" in oom.reason
    # remo's own SIGKILL at the end of a stop is not the OOM killer's, nor is a child's kill
    assert not JobEnd(Signaled(signal.SIGKILL), True, Usage(oom_kills=1)).oom_killed
    assert not JobEnd(Exited(1), usage=Usage(oom_kills=1)).oom_killed


def test_a_lost_job_says_why_and_counts_oom_kills() -> None:
    end = JobEnd(Lost("exit status unknown"), usage=Usage(oom_kills=2))
    assert end.reason == "exit status unknown (2 out-of-memory kill(s) in the job's cgroup)"


def test_the_init_record_is_the_truth(job: RunningJob) -> None:
    record = InitRecord(exited(4), Dropped(10, True))
    end = judge(job, killed_by(signal.SIGKILL), record, Usage())
    assert end.outcome == Exited(4)
    assert end.dropped == Dropped(10, True)
    assert end.reason == ""


def test_a_readopted_job_with_a_record_says_so(job: RunningJob) -> None:
    job.adopted = True
    end = judge(job, None, InitRecord(exited(0), Dropped()), Usage())
    assert (end.state, end.reason) == (JobState.SUCCEEDED, READOPTED)


def test_an_init_killed_from_outside_loses_the_job(job: RunningJob) -> None:
    end = judge(job, killed_by(signal.SIGKILL), None, Usage())
    assert end.state is JobState.LOST
    assert (
        end.reason
        == "the job's init was killed by SIGKILL before it recorded the job's exit status"
    )
    end = judge(job, exited(1), InitRecord(None, Dropped(5)), Usage())
    assert end.state is JobState.LOST and "exited with code 1" in end.reason
    assert end.dropped.bytes == 5  # what the init counted is kept


def test_an_init_killed_by_a_stop_is_a_stopped_job(job: RunningJob) -> None:
    job.stop_requested = True
    end = judge(job, killed_by(signal.SIGKILL), None, Usage())
    assert (end.state, end.signal) == (JobState.STOPPED, signal.SIGKILL)


def test_a_readopted_job_gone_after_its_stop_deadline_was_killed_by_it(job: RunningJob) -> None:
    job.adopted, job.stop_requested, job.kill_at = True, True, 100.0
    end = judge(job, None, None, Usage(), "exit status unknown: restarted", now=101.0)
    assert (end.state, end.signal) == (JobState.STOPPED, signal.SIGKILL)
    # before the deadline nobody knows: it may have ended of its own accord
    end = judge(job, None, None, Usage(), "exit status unknown: restarted", now=99.0)
    assert (end.state, end.reason) == (JobState.LOST, "exit status unknown: restarted")


def test_init_records_are_parsed_strictly(tmp_path: Path) -> None:
    status = tmp_path / "status"
    cases = {
        "0 10 0": InitRecord(0, Dropped(0, False)),
        f"{exited(3)} 10 7 1": InitRecord(exited(3), Dropped(7, True)),
        "- 10 7 0": InitRecord(None, Dropped(7, False)),
        "": None,
        "x 1 2": None,
        "0 1": None,
        "0 1 -2": None,
        "          ": None,
    }
    for text, expected in cases.items():
        status.write_text(text)
        assert read_init_record(status) == expected, text
        assert status.exists()  # kept until the end is in the database
    remove_init_record(status)
    assert read_init_record(status) is None  # none written

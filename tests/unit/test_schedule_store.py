"""``schedules.db``: schedules, their numbers and their run history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.core.errors import JobNotFound
from remo.core.spec import JobSpec, Limits
from remo.schedule.store import RECENT_RUNS, Run, ScheduleStore, parse_schedule_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ScheduleStore]:
    opened = ScheduleStore(tmp_path / "schedules.db")
    yield opened
    opened.close()


def test_numbers_count_per_owner_and_are_never_reused(store: ScheduleStore) -> None:
    first = store.create(JobSpec(["true"]), "alice", 100.0, None)
    second = store.create(JobSpec(["true"]), "alice", 100.0, None)
    other = store.create(JobSpec(["true"]), "bob", 100.0, None)
    assert (first.id, second.id, other.id) == ("alice/s1", "alice/s2", "bob/s1")
    store.delete(second)
    assert store.create(JobSpec(["true"]), "alice", 100.0, None).id == "alice/s3"


def test_a_schedule_reads_back_as_created_and_survives_a_reopen(tmp_path: Path) -> None:
    spec = JobSpec(
        ["sh", "-c", "echo $X"],
        env={"X": "é"},
        cwd="/srv",
        owner="alice",
        limits=Limits(memory=64 << 20, cpu=0.5),
        network="none",
        private_tmp=True,
    )
    store = ScheduleStore(tmp_path / "schedules.db")
    created = store.create(spec, "alice", 1234.5, 60.0)
    store.close()
    store = ScheduleStore(tmp_path / "schedules.db")
    try:
        loaded = store.get("alice/s1")
    finally:
        store.close()
    assert loaded == created
    assert (loaded.spec, loaded.every, loaded.next_due, loaded.active) == (spec, 60.0, 1234.5, True)


@pytest.mark.parametrize("raw", ["alice/1", "alice/s", "alice/sx", "alice/s-1", "s1", ""])
def test_malformed_ids_are_not_found(store: ScheduleStore, raw: str) -> None:
    with pytest.raises(JobNotFound):
        store.get(raw)


def test_parse_schedule_id() -> None:
    assert parse_schedule_id("alice/s12") == ("alice", 12)
    with pytest.raises(JobNotFound):
        parse_schedule_id("alice/12")


def test_a_missing_schedule_is_not_found(store: ScheduleStore) -> None:
    store.create(JobSpec(["true"]), "alice", 100.0, None)
    for missing in ("alice/s2", "bob/s1"):
        with pytest.raises(JobNotFound):
            store.get(missing)


def test_select_by_owner_and_activity(store: ScheduleStore) -> None:
    a1 = store.create(JobSpec(["true"]), "alice", 100.0, None)
    b1 = store.create(JobSpec(["true"]), "bob", 100.0, 10.0)
    a2 = store.create(JobSpec(["true"]), "alice", 100.0, None)
    store.set_next(a1, None)  # its one run is over
    assert (a1.next_due, a1.active) == (None, False)
    assert [s.id for s in store.select()] == [a1.id, b1.id, a2.id]  # oldest first
    assert [s.id for s in store.select(active_only=True)] == [b1.id, a2.id]
    assert [s.id for s in store.select("alice")] == [a1.id, a2.id]
    assert [s.id for s in store.select("alice", active_only=True)] == [a2.id]
    store.set_next(b1, 110.0)
    assert store.get(b1.id).next_due == 110.0 and store.get(b1.id).active


def test_runs_newest_first_bounded_and_the_last_job(store: ScheduleStore) -> None:
    schedule = store.create(JobSpec(["true"]), "alice", 0.0, 1.0)
    other = store.create(JobSpec(["true"]), "alice", 0.0, 1.0)
    assert store.last_job(schedule) is None
    store.record(schedule, Run(0.0, "started", "alice/1"))
    store.record(other, Run(0.0, "started", "alice/2"))
    store.record(schedule, Run(1.0, "skipped", "", "previous run alice/1 is still running"))
    assert store.last_job(schedule) == "alice/1"  # a skipped run started no job
    assert store.recent_runs("alice", 1) == [
        Run(1.0, "skipped", "", "previous run alice/1 is still running"),
        Run(0.0, "started", "alice/1"),
    ]
    for due in range(2, 2 + RECENT_RUNS):
        store.record(schedule, Run(float(due), "failed", "", "no"))
    assert [r.due_at for r in store.get(schedule.id).recent] == [
        float(d) for d in range(1 + RECENT_RUNS, 1, -1)
    ]
    assert len(store.recent_runs("alice", 1, limit=1000)) == 2 + RECENT_RUNS


def test_delete_takes_the_runs_and_nothing_else(store: ScheduleStore) -> None:
    gone = store.create(JobSpec(["true"]), "alice", 0.0, 1.0)
    kept = store.create(JobSpec(["true"]), "alice", 0.0, 1.0)
    store.record(gone, Run(0.0, "started", "alice/1"))
    store.record(kept, Run(0.0, "started", "alice/2"))
    store.delete(gone)
    with pytest.raises(JobNotFound):
        store.get(gone.id)
    assert store.recent_runs("alice", gone.seq) == []
    assert store.get(kept.id).recent == [Run(0.0, "started", "alice/2")]

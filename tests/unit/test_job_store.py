"""The job table (``jobs.db``) on its own: numbers, rows, lookups, stop marks, purging."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from remo.core.errors import InvalidArgument, JobNotFound
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState, JobStatus
from remo.store.jobs import JobStore, job_key, list_key, parse_job_id


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def store(path: Path) -> Iterator[JobStore]:
    opened = JobStore(path)
    yield opened
    opened.close()


def run(store: JobStore, owner: str, started_at: float = 100.0, **kw: object) -> str:
    """Record a running job the way the supervisor does: a number, then its row."""
    seq = store.allocate(owner)
    store.insert_running(owner, seq, JobSpec(["true"]), 1000 + seq, 900 + seq, started_at, **kw)  # type: ignore[arg-type]
    return job_key(owner, seq)


def end(path: Path, job_id: str, ended_at: float, state: str = "succeeded") -> None:
    """Mark a job ended, as if the supervisor had recorded its end."""
    owner, seq = parse_job_id(job_id)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE jobs SET state=?, exit_code=0, ended_at=? WHERE owner=? AND seq=?",
            (state, ended_at, owner, seq),
        )
    db.close()


def test_numbers_count_per_owner(store: JobStore) -> None:
    assert [store.allocate("alice") for _ in range(3)] == [1, 2, 3]
    assert store.allocate("bob") == 1


def test_a_number_is_kept_only_once_its_job_is_recorded(path: Path) -> None:
    store = JobStore(path)
    assert store.allocate("alice") == 1  # handed out, never recorded: the supervisor died
    store.close()
    store = JobStore(path)
    try:
        assert store.allocate("alice") == 1
        store.insert_running("alice", 1, JobSpec(["true"]), 10, 9, 100.0)
    finally:
        store.close()
    store = JobStore(path)
    try:
        assert store.allocate("alice") == 2
    finally:
        store.close()


def test_a_failed_start_gives_its_number_back_unless_a_later_one_was_taken(
    store: JobStore,
) -> None:
    first = store.allocate("alice")
    store.release("alice", first)
    assert store.allocate("alice") == first
    second = store.allocate("alice")
    third = store.allocate("alice")
    store.release("alice", second)  # a later start holds the next number: keep the gap
    assert store.allocate("alice") == third + 1


def test_recorded_numbers_never_go_back(path: Path, store: JobStore) -> None:
    store.insert_running("alice", 5, JobSpec(["true"]), 10, 9, 100.0)
    store.insert_running("alice", 3, JobSpec(["true"]), 11, 9, 100.0)
    reopened = JobStore(path)
    try:
        assert reopened.allocate("alice") == 6
    finally:
        reopened.close()


def test_a_running_row_reads_back_as_recorded(store: JobStore) -> None:
    spec = JobSpec(["sleep", "30"], cwd="/srv", limits=Limits(memory=64 << 20, pids=20))
    seq = store.allocate("alice")
    store.insert_running(
        "alice",
        seq,
        spec,
        pid=4321,
        init_pid=4320,
        started_at=123.5,
        isolation=("pid", "mount"),
        schedule_id="alice/s2",
        cgroup="abcd1234-job-4320",
        request_id="r-1",
    )
    status = store.get("alice/1")
    assert (status.id, status.owner, status.argv, status.state) == (
        "alice/1",
        "alice",
        ("sleep", "30"),
        JobState.RUNNING,
    )
    assert not status.ended
    assert (status.pid, status.started_at, status.ended_at, status.exit_code) == (
        4321,
        123.5,
        None,
        None,
    )
    assert (status.cwd, status.limits) == ("/srv", spec.limits)
    assert (status.isolation, status.schedule_id, status.cgroup) == (
        ("pid", "mount"),
        "alice/s2",
        "abcd1234-job-4320",
    )
    assert store.init_pid("alice", 1) == 4320
    assert store.init_pid("alice", 2) == 0


@pytest.mark.parametrize(
    "raw",
    [
        *("", "alice", "alice/", "/1", "alice/x", "alice/-1", "alice/1/2", "../1", "a b/1"),
        *("alice\n/1", "alice/1\n", "alice/\u0661"),  # a trailing newline, an Arabic-Indic 1
    ],
)
def test_malformed_ids_are_invalid(store: JobStore, raw: str) -> None:
    with pytest.raises(InvalidArgument):
        store.get(raw)


def test_parse_job_id_bounds() -> None:
    assert parse_job_id("alice/007") == ("alice", 7)
    assert parse_job_id(f"alice/{'9' * 18}") == ("alice", int("9" * 18))
    with pytest.raises(InvalidArgument):
        parse_job_id(f"alice/{'9' * 19}")  # past SQLite's integers


def test_a_missing_job_is_not_found(store: JobStore) -> None:
    run(store, "alice")
    for missing in ("alice/2", "bob/1"):
        with pytest.raises(JobNotFound):
            store.get(missing)


def test_by_request_finds_the_owners_job_only(store: JobStore) -> None:
    job = run(store, "alice", request_id="r-1")
    run(store, "alice")  # no request id
    assert store.by_request("alice", "r-1") == job
    assert store.by_request("bob", "r-1") is None
    assert store.by_request("alice", "r-2") is None
    assert store.by_request("alice", "") is None  # no id is nobody's id


def test_stop_marks(store: JobStore) -> None:
    job = run(store, "alice")
    owner, seq = parse_job_id(job)
    assert store.stop_requested(owner, seq) == (False, None)
    store.mark_stop_requested(owner, seq, kill_at=150.25)
    assert store.stop_requested(owner, seq) == (True, 150.25)
    store.mark_stop_requested(owner, seq, kill_at=140.0)  # a shorter grace: sooner
    assert store.stop_requested(owner, seq) == (True, 140.0)
    assert store.stop_requested("alice", 99) == (False, None)


def test_list_newest_first_by_owner_and_state(path: Path, store: JobStore) -> None:
    a1 = run(store, "alice", started_at=100.0)
    b1 = run(store, "bob", started_at=200.0)
    a2 = run(store, "alice", started_at=300.0)
    a3 = run(store, "alice", started_at=300.0)  # same start: the higher number first
    end(path, a2, 310.0)
    assert [j.id for j in store.list()] == [a3, a2, b1, a1]
    assert [j.id for j in store.list("alice")] == [a3, a2, a1]
    assert [j.id for j in store.list("alice", running_only=True)] == [a3, a1]
    assert [j.id for j in store.list(limit=2)] == [a3, a2]
    assert store.list("carol") == []


def test_delete_removes_the_row_but_not_the_number(path: Path, store: JobStore) -> None:
    job = run(store, "alice")
    kept = run(store, "alice")
    store.delete(*parse_job_id(job))
    with pytest.raises(JobNotFound):
        store.get(job)
    assert [j.id for j in store.list()] == [kept]
    store.close()
    reopened = JobStore(path)
    try:
        assert reopened.allocate("alice") == 3
    finally:
        reopened.close()


def test_ended_before_lists_finished_jobs_oldest_first(path: Path, store: JobStore) -> None:
    recent = run(store, "bob")
    old = run(store, "alice")
    running = run(store, "alice")
    end(path, recent, 200.0)
    end(path, old, 100.0)
    assert store.ended_before(150.0) == [parse_job_id(old)]
    assert store.ended_before(1e12) == [parse_job_id(old), parse_job_id(recent)]
    assert store.ended_before(1e12, limit=1) == [parse_job_id(old)]  # a batch
    assert store.ended_before(100.0) == []  # strictly before
    assert parse_job_id(running) not in store.ended_before(1e12)


# -- keyset pagination ---------------------------------------------------------------------

OWNERS = ("alice", "bob", "carol")
ENDINGS = ("succeeded", "failed", "stopped", "killed", "lost")


@pytest.fixture
def many(path: Path, store: JobStore) -> list[JobStatus]:
    """40 jobs of three owners started over time, several at the same instant (ties
    across owners and within one), in every state; every job, as listed."""
    for i in range(40):
        owner = OWNERS[(i * 7) % 3]
        job = run(store, owner, started_at=1000.0 + (i // 3) * 0.5)  # 3 jobs per instant
        if i % 4:
            end(path, job, 2000.0 + i, ENDINGS[i % len(ENDINGS)])
    jobs = store.list(limit=1000)
    assert len(jobs) == 40
    return jobs


def newest_first(jobs: list[JobStatus]) -> list[str]:
    """The ids in the order of the listing: started_at, then owner, then number, all
    descending (a later start is newer; one owner's numbers count up)."""
    return [j.id for j in sorted(jobs, key=list_key, reverse=True)]


def paged(
    store: JobStore, size: int, owner: str | None = None, states: Sequence[str] = ()
) -> list[list[str]]:
    """Every page of a listing, following each page's last key as the cursor."""
    pages: list[list[str]] = []
    after = None
    while True:
        page = store.list(owner, limit=size, states=states, after=after)
        assert len(page) <= size
        if page:
            pages.append([j.id for j in page])
        if len(page) < size:
            return pages
        after = list_key(page[-1])


def test_list_key_is_start_owner_number(store: JobStore) -> None:
    job = run(store, "alice", started_at=123.25)
    status = store.get(job)
    assert list_key(status) == (123.25, "alice", 1)
    later = store.get(run(store, "alice", started_at=123.25))
    assert list_key(later) > list_key(status)  # same start: the higher number is newer


def test_the_full_listing_is_newest_first(many: list[JobStatus]) -> None:
    assert [j.id for j in many] == newest_first(many)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 39, 40, 41, 1000])
def test_pages_of_all_owners_cover_every_job_once_newest_first(
    store: JobStore, many: list[JobStatus], size: int
) -> None:
    pages = paged(store, size)
    ids = [i for page in pages for i in page]
    assert ids == newest_first(many)  # in order, none twice, none missing
    assert all(len(page) == size for page in pages[:-1])


@pytest.mark.parametrize("owner", OWNERS)
@pytest.mark.parametrize("size", [1, 4, 13, 100])
def test_pages_of_one_owner_cover_its_jobs_once_newest_first(
    store: JobStore, many: list[JobStatus], owner: str, size: int
) -> None:
    mine = [j for j in many if j.owner == owner]
    ids = [i for page in paged(store, size, owner) for i in page]
    assert ids == newest_first(mine)
    # Newest first is also by number, highest first: one owner's numbers count up.
    assert [parse_job_id(i)[1] for i in ids] == sorted(
        (parse_job_id(i)[1] for i in ids), reverse=True
    )
    assert store.list("dave", limit=size) == []


@pytest.mark.parametrize(
    "states",
    [("running",), ("succeeded",), ("failed", "lost"), tuple(ENDINGS), ("running", *ENDINGS)],
)
@pytest.mark.parametrize("owner", [None, "bob"])
def test_pages_filtered_by_state(
    store: JobStore, many: list[JobStatus], states: tuple[str, ...], owner: str | None
) -> None:
    wanted = [j for j in many if j.state.value in states and owner in (None, j.owner)]
    assert wanted, "the fixture has jobs in every state"
    for size in (1, 3, 50):
        pages = paged(store, size, owner, states)
        assert [i for page in pages for i in page] == newest_first(wanted)
    listed = store.list(owner, states=states)
    assert {j.state.value for j in listed} <= set(states)


def test_running_only_is_the_running_state(store: JobStore, many: list[JobStatus]) -> None:
    running = store.list(running_only=True)
    assert [j.id for j in running] == [j.id for j in store.list(states=("running",))]
    assert running and all(j.state is JobState.RUNNING for j in running)


def test_a_cursor_is_not_moved_by_jobs_started_or_removed_between_pages(
    path: Path, store: JobStore, many: list[JobStatus]
) -> None:
    first = store.list(limit=10)
    after = list_key(first[-1])
    # Meanwhile: a new job starts (newer than every listed one), and two jobs already
    # shown and one not yet shown are removed.
    run(store, "alice", started_at=5000.0)
    for gone in (first[0], first[5], many[12]):
        end(path, gone.id, 3000.0)
        store.delete(*parse_job_id(gone.id))
    rest = [j.id for j in store.list(limit=1000, after=after)]
    expected = [i for i in newest_first(many)[10:] if i != many[12].id]
    assert rest == expected


def test_a_cursor_past_the_last_job_gives_an_empty_page(
    store: JobStore, many: list[JobStatus]
) -> None:
    assert store.list(after=list_key(many[-1])) == []
    assert store.list("alice", after=(0.0, "alice", 1)) == []


def plans(store: JobStore, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> list[str]:
    """The query plan of the SELECT that ``store.list(**kw)`` runs."""
    db = store._db
    queries: list[tuple[str, tuple[Any, ...]]] = []

    class Recording:
        def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
            queries.append((sql, tuple(args)))
            return db.execute(sql, args)

    monkeypatch.setattr(store, "_db", Recording())
    store.list(**kw)
    monkeypatch.setattr(store, "_db", db)
    (sql, args), *_ = [(q, a) for q, a in queries if q.lstrip().upper().startswith("SELECT")]
    return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


@pytest.mark.parametrize("first_page", [True, False])
def test_a_page_of_all_owners_reads_the_index_in_order(
    store: JobStore, many: list[JobStatus], monkeypatch: pytest.MonkeyPatch, first_page: bool
) -> None:
    """Every user's jobs, a page at a time: the index jobs_listed, read in the listing's
    order from the cursor on, no sort of the whole table (USE TEMP B-TREE) per page."""
    after = None if first_page else list_key(many[9])
    plan = plans(store, monkeypatch, limit=10, after=after)
    assert any("jobs_listed" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    if not first_page:
        assert any(step.startswith("SEARCH") for step in plan), plan  # not a scan from the top


def test_a_page_of_one_owner_reads_its_rows_in_order(
    store: JobStore, many: list[JobStatus], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plans(store, monkeypatch, owner="alice", limit=10, after=list_key(many[9]))
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any(step.startswith("SEARCH") for step in plan), plan


@pytest.mark.parametrize("first_page", [True, False])
def test_a_page_of_one_state_reads_its_index_in_order(
    store: JobStore, many: list[JobStatus], monkeypatch: pytest.MonkeyPatch, first_page: bool
) -> None:
    """Every user's jobs in one state (ps -a --state failed): jobs_by_state in order."""
    after = None if first_page else list_key(many[9])
    plan = plans(store, monkeypatch, limit=10, states=["succeeded"], after=after)
    assert any("jobs_by_state" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan

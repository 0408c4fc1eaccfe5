"""Schedules and their run history, in ``schedules.db`` (written by the API server only).

The job table belongs to the supervisor; schedules live in their own database so each
file has exactly one writing process.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from remo.core.db import connect
from remo.core.errors import JobNotFound
from remo.core.spec import JobSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    spec TEXT NOT NULL,
    every_seconds REAL,
    next_due REAL,
    created_at REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (owner, seq)
);
CREATE TABLE IF NOT EXISTS runs (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    due_at REAL NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_by_schedule ON runs(owner, seq, at);
CREATE TABLE IF NOT EXISTS schedule_sequences (owner TEXT PRIMARY KEY, next INTEGER NOT NULL);
"""

RECENT_RUNS = 10


@dataclass(frozen=True)
class Run:
    due_at: float
    outcome: str  # started, skipped, failed, caught-up
    job_id: str = ""
    detail: str = ""


@dataclass
class Schedule:
    owner: str
    seq: int
    spec: JobSpec
    every: float | None
    next_due: float | None
    created_at: float
    active: bool = True
    recent: list[Run] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.owner}/s{self.seq}"


def parse_schedule_id(schedule_id: str) -> tuple[str, int]:
    owner, _, local = schedule_id.partition("/")
    if not local.startswith("s") or not local[1:].isdigit():
        raise JobNotFound(schedule_id)
    return owner, int(local[1:])


class ScheduleStore:
    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, spec: JobSpec, owner: str, first_due: float, every: float | None) -> Schedule:
        with self._db:
            row = self._db.execute(
                "SELECT next FROM schedule_sequences WHERE owner=?", (owner,)
            ).fetchone()
            seq = int(row[0]) if row else 1
            self._db.execute(
                "INSERT INTO schedule_sequences(owner, next) VALUES(?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET next=excluded.next",
                (owner, seq + 1),
            )
            now = time.time()
            self._db.execute(
                "INSERT INTO schedules(owner, seq, spec, every_seconds, next_due, created_at)"
                " VALUES(?, ?, ?, ?, ?, ?)",
                (owner, seq, json.dumps(spec.to_dict()), every, first_due, now),
            )
        return Schedule(owner, seq, spec, every, first_due, now)

    def set_next(self, schedule: Schedule, next_due: float | None) -> None:
        schedule.next_due = next_due
        schedule.active = next_due is not None
        with self._db:
            self._db.execute(
                "UPDATE schedules SET next_due=?, active=? WHERE owner=? AND seq=?",
                (next_due, int(schedule.active), schedule.owner, schedule.seq),
            )

    def record(self, schedule: Schedule, run: Run) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO runs(owner, seq, due_at, at, outcome, job_id, detail)"
                " VALUES(?, ?, ?, ?, ?, ?, ?)",
                (
                    schedule.owner,
                    schedule.seq,
                    run.due_at,
                    time.time(),
                    run.outcome,
                    run.job_id,
                    run.detail,
                ),
            )

    def delete(self, schedule: Schedule) -> None:
        with self._db:
            self._db.execute(
                "DELETE FROM schedules WHERE owner=? AND seq=?", (schedule.owner, schedule.seq)
            )
            self._db.execute(
                "DELETE FROM runs WHERE owner=? AND seq=?", (schedule.owner, schedule.seq)
            )

    def get(self, schedule_id: str) -> Schedule:
        owner, seq = parse_schedule_id(schedule_id)
        row = self._db.execute(
            "SELECT * FROM schedules WHERE owner=? AND seq=?", (owner, seq)
        ).fetchone()
        if row is None:
            raise JobNotFound(schedule_id)
        return self._load(row)

    def select(self, owner: str | None = None, active_only: bool = False) -> list[Schedule]:
        clauses, args = [], []
        if owner is not None:
            clauses.append("owner=?")
            args.append(owner)
        if active_only:
            clauses.append("active=1")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM schedules {where} ORDER BY created_at", args)
        return [self._load(row) for row in rows.fetchall()]

    def recent_runs(self, owner: str, seq: int, limit: int = RECENT_RUNS) -> list[Run]:
        rows = self._db.execute(
            "SELECT due_at, outcome, job_id, detail FROM runs WHERE owner=? AND seq=?"
            " ORDER BY at DESC LIMIT ?",
            (owner, seq, limit),
        ).fetchall()
        return [Run(r[0], r[1], r[2], r[3]) for r in rows]

    def by_name(self, owner: str, name: str) -> Schedule | None:
        """``owner``'s active schedule named ``name``, if any."""
        row = self._db.execute(
            "SELECT * FROM schedules WHERE owner=? AND active=1 AND json_extract(spec, '$.name')=?",
            (owner, name),
        ).fetchone()
        return self._load(row) if row else None

    def started_runs(self, schedule: Schedule) -> int:
        """How many of the schedule's runs started a job."""
        row = self._db.execute(
            "SELECT count(*) FROM runs WHERE owner=? AND seq=? AND job_id != ''",
            (schedule.owner, schedule.seq),
        ).fetchone()
        return int(row[0])

    def last_job(self, schedule: Schedule) -> str | None:
        row = self._db.execute(
            "SELECT job_id FROM runs WHERE owner=? AND seq=? AND job_id != ''"
            " ORDER BY at DESC LIMIT 1",
            (schedule.owner, schedule.seq),
        ).fetchone()
        return str(row[0]) if row else None

    def _load(self, row: object) -> Schedule:
        r = row  # sqlite3.Row
        schedule = Schedule(
            owner=r["owner"],  # type: ignore[index]
            seq=r["seq"],  # type: ignore[index]
            spec=JobSpec.from_dict(json.loads(r["spec"])),  # type: ignore[index]
            every=r["every_seconds"],  # type: ignore[index]
            next_due=r["next_due"],  # type: ignore[index]
            created_at=r["created_at"],  # type: ignore[index]
            active=bool(r["active"]),  # type: ignore[index]
        )
        schedule.recent = self.recent_runs(schedule.owner, schedule.seq)
        return schedule

"""The job table: one row per job, written by the supervisor, read by everyone.

SQLite in WAL mode lets the API server read while the supervisor writes. The supervisor
is the only writer of job rows, so ids can be allocated without races: a job id is
``<owner>/<n>`` where ``n`` counts that owner's jobs (short and typeable).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from remo.core.db import connect
from remo.core.errors import InvalidArgument, JobNotFound
from remo.core.outcome import JobEnd
from remo.core.spec import ACCOUNT_NAME, JobSpec, Limits
from remo.core.status import JobState, JobStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    init_pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    signal INTEGER,
    started_at REAL NOT NULL,
    ended_at REAL,
    cpu_seconds REAL,
    peak_memory_bytes INTEGER,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    oom_kills INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    stop_requested INTEGER NOT NULL DEFAULT 0,
    kill_at REAL,
    request_id TEXT NOT NULL DEFAULT '',
    isolation TEXT NOT NULL DEFAULT '',
    schedule_id TEXT,
    output_truncated INTEGER NOT NULL DEFAULT 0,
    output_dropped_bytes INTEGER NOT NULL DEFAULT 0,
    output_dropped_disk_full INTEGER NOT NULL DEFAULT 0,
    cgroup TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (owner, seq)
);
-- Jobs in one state (running ones at recovery; a filtered listing of every user's jobs,
-- newest first, a page at a time).
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, started_at, owner, seq);
-- Every user's jobs, newest first, a page at a time (keyset: started_at, owner, seq).
DROP INDEX IF EXISTS jobs_started;
CREATE INDEX IF NOT EXISTS jobs_listed ON jobs(started_at, owner, seq);
-- Only finished jobs have an end time: purges find the oldest without a scan.
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs(ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS sequences (owner TEXT PRIMARY KEY, next INTEGER NOT NULL);
"""


def job_key(owner: str, seq: int) -> str:
    """The canonical job id: ``owner/seq``."""
    return f"{owner}/{seq}"


def parse_job_id(job_id: str) -> tuple[str, int]:
    """Split ``owner/seq``; raise :class:`InvalidArgument` for anything else."""
    owner, sep, seq = job_id.partition("/")
    number = seq.isascii() and seq.isdigit() and len(seq) <= 18
    if not sep or not ACCOUNT_NAME.fullmatch(owner) or not number:
        raise InvalidArgument(f"invalid job id {job_id!r}: expected OWNER/NUMBER")
    return owner, int(seq)


class JobStore:
    """Reads and writes job rows. Cheap enough to call from the event loop (one indexed row)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "cgroup" not in columns:  # a database from before jobs named their cgroup
            self._db.execute("ALTER TABLE jobs ADD COLUMN cgroup TEXT NOT NULL DEFAULT ''")
        if "oom_kills" not in columns:  # from before OOM kills were counted
            self._db.execute("ALTER TABLE jobs ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0")
        if "kill_at" not in columns:  # from before a stop's deadline was kept
            self._db.execute("ALTER TABLE jobs ADD COLUMN kill_at REAL")
        for column in ("output_dropped_bytes", "output_dropped_disk_full"):
            if column not in columns:  # from before dropped output was counted
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        if "request_id" not in columns:  # from before starts could be retried
            self._db.execute("ALTER TABLE jobs ADD COLUMN request_id TEXT NOT NULL DEFAULT ''")
        if "name" not in columns:  # from before jobs had names
            self._db.execute("ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT ''")
        # One job of a name per owner: the supervisor checks first, this is the last word.
        self._db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_name ON jobs(owner, name) WHERE name != ''"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS jobs_request ON jobs(owner, request_id)"
            " WHERE request_id != ''"
        )
        #: owner -> next job number; the supervisor is the only writer, so the table
        #: is read once per owner and written together with each job's row.
        self._next: dict[str, int] = {}

    def close(self) -> None:
        self._db.close()

    # -- writes (supervisor only) -------------------------------------------------

    def allocate(self, owner: str) -> int:
        """Reserve the next job number of ``owner`` (made durable by :meth:`insert_running`).

        No write here: a start commits once, row and number together. A number handed out
        but never recorded (the supervisor died meanwhile) is handed out again.
        """
        seq = self._next.get(owner)
        if seq is None:
            row = self._db.execute("SELECT next FROM sequences WHERE owner=?", (owner,)).fetchone()
            seq = int(row[0]) if row else 1
        self._next[owner] = seq + 1
        return seq

    def release(self, owner: str, seq: int) -> None:
        """Give back the number of a job whose start failed, unless a later one was
        handed out meanwhile (so failed starts leave no gap)."""
        if self._next.get(owner) == seq + 1:
            self._next[owner] = seq

    def insert_running(
        self,
        owner: str,
        seq: int,
        spec: JobSpec,
        pid: int | None,
        init_pid: int,
        started_at: float,
        isolation: Iterable[str] = (),
        schedule_id: str | None = None,
        cgroup: str = "",
        request_id: str = "",
    ) -> None:
        """Record a job being started (``pid`` None until its command runs: see
        :meth:`set_pid`), and its number as used."""
        with self._db:
            self._db.execute(
                "INSERT INTO jobs(owner, seq, spec, state, pid, init_pid, started_at, isolation,"
                " schedule_id, cgroup, request_id, name)"
                " VALUES(?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    owner,
                    seq,
                    json.dumps(spec.to_dict()),
                    pid,
                    init_pid,
                    started_at,
                    ",".join(isolation),
                    schedule_id,
                    cgroup,
                    request_id,
                    spec.name,
                ),
            )
            self._db.execute(
                "INSERT INTO sequences(owner, next) VALUES(?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET next=max(next, excluded.next)",
                (owner, seq + 1),
            )

    def set_pid(self, owner: str, seq: int, pid: int) -> None:
        """Record the pid of a started job's command."""
        with self._db:
            self._db.execute("UPDATE jobs SET pid=? WHERE owner=? AND seq=?", (pid, owner, seq))

    def mark_stop_requested(self, owner: str, seq: int, kill_at: float) -> None:
        """Record a stop and when it escalates to SIGKILL (unix time), so that a
        supervisor started meanwhile keeps the promise."""
        with self._db:
            self._db.execute(
                "UPDATE jobs SET stop_requested=1, kill_at=? WHERE owner=? AND seq=?",
                (kill_at, owner, seq),
            )

    def finish(self, owner: str, seq: int, end: JobEnd) -> None:
        """Record the end of a job: the one place a :class:`JobEnd` becomes columns."""
        with self._db:
            self._db.execute(
                "UPDATE jobs SET state=?, exit_code=?, signal=?, cpu_seconds=?,"
                " peak_memory_bytes=?, oom_killed=?, oom_kills=?, reason=?, ended_at=?,"
                " output_truncated=?, output_dropped_bytes=?, output_dropped_disk_full=?"
                " WHERE owner=? AND seq=?",
                (
                    end.state.value,
                    end.exit_code,
                    end.signal,
                    end.usage.cpu_seconds,
                    end.usage.peak_memory_bytes,
                    int(end.oom_killed),
                    end.usage.oom_kills,
                    end.reason,
                    end.ended_at,
                    int(end.dropped.bytes > 0),
                    end.dropped.bytes,
                    int(end.dropped.disk_full),
                    owner,
                    seq,
                ),
            )

    def ended_before(self, cutoff: float, limit: int = -1) -> list[tuple[str, int]]:
        """Finished jobs that ended before ``cutoff`` (unix seconds), oldest first, at
        most ``limit`` of them (all with -1). Served by the ``jobs_ended`` index."""
        rows = self._db.execute(
            "SELECT owner, seq FROM jobs WHERE ended_at < ? ORDER BY ended_at LIMIT ?",
            (cutoff, limit),
        ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def delete(self, owner: str, seq: int) -> None:
        self.delete_many([(owner, seq)])

    def delete_many(self, keys: Iterable[tuple[str, int]]) -> None:
        """Delete the rows of these jobs in one transaction."""
        with self._db:
            self._db.executemany("DELETE FROM jobs WHERE owner=? AND seq=?", keys)

    # -- reads ----------------------------------------------------------------------

    def get(self, job_id: str) -> JobStatus:
        """The status of one job; raises :class:`JobNotFound`."""
        return row_to_status(self.row(job_id))

    def row(self, job_id: str) -> dict[str, Any]:
        """One job's row, column by column (JSON-safe: the supervisor's start reply
        carries it, :func:`row_to_status` reads it); raises :class:`JobNotFound`."""
        owner, seq = parse_job_id(job_id)
        row = self._db.execute(
            "SELECT * FROM jobs WHERE owner=? AND seq=?", (owner, seq)
        ).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return dict(zip(row.keys(), row, strict=True))

    def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (owner, state): how many jobs, and the output bytes they dropped (past
        their cap or on a full disk); for metrics (one scan)."""
        rows = self._db.execute(
            "SELECT owner, state, count(*), total(output_dropped_bytes) FROM jobs"
            " GROUP BY owner, state"
        )
        return {
            (str(owner), str(state)): (int(n), int(dropped)) for owner, state, n, dropped in rows
        }

    def by_name(self, owner: str, name: str) -> str | None:
        """The id of ``owner``'s job named ``name``, if there is one."""
        row = self._db.execute(
            "SELECT seq FROM jobs WHERE owner=? AND name=?", (owner, name)
        ).fetchone()
        return job_key(owner, int(row[0])) if row else None

    def by_request(self, owner: str, request_id: str) -> str | None:
        """The id of ``owner``'s job started by the Start with ``request_id``, if any."""
        row = self._db.execute(
            "SELECT seq FROM jobs WHERE owner=? AND request_id=? AND request_id != ''",
            (owner, request_id),
        ).fetchone()
        return job_key(owner, int(row[0])) if row else None

    def init_pid(self, owner: str, seq: int) -> int:
        row = self._db.execute(
            "SELECT init_pid FROM jobs WHERE owner=? AND seq=?", (owner, seq)
        ).fetchone()
        return int(row[0]) if row else 0

    def stop_requested(self, owner: str, seq: int) -> tuple[bool, float | None]:
        """Whether a stop was asked for, and when it escalates to SIGKILL."""
        row = self._db.execute(
            "SELECT stop_requested, kill_at FROM jobs WHERE owner=? AND seq=?", (owner, seq)
        ).fetchone()
        if not row:
            return False, None
        return bool(row[0]), (float(row[1]) if row[1] is not None else None)

    def list(
        self,
        owner: str | None = None,
        running_only: bool = False,
        limit: int = 1000,
        *,
        states: Sequence[str] = (),
        after: JobKey | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[JobStatus]:
        """Jobs, newest first; every owner's when ``owner`` is None; only those in
        ``states`` when given (``running_only``: running ones).

        ``after`` continues a listing past the key of its last job (:func:`list_key`):
        keyset pagination, so a page costs the same wherever it is, and no job is shown
        twice or skipped when jobs start or are removed between pages.
        """
        where: list[str] = []
        args: list[Any] = []
        if owner is not None:
            where.append("owner=?")
            args.append(owner)
        if running_only:
            states = ("running",)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        for key, value in (labels or {}).items():
            # (labels live in the spec's JSON: a filter reads the rows the others left)
            where.append("json_extract(spec, ?) = ?")
            args.extend((f'$.labels."{key}"', value))
        if owner is not None:
            # One owner's numbers count up as jobs start: the primary key gives the order.
            order = "seq DESC"
            if after is not None:
                where.append("seq < ?")
                args.append(after[2])
        else:
            order = "started_at DESC, owner DESC, seq DESC"
            if after is not None:
                where.append("(started_at, owner, seq) < (?, ?, ?)")
                args.extend(after)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT * FROM jobs {clause} ORDER BY {order} LIMIT ?", (*args, limit)
        ).fetchall()
        return [row_to_status(row) for row in rows]


#: Where a job sits in a listing: (started_at, owner, seq).
JobKey = tuple[float, str, int]


def list_key(status: JobStatus) -> JobKey:
    """The key :meth:`JobStore.list` continues after."""
    owner, seq = parse_job_id(status.id)
    return (status.started_at, owner, seq)


def row_to_status(row: sqlite3.Row | Mapping[str, Any]) -> JobStatus:
    """A row (or :meth:`JobStore.row`'s copy of one) as a :class:`JobStatus` (name and
    labels from the row and its spec)."""
    spec = json.loads(row["spec"])
    return JobStatus(
        id=job_key(row["owner"], row["seq"]),
        owner=row["owner"],
        argv=tuple(spec["argv"]),
        state=JobState(row["state"]),
        pid=row["pid"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        limits=Limits.from_dict(spec.get("limits") or {}),
        cpu_seconds=row["cpu_seconds"],
        peak_memory_bytes=row["peak_memory_bytes"],
        oom_killed=bool(row["oom_killed"]),
        oom_kills=int(row["oom_kills"]),
        reason=row["reason"],
        cwd=spec.get("cwd") or "",
        name=row["name"],
        labels=dict(spec.get("labels") or {}),
        output_truncated=bool(row["output_truncated"]),
        output_dropped_bytes=int(row["output_dropped_bytes"]),
        output_dropped_disk_full=bool(row["output_dropped_disk_full"]),
        isolation=tuple(x for x in row["isolation"].split(",") if x),
        schedule_id=row["schedule_id"],
        cgroup=row["cgroup"],
    )

"""The Slurm backend's job table: remo's job rows, and which Slurm job each one is.

The rows are :mod:`remo.store.jobs`'s (the same schema and reads: status, lists,
names, request ids, counts), in a database of their own in the server's state
directory (``slurm-jobs.db``), so a server switched between backends never mixes the
two. Beside them, ``slurm_jobs`` maps ``owner/seq`` to the Slurm job id and keeps what
a restarted server needs to go on: the partition, and a stop in progress with its
deadline for the KILL.

One writer (the backend's, on one thread at a time); readers use their own
:class:`~remo.store.jobs.JobStore` connections.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from remo.core.db import connect
from remo.core.outcome import JobEnd
from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.store.jobs import JobStore

DB_FILE = "slurm-jobs.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS slurm_jobs (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    slurm_id INTEGER,
    partition TEXT NOT NULL DEFAULT '',
    stop_requested INTEGER NOT NULL DEFAULT 0,
    kill_at REAL,
    PRIMARY KEY (owner, seq)
);
-- This table's name among the cluster's jobs: a Slurm job name is "remo:OWNER/N@ID", so
-- that the jobs of another server (or of this one before its state was reset), which
-- number theirs the same way, are never taken for ours.
CREATE TABLE IF NOT EXISTS slurm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO slurm_meta(key, value) VALUES ('instance', lower(hex(randomblob(4))));
"""


@dataclass(frozen=True)
class Active:
    """A job Slurm has not finished with (as far as the table knows)."""

    owner: str
    seq: int
    slurm_id: int | None
    state: JobState
    reason: str
    stop_requested: bool
    kill_at: float | None

    @property
    def job_id(self) -> str:
        return f"{self.owner}/{self.seq}"


class SlurmTable:
    """Writes of the job table (see the module)."""

    def __init__(self, path: Path) -> None:
        self.store = JobStore(path)  # creates remo's schema; reads, finish, delete
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM slurm_meta WHERE key='instance'").fetchone()
        #: This table's name in its jobs' Slurm names (:func:`remo.slurm.script.job_name`).
        self.instance = str(row[0])

    def close(self) -> None:
        self._db.close()
        self.store.close()

    def set_meta(self, key: str, value: str) -> None:
        """Remember ``value`` for :meth:`meta` (what commands other than the server
        need to know of its settings: the slurm.conf it uses)."""
        with self._db:
            self._db.execute(
                "INSERT INTO slurm_meta(key, value) VALUES(?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM slurm_meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def insert_queued(
        self,
        owner: str,
        spec: JobSpec,
        partition: str,
        request_id: str = "",
        schedule_id: str | None = None,
    ) -> int:
        """Record a job about to be submitted (state ``queued``, no Slurm id yet) and
        return its number: recorded before ``sbatch``, so a server that dies in
        between finds the job again by its Slurm name."""
        with self._db:
            row = self._db.execute("SELECT next FROM sequences WHERE owner=?", (owner,)).fetchone()
            seq = int(row[0]) if row else 1
            self._db.execute(
                "INSERT INTO jobs(owner, seq, spec, state, started_at, isolation, schedule_id,"
                " request_id, name, reason)"
                " VALUES(?, ?, ?, 'queued', ?, 'slurm', ?, ?, ?, 'submitting to Slurm')",
                (
                    owner,
                    seq,
                    json.dumps(spec.to_dict()),
                    time.time(),
                    schedule_id,
                    request_id,
                    spec.name,
                ),
            )
            self._db.execute(
                "INSERT INTO sequences(owner, next) VALUES(?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET next=max(next, excluded.next)",
                (owner, seq + 1),
            )
            self._db.execute(
                "INSERT INTO slurm_jobs(owner, seq, partition) VALUES(?, ?, ?)",
                (owner, seq, partition),
            )
        return seq

    def set_slurm_id(self, owner: str, seq: int, slurm_id: int) -> None:
        """Record the Slurm job of a submitted job (its "submitting" note goes)."""
        with self._db:
            self._db.execute(
                "UPDATE slurm_jobs SET slurm_id=? WHERE owner=? AND seq=?", (slurm_id, owner, seq)
            )
            self._db.execute(
                "UPDATE jobs SET reason='' WHERE owner=? AND seq=? AND state='queued'",
                (owner, seq),
            )

    def set_progress(self, owner: str, seq: int, state: JobState, reason: str) -> None:
        """A job still in Slurm's hands: queued (with Slurm's reason) or running."""
        with self._db:
            self._db.execute(
                "UPDATE jobs SET state=?, reason=? WHERE owner=? AND seq=? AND ended_at IS NULL",
                (state.value, reason, owner, seq),
            )

    def mark_stop(self, owner: str, seq: int, kill_at: float | None) -> None:
        """A stop was asked for; KILL at ``kill_at`` if it is still running then."""
        with self._db:
            self._db.execute(
                "UPDATE slurm_jobs SET stop_requested=1, kill_at=? WHERE owner=? AND seq=?",
                (kill_at, owner, seq),
            )

    def active(self) -> list[Active]:
        """Every job not ended yet, oldest first."""
        rows = self._db.execute(
            "SELECT j.owner, j.seq, s.slurm_id, j.state, j.reason, s.stop_requested, s.kill_at"
            " FROM jobs j JOIN slurm_jobs s USING (owner, seq)"
            " WHERE j.state IN ('queued', 'running') ORDER BY j.started_at"
        ).fetchall()
        return [
            Active(
                str(r[0]),
                int(r[1]),
                None if r[2] is None else int(r[2]),
                JobState(r[3]),
                str(r[4]),
                bool(r[5]),
                None if r[6] is None else float(r[6]),
            )
            for r in rows
        ]

    def slurm_id(self, owner: str, seq: int) -> int | None:
        """The Slurm job of ``owner/seq`` (None: not submitted yet, or no such job)."""
        row = self._db.execute(
            "SELECT slurm_id FROM slurm_jobs WHERE owner=? AND seq=?", (owner, seq)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def finish(self, owner: str, seq: int, end: JobEnd) -> None:
        """Record the end of a job that ran (or was lost)."""
        self.store.finish(owner, seq, end)

    def finish_unrun(self, owner: str, seq: int, state: JobState, reason: str) -> None:
        """Record the end of a job that never ran: stopped in the queue, or refused by
        Slurm after submission (no exit status exists: none is made up)."""
        with self._db:
            self._db.execute(
                "UPDATE jobs SET state=?, reason=?, ended_at=? WHERE owner=? AND seq=?",
                (state.value, reason, time.time(), owner, seq),
            )

    def delete(self, keys: list[tuple[str, int]]) -> None:
        """Forget these jobs (their directories are the caller's to remove)."""
        with self._db:
            self._db.executemany("DELETE FROM jobs WHERE owner=? AND seq=?", keys)
            self._db.executemany("DELETE FROM slurm_jobs WHERE owner=? AND seq=?", keys)

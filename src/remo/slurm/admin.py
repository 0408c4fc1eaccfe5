"""What ``remo admin`` does to the jobs of a server with the Slurm backend, from the
state directory alone (the server may be running or not)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from remo.core.status import JobState
from remo.slurm.commands import Slurm, SlurmError
from remo.slurm.table import DB_FILE, SlurmTable


async def stop_jobs_of(state_dir: Path, owner: str, grace: float = 10.0) -> int | None:
    """Stop every unfinished Slurm job of ``owner``: queued ones leave the queue, running
    ones get SIGTERM now and, from the server's poller, SIGKILL after ``grace`` seconds
    (the deadline is in the table: a server started later keeps it). The server records
    the ends. How many were asked to stop; None when ``state_dir`` has no Slurm jobs
    (a local server's: the caller stops them through its supervisor)."""
    db = state_dir / DB_FILE
    if not db.exists():
        return None
    table = SlurmTable(db)
    try:
        conf = table.meta("slurm_conf")
        slurm = Slurm(Path(conf) if conf else None)
        mine = [job for job in table.active() if job.owner == owner]
        # Queued or running as Slurm says now: the table is a poll behind (or more, if no
        # server runs), and a job Slurm has started must get the TERM and the grace, not
        # a queued job's scancel (see :meth:`remo.slurm.jobs.SlurmJobs.stop`).
        try:
            queue = await slurm.queue(j.slurm_id for j in mine if j.slurm_id is not None)
        except SlurmError:  # Slurm does not answer: the table's word, then
            queue = {}
        count = 0
        for job in mine:
            entry = None if job.slurm_id is None else queue.get(job.slurm_id)
            queued = entry.queued if entry is not None else job.state is JobState.QUEUED
            table.mark_stop(job.owner, job.seq, None if queued else time.time() + grace)
            if job.slurm_id is not None:
                # (an error: it ended meanwhile, and the server's next poll records how)
                with contextlib.suppress(SlurmError):
                    await slurm.signal(job.slurm_id, None if queued else 15)
            count += 1
        return count
    finally:
        table.close()

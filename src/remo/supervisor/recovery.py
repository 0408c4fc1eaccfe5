"""Taking over from a previous supervisor: adopt live jobs, close the rest.

A supervisor that died (killed, crashed) leaves running jobs behind: their inits are
alive and keep writing output, but they are nobody's children any more, so their exit
is watched through a pidfd and their outcome read from the init's record. Rows of jobs
that ended meanwhile are closed, and cgroups of this instance that no row names are
removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING

from remo.core.paths import STATUS_FILE
from remo.store.jobs import parse_job_id
from remo.supervisor.jobfiles import marked_stop
from remo.supervisor.running import RunningJob
from remo.supervisor.spawn import host_pid
from remo.supervisor.starts import destroy_quietly

if TYPE_CHECKING:
    from remo.supervisor.service import Supervisor

log = logging.getLogger("remo.supervisor")

#: Why the end of a job is unknown, when its init left no record.
RESTARTED = "exit status unknown: the supervisor was restarted while the job ran"
STARTING = "the supervisor was restarted while starting the job: it may not have run"


def recover(sup: Supervisor) -> None:
    """Adopt the live jobs the store says are running; finish the others."""
    shutil.rmtree(sup.paths.spare_dir, ignore_errors=True)  # its inits' directories
    known: set[str] = set()
    for status in sup.store.list(running_only=True, limit=1 << 30):
        owner, seq = parse_job_id(status.id)
        known.add(name := status.cgroup or sup.starter.cgroup_name(owner, seq))
        group = sup.driver.open(name)
        init_pid = sup.store.init_pid(owner, seq)
        job = RunningJob(
            owner,
            seq,
            init_pid,
            group,
            sup.paths.job_dir(owner, seq) / STATUS_FILE,
            "pid" in status.isolation,
            adopted=True,
        )
        job.stop_requested, job.kill_at = sup.store.stop_requested(owner, seq)
        if not job.stop_requested and (marked := marked_stop(job.status_file.parent)):
            job.stop_requested, job.kill_at = True, marked  # taken while the disk was full
        alive = init_pid > 0 and _is_alive(init_pid) and (group is None or init_pid in group.pids())
        sup.running.add(job)
        # No pid: the previous supervisor died during the start, after the row was
        # written; the command ran if the init got that far.
        starting = status.pid is None
        if alive and _watch_adopted(sup, job, starting):
            log.info("re-adopted %s (init pid %s)", job.key, job.pid)
            if starting and (pid := host_pid(init_pid)):
                sup.store.set_pid(owner, seq, pid)
            if job.stop_requested:
                # The stop outlives the supervisor that took it: escalate at its
                # deadline (rows from before deadlines were kept: at once).
                job.kill_at = job.kill_at if job.kill_at is not None else time.time()
                sup.arm_kill(job)
            continue
        why = STARTING if starting else "the job ended while no supervisor was running"
        sup.finisher.finish_soon(job, None, why)
    for name in sup.driver.list_names():
        if (
            name.startswith(f"{sup.tag}-")
            and name not in known
            and (group := sup.driver.open(name)) is not None
        ):
            destroy_quietly(group)


def _watch_adopted(sup: Supervisor, job: RunningJob, starting: bool) -> bool:
    """Watch a job that is not our child: a pidfd turns readable when it exits."""
    try:
        pidfd = os.pidfd_open(job.pid)
    except OSError:
        return False
    loop = asyncio.get_running_loop()

    def exited() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        why = STARTING if starting else RESTARTED
        sup.finisher.finish_soon(job, None, why)

    loop.add_reader(pidfd, exited)
    return True


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

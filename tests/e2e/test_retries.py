"""Calls that are safe to repeat survive a restart of the server: a Stop in progress
when the server gets SIGTERM, and a Status asked while it is down, both get their
answer from the next server on the same port and state dir."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from remo.client import Client
from remo.core.status import JobState
from tests.e2e.process import ServerProcess
from tests.support import wait_until_sync

#: Says "term" on SIGTERM and goes on until the file named by its argument exists,
#: then exits 7: a stop of it stays in progress until the test lets the job end.
JOB = 'trap "echo term" TERM; echo ready; while [ ! -e "$0" ]; do sleep 0.2; done; exit 7'


def test_a_stop_in_progress_and_a_status_while_down_survive_a_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    credential = server.credential(tmp_path / "me.remo")
    release = tmp_path / "release"
    server.start()
    pool = ThreadPoolExecutor(2)
    try:
        with Client.from_file(credential) as asker, Client.from_file(credential) as stopper:
            started = asker.start(["sh", "-c", JOB, str(release)]).job
            assert started is not None
            job_id = started.id

            def output() -> bytes:
                return b"".join(c.data for c in asker.output(job_id))

            wait_until_sync(lambda: b"ready" in output(), 30, what="the job to start")
            assert stopper.whoami().user  # connected
            stopping = pool.submit(stopper.stop, job_id, grace=60)
            wait_until_sync(lambda: b"term" in output(), 30, what="the stop to reach the job")

            server.sigterm(within=10)
            assert "1 call(s) still in progress are cut short" in server.output()
            asking = threading.Event()

            def status_while_down() -> JobState:
                asking.set()
                return asker.status(job_id).state

            status = pool.submit(status_while_down)
            assert asking.wait(10)
            server.start()
            assert status.result(timeout=60) is JobState.RUNNING
            release.touch()
            stopped = stopping.result(timeout=60)
        assert (stopped.id, stopped.state, stopped.exit_code) == (job_id, JobState.STOPPED, 7)
    finally:
        release.touch()
        pool.shutdown(wait=False, cancel_futures=True)
        server.stop()

"""``remo admin revoke --user U --stop-jobs`` on a server with the Slurm backend stops
the account's Slurm jobs (it would otherwise ask a local supervisor, which has none)."""

from __future__ import annotations

import asyncio
import sys

from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server
from tests.slurm.conftest import ALICE
from tests.slurm.test_backend import output, start, wait_state
from tests.support import wait_until


async def test_revoke_with_stop_jobs_stops_running_and_queued_slurm_jobs(server: Server) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        both_cpus = pb.Limits(cpu_cores=2)
        running = await start(alice, "sh", "-c", "echo ready; exec sleep 300", limits=both_cpus)
        await wait_until(lambda: output(alice, running.id), 60, what="the command to run")
        queued = await start(alice, "sleep", "300", limits=both_cpus)
        await wait_state(alice, queued.id, pb.JOB_STATE_QUEUED)
    revoke = ["admin", "revoke", "--user", ALICE, "--stop-jobs"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "remo.cli.main", *revoke, "--state-dir", str(server.state_dir)),
        stdout=asyncio.subprocess.PIPE,
    )
    said, _ = await proc.communicate()
    channel, admin = server.stub(server.credential("root", "admin"))  # (alice's is revoked)
    async with channel:
        ids = [f"{ALICE}/{running.id}", f"{ALICE}/{queued.id}"]
        ended = [(await admin.Wait(pb.WaitRequest(id=i))).job for i in ids]
    assert proc.returncode == 0 and b"stopped 2 running job(s)" in said
    assert [j.state for j in ended] == [pb.JOB_STATE_STOPPED, pb.JOB_STATE_STOPPED]
    assert ended[0].signal == 15 and ended[1].reason == "stopped while queued: it never ran"

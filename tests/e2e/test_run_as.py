"""Jobs run as the caller's own unix account, and cannot reach beyond it."""

from __future__ import annotations

import os
import pwd

import grpc
import pytest

from remo.api.jobs import duration
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc
from tests.e2e.conftest import Server, needs_root

pytestmark = needs_root
ALICE, BOB = "remo-alice", "remo-bob"


async def run(stub: jobs_pb2_grpc.JobServiceStub, *argv: str) -> tuple[pb.Job, str]:
    job = (await stub.Start(pb.StartRequest(argv=list(argv)))).job
    status = (await stub.Wait(pb.WaitRequest(id=job.id))).job
    output = b"".join([c.data async for c in stub.Output(pb.OutputRequest(id=job.id))])
    return status, output.decode()


async def test_job_runs_with_the_accounts_identity(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        status, output = await run(
            alice, "sh", "-c", "id -u; id -g; id -G; echo $HOME; pwd; echo $USER $LOGNAME"
        )
    entry = pwd.getpwnam(ALICE)
    uid, gid, groups, home, cwd, names = output.splitlines()
    assert status.state == pb.JOB_STATE_SUCCEEDED
    assert int(uid) == entry.pw_uid and int(gid) == entry.pw_gid
    assert sorted(map(int, groups.split())) == sorted(os.getgrouplist(ALICE, entry.pw_gid))
    assert home == cwd == entry.pw_dir
    assert names == f"{ALICE} {ALICE}"


async def test_job_cannot_escape_its_account(server: Server, unix_users: tuple[str, ...]) -> None:
    root_file = server.tmp / "root-owned"
    root_file.write_text("root's\n")
    root_file.chmod(0o644)
    server.tmp.chmod(0o755)
    channel_a, alice = server.stub(server.credential(ALICE, "operator"))
    channel_b, bob = server.stub(server.credential(BOB, "operator"))
    async with channel_a, channel_b:
        bob_job = (await bob.Start(pb.StartRequest(argv=["sleep", "30"]))).job
        probes = {
            "write-root-file": f"echo x >> {root_file}",
            "kill-bob": f"kill -9 {bob_job.pid}",
            "raise-own-limits": (
                "cg=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup); "
                "echo -1 > /sys/fs/cgroup/memory$cg/memory.limit_in_bytes"
            ),
            "leave-cgroup": (
                "cg=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup); "
                "echo $$ > /sys/fs/cgroup/memory${cg%/*}/cgroup.procs"
            ),
            "read-state-dir": f"ls {server.state_dir}",
            "read-database": f"cat {server.state_dir}/jobs.db",
            "read-ca-key": f"cat {server.state_dir}/ca.key",
        }
        for name, script in probes.items():
            status, output = await run(alice, "sh", "-c", script)
            assert status.state == pb.JOB_STATE_FAILED, f"{name} succeeded: {output}"
        bob_now = (await bob.GetJob(pb.GetJobRequest(id=bob_job.id))).job
        assert bob_now.state == pb.JOB_STATE_RUNNING
        assert root_file.read_text() == "root's\n"
        await bob.Stop(pb.StopRequest(id=bob_job.id, grace=duration(0)))


async def test_unknown_account_is_failed_precondition(server: Server) -> None:
    channel, stub = server.stub(server.credential("remo-nobody-here", "operator"))
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Start(pb.StartRequest(argv=["true"]))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no account" in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Start(pb.StartRequest(argv=["true"], when=pb.When(delay=duration(60))))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

"""The authorization matrix, as real RPCs over mTLS: every role, own and foreign jobs."""

from __future__ import annotations

import grpc
import pytest

from remo.api.jobs import duration
from remo.server.authz import RPC_PERMISSIONS
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, needs_root, reason_of

pytestmark = needs_root
ALICE, BOB = "remo-alice", "remo-bob"


def test_every_rpc_has_a_policy() -> None:
    service = pb.DESCRIPTOR.services_by_name["JobService"]
    assert set(RPC_PERMISSIONS) == {f"/{service.full_name}/{m.name}" for m in service.methods}


async def outcome_of(call: object) -> tuple[grpc.StatusCode, str]:
    """The status code a call ends with, and its ErrorInfo reason ("" for OK)."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err.code(), reason_of(err)
    return grpc.StatusCode.OK, ""


async def test_role_matrix(server: Server, unix_users: tuple[str, ...]) -> None:
    creds = {
        "alice-operator": server.credential(ALICE, "operator"),
        "alice-viewer": server.credential(ALICE, "viewer"),
        "bob-operator": server.credential(BOB, "operator"),
        "root-admin": server.credential("root", "admin"),
    }
    stubs = {name: server.stub(path) for name, path in creds.items()}
    try:
        _, alice = stubs["alice-operator"]
        _, alice_viewer = stubs["alice-viewer"]
        _, bob = stubs["bob-operator"]
        _, admin = stubs["root-admin"]

        started = await alice.Start(pb.StartRequest(argv=["sleep", "30"]))
        alice_job = started.job.id
        assert alice_job == "1" and started.job.owner == ALICE
        later = pb.When(delay=duration(3600))
        created = await alice.Start(pb.StartRequest(argv=["true"], when=later))
        alice_schedule = created.schedule.id
        assert alice_schedule == "s1" and created.schedule.owner == ALICE
        bob_job = (await bob.Start(pb.StartRequest(argv=["sleep", "30"]))).job.id
        finished = (await bob.Start(pb.StartRequest(argv=["true"]))).job.id
        await bob.Wait(pb.WaitRequest(id=finished))

        # viewer: reads own, writes nothing
        ok = (grpc.StatusCode.OK, "")
        denied = (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
        missing = (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
        no_schedule = (grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")
        for call in (
            alice_viewer.GetJob(pb.GetJobRequest(id=alice_job)),
            alice_viewer.ListJobs(pb.ListJobsRequest()),
            alice_viewer.GetSchedule(pb.GetScheduleRequest(id=alice_schedule)),
            alice_viewer.ListSchedules(pb.ListSchedulesRequest()),
        ):
            assert await outcome_of(call) == ok
        for call in (
            alice_viewer.Start(pb.StartRequest(argv=["true"])),
            alice_viewer.Stop(pb.StopRequest(id=alice_job)),
            alice_viewer.Kill(pb.KillRequest(id=alice_job)),
            alice_viewer.Remove(pb.RemoveRequest(id=alice_job)),
            alice_viewer.Remove(pb.RemoveRequest(id=alice_schedule)),
        ):
            assert await outcome_of(call) == denied
        assert (await alice_viewer.GetJob(pb.GetJobRequest(id=alice_job))).job.state == (
            pb.JOB_STATE_RUNNING
        )

        # operators never see each other's jobs: NOT_FOUND, exactly as for a missing job
        for call in (
            bob.GetJob(pb.GetJobRequest(id=f"{ALICE}/{alice_job}")),
            bob.Stop(pb.StopRequest(id=f"{ALICE}/{alice_job}", grace=duration(0))),
            bob.Kill(pb.KillRequest(id=f"{ALICE}/{alice_job}", signal=9)),
            bob.Remove(pb.RemoveRequest(id=f"{ALICE}/{alice_job}")),
            bob.Wait(pb.WaitRequest(id=f"{ALICE}/{alice_job}")),
            bob.GetJob(pb.GetJobRequest(id=f"{ALICE}/999")),
            bob.Kill(pb.KillRequest(id=f"{ALICE}/999")),
        ):
            assert await outcome_of(call) == missing
        for call in (
            bob.GetSchedule(pb.GetScheduleRequest(id=f"{ALICE}/{alice_schedule}")),
            bob.Remove(pb.RemoveRequest(id=f"{ALICE}/{alice_schedule}")),
            bob.GetSchedule(pb.GetScheduleRequest(id=f"{ALICE}/s999")),
        ):
            assert await outcome_of(call) == no_schedule
        chunks = bob.Output(pb.OutputRequest(id=f"{ALICE}/{alice_job}"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in chunks:
                pass
        assert (caught.value.code(), reason_of(caught.value)) == missing
        assert await outcome_of(bob.ListJobs(pb.ListJobsRequest(all_users=True))) == denied
        assert (
            await outcome_of(bob.ListSchedules(pb.ListSchedulesRequest(all_users=True))) == denied
        )
        listed = await bob.ListJobs(pb.ListJobsRequest())
        assert {j.owner for j in listed.jobs} == {BOB}
        assert list((await bob.ListSchedules(pb.ListSchedulesRequest())).schedules) == []
        # alice has no job 2 (and her job 1 still runs: nothing above touched it)
        assert await outcome_of(alice.GetJob(pb.GetJobRequest(id="2"))) == missing
        alice_now = (await alice.GetJob(pb.GetJobRequest(id=alice_job))).job
        assert alice_now.state == pb.JOB_STATE_RUNNING

        # admin: every user's jobs and schedules, named USER/N and USER/sN
        everyone = await admin.ListJobs(pb.ListJobsRequest(all_users=True))
        assert {j.owner for j in everyone.jobs} >= {ALICE, BOB}
        schedules = await admin.ListSchedules(pb.ListSchedulesRequest(all_users=True))
        assert f"{ALICE}/{alice_schedule}" in {s.id for s in schedules.schedules}
        theirs = await admin.GetSchedule(pb.GetScheduleRequest(id=f"{ALICE}/{alice_schedule}"))
        assert theirs.schedule.owner == ALICE
        stopped = (await admin.Stop(pb.StopRequest(id=f"{BOB}/{bob_job}", grace=duration(0)))).job
        assert stopped.state == pb.JOB_STATE_STOPPED and stopped.id == f"{BOB}/{bob_job}"
        assert await outcome_of(admin.Remove(pb.RemoveRequest(id=f"{BOB}/{finished}"))) == ok

        # operator on own jobs and schedules
        killed = (await alice.Start(pb.StartRequest(argv=["sleep", "30"]))).job.id
        assert await outcome_of(alice.Kill(pb.KillRequest(id=killed, signal=9))) == ok
        ended = (await alice.Wait(pb.WaitRequest(id=killed))).job
        assert ended.HasField("end_time")
        stopped = (await alice.Stop(pb.StopRequest(id=alice_job, grace=duration(0)))).job
        assert stopped.state == pb.JOB_STATE_STOPPED
        assert await outcome_of(alice.Remove(pb.RemoveRequest(id=alice_job))) == ok
        assert await outcome_of(alice.Remove(pb.RemoveRequest(id=alice_schedule))) == ok
    finally:
        for channel, _ in stubs.values():
            await channel.close()


async def test_revocation_takes_effect_on_next_call(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    from remo.pki.ca import CertificateAuthority
    from remo.pki.package import load
    from remo.pki.registry import Registry

    path = server.credential(ALICE, "operator")
    channel, stub = server.stub(path)
    try:
        assert (await stub.WhoAmI(pb.WhoAmIRequest())).user == ALICE
        ca = CertificateAuthority.load(server.state_dir)
        with Registry.open(server.state_dir, ca.certificate) as registry:
            registry.revoke(load(path).serial)
        assert await outcome_of(stub.WhoAmI(pb.WhoAmIRequest())) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "CREDENTIAL_REVOKED",
        )
    finally:
        await channel.close()


async def test_status_codes_for_bad_input(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    try:
        invalid = (grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST")
        assert await outcome_of(stub.Start(pb.StartRequest(argv=[]))) == invalid
        assert await outcome_of(stub.Start(pb.StartRequest(argv=["a\0b"]))) == invalid
        assert await outcome_of(stub.GetJob(pb.GetJobRequest(id="../../etc/passwd"))) == invalid
        assert await outcome_of(stub.GetJob(pb.GetJobRequest(id=""))) == invalid
        bad_limits = pb.StartRequest(argv=["true"], limits=pb.Limits(memory_bytes=-5))
        assert await outcome_of(stub.Start(bad_limits)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "LIMIT_OUT_OF_RANGE",
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Start(pb.StartRequest(argv=["/no/such/binary"]))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(caught.value) == "START_FAILED"
        assert "No such file or directory" in (caught.value.details() or "")
        assert await outcome_of(stub.GetJob(pb.GetJobRequest(id="999"))) == (
            grpc.StatusCode.NOT_FOUND,
            "JOB_NOT_FOUND",
        )
    finally:
        await channel.close()

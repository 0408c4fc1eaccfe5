"""The authorization matrix, as real RPCs over mTLS: every role, own and foreign jobs."""

from __future__ import annotations

import grpc
import pytest

from remo.api.v1 import jobs_pb2 as pb
from remo.server.authz import RPC_PERMISSIONS
from tests.e2e.conftest import Server, needs_root

pytestmark = needs_root
ALICE, BOB = "remo-alice", "remo-bob"


def test_every_rpc_has_a_policy() -> None:
    service = pb.DESCRIPTOR.services_by_name["Jobs"]
    assert set(RPC_PERMISSIONS) == {m.name for m in service.methods}


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


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
        bob_job = (await bob.Start(pb.StartRequest(argv=["sleep", "30"]))).job.id
        finished = (await bob.Start(pb.StartRequest(argv=["true"]))).job.id
        await bob.Wait(pb.JobRef(id=finished))

        # viewer: reads own, writes nothing
        ok, denied, missing = (
            grpc.StatusCode.OK,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND,
        )
        assert await code_of(alice_viewer.Status(pb.JobRef(id=alice_job))) == ok
        assert await code_of(alice_viewer.List(pb.ListRequest())) == ok
        assert await code_of(alice_viewer.Start(pb.StartRequest(argv=["true"]))) == denied
        assert await code_of(alice_viewer.Stop(pb.StopRequest(id=alice_job))) == denied
        assert await code_of(alice_viewer.Remove(pb.RemoveRequest(id=alice_job))) == denied

        # operators never see each other's jobs: NOT_FOUND, exactly as for a missing job
        for call in (
            bob.Status(pb.JobRef(id=f"{ALICE}/{alice_job}")),
            bob.Stop(pb.StopRequest(id=f"{ALICE}/{alice_job}", grace_seconds=0)),
            bob.Remove(pb.RemoveRequest(id=f"{ALICE}/{alice_job}")),
            bob.Wait(pb.JobRef(id=f"{ALICE}/{alice_job}")),
            bob.Status(pb.JobRef(id=f"{ALICE}/999")),
        ):
            assert await code_of(call) == missing
        chunks = bob.Output(pb.OutputRequest(id=f"{ALICE}/{alice_job}"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in chunks:
                pass
        assert caught.value.code() == missing
        assert await code_of(bob.List(pb.ListRequest(all_users=True))) == denied
        listed = await bob.List(pb.ListRequest())
        assert {j.owner for j in listed.jobs} == {BOB}
        assert await code_of(alice.Status(pb.JobRef(id="2"))) == missing  # alice has no job 2

        # admin: every user's jobs, named USER/N
        everyone = await admin.List(pb.ListRequest(all_users=True))
        assert {j.owner for j in everyone.jobs} >= {ALICE, BOB}
        stopped = await admin.Stop(pb.StopRequest(id=f"{BOB}/{bob_job}", grace_seconds=0))
        assert stopped.state == "stopped" and stopped.id == f"{BOB}/{bob_job}"
        assert await code_of(admin.Remove(pb.RemoveRequest(id=f"{BOB}/{finished}"))) == ok

        # operator on own job
        assert (await alice.Stop(pb.StopRequest(id=alice_job, grace_seconds=0))).state == "stopped"
        assert await code_of(alice.Remove(pb.RemoveRequest(id=alice_job))) == ok
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
        assert await code_of(stub.WhoAmI(pb.WhoAmIRequest())) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()


async def test_status_codes_for_bad_input(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    try:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        assert await code_of(stub.Start(pb.StartRequest(argv=[]))) == invalid
        assert await code_of(stub.Start(pb.StartRequest(argv=["a\0b"]))) == invalid
        assert await code_of(stub.Status(pb.JobRef(id="../../etc/passwd"))) == invalid
        assert await code_of(stub.Status(pb.JobRef(id=""))) == invalid
        bad_limits = pb.StartRequest(argv=["true"], limits=pb.Limits(memory_bytes=-5))
        assert await code_of(stub.Start(bad_limits)) == invalid
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Start(pb.StartRequest(argv=["/no/such/binary"]))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "No such file or directory" in (caught.value.details() or "")
        assert await code_of(stub.Status(pb.JobRef(id="999"))) == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()

"""Every service on the mTLS port answers only registered, unrevoked certificates.

Health and reflection used to answer any certificate that chained to the CA — a revoked
one could read the whole API descriptor. Now the same registry check as remo.v1.JobService
guards them (remo.server.guard).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.pki.registry import Registry
from remo.server import tls
from tests.e2e.conftest import Server, reason_of, serve

V1_REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def unrecorded_credential(server: Server, user: str) -> Path:
    """Signed by the server's CA but never recorded: a leaked signing, say."""
    ca = CertificateAuthority.load(server.state_dir)
    issued = ca.issue_client(user, "operator", validity=timedelta(days=1))  # type: ignore[arg-type]
    path = server.tmp / f"{user}-unrecorded.remo"
    package.save(path, [server.address], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return path


def revoked_credential(server: Server, user: str) -> Path:
    path = server.credential(user, "operator")
    ca = CertificateAuthority.load(server.state_dir)
    with Registry.open(server.state_dir, ca.certificate) as registry:
        for record in registry.list_records(user=user):
            registry.revoke(record.serial)
    return path


def channel_for(credential: Path) -> grpc.aio.Channel:
    cred = package.load(credential)
    creds = tls.client_credentials(cred.ca_pem, cred.cert_pem, cred.key_pem)
    return grpc.aio.secure_channel(cred.addresses[0], creds)


def reflection_call(
    channel: grpc.aio.Channel, method: str | None, requests: list[object]
) -> grpc.aio.StreamStreamCall:
    """A reflection call through v1alpha's stub or the v1 method name."""
    if method is None:
        return reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter(requests)
        )
    # v1 is v1alpha under another package name: the same bytes on the wire
    return channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter(requests))


async def list_services(channel: grpc.aio.Channel, method: str | None = None) -> list[str]:
    """Reflection's list_services."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in reflection_call(channel, method, [request])]
    return [s.name for s in responses[0].list_services_response.service]


async def refused_reflection(channel: grpc.aio.Channel, method: str | None) -> grpc.aio.AioRpcError:
    """The status a reflection call ends with, its request never sent.

    The door refuses before reading a message. A client that is still sending when the
    refusal arrives can see its own write fail (grpc.aio reports INTERNAL "Failed
    execute_batch") instead of the server's status: the refusal is what is checked here.
    """
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await reflection_call(channel, method, []).read()
    return refused.value


async def test_health_and_reflection_answer_a_registered_certificate(server: Server) -> None:
    async with channel_for(server.credential("remo-door", "operator")) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service="remo.v1.JobService"))
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        for method in (None, V1_REFLECTION):
            services = await list_services(channel, method)
            assert "remo.v1.JobService" in services
            assert "grpc.reflection.v1.ServerReflection" in services


@pytest.mark.parametrize("kind", ["revoked", "unrecorded"])
async def test_health_and_reflection_refuse_a_revoked_or_unrecorded_certificate(
    server: Server, kind: str
) -> None:
    make = revoked_credential if kind == "revoked" else unrecorded_credential
    async with channel_for(make(server, f"remo-{kind}")) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as checked:
            await health.Check(health_pb2.HealthCheckRequest())
        with pytest.raises(grpc.aio.AioRpcError) as watched:
            await health.Watch(health_pb2.HealthCheckRequest()).read()
        refused = [checked.value, watched.value]
        for method in (None, V1_REFLECTION):
            refused.append(await refused_reflection(channel, method))
    for err in refused:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        assert ("revoked" if kind == "revoked" else "never recorded") in (err.details() or "")
        expected = "CREDENTIAL_REVOKED" if kind == "revoked" else "CREDENTIAL_UNKNOWN"
        assert reason_of(err) == expected, err


async def test_the_opt_in_plaintext_health_port_serves_health_only(tmp_path: Path) -> None:
    from remo.v1 import jobs_pb2 as pb
    from remo.v1 import jobs_pb2_grpc

    async with serve(tmp_path, health_listen="127.0.0.1:0") as server:
        srv = server.running
        assert srv.health_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            jobs_service = health_pb2.HealthCheckRequest(service="remo.v1.JobService")
            checked = await health.Check(jobs_service)
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as jobs:
                await jobs_pb2_grpc.JobServiceStub(channel).WhoAmI(pb.WhoAmIRequest())
            with pytest.raises(grpc.aio.AioRpcError) as reflected:
                await list_services(channel)
    assert jobs.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert reflected.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_plaintext_health_port_is_off_by_default(server: Server) -> None:
    assert server.running.health_port is None

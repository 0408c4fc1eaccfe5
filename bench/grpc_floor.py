"""The floor of one streamed message through gRPC Python on this machine: what remo's
follow latency (``remo logs -f``: a job's line to the client) cannot go under.

A ``grpc.aio`` server (remo's server is one) yields one small message of a server stream
each time a byte arrives on a pipe; a sync client (the CLI is one) waits for it. No
files, no remo: one pipe wake-up, one message, loopback; with and without TLS (a
self-signed P-256 certificate, as remo's are EC), and at two paces: a message every 5
ms, and every 20 ms as the follow-latency benchmarks print their lines (after 20 ms of
quiet, gRPC's threads and the CPUs have gone idle, and waking them costs). Run::

    .venv/bin/python bench/grpc_floor.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class _Ticks(health_pb2_grpc.HealthServicer):
    """Watch answers once at its start, then once per byte written to ``fd``. One reader
    serves the server's life and hands each byte to the latest Watch: a server is
    measured once per pace, and a reader left by an earlier Watch would eat its bytes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._ticks: asyncio.Queue[None] | None = None

    def _tick(self) -> None:
        os.read(self._fd, 1)
        if self._ticks is not None:
            self._ticks.put_nowait(None)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        ticks: asyncio.Queue[None] = asyncio.Queue()
        if self._ticks is None:
            asyncio.get_running_loop().add_reader(self._fd, self._tick)
        self._ticks = ticks
        serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        yield serving  # (the client writes its first byte once this came: ours by then)
        while True:
            await ticks.get()
            yield serving


def _self_signed() -> tuple[bytes, bytes]:
    """A key and a certificate for 127.0.0.1 (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _serve(fd: int, port: int, tls: tuple[bytes, bytes] | None) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(_Ticks(fd), server)
        if tls is None:
            server.add_insecure_port(f"127.0.0.1:{port}")
        else:
            server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([tls]))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    tls = _self_signed()
    # Every server is forked before this process makes its first channel: a fork
    # after gRPC has started its threads is not supported (it can hang).
    servers = [_Server(tls if secure else None) for secure in (False, True)]
    try:
        for gap in (0.005, 0.020):
            for server in servers:
                median, p99, count = _floor(server, rounds, gap)
                print(
                    f"grpc.aio server stream -> sync client, loopback, "
                    f"{'TLS' if server.tls else 'no TLS'}, a message every {gap * 1e3:.0f} ms: "
                    f"median {median * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms ({count} messages)"
                )
    finally:
        for server in servers:
            server.close()


class _Server:
    """A forked server answering a Watch once per byte written to its pipe."""

    def __init__(self, tls: tuple[bytes, bytes] | None) -> None:
        self.tls = tls
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        read_end, self.write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.write_end)
            _serve(read_end, self.port, tls)
            os._exit(0)
        os.close(read_end)

    def close(self) -> None:
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.write_end)


def _floor(server: _Server, rounds: int, gap: float) -> tuple[float, float, int]:
    """Median and p99 of ``rounds`` messages (the first 20 left out), and their count."""
    address = f"127.0.0.1:{server.port}"
    channel = (
        grpc.insecure_channel(address)
        if server.tls is None
        else grpc.secure_channel(address, grpc.ssl_channel_credentials(server.tls[1]))
    )
    with channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = health_pb2_grpc.HealthStub(channel)
        replies = stub.Watch(health_pb2.HealthCheckRequest())
        next(replies)  # (the server's Watch is the one its bytes go to)
        latencies = []
        for _ in range(rounds):
            began = time.perf_counter()
            os.write(server.write_end, b"x")
            next(replies)
            latencies.append(time.perf_counter() - began)
            time.sleep(gap)
        replies.cancel()
    kept = sorted(latencies[20:])
    return statistics.median(kept), kept[int(len(kept) * 0.99)], len(kept)


if __name__ == "__main__":
    main()

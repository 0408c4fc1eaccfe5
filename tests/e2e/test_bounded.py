"""What a caller costs the server before it is authenticated: bounded (docs/RELIABILITY.md,
"Before authentication").

The TLS handshake only proves that a certificate chains to the server's CA; the registry
decides, in each call's handler, after grpc has read the request. Until then a revoked
certificate, or a peer that never finishes TLS, costs what the grpc options of
:mod:`remo.server.app` allow: a request size, streams per connection, connections, a
handshake deadline, an idle deadline. Each test talks to a real server on loopback over
real mutual TLS (raw sockets and raw HTTP/2 frames where grpc's own client would hide
what the server does), and fails if the bound it checks is taken away.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.pki.errors import RegisterRefused
from remo.pki.register import request_credential
from remo.pki.registry import Registry
from remo.server import app
from remo.server.app import running
from remo.server.config import ServerConfig
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, needs_root
from tests.support import wait_until_sync

pytestmark = needs_root

#: What an oversized request from a refused certificate may add to the server's peak
#: RSS, for 16 at once, 5 rounds. Without BDP probing grpc reads at most a 64 KiB window
#: of each before the length prefix refuses it (bench/attack_bench.py: +1.1 MiB); with
#: the old 8 MiB limit it read them all (+970 MiB), with BDP probing a 4 MiB window of
#: each (+63 MiB).
OVERSIZED_GROWTH_BOUND = 16 << 20
#: A peer that never finishes its handshake must be closed well within this (the
#: server's deadline is app.HANDSHAKE_TIMEOUT_MS; grpc's own default, 120 s, is not).
EOF_WAIT = 60.0
#: The options the server runs with (some tests run it with one bound made small).
OPTIONS = list(app.SERVER_OPTIONS)


# -- helpers -----------------------------------------------------------------------------


def revoked_credential(server: Server, user: str = "remo-mallory") -> Path:
    """Signed by the server's CA and recorded, then revoked: TLS accepts it, every
    call's registry check refuses it."""
    ca = CertificateAuthority.load(server.state_dir)
    issued = ca.issue_client(user, "operator", validity=timedelta(days=1))  # type: ignore[arg-type]
    with Registry.open(server.state_dir, ca.certificate) as registry:
        registry.record(issued.certificate)
        registry.revoke(issued.serial)
    path = server.tmp / f"{user}-revoked.remo"
    package.save(path, [server.address], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return path


#: Sends ``rounds`` x ``concurrent`` Start calls of ``size`` bytes on one connection and
#: prints the status codes; a separate process, so that only the server is measured.
BIG_REQUESTS = """
import asyncio, sys
import grpc
from remo.v1 import jobs_pb2 as pb
from remo.pki import package
from remo.server import tls

async def main(path, size, concurrent, rounds):
    cred = package.load(path)
    creds = tls.client_credentials(cred.ca_pem, cred.cert_pem, cred.key_pem)
    async with grpc.aio.secure_channel(cred.addresses[0], creds) as channel:
        start = channel.unary_unary("/remo.v1.JobService/Start")
        payload = pb.StartRequest(argv=["echo", "x" * size]).SerializeToString()
        codes = set()
        for _ in range(rounds):
            calls = (start(payload, timeout=60) for _ in range(concurrent))
            for answer in await asyncio.gather(*calls, return_exceptions=True):
                codes.add(answer.code().name if isinstance(answer, grpc.RpcError) else "OK")
        print(" ".join(sorted(codes)))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def client_hello() -> bytes:
    """A TLS 1.3 ClientHello (ALPN h2), as the first flight of any client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def read_until_eof(sock: socket.socket, timeout: float = EOF_WAIT) -> int:
    """Read and drop what the server sends until it closes; the bytes it sent. Raises
    TimeoutError if it keeps the connection open for ``timeout`` seconds in all."""
    sock.settimeout(timeout)
    received = 0
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            received += len(data)
    return received


# -- raw HTTP/2 over mutual TLS ------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
END_HEADERS, ACK = 0x4, 0x1
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + struct.pack(">I", stream)
    return head + payload


def header_block(path: str) -> bytes:
    """HPACK literals without indexing or Huffman: enough for a few short headers."""
    block = b""
    for name, value in (
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ):
        block += b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)])
        block += value.encode()
    return block


def read_frame(sock: ssl.SSLSocket) -> tuple[int, int, int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the server closed the connection")
            data += chunk
        return data

    head = exactly(9)
    length = int.from_bytes(head[:3], "big")
    stream = int.from_bytes(head[5:9], "big") & 0x7FFF_FFFF
    return head[3], head[4], stream, exactly(length)


@contextlib.contextmanager
def http2(server: Server, credential: Path) -> Iterator[ssl.SSLSocket]:
    """A mutual-TLS HTTP/2 connection past the preface: our settings sent, the server's
    read and acknowledged (the server's are checked by the caller through ``settings``)."""
    cred = package.load(credential)
    for name, data in (("ca.pem", cred.ca_pem), ("cert.pem", cred.cert_pem)):
        (server.tmp / name).write_bytes(data)
    key = server.tmp / "key.pem"
    key.touch(mode=0o600)
    key.write_bytes(cred.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(server.tmp / "ca.pem")
    ctx.load_cert_chain(server.tmp / "cert.pem", key)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", server.running.port), timeout=EOF_WAIT)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(PREFACE + frame(SETTINGS, 0, 0))
        yield tls


def server_settings(tls: ssl.SSLSocket) -> dict[int, int]:
    """Read up to the server's SETTINGS frame and acknowledge it."""
    while True:
        kind, flags, _, payload = read_frame(tls)
        if kind == SETTINGS and not flags & ACK:
            tls.sendall(frame(SETTINGS, ACK, 0))
            return {
                int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(
                    payload[i + 2 : i + 6], "big"
                )
                for i in range(0, len(payload), 6)
            }


# -- fixtures ------------------------------------------------------------------------------


def with_option(name: str, value: int) -> list[tuple[str, int]]:
    options = [(n, v) for n, v in OPTIONS if n != name]
    return [*options, (name, value)]


@pytest.fixture
def options() -> list[tuple[str, int]]:
    """The server's grpc options; tests that need a bound small override this."""
    return OPTIONS


@pytest.fixture
async def served(
    tmp_path: Path, options: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Server]:
    monkeypatch.setattr(app, "SERVER_OPTIONS", options)
    state = tmp_path / "state"
    config = ServerConfig(
        state_dir=state,
        listen="127.0.0.1:0",
        register_run_dir=tmp_path / "run",
        register_rate=(2, 3600.0),
    )
    async with running(config) as srv:
        yield Server(srv, state, tmp_path)


# -- the request size ----------------------------------------------------------------------


async def test_oversized_requests_from_a_refused_certificate_cost_little(
    served: Server,
) -> None:
    credential = revoked_credential(served)
    size = int(7.9 * (1 << 20))  # under the old 8 MiB limit, far over this one
    assert size > app.MAX_REQUEST
    before = rss_kib()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM (peak RSS) := VmRSS now
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BIG_REQUESTS,
        str(credential),
        str(size),
        "16",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await attacker.communicate()
    assert attacker.returncode == 0, err.decode()
    growth = (rss_kib("VmHWM") - before) << 10
    codes = set(out.decode().split())
    assert codes and codes <= {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}, codes
    assert growth <= OVERSIZED_GROWTH_BOUND, f"peak RSS grew by {growth >> 20} MiB"


async def test_the_largest_start_the_api_accepts_fits_the_request_limit(served: Server) -> None:
    """Every argument list within the argv+env limit fits the request limit: the worst
    case, empty arguments (one byte of the limit each, two on the wire), just past the
    argv limit, still reaches the handler and is refused by that limit, not by grpc."""
    channel, stub = served.stub(served.credential("root", "admin"))
    async with channel:
        request = pb.StartRequest(argv=["true", *([""] * (1 << 20))])
        assert request.ByteSize() > 2 << 20
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Start(request)
        # read, decoded and refused by the argv+env limit, not by grpc's size limit
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "the limit is" in (refused.value.details() or "")


# -- streams per connection ------------------------------------------------------------------


async def test_streams_over_the_limit_on_one_connection_are_refused(served: Server) -> None:
    credential = served.credential("root", "admin")

    def talk() -> tuple[dict[int, int], dict[int, int]]:
        """Open MAX_STREAMS + 2 calls that never send their request; the resets."""
        resets: dict[int, int] = {}
        with http2(served, credential) as tls:
            settings = server_settings(tls)
            block = header_block("/remo.v1.JobService/GetJob")
            streams = [2 * i + 1 for i in range(app.MAX_STREAMS + 2)]
            for stream in streams:
                tls.sendall(frame(HEADERS, END_HEADERS, stream, block))
            while len(resets) < 2:
                kind, _, stream, payload = read_frame(tls)
                if kind == RST_STREAM:
                    resets[stream] = int.from_bytes(payload, "big")
        return settings, resets

    settings, resets = await asyncio.to_thread(talk)
    assert settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == app.MAX_STREAMS
    # the two over the limit, and only they, are reset (grpc says ENHANCE_YOUR_CALM or
    # REFUSED_STREAM); the first MAX_STREAMS stay open, waiting for their requests
    over = {2 * app.MAX_STREAMS + 1, 2 * app.MAX_STREAMS + 3}
    assert set(resets) == over, resets
    assert set(resets.values()) <= {0x7, 0xB}, resets


async def test_a_grpc_client_over_the_stream_limit_waits(served: Server) -> None:
    """grpc's client queues calls over the server's limit: they start as others end.
    Where one starts just as another ends, the server may still count the old one and
    refuse the new one (RST_STREAM REFUSED_STREAM, UNAVAILABLE to the caller, which the
    remo client's follow retries); a queued call gets all of its output or that."""
    streams = app.MAX_STREAMS
    marker = served.tmp / "go-on"
    script = f"echo a; while [ ! -e {marker} ]; do sleep 0.05; done; echo b"
    channel, stub = served.stub(served.credential("root", "admin"))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", script]))).job.id
        firsts: list[bytes] = []  # each call's first chunk
        enough = asyncio.Event()

        async def follow() -> bytes | grpc.aio.AioRpcError:
            got = b""
            try:
                async for chunk in stub.Output(pb.OutputRequest(id=job, follow=True)):
                    if not got:
                        firsts.append(chunk.data)
                        if len(firsts) >= streams:
                            enough.set()
                    got += chunk.data
            except grpc.aio.AioRpcError as err:
                return err
            return got

        calls = [asyncio.create_task(follow()) for _ in range(streams + 8)]
        await asyncio.wait_for(enough.wait(), EOF_WAIT)
        marker.touch()  # the job can end now; until then no stream could
        results = await asyncio.gather(*calls)
    # MAX_STREAMS calls saw the job running ("a" alone); the others waited in the
    # client's queue until streams ended, so they found it done ("a\nb\n" at once)
    assert firsts.count(b"a\n") == streams, firsts
    complete = [r for r in results if r == b"a\nb\n"]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(complete) + len(refused) == len(results), results
    assert len(complete) >= streams
    for err in refused:
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
        assert "error code 7" in (err.details() or ""), err


# -- connections that never finish their handshake -----------------------------------------


@pytest.mark.parametrize("first_bytes", [b"", client_hello()], ids=["silent", "client-hello"])
async def test_a_connection_that_never_finishes_its_handshake_is_closed(
    served: Server, first_bytes: bytes
) -> None:
    def wait_for_eof() -> int:
        with socket.create_connection(("127.0.0.1", served.running.port)) as sock:
            sock.sendall(first_bytes)
            return read_until_eof(sock)

    received = await asyncio.to_thread(wait_for_eof)
    # with a ClientHello the server answered (ServerHello...) before giving up
    assert (received > 0) == bool(first_bytes)


@pytest.mark.parametrize("options", [with_option("grpc.max_allowed_incoming_connections", 4)])
async def test_connections_over_the_cap_are_closed_before_the_handshake(
    served: Server,
) -> None:
    assert ("grpc.max_allowed_incoming_connections", app.MAX_CONNECTIONS) in OPTIONS
    hello = client_hello()

    def answered(sock: socket.socket) -> bool:
        """Send a ClientHello; whether the server answers it (it was let in)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(hello)
        sock.settimeout(EOF_WAIT)
        try:
            return bool(sock.recv(65536))
        except ConnectionResetError:
            return False

    def fill_then_one_more() -> tuple[int, int]:
        held: list[socket.socket] = []
        try:
            # Four connections the server answers. One it closes at once means a slot
            # was still taken, by the start-up TLS probe the server closes by itself:
            # try again when that is gone.
            def four_held() -> bool:
                sock = socket.create_connection(("127.0.0.1", served.running.port))
                if answered(sock):
                    held.append(sock)
                else:
                    sock.close()
                return len(held) == 4

            wait_until_sync(four_held, EOF_WAIT, what="four free slots in the cap")
            with socket.create_connection(("127.0.0.1", served.running.port)) as extra:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    extra.sendall(hello)
                return len(held), read_until_eof(extra)
        finally:
            for sock in held:
                sock.close()

    held, extra = await asyncio.to_thread(fill_then_one_more)
    assert held == 4
    assert extra == 0  # closed at once: not even a ServerHello


# -- idle connections and long calls ---------------------------------------------------------


@pytest.mark.parametrize("options", [with_option("grpc.max_connection_idle_ms", 1000)])
async def test_idle_connections_are_closed_but_long_follows_are_not(served: Server) -> None:
    assert ("grpc.max_connection_idle_ms", app.IDLE_TIMEOUT_MS) in OPTIONS
    channel, stub = served.stub(served.credential("root", "admin"))
    async with channel:
        # a follow that lasts several idle periods gets every line
        script = "for i in 1 2 3 4 5 6; do echo $i; sleep 0.5; done"
        job = (await stub.Start(pb.StartRequest(argv=["sh", "-c", script]))).job.id
        output = [c.data async for c in stub.Output(pb.OutputRequest(id=job, follow=True))]
        assert b"".join(output) == b"1\n2\n3\n4\n5\n6\n"
        # then, with no call, the server says GOAWAY and the channel leaves READY
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        await asyncio.wait_for(
            channel.wait_for_state_change(grpc.ChannelConnectivity.READY), EOF_WAIT
        )
        # the next call reconnects by itself
        again = (await stub.GetJob(pb.GetJobRequest(id=job))).job
        assert again.state == pb.JOB_STATE_SUCCEEDED


# -- the register socket through the server's settings ---------------------------------------


async def test_the_register_rate_from_the_settings_refuses_the_next_one(served: Server) -> None:
    sock = served.running.register_socket
    for _ in range(2):  # register_rate = 2 per hour in the fixture
        await asyncio.to_thread(request_credential, sock)
    with pytest.raises(RegisterRefused) as refused:
        await asyncio.to_thread(request_credential, sock)
    assert str(refused.value) == (
        "the remo server refused: too many registrations for account root; try again in 3600 s"
    )

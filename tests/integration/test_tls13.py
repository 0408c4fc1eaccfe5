"""A real grpc.aio server with remo's credentials: TLS 1.3 only, and bad certificates refused.

The server runs in a subprocess. ``GRPC_SSL_CIPHER_SUITES`` only takes effect if it is
set before grpc is first imported in a process; pytest imports grpc in this process
while collecting tests (this file, and others, use grpc as a client), so setting it here
could come too late. A fresh interpreter that calls ``ensure_tls13_only_env()`` before
``import grpc``, exactly as ``remo server`` does, tests the real start-up path. A second
server started *without* it is the control: there TLS 1.2 is accepted, which shows that
the policy, not some default, is what refuses TLS 1.2.

Behind the handshake, a small interceptor calls ``Registry.check`` on every RPC, like
the real server does, so certificates that grpc's handshake accepts (valid chain but
revoked, unrecorded, weak...) are refused with UNAUTHENTICATED.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from remo.pki.ca import CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority, Role
from remo.pki.errors import TlsPolicyError
from remo.pki.registry import Registry
from remo.server import tls

NOW = datetime.now(UTC)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

SERVER_SCRIPT = r"""
import asyncio
import sys

policy = sys.argv[2] == "tls13"
if policy:
    from remo.server.tls import ensure_tls13_only_env

    ensure_tls13_only_env()  # before any grpc import

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from remo.pki.ca import CertificateAuthority
from remo.pki.errors import CertificateRejected
from remo.pki.registry import Registry
from remo.server import tls


class CheckCertificate(grpc.aio.ServerInterceptor):
    def __init__(self, registry):
        self.registry = registry

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner, registry = handler.unary_unary, self.registry

        async def checked(request, context):
            try:
                who = tls.authenticate(context, registry)
            except CertificateRejected as err:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
            await context.send_initial_metadata(
                (("remo-user", who.user), ("remo-role", who.role.value))
            )
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def main():
    ca = CertificateAuthority.load(sys.argv[1])
    issued = ca.ensure_server_certificate(["localhost"])
    registry = Registry.open(sys.argv[1], ca.certificate)
    server = grpc.aio.server(interceptors=[CheckCertificate(registry)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    if policy:
        creds = tls.server_credentials(ca.cert_pem, issued.cert_pem, issued.key_pem)
    else:
        creds = grpc.ssl_server_credentials(
            [(issued.key_pem, issued.cert_pem)], ca.cert_pem, require_client_auth=True
        )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    suite = tls.verify_tls13_only("127.0.0.1", port) if policy else "-"
    print(port, suite, flush=True)
    await server.wait_for_termination()


asyncio.run(main())
"""


# -- certificates ---------------------------------------------------------------------------


def pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class ClientFiles:
    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def save(directory: Path, name: str, cert_pem: bytes, key_pem: bytes) -> ClientFiles:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    os.chmod(key_path, 0o600)
    return ClientFiles(cert_pem, key_pem, cert_path, key_path)


def forge(
    signer: PrivateKey,
    issuer: x509.Name | None,
    *,
    user: str = "mallory",
    key: PrivateKey | None = None,
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[bytes, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "remo"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "operator"),
            x509.NameAttribute(NameOID.COMMON_NAME, user),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() >> 32)
        .not_valid_before(not_before or NOW - timedelta(hours=1))
        .not_valid_after(not_after or NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)


def forge_sha1(ca: CertificateAuthority, directory: Path) -> tuple[bytes, bytes]:
    """Signed by our CA key with SHA-1: cryptography refuses, so openssl does it."""
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "sha1.key").write_bytes(pem_key(key))
    (directory / "sha1.ext").write_text("extendedKeyUsage=clientAuth\n")
    subprocess.run(
        ["openssl", "req", "-new", "-key", directory / "sha1.key", "-subj",
         "/O=remo/OU=operator/CN=mallory", "-out", directory / "sha1.csr"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", directory / "sha1.csr", "-sha1", "-days", "30",
         "-CA", ca.state_dir / CA_CERT_FILE, "-CAkey", ca.state_dir / CA_KEY_FILE,
         "-set_serial", "0x5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e", "-extfile", directory / "sha1.ext",
         "-out", directory / "sha1.crt"],
        check=True, capture_output=True,
    )  # fmt: skip
    return (directory / "sha1.crt").read_bytes(), pem_key(key)


@dataclass
class Pki:
    state: Path
    files: Path
    ca: CertificateAuthority
    registry: Registry
    ca_path: Path
    alice: ClientFiles

    def client(self, name: str, role: Role = Role.OPERATOR, *, record: bool = True) -> ClientFiles:
        issued = self.ca.issue_client(name, role)
        if record:
            self.registry.record(issued.certificate)
        return save(self.files, name, issued.cert_pem, issued.key_pem)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    base = tmp_path_factory.mktemp("tls13")
    state, files = base / "state", base / "files"
    files.mkdir()
    ca = CertificateAuthority.load_or_create(state)
    ca_path = files / "ca.crt"
    ca_path.write_bytes(ca.cert_pem)
    with Registry.open(state, ca.certificate) as registry:
        pki = Pki(state, files, ca, registry, ca_path, ClientFiles(b"", b"", ca_path, ca_path))
        pki.alice = pki.client("alice")
        yield pki


@dataclass
class Server:
    port: int
    suite: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_server(pki: Pki, mode: str) -> Server:
    log = pki.files / f"server-{mode}.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("GRPC_SSL_CIPHER_SUITES", None)
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(pki.state), mode],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line:
        proc.wait(timeout=10)
        pytest.fail(f"the test server did not start: {log.read_text()[-2000:]}")
    port, suite = line.split()
    return Server(int(port), suite, proc, log)


def stop_server(server: Server) -> None:
    server.process.terminate()  # our own child, by its pid
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[Server]:
    running = start_server(pki, "tls13")
    yield running
    stop_server(running)


def s_client(server: Server, pki: Pki, version: str, client: ClientFiles) -> tuple[int, str]:
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", server.target, f"-{version}",
         "-cert", client.cert_path, "-key", client.key_path, "-CAfile", pki.ca_path,
         "-servername", "localhost", "-verify_return_error"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(
        errors="replace"
    )


def negotiated(out: str) -> tuple[str, str] | None:
    """(protocol, cipher) of the session s_client established, None if there was none.

    The exit status is no guide: grpc closes a connection that does not speak HTTP/2
    right after the handshake, and s_client then exits 1 even though TLS succeeded.
    """
    match = re.search(r"^New, (\S+), Cipher is (\S+)$", out, re.M)
    if match is None or match.group(2) == "(NONE)":
        return None
    return match.group(1).rstrip(","), match.group(2)


def health_check(server: Server, pki: Pki, client: ClientFiles) -> dict[str, str]:
    """One Health.Check RPC; returns the identity the server saw (raises grpc.RpcError)."""
    creds = tls.client_credentials(pki.ca.cert_pem, client.cert_pem, client.key_pem)
    with grpc.secure_channel(server.target, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response, call = stub.Check.with_call(health_pb2.HealthCheckRequest(), timeout=15)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        return {k: v for k, v in call.initial_metadata() if isinstance(v, str)}


# -- protocol versions ---------------------------------------------------------------------


def test_server_self_check_saw_tls13(server: Server) -> None:
    assert server.suite in tls.TLS13_CIPHER_SUITES


def test_openssl_tls12_fails(server: Server, pki: Pki) -> None:
    code, out = s_client(server, pki, "tls1_2", pki.alice)
    assert code != 0, out
    assert "New, (NONE), Cipher is (NONE)" in out, out
    assert negotiated(out) is None, out


def test_openssl_tls13_succeeds(server: Server, pki: Pki) -> None:
    _, out = s_client(server, pki, "tls1_3", pki.alice)  # exit status: see negotiated()
    session = negotiated(out)
    assert session is not None and session[0] == "TLSv1.3", out
    assert session[1] in tls.TLS13_CIPHER_SUITES, out
    assert "Verify return code: 0 (ok)" in out


def test_sslscan_lists_tls13_only(server: Server, pki: Pki) -> None:
    if shutil.which("sslscan") is None:
        pytest.skip("sslscan is not installed (apt-get install sslscan)")
    proc = subprocess.run(
        ["sslscan", "--no-colour", "--no-heartbleed", "--no-groups",
         f"--certs={pki.alice.cert_path}", f"--pk={pki.alice.key_path}", server.target],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    out = proc.stdout.decode(errors="replace")
    protocols = dict(re.findall(r"^(SSLv\d|TLSv1\.\d)\s+(enabled|disabled)", out, re.M))
    assert protocols == {
        "SSLv2": "disabled",
        "SSLv3": "disabled",
        "TLSv1.0": "disabled",
        "TLSv1.1": "disabled",
        "TLSv1.2": "disabled",
        "TLSv1.3": "enabled",
    }, out
    accepted = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv\S+)\s+\d+ bits\s+(\S+)", out, re.M)
    assert accepted, out
    assert {version for version, _ in accepted} == {"TLSv1.3"}, out
    assert {suite for _, suite in accepted} <= set(tls.TLS13_CIPHER_SUITES), out


def test_without_the_policy_tls12_is_accepted(pki: Pki) -> None:
    """Control: the same server without ensure_tls13_only_env() speaks TLS 1.2."""
    plain = start_server(pki, "plain")
    try:
        _, out = s_client(plain, pki, "tls1_2", pki.alice)
        assert negotiated(out) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"), out
        with pytest.raises(TlsPolicyError, match=r"accepted TLS 1\.2"):
            tls.verify_tls13_only("127.0.0.1", plain.port)
    finally:
        stop_server(plain)


def test_policy_guards_in_this_process(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, tmp_path: Path
) -> None:
    # grpc is already imported here, so asking for the policy now must fail loudly
    monkeypatch.delenv(tls.CIPHER_SUITES_ENV, raising=False)
    with pytest.raises(TlsPolicyError, match="before any `import grpc`"):
        tls.ensure_tls13_only_env()
    issued = pki.ca.ensure_server_certificate(["localhost"])
    with pytest.raises(TlsPolicyError, match="ensure_tls13_only_env"):
        tls.server_credentials(pki.ca.cert_pem, issued.cert_pem, issued.key_pem)
    # an RSA server key would make the RSA suites usable: refused
    monkeypatch.setenv(tls.CIPHER_SUITES_ENV, tls.TLS12_CIPHER_SUITES)
    rsa_cert, rsa_key = forge(
        pki.ca.private_key, pki.ca.name, key=rsa.generate_private_key(65537, 2048)
    )
    with pytest.raises(TlsPolicyError, match="must be ECDSA"):
        tls.server_credentials(pki.ca.cert_pem, rsa_cert, rsa_key)
    assert tls.server_credentials(pki.ca.cert_pem, issued.cert_pem, issued.key_pem) is not None


# -- who gets in ----------------------------------------------------------------------------


def test_valid_client_is_identified(server: Server, pki: Pki) -> None:
    seen = health_check(server, pki, pki.alice)
    assert (seen["remo-user"], seen["remo-role"]) == ("alice", "operator")
    admin = pki.client("root", Role.ADMIN)
    assert health_check(server, pki, admin)["remo-role"] == "admin"


def _bad_certificates(pki: Pki) -> dict[str, tuple[ClientFiles, str | None]]:
    """name -> (files, what Registry.check says if the handshake lets it through)."""
    ca_key, ca_name = pki.ca.private_key, pki.ca.name
    stranger = CertificateAuthority.load_or_create(pki.files / "stranger")
    own_key = ec.generate_private_key(ec.SECP256R1())
    week_ago, yesterday = NOW - timedelta(days=7), NOW - timedelta(days=1)
    strangers = stranger.issue_client("mallory", Role.ADMIN)
    revokee, ghost = pki.client("revokee"), pki.client("ghost", record=False)
    weak_key = rsa.generate_private_key(65537, 1024)
    made: dict[str, tuple[tuple[bytes, bytes], str]] = {
        "expired": (forge(ca_key, ca_name, not_before=week_ago, not_after=yesterday), "expired"),
        "not-yet-valid": (
            forge(ca_key, ca_name, not_before=NOW + timedelta(days=1)),
            "not valid before",
        ),
        "unknown-ca": ((strangers.cert_pem, strangers.key_pem), "not issued by this server's CA"),
        "self-signed": (forge(own_key, None, key=own_key), "not issued by this server's CA"),
        "rsa-1024": (forge(ca_key, ca_name, key=weak_key), "1024-bit RSA"),
        "sha1": (forge_sha1(pki.ca, pki.files), "SHA1"),
        "server-auth-only": (
            forge(ca_key, ca_name, usages=[ExtendedKeyUsageOID.SERVER_AUTH]),
            "clientAuth",
        ),
        "revoked": ((revokee.cert_pem, revokee.key_pem), "revoked"),
        "unrecorded": ((ghost.cert_pem, ghost.key_pem), "never recorded"),
    }
    out: dict[str, tuple[ClientFiles, str | None]] = {}
    for name, ((cert_pem, key_pem), message) in made.items():
        files = save(pki.files, f"bad-{name}", cert_pem, key_pem)
        if name not in ("unrecorded", "unknown-ca", "self-signed", "revoked"):
            pki.registry.record(files.certificate)  # so only the named defect can refuse it
        out[name] = (files, message)
    pki.registry.revoke(f"{out['revoked'][0].certificate.serial_number:x}")
    return out


BAD = [
    "expired",
    "not-yet-valid",
    "unknown-ca",
    "self-signed",
    "rsa-1024",
    "sha1",
    "server-auth-only",
    "revoked",
    "unrecorded",
]


@pytest.fixture(scope="module")
def bad_certificates(pki: Pki) -> dict[str, tuple[ClientFiles, str | None]]:
    return _bad_certificates(pki)


@pytest.mark.parametrize("name", BAD)
def test_bad_certificate_is_refused(
    name: str,
    server: Server,
    pki: Pki,
    bad_certificates: dict[str, tuple[ClientFiles, str | None]],
) -> None:
    files, message = bad_certificates[name]
    with pytest.raises(grpc.RpcError) as info:
        health_check(server, pki, files)
    err = info.value
    code = err.code()  # type: ignore[attr-defined]
    details = err.details() or ""  # type: ignore[attr-defined]
    # Refused by the handshake (UNAVAILABLE) or by Registry.check (UNAUTHENTICATED).
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED), (code, details)
    if code is grpc.StatusCode.UNAUTHENTICATED:
        assert message is not None and message in details, details
    if name in ("revoked", "unrecorded"):  # valid chains: only remo's check can refuse them
        assert code is grpc.StatusCode.UNAUTHENTICATED
    # whatever the handshake did, the per-RPC check refuses it too
    with pytest.raises(Exception, match=re.escape(message or "")):
        pki.registry.check(files.certificate.public_bytes(serialization.Encoding.DER))


def test_revocation_applies_to_an_open_connection(server: Server, pki: Pki) -> None:
    client = pki.client("grace")
    creds = tls.client_credentials(pki.ca.cert_pem, client.cert_pem, client.key_pem)
    with grpc.secure_channel(server.target, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(), timeout=15)
        pki.registry.revoke(f"{client.certificate.serial_number:x}")  # another process
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=15)
        assert time.monotonic() - started < 5
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert "revoked" in (info.value.details() or "")  # type: ignore[attr-defined]

"""gRPC credentials for remo: mutual TLS, and TLS 1.3 only on the server.

How TLS 1.3-only is enforced
----------------------------
grpcio (checked up to 1.85) offers no minimum-TLS-version setting for Python servers:
``grpc.ssl_server_credentials`` takes keys, roots and ``require_client_auth`` only, and
core's legacy SSL server path negotiates TLS 1.2 to 1.3. (Upstream work to expose
``minimum_tls_version`` to Python, grpc/grpc#43045, #43074, #43080, is not released.)

grpc core does read one knob: the ``GRPC_SSL_CIPHER_SUITES`` environment variable, the
OpenSSL-style cipher list it installs with ``SSL_CTX_set_cipher_list``. grpcio ships
BoringSSL, where that list governs TLS 1.2 and older only; TLS 1.3 suites are fixed
(AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305). remo sets it to
:data:`TLS12_CIPHER_SUITES`: ECDHE-RSA suites only. The server key is ECDSA P-256, so no
TLS 1.2 suite can authenticate the server and every TLS 1.2 handshake ends with
``NO_SHARED_CIPHER``, while TLS 1.3 works as usual. Two things keep this sound:

1. grpc reads the variable once, when ``grpc`` is first imported (verified: setting it
   afterwards has no effect). :func:`ensure_tls13_only_env` must therefore run before
   ``import grpc`` anywhere in the server process; it refuses (raises
   :class:`~remo.pki.errors.TlsPolicyError`) when grpc is already loaded with another
   value. This module itself imports grpc lazily.
2. :func:`server_credentials` refuses any server key that is not ECDSA, since an RSA key
   would make the RSA suites usable again.

:func:`verify_tls13_only` checks the result on a listening port, with Python's own
OpenSSL: a TLS 1.2-only ClientHello must not get a ServerHello back (it gets an alert or
a closed connection) and a TLS 1.3-only one must. Only the server's first answer is
read, so client certificates play no part. The server should call it once after
binding and stop if it fails.

Client side, :func:`client_credentials` is plain ``ssl_channel_credentials`` with our
CA as the only root: the server speaks TLS 1.3 only, and TLS 1.3's downgrade
protection stops anyone in the middle from forcing TLS 1.2.

Per RPC, :func:`peer_certificate_der` turns the ``x509_pem_cert`` property of the
call's auth context into DER for :meth:`remo.pki.registry.Registry.check`;
:func:`authenticate` does both.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import socket
import ssl
import sys
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from remo.pki.errors import MalformedCertificate, TlsPolicyError

if TYPE_CHECKING:
    import grpc

    from remo.pki.registry import Identity, Registry

CIPHER_SUITES_ENV = "GRPC_SSL_CIPHER_SUITES"
#: The TLS <= 1.2 cipher list handed to grpc: RSA-authenticated suites only. With an
#: ECDSA server key none of them is usable, so no TLS 1.2 handshake can complete.
TLS12_CIPHER_SUITES = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305"
)
#: The suites the server negotiates (TLS 1.3, fixed by BoringSSL).
TLS13_CIPHER_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
PEER_CERT_PROPERTY = "x509_pem_cert"


def grpc_loaded() -> bool:
    """Whether grpc's core library has been imported into this process."""
    return "grpc" in sys.modules or "grpc._cython.cygrpc" in sys.modules


def ensure_tls13_only_env() -> None:
    """Set ``GRPC_SSL_CIPHER_SUITES`` so grpc can only negotiate TLS 1.3.

    Must run before grpc is first imported in the process (``remo server`` calls it
    first thing). Raises :class:`TlsPolicyError` if grpc is already loaded and the
    variable did not already hold :data:`TLS12_CIPHER_SUITES`: the setting would be
    silently ignored.
    """
    if os.environ.get(CIPHER_SUITES_ENV) == TLS12_CIPHER_SUITES:
        return
    if grpc_loaded():
        raise TlsPolicyError(
            "grpc was imported before remo.server.tls.ensure_tls13_only_env() ran, "
            "so TLS 1.2 cannot be disabled; call it before any `import grpc`"
        )
    os.environ[CIPHER_SUITES_ENV] = TLS12_CIPHER_SUITES


def _check_server_key(cert_pem: bytes, key_pem: bytes) -> None:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as err:
        raise TlsPolicyError(f"the server key or certificate does not parse: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        cert.public_key(), ec.EllipticCurvePublicKey
    ):
        raise TlsPolicyError(
            "the server key must be ECDSA: with any other key TLS 1.2 could be negotiated"
        )


def server_credentials(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> grpc.ServerCredentials:
    """Server credentials: TLS 1.3 only, client certificate required and verified.

    ``ca_pem`` is the only root client certificates may chain to. Raises
    :class:`TlsPolicyError` when :func:`ensure_tls13_only_env` has not taken effect or
    the server key is not ECDSA.
    """
    if os.environ.get(CIPHER_SUITES_ENV) != TLS12_CIPHER_SUITES:
        raise TlsPolicyError(
            f"{CIPHER_SUITES_ENV} is not set to remo's value; call "
            "remo.server.tls.ensure_tls13_only_env() before importing grpc"
        )
    _check_server_key(cert_pem, key_pem)
    import grpc

    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def client_credentials(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> grpc.ChannelCredentials:
    """Channel credentials presenting the client certificate, trusting only ``ca_pem``."""
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def pem_to_der(pem: bytes) -> bytes:
    """The DER bytes of the first PEM certificate in ``pem``."""
    begin = pem.find(b"-----BEGIN CERTIFICATE-----")
    end = pem.find(b"-----END CERTIFICATE-----", begin + 1)
    if begin < 0 or end < 0:
        raise MalformedCertificate("the peer certificate is not PEM")
    body = pem[begin + len(b"-----BEGIN CERTIFICATE-----") : end]
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise MalformedCertificate("the peer certificate is not valid PEM") from None


def peer_certificate_der(context: Any) -> bytes | None:
    """The DER client certificate of the current call, or None if there is none.

    ``context`` is a ``grpc.ServicerContext`` or ``grpc.aio.ServicerContext``.
    """
    values = context.auth_context().get(PEER_CERT_PROPERTY)
    if not values:
        return None
    return pem_to_der(bytes(values[0]))


def authenticate(context: Any, registry: Registry) -> Identity:
    """The caller's identity; :class:`~remo.pki.errors.CertificateRejected` otherwise."""
    der = peer_certificate_der(context)
    if der is None:
        raise MalformedCertificate("the call carries no client certificate")
    return registry.check(der)


_TLS13_SUITE_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}


def _server_hello(host: str, port: int, version: ssl.TLSVersion, timeout: float) -> int | None:
    """Send a ClientHello offering only ``version``; the cipher suite the server picked.

    Returns None when the server answers with an alert or closes the connection. Only
    the ServerHello is looked at, so the answer does not depend on client certificates.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if version is ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()  # only produces the ClientHello
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(outgoing.read())
        data = b""
        try:
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    # record: type 22 (handshake); message: type 2 (ServerHello), length, version,
    # random[32], session id, cipher suite
    if len(data) < 44 or data[0] != 22 or data[5] != 2:
        return None
    session_id_len = data[43]
    at = 44 + session_id_len
    if len(data) < at + 2:
        return None
    return int.from_bytes(data[at : at + 2], "big")


def verify_tls13_only(host: str, port: int, *, timeout: float = 5.0) -> str:
    """Check a listening server: it must refuse TLS 1.2 and accept TLS 1.3.

    Sends one TLS 1.2-only and one TLS 1.3-only ClientHello and reads the server's
    first answer. Returns the TLS 1.3 cipher suite it chose. Raises
    :class:`TlsPolicyError` when it answers TLS 1.2 with a ServerHello, or TLS 1.3
    with anything else. (The server logs the two abandoned handshakes.)
    """
    try:
        old = _server_hello(host, port, ssl.TLSVersion.TLSv1_2, timeout)
        new = _server_hello(host, port, ssl.TLSVersion.TLSv1_3, timeout)
    except OSError as err:
        raise TlsPolicyError(f"cannot probe {host}:{port}: {err.strerror or err}") from err
    if old is not None:
        raise TlsPolicyError(
            f"the server at {host}:{port} accepted TLS 1.2 (cipher suite 0x{old:04x}); "
            "was grpc imported before remo.server.tls.ensure_tls13_only_env() ran?"
        )
    if new is None or new not in _TLS13_SUITE_NAMES:
        raise TlsPolicyError(f"the server at {host}:{port} did not accept TLS 1.3")
    return _TLS13_SUITE_NAMES[new]

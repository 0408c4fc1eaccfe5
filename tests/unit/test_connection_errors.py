"""What the client says when a connection fails before the server answered."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from remo.client import Client
from remo.client.errors import (
    ConnectionFailed,
    TlsHandshakeFailed,
    _connection_error,
    from_rpc_error,
)
from remo.pki import package
from remo.pki.ca import CertificateAuthority

TARGET = "build01:7443"
CLOSED = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:7443: "


@pytest.mark.parametrize(
    ("details", "reached", "kind", "says"),
    [
        # A certificate the server does not take: it closes after the handshake.
        (CLOSED + "Socket closed", False, TlsHandshakeFailed, "refused the TLS handshake"),
        # The same from a server this client was connected to: it is going away.
        (CLOSED + "Socket closed", True, ConnectionFailed, "may be restarting"),
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:7443: "
         "Handshake read failed", False, ConnectionFailed, "may be restarting"),
        ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:7443: "
         "Handshake read failed (recvmsg:Connection reset by peer (104))", False,
         ConnectionFailed, "may be restarting"),
        ("Failed to connect to remote host: Connection refused", False, ConnectionFailed,
         "connection refused"),
    ],
)  # fmt: skip
def test_a_restarting_server_is_not_blamed_on_the_credential(
    details: str, reached: bool, kind: type[ConnectionFailed], says: str
) -> None:
    err = _connection_error(details, TARGET, "", reached=reached)
    assert type(err) is kind and says in str(err)
    if kind is not TlsHandshakeFailed:
        assert "revoked" not in str(err) and "expired" not in str(err)


class _Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_call_ended_by_a_stopping_server_says_so() -> None:
    err = from_rpc_error(
        _Status(grpc.StatusCode.UNAVAILABLE, "Cancelling all calls"), target=TARGET
    )
    assert type(err) is ConnectionFailed
    assert str(err) == f"the server at {TARGET} is restarting or unreachable: Cancelling all calls"


@pytest.fixture
def closes_during_handshakes() -> Iterator[str]:
    """A listener that takes each connection and closes it before the TLS handshake is
    done, as a server that is stopping (or over its connection cap) does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_handshake_cut_short_is_reported_as_a_restart(
    closes_during_handshakes: str, tmp_path: Path
) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "state")
    issued = ca.issue_client("root", "admin")
    path = tmp_path / "me.remo"
    package.save(path, [closes_during_handshakes], ca.cert_pem, issued.cert_pem, issued.key_pem)
    with Client.from_file(path, timeout=30) as client, pytest.raises(ConnectionFailed) as caught:
        client.whoami()
    assert not isinstance(caught.value, TlsHandshakeFailed)
    assert "may be restarting" in str(caught.value) and "revoked" not in str(caught.value)
    assert caught.value.exit_code == 3

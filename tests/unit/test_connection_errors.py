"""What the client says when a connection fails before the server answered."""

from __future__ import annotations

import pytest

from remo.client.errors import ConnectionFailed, TlsHandshakeFailed, _connection_error

TARGET = "build01:7443"


@pytest.mark.parametrize(
    ("details", "kind", "says"),
    [
        ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:7443: "
         "Socket closed", TlsHandshakeFailed, "refused the TLS handshake"),
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:7443: "
         "Handshake read failed", ConnectionFailed, "may be restarting"),
        ("Failed to connect to remote host: Connection refused", ConnectionFailed,
         "connection refused"),
    ],
)  # fmt: skip
def test_a_restarting_server_is_not_blamed_on_the_credential(
    details: str, kind: type[ConnectionFailed], says: str
) -> None:
    err = _connection_error(details, TARGET, "")
    assert type(err) is kind and says in str(err)
    if kind is not TlsHandshakeFailed:
        assert "revoked" not in str(err) and "expired" not in str(err)

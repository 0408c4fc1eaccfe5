"""The credential file: everything a user needs to call a remo server, in one file.

Format (UTF-8 text, mode 0600)::

    remo-credential v1
    # comment lines start with '#'; blank lines are ignored
    address: remo.example.org:7443
    address: 192.0.2.10:7443
    -----BEGIN CERTIFICATE-----
    ... the CA certificate (the only certificate the client trusts) ...
    -----END CERTIFICATE-----
    -----BEGIN CERTIFICATE-----
    ... the client certificate (CN = account, OU = role) ...
    -----END CERTIFICATE-----
    -----BEGIN PRIVATE KEY-----
    ... the client's PKCS#8 private key, unencrypted ...
    -----END PRIVATE KEY-----

- The first line is exactly ``remo-credential v1``.
- Header lines are ``name: value``; ``address`` (``host:port``, ``[v6]:port``) may repeat
  and is tried in order. Unknown names are ignored so that later v1 writers may add some.
- Then come PEM blocks. Which certificate is the CA is decided by its content (the one
  with basicConstraints CA:TRUE), not by position; writers put the CA first.
- The user, role and validity are read from the client certificate; the comment lines
  remo writes about them are for people only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from remo.core.files import write_file_atomic
from remo.pki.ca import role_of, serial_hex, user_of
from remo.pki.credfile import MAGIC, Credential, blocks, read
from remo.pki.errors import (
    CredentialCorrupt,
    CredentialExpired,
    CredentialIncomplete,
    CredentialKeyMismatch,
    CredentialNotYetValid,
    MalformedCertificate,
    format_time,
)

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


def validate_address(address: str) -> str:
    """Return ``address`` if it is ``host:port`` (``[v6]:port`` for IPv6), else raise ValueError."""
    match = _ADDRESS.match(address.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"invalid server address {address!r}: expected host:port")
    return address.strip()


def dumps(
    addresses: Iterable[str],
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
) -> bytes:
    """The credential file's bytes (nothing is written)."""
    addrs = [validate_address(a) for a in addresses]
    if not addrs:
        raise ValueError("a credential needs at least one server address")
    cert = x509.load_pem_x509_certificate(cert_pem)
    lines = [
        MAGIC,
        "# remo credential: it contains a private key, keep it private (mode 0600).",
        f"# user {user_of(cert)}, role {role_of(cert)}, serial {serial_hex(cert)}",
        f"# valid from {format_time(cert.not_valid_before_utc)}"
        f" until {format_time(cert.not_valid_after_utc)}",
        *(f"address: {a}" for a in addrs),
    ]
    parts = [ca_pem, cert_pem, key_pem]
    body = b"".join(p.strip() + b"\n" for p in parts)
    return ("\n".join(lines) + "\n").encode() + body


def write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write credential bytes to ``path`` atomically with mode 0600."""
    write_file_atomic(Path(path), data, 0o600)


def save(
    path: str | os.PathLike[str],
    addresses: Iterable[str],
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
) -> None:
    """:func:`dumps` then :func:`write`."""
    write(path, dumps(addresses, ca_pem, cert_pem, key_pem))


def parse(data: bytes, *, path: str = "<credential>", now: datetime | None = None) -> Credential:
    """Parse and check credential bytes (everything :func:`load` checks but permissions)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialCorrupt(
            path, f"{path} is not a remo credential file (it is not text)"
        ) from None
    header, pem_blocks = blocks(path, text)

    def corrupt(why: str) -> CredentialCorrupt:
        return CredentialCorrupt(path, f"credential file {path} is corrupt: {why}")

    addresses: list[str] = []
    for line in header:
        if line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise corrupt(f"header line {line[:40]!r} is not 'name: value'")
        if name.strip().lower() == "address":
            try:
                addresses.append(validate_address(value))
            except ValueError as err:
                raise corrupt(str(err)) from None

    ca_cert: x509.Certificate | None = None
    client: tuple[x509.Certificate, bytes] | None = None
    key_pem: bytes | None = None
    for label, pem in pem_blocks:
        if label == "CERTIFICATE":
            try:
                cert = x509.load_pem_x509_certificate(pem)
                try:
                    is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                except x509.ExtensionNotFound:
                    is_ca = False
            except ValueError as err:
                raise corrupt(f"a certificate does not parse ({err})") from None
            slot = "CA certificate" if is_ca else "client certificate"
            if (ca_cert if is_ca else client) is not None:
                raise corrupt(f"it holds more than one {slot}")
            if is_ca:
                ca_cert = cert
            else:
                client = (cert, pem)
        elif label.endswith("PRIVATE KEY"):
            if key_pem is not None:
                raise corrupt("it holds more than one private key")
            key_pem = pem
        else:
            raise corrupt(f"unexpected {label} block")

    missing = [
        what
        for what, present in (
            ("server address", addresses),
            ("CA certificate", ca_cert),
            ("client certificate", client),
            ("private key", key_pem),
        )
        if not present
    ]
    if missing or ca_cert is None or client is None or key_pem is None:
        raise CredentialIncomplete(path, missing)
    cert, cert_pem = client

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise corrupt("the private key is encrypted; remo needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm) as err:
        raise corrupt(f"the private key does not parse ({err})") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        cert_key = cert.public_key().public_bytes(*fmt)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise corrupt(f"the certificate's key is unusable ({err})") from None
    if key.public_key().public_bytes(*fmt) != cert_key:
        raise CredentialKeyMismatch(
            path,
            f"credential file {path} is inconsistent: its private key does not belong to "
            f"its certificate {serial_hex(cert)}",
        )
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise CredentialKeyMismatch(
            path,
            f"credential file {path} is inconsistent: its certificate was not issued by "
            "its CA certificate",
        ) from None
    try:
        user, role = user_of(cert), role_of(cert)
    except MalformedCertificate as err:
        raise corrupt(str(err)) from None

    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    when = now if now is not None else datetime.now(UTC)
    if when < not_before:
        raise CredentialNotYetValid(path, not_before, not_after)
    if when > not_after:
        raise CredentialExpired(path, not_before, not_after)
    return Credential(
        path=path,
        addresses=tuple(addresses),
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert_pem,
        key_pem=key_pem,
        user=user,
        role=role,
        serial=serial_hex(cert),
        not_before=not_before,
        not_after=not_after,
    )


def load(path: str | os.PathLike[str], *, now: datetime | None = None) -> Credential:
    """Read and check the credential file at ``path``.

    Every failure is a one-line :class:`~remo.pki.errors.CredentialError`: unreadable,
    readable by group/others, not a credential or truncated, a part missing, key and
    certificate not matching, expired or not yet valid (the message gives the dates).
    """
    name = os.fspath(path)
    return parse(read(name), path=name, now=now)


def load_parts(path: str | os.PathLike[str]) -> tuple[bytes, bytes, bytes, list[str]]:
    """``(ca_pem, cert_pem, key_pem, addresses)`` of a checked credential file."""
    cred = load(path)
    return cred.ca_pem, cred.cert_pem, cred.key_pem, list(cred.addresses)

"""remo.pki: the CA, the identity registry and credential files, with real keys and files."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from remo.core.errors import RemoError
from remo.pki import package
from remo.pki.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    CertificateAuthority,
    Role,
    role_of,
    server_names,
    user_of,
)
from remo.pki.errors import (
    AccountBanned,
    CaError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRejected,
    CertificateRevoked,
    CredentialCorrupt,
    CredentialError,
    CredentialExpired,
    CredentialIncomplete,
    CredentialKeyMismatch,
    CredentialNotYetValid,
    CredentialPermissions,
    CredentialUnreadable,
    MalformedCertificate,
    PkiError,
    UnknownCertificate,
    UntrustedCertificate,
    WeakCertificate,
    WrongCertificatePurpose,
)
from remo.pki.registry import DB_FILE, Identity, Registry

NOW = datetime.now(UTC)
ADDRESS = "remo.example.org:7443"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# -- helpers ----------------------------------------------------------------------------


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def forge(
    signer: PrivateKey,
    issuer: x509.Name | None,
    *,
    user: str = "mallory",
    role: str = "operator",
    key: PrivateKey | None = None,
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    is_ca: bool = False,
) -> tuple[x509.Certificate, PrivateKey]:
    """A client-looking certificate built by hand; ``issuer=None`` makes it self-signed."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "remo"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, user),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() >> 32)
        .not_valid_before(not_before or NOW - timedelta(hours=1))
        .not_valid_after(not_after or NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return builder.sign(signer, hashes.SHA256()), key


def forge_sha1(ca: CertificateAuthority, tmp: Path, user: str = "mallory") -> x509.Certificate:
    """A certificate signed by our CA key with SHA-1 (cryptography refuses to make one)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to sign with SHA-1")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "sha1.key").write_bytes(key_pem(key))
    (tmp / "ext").write_text("extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n")
    subprocess.run(
        ["openssl", "req", "-new", "-key", tmp / "sha1.key", "-subj",
         f"/O=remo/OU=operator/CN={user}", "-out", tmp / "sha1.csr"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", tmp / "sha1.csr", "-sha1", "-days", "30",
         "-CA", ca.state_dir / CA_CERT_FILE, "-CAkey", ca.state_dir / CA_KEY_FILE,
         "-set_serial", "0x5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e", "-extfile", tmp / "ext",
         "-out", tmp / "sha1.crt"],
        check=True, capture_output=True,
    )  # fmt: skip
    return x509.load_pem_x509_certificate((tmp / "sha1.crt").read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def ca(state: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(state)


@pytest.fixture
def registry(ca: CertificateAuthority, state: Path) -> Iterator[Registry]:
    with Registry.open(state, ca.certificate) as reg:
        yield reg


# -- the CA -------------------------------------------------------------------------------


def test_ca_is_created_private_and_sound(ca: CertificateAuthority, state: Path) -> None:
    assert mode(state) == 0o700
    assert mode(state / CA_KEY_FILE) == 0o600
    cert = ca.certificate
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=3640) < lifetime < timedelta(days=3660)
    # no temporary files left behind
    assert sorted(p.name for p in state.iterdir()) == [CA_CERT_FILE, CA_KEY_FILE, "pki.lock"]


def test_ca_is_reused(ca: CertificateAuthority, state: Path) -> None:
    again = CertificateAuthority.load_or_create(state)
    assert again.cert_pem == ca.cert_pem
    assert CertificateAuthority.load(state).cert_pem == ca.cert_pem


def test_existing_state_dir_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "loose"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    CertificateAuthority.load_or_create(state)
    assert mode(state) == 0o700


def test_ca_key_with_loose_mode_is_refused(ca: CertificateAuthority, state: Path) -> None:
    os.chmod(state / CA_KEY_FILE, 0o644)
    with pytest.raises(CaError, match="chmod 600"):
        CertificateAuthority.load_or_create(state)


def test_half_a_ca_is_not_silently_replaced(ca: CertificateAuthority, state: Path) -> None:
    (state / CA_CERT_FILE).unlink()
    with pytest.raises(CaError, match="restore it"):
        CertificateAuthority.load_or_create(state)


def test_load_without_ca(tmp_path: Path) -> None:
    with pytest.raises(CaError, match="no remo CA"):
        CertificateAuthority.load(tmp_path)


def test_server_certificate_names_and_reissue(ca: CertificateAuthority, state: Path) -> None:
    issued = ca.ensure_server_certificate(["remo.example.org", "192.0.2.7"])
    assert mode(state / SERVER_KEY_FILE) == 0o600
    cert = issued.certificate
    assert server_names(cert) == {"remo.example.org", "192.0.2.7", "localhost", "127.0.0.1"}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(ca.certificate)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # same names (any order, any case) -> same certificate
    again = ca.ensure_server_certificate(["192.0.2.7", "REMO.example.org"])
    assert again.serial == issued.serial
    assert (state / SERVER_CERT_FILE).read_bytes() == issued.cert_pem
    # other names -> a new certificate, on disk too
    other = ca.ensure_server_certificate(["remo2.example.org"])
    assert other.serial != issued.serial
    assert server_names(other.certificate) == {"remo2.example.org", "localhost", "127.0.0.1"}
    assert (state / SERVER_CERT_FILE).read_bytes() == other.cert_pem
    # damaged files -> reissued, not an error
    (state / SERVER_CERT_FILE).write_bytes(b"garbage")
    assert ca.ensure_server_certificate(["remo2.example.org"]).serial != other.serial


def test_server_certificate_rejects_bad_names(ca: CertificateAuthority) -> None:
    with pytest.raises(CaError, match="invalid server name"):
        ca.ensure_server_certificate(["http://x"])


@pytest.mark.parametrize("role", list(Role))
def test_client_certificate_role_round_trip(
    ca: CertificateAuthority, registry: Registry, role: Role
) -> None:
    issued = ca.issue_client("alice", role)
    cert = issued.certificate
    assert user_of(cert) == "alice"
    assert role_of(cert) is role
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == role
    registry.record(cert)
    assert registry.check(der(cert)) == Identity("alice", role, issued.serial)


def test_client_certificate_properties(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("bob", "viewer")
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(issued.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert 0 < cert.serial_number < 1 << 128
    assert len(issued.serial) == 32
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=365) <= lifetime <= timedelta(days=365, minutes=10)
    short = ca.issue_client("bob", Role.VIEWER, validity=timedelta(hours=1)).certificate
    assert short.not_valid_after_utc - short.not_valid_before_utc == timedelta(hours=1)
    serials = {ca.issue_client("bob", Role.VIEWER).serial for _ in range(20)}
    assert len(serials) == 20


@pytest.mark.parametrize(
    ("user", "role", "match"),
    [("Bad User", "operator", "account name"), ("bob", "root", "unknown role")],
)
def test_client_certificate_refuses_bad_input(
    ca: CertificateAuthority, user: str, role: str, match: str
) -> None:
    with pytest.raises(CaError, match=match):
        ca.issue_client(user, role)


# -- the registry -------------------------------------------------------------------------


def test_registry_file_is_private_and_wal(registry: Registry, state: Path) -> None:
    assert mode(state / DB_FILE) == 0o600
    with sqlite3.connect(state / DB_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_ban_refuses_every_certificate_and_every_new_one_until_allowed(
    ca: CertificateAuthority, registry: Registry
) -> None:
    old = ca.issue_client("alice", Role.OPERATOR)
    registry.record(old.certificate)
    bob = ca.issue_client("bob", Role.OPERATOR)
    registry.record(bob.certificate)
    since, revoked = registry.ban("alice")
    assert [r.serial for r in revoked] == [old.serial]
    assert registry.ban("alice")[0] == since  # idempotent: the first ban's time stays
    with pytest.raises(AccountBanned, match="'alice' is banned"):
        registry.check(der(old.certificate))
    with pytest.raises(AccountBanned):
        registry.record(ca.issue_client("alice", Role.OPERATOR).certificate)
    assert registry.check(der(bob.certificate)).user == "bob"  # others unaffected
    assert [name for name, _ in registry.banned()] == ["alice"]
    assert registry.allow("alice") and not registry.allow("alice")
    again = ca.issue_client("alice", Role.OPERATOR)
    registry.record(again.certificate)
    assert registry.check(der(again.certificate)).user == "alice"
    with pytest.raises(CertificateRevoked):  # what the ban revoked stays revoked
        registry.check(der(old.certificate))


def test_registry_record_list_revoke(ca: CertificateAuthority, registry: Registry) -> None:
    a1 = ca.issue_client("alice", Role.OPERATOR)
    a2 = ca.issue_client("alice", Role.OPERATOR)
    b1 = ca.issue_client("bob", Role.ADMIN)
    for issued in (a1, a2, b1):
        registry.record(issued.certificate)
    records = registry.list_records()
    assert {r.serial for r in records} == {a1.serial, a2.serial, b1.serial}
    with pytest.raises(PkiError, match="already recorded"):
        registry.record(b1.certificate)
    bob = registry.list_records(user="bob")
    assert [(r.user, r.role, r.revoked) for r in bob] == [("bob", Role.ADMIN, False)]
    assert bob[0].not_after == b1.certificate.not_valid_after_utc

    # check caches the parse; revocation still applies at once
    assert registry.check(der(a1.certificate)).user == "alice"
    revoked = registry.revoke(a1.serial.upper())
    assert revoked is not None and revoked.revoked_at is not None
    with pytest.raises(CertificateRevoked, match="revoked on"):
        registry.check(der(a1.certificate))
    assert registry.revoke("00" * 16) is None
    assert registry.check(der(a2.certificate)).serial == a2.serial

    # revoke by user takes every remaining certificate of that user only
    gone = registry.revoke_user("alice")
    assert [r.serial for r in gone] == [a2.serial]
    with pytest.raises(CertificateRevoked):
        registry.check(der(a2.certificate))
    assert registry.check(der(b1.certificate)).role is Role.ADMIN
    assert [r.serial for r in registry.list_records(include_revoked=False)] == [b1.serial]


def test_revocation_by_another_connection_applies_at_once(
    ca: CertificateAuthority, registry: Registry, state: Path
) -> None:
    issued = ca.issue_client("carol", Role.VIEWER)
    registry.record(issued.certificate)
    assert registry.check(der(issued.certificate)).user == "carol"
    with Registry.open(state, ca.certificate) as other:  # e.g. `remo revoke` elsewhere
        other.revoke(issued.serial)
    with pytest.raises(CertificateRevoked):
        registry.check(der(issued.certificate))


def test_check_time_window(ca: CertificateAuthority, registry: Registry) -> None:
    issued = ca.issue_client("dave", Role.OPERATOR, validity=timedelta(days=2))
    registry.record(issued.certificate)
    cert = issued.certificate
    with pytest.raises(CertificateExpired, match="expired on"):
        registry.check(der(cert), now=cert.not_valid_after_utc + timedelta(seconds=1))
    with pytest.raises(CertificateNotYetValid, match="not valid before"):
        registry.check(der(cert), now=cert.not_valid_before_utc - timedelta(seconds=1))


def test_check_rejects_bad_certificates(
    ca: CertificateAuthority, registry: Registry, tmp_path: Path
) -> None:
    """Each bad certificate is recorded first, so only the named defect can reject it."""
    name, key = ca.certificate.subject, ca.private_key
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    cases: list[tuple[x509.Certificate, type[CertificateRejected], str]] = [
        (
            forge(key, name, not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(days=1))[
                0
            ],
            CertificateExpired,
            "expired",
        ),
        (
            forge(key, name, not_before=NOW + timedelta(days=1))[0],
            CertificateNotYetValid,
            "not valid before",
        ),
        (
            forge(foreign_key, x509.Name.from_rfc4514_string("CN=other CA"))[0],
            UntrustedCertificate,
            "not issued by this server's CA",
        ),
        (forge(foreign_key, name)[0], UntrustedCertificate, "does not verify"),
        (forge(foreign_key, None)[0], UntrustedCertificate, "not issued"),
        (
            forge(key, name, key=rsa.generate_private_key(65537, 1024))[0],
            WeakCertificate,
            "1024-bit RSA",
        ),
        (forge_sha1(ca, tmp_path), WeakCertificate, "SHA1"),
        (
            forge(key, name, usages=[ExtendedKeyUsageOID.SERVER_AUTH])[0],
            WrongCertificatePurpose,
            "clientAuth",
        ),
        (forge(key, name, usages=())[0], WrongCertificatePurpose, "clientAuth"),
        (forge(key, name, is_ca=True)[0], WrongCertificatePurpose, "CA certificate"),
        (forge(key, name, role="root")[0], MalformedCertificate, "unknown role"),
    ]
    for cert, _, _ in cases:
        with contextlib.suppress(MalformedCertificate):  # the unknown role
            registry.record(cert)
    for cert, error, match in cases:
        with pytest.raises(error, match=match):
            registry.check(der(cert))
    # an RSA key of 2048 bits is acceptable
    strong, _ = forge(key, name, user="erin", key=rsa.generate_private_key(65537, 2048))
    registry.record(strong)
    assert registry.check(der(strong)).user == "erin"


def test_check_rejects_unrecorded_and_garbage(ca: CertificateAuthority, registry: Registry) -> None:
    issued = ca.issue_client("frank", Role.OPERATOR)  # never recorded
    with pytest.raises(UnknownCertificate, match="never recorded"):
        registry.check(der(issued.certificate))
    with pytest.raises(MalformedCertificate):
        registry.check(b"\x30\x03\x02\x01\x00")
    assert all(issubclass(e, RemoError) for e in (CertificateRejected, CredentialError, CaError))


# -- credential files -------------------------------------------------------------------


@pytest.fixture
def credential(ca: CertificateAuthority, tmp_path: Path) -> Path:
    issued = ca.issue_client("alice", Role.OPERATOR)
    path = tmp_path / "alice.remo"
    package.save(
        path, [ADDRESS, "[2001:db8::1]:7443"], ca.cert_pem, issued.cert_pem, issued.key_pem
    )
    return path


def test_package_round_trip(credential: Path, ca: CertificateAuthority) -> None:
    assert mode(credential) == 0o600
    text = credential.read_text()
    assert text.startswith("remo-credential v1\n")
    assert "address: remo.example.org:7443\n" in text
    cred = package.load(credential)
    assert cred.addresses == (ADDRESS, "[2001:db8::1]:7443")
    assert (cred.user, cred.role) == ("alice", Role.OPERATOR)
    assert cred.ca_pem == ca.cert_pem
    ca_pem, cert_pem, key_pem, addresses = package.load_parts(credential)
    assert ca_pem == ca.cert_pem and addresses == [ADDRESS, "[2001:db8::1]:7443"]
    assert x509.load_pem_x509_certificate(cert_pem).serial_number > 0
    assert serialization.load_pem_private_key(key_pem, None) is not None
    assert not [p for p in credential.parent.iterdir() if p.name.endswith(".tmp")]


def test_package_order_of_certificates_does_not_matter(credential: Path) -> None:
    text = credential.read_text()
    first = text.index("-----BEGIN CERTIFICATE-----")
    middle = text.index("-----BEGIN CERTIFICATE-----", first + 1)
    end = text.index("-----BEGIN PRIVATE KEY-----")
    swapped = text[:first] + text[middle:end] + text[first:middle] + text[end:]
    credential.write_text(swapped)
    assert package.load(credential).user == "alice"


def _expect(path: Path, error: type[CredentialError], match: str) -> CredentialError:
    with pytest.raises(error, match=match) as info:
        package.load(path)
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


def test_package_unreadable(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.remo", CredentialUnreadable, "No such file")
    _expect(tmp_path, CredentialUnreadable, "not a regular file")


def test_package_loose_permissions(credential: Path) -> None:
    os.chmod(credential, 0o640)
    _expect(credential, CredentialPermissions, r"mode 0640.*chmod 600")
    os.chmod(credential, 0o604)
    _expect(credential, CredentialPermissions, "chmod 600")


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


@pytest.mark.parametrize("keep", [0.3, 0.55, 0.9])
def test_package_truncated(credential: Path, keep: float) -> None:
    text = credential.read_text()
    _rewrite(credential, text[: int(len(text) * keep)])
    _expect(credential, CredentialCorrupt, "truncated")


def test_package_cut_between_blocks(credential: Path) -> None:
    text = credential.read_text()
    _rewrite(credential, text[: text.index("-----BEGIN PRIVATE KEY-----")])
    _expect(credential, CredentialIncomplete, "no private key")


def test_package_corrupt(credential: Path) -> None:
    text = credential.read_text()
    _rewrite(credential, "hello\n" + text)
    _expect(credential, CredentialCorrupt, "not a remo credential file")
    _rewrite(credential, text.replace("remo-credential v1", "remo-credential v9"))
    _expect(credential, CredentialCorrupt, "v9")
    lines = text.splitlines()
    at = lines.index("-----BEGIN CERTIFICATE-----") + 2
    lines[at] = "!!!!" + lines[at][4:]
    _rewrite(credential, "\n".join(lines) + "\n")
    _expect(credential, CredentialCorrupt, "damaged")
    _rewrite(credential, text.replace(ADDRESS, "no-port"))
    _expect(credential, CredentialCorrupt, "host:port")
    credential.write_bytes(b"\xff\xfe" + text.encode())
    os.chmod(credential, 0o600)
    _expect(credential, CredentialCorrupt, "not text")


def _drop_block(text: str, label: str, index: int = 0) -> str:
    begin = f"-----BEGIN {label}-----"
    end = f"-----END {label}-----\n"
    start = -1
    for _ in range(index + 1):
        start = text.index(begin, start + 1)
    return text[:start] + text[text.index(end, start) + len(end) :]


def test_package_missing_parts(credential: Path) -> None:
    text = credential.read_text()
    _rewrite(credential, text.replace(f"address: {ADDRESS}\n", "").replace("address: [", "#"))
    _expect(credential, CredentialIncomplete, "no server address")
    _rewrite(credential, _drop_block(text, "PRIVATE KEY"))
    _expect(credential, CredentialIncomplete, "no private key")
    _rewrite(credential, _drop_block(text, "CERTIFICATE", 0))
    _expect(credential, CredentialIncomplete, "no CA certificate")
    _rewrite(credential, _drop_block(text, "CERTIFICATE", 1))
    err = _expect(credential, CredentialIncomplete, "no client certificate")
    assert err.missing == ["client certificate"]  # type: ignore[attr-defined]
    _rewrite(credential, "remo-credential v1\n")
    _expect(credential, CredentialIncomplete, "no server address, no CA certificate")


def test_package_key_not_matching(credential: Path, ca: CertificateAuthority) -> None:
    cred = package.load(credential)
    other = ca.issue_client("alice", Role.OPERATOR)
    data = package.dumps(cred.addresses, cred.ca_pem, cred.cert_pem, other.key_pem)
    package.write(credential, data)
    _expect(credential, CredentialKeyMismatch, "private key does not belong")


def test_package_foreign_ca(credential: Path, tmp_path: Path) -> None:
    cred = package.load(credential)
    stranger = CertificateAuthority.load_or_create(tmp_path / "other")
    package.save(credential, cred.addresses, stranger.cert_pem, cred.cert_pem, cred.key_pem)
    _expect(credential, CredentialKeyMismatch, "not issued by its CA")


def test_package_expired_and_not_yet_valid(ca: CertificateAuthority, tmp_path: Path) -> None:
    path = tmp_path / "old.remo"
    start = datetime(2020, 1, 1, tzinfo=UTC)
    old = ca.issue_client("alice", Role.OPERATOR, not_before=start, validity=timedelta(days=30))
    package.save(path, [ADDRESS], ca.cert_pem, old.cert_pem, old.key_pem)
    err = _expect(path, CredentialExpired, "expired on 2020-01-31 00:00:00 UTC")
    assert "valid from 2020-01-01 00:00:00 UTC" in str(err)
    future = ca.issue_client("alice", Role.OPERATOR, not_before=NOW + timedelta(days=3))
    package.save(path, [ADDRESS], ca.cert_pem, future.cert_pem, future.key_pem)
    err = _expect(path, CredentialNotYetValid, "not valid before")
    assert f"{(NOW + timedelta(days=3)):%Y-%m-%d}" in str(err)


def test_package_parse_in_memory(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("alice", Role.ADMIN)
    data = package.dumps([ADDRESS], ca.cert_pem, issued.cert_pem, issued.key_pem)
    assert package.parse(data).role is Role.ADMIN
    with pytest.raises(ValueError, match="at least one"):
        package.dumps([], ca.cert_pem, issued.cert_pem, issued.key_pem)

"""remo's certificate authority: one per server, kept in the state directory.

Files in the state directory (itself mode 0700):

- ``ca.key`` / ``ca.crt``: the CA (ECDSA P-256, self-signed, about 10 years).
- ``server.key`` / ``server.crt``: the server's TLS certificate (ECDSA P-256, serverAuth,
  SANs = the advertised names plus ``localhost`` and ``127.0.0.1``). It is reissued
  automatically when the advertised names change, when it nears expiry, or when it no
  longer matches the CA.

Private keys are PKCS#8 PEM, mode 0600, written to a temporary file and renamed into
place. The server key must stay ECDSA: the TLS 1.3-only policy of
:mod:`remo.server.tls` depends on it.

Client certificates encode who the caller is and what they may do:

- subject ``CN`` = the unix account name (validated like every remo account name);
- subject ``OU`` = the role (``viewer``, ``operator`` or ``admin``), under ``O=remo``.
  The subject is covered by the CA's signature, is printed by ``openssl x509`` and
  needs no custom extension that other TLS stacks might reject.
- extended key usage clientAuth only; ECDSA P-256 key; SHA-256 signature; random
  128-bit serial; valid for one year unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import secrets
import socket
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from remo.core.files import write_file_atomic
from remo.core.spec import ACCOUNT_NAME
from remo.pki.errors import CaError, MalformedCertificate
from remo.pki.roles import Role as Role

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
SERVER_KEY_FILE = "server.key"
SERVER_CERT_FILE = "server.crt"
LOCK_FILE = "pki.lock"

CA_VALIDITY = timedelta(days=3652)
SERVER_VALIDITY = timedelta(days=365)
CLIENT_VALIDITY = timedelta(days=365)
#: A server certificate closer than this to its end is reissued on start.
SERVER_RENEW_BEFORE = timedelta(days=30)
#: Certificates start this long before issuance, to tolerate small clock differences.
BACKDATE = timedelta(minutes=5)
#: Names every server certificate carries, so local clients always work.
LOCAL_NAMES = ("localhost", "127.0.0.1")
ORGANIZATION = "remo"


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, both PEM-encoded."""

    certificate: x509.Certificate
    cert_pem: bytes
    key_pem: bytes

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate)


# -- small helpers shared with the rest of remo.pki ----------------------------------


def serial_hex(cert: x509.Certificate) -> str:
    """The serial number as remo prints and stores it: lower-case hex, 32 digits or more."""
    return f"{cert.serial_number:032x}"


def random_serial() -> int:
    """A random, positive, non-zero 128-bit serial number."""
    while True:
        value = secrets.randbits(128)
        if value:
            return value


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or tighten it to 0700 if we own it.

    Raises :class:`CaError` when it belongs to another account: our keys must not live
    in a directory someone else controls.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as err:
        raise CaError(f"cannot create state directory {path}: {err.strerror or err}") from err
    if not stat.S_ISDIR(st.st_mode):
        raise CaError(f"state directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise CaError(
            f"state directory {path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()})"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _read_private(path: Path, what: str) -> bytes:
    """Read a key file, refusing it when group or others may access it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise CaError(f"cannot read {what} {path}: {err.strerror or err}") from err
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise CaError(
                f"{what} {path} is accessible by other users (mode {mode:04o}); "
                f"run `chmod 600 {path}` if it was never exposed, otherwise start over"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


# -- reading remo's encoding back ------------------------------------------------------


def user_of(cert: x509.Certificate) -> str:
    """The account name (subject CN); :class:`MalformedCertificate` if absent or invalid."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    serial = serial_hex(cert)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise MalformedCertificate(f"certificate {serial} has no single user name (CN)", serial)
    user = values[0].value
    if not ACCOUNT_NAME.fullmatch(user):
        raise MalformedCertificate(f"certificate {serial} names an invalid user {user!r}", serial)
    return user


def role_of(cert: x509.Certificate) -> Role:
    """The role (subject OU); :class:`MalformedCertificate` if absent or unknown."""
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    serial = serial_hex(cert)
    if len(values) != 1:
        raise MalformedCertificate(f"certificate {serial} carries no single role (OU)", serial)
    value = values[0].value
    try:
        return Role(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    except ValueError:
        raise MalformedCertificate(
            f"certificate {serial} carries an unknown role {values[0].value!r}", serial
        ) from None


def server_names(cert: x509.Certificate) -> frozenset[str]:
    """The DNS names and IP addresses in a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    names = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    names.update(str(v) for v in san.get_values_for_type(x509.IPAddress))
    return frozenset(names)


def _general_name(name: str) -> x509.GeneralName:
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    text = text.lower().rstrip(".")
    if not text or any(c.isspace() or c in "/:@[]" for c in text):
        raise CaError(f"invalid server name {name!r}: give a DNS name or an IP address")
    return x509.DNSName(text)


def normalize_names(names: Iterable[str]) -> frozenset[str]:
    """The SAN set a server certificate gets for ``names``: theirs plus the local ones."""
    out: set[str] = set()
    for name in (*names, *LOCAL_NAMES):
        general = _general_name(name)
        out.add(str(general.value))
    return frozenset(out)


# -- the CA ----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialize CA and server-certificate creation between processes sharing a state dir."""
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class CertificateAuthority:
    """The CA of one remo server. Create or load it with :meth:`load_or_create`."""

    def __init__(
        self, state_dir: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
    ) -> None:
        self.state_dir = state_dir
        self._key = key
        self.certificate = cert
        self.cert_pem = _cert_pem(cert)

    # construction

    @classmethod
    def load_or_create(cls, state_dir: str | os.PathLike[str]) -> CertificateAuthority:
        """Load the CA from ``state_dir``, creating both (dir 0700, key 0600) if absent."""
        path = Path(state_dir)
        ensure_private_dir(path)
        with _locked(path):
            key_path, cert_path = path / CA_KEY_FILE, path / CA_CERT_FILE
            if key_path.exists() or cert_path.exists():
                return cls._load(path)
            ca = cls._create(path)
            write_file_atomic(key_path, _key_pem(ca._key), 0o600)
            write_file_atomic(cert_path, ca.cert_pem, 0o644)
            return ca

    @classmethod
    def load(cls, state_dir: str | os.PathLike[str]) -> CertificateAuthority:
        """Load an existing CA; :class:`CaError` if there is none or it is unusable."""
        path = Path(state_dir)
        if not (path / CA_KEY_FILE).exists() and not (path / CA_CERT_FILE).exists():
            raise CaError(f"there is no remo CA in {path}: start `remo server` once to create it")
        return cls._load(path)

    @classmethod
    def _create(cls, state_dir: Path) -> CertificateAuthority:
        key = _new_key()
        now = _now()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(
                    NameOID.COMMON_NAME,
                    f"remo CA {socket.gethostname()[:40]} {secrets.token_hex(4)}",
                ),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(random_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(state_dir, key, cert)

    @classmethod
    def _load(cls, state_dir: Path) -> CertificateAuthority:
        key_path, cert_path = state_dir / CA_KEY_FILE, state_dir / CA_CERT_FILE
        for missing, present in ((key_path, cert_path), (cert_path, key_path)):
            if not missing.exists():
                raise CaError(
                    f"{present} exists but {missing} does not; restore it from a backup "
                    "(a new CA would invalidate every credential)"
                )
        key_data = _read_private(key_path, "CA key")
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (ValueError, TypeError) as err:
            raise CaError(f"the CA in {state_dir} cannot be parsed: {err}") from err
        except OSError as err:
            raise CaError(f"cannot read {cert_path}: {err.strerror or err}") from err
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"CA key {key_path} is not an ECDSA key")
        if not _same_public_key(cert, key):
            raise CaError(f"CA key {key_path} does not belong to certificate {cert_path}")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = x509.BasicConstraints(ca=False, path_length=None)
        if not constraints.ca:
            raise CaError(f"{cert_path} is not a CA certificate")
        return cls(state_dir, key, cert)

    # properties

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The CA's signing key. Only :mod:`remo.pki` and tests should need it."""
        return self._key

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    def _leaf_builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.CertificateBuilder:
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(random_serial())
            .not_valid_before(not_before)
            .not_valid_after(min(not_after, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )

    # client certificates

    def issue_client(
        self,
        user: str,
        role: Role | str,
        *,
        validity: timedelta = CLIENT_VALIDITY,
        not_before: datetime | None = None,
    ) -> IssuedCertificate:
        """A new key and certificate for ``user`` with ``role`` (clientAuth, P-256, SHA-256).

        ``not_before`` defaults to a few minutes ago; the certificate ends ``validity``
        after it (never after the CA itself).
        """
        if not ACCOUNT_NAME.fullmatch(user):
            raise CaError(f"invalid account name {user!r}")
        try:
            role = Role(role)
        except ValueError:
            raise CaError(
                f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}"
            ) from None
        if validity <= timedelta(0):
            raise CaError("certificate validity must be positive")
        start = not_before if not_before is not None else _now() - BACKDATE
        key = _new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                x509.NameAttribute(NameOID.COMMON_NAME, user),
            ]
        )
        cert = (
            self._leaf_builder(subject, key.public_key(), start, start + validity)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(cert, _cert_pem(cert), _key_pem(key))

    # the server certificate

    def issue_server(
        self, names: Iterable[str], *, validity: timedelta = SERVER_VALIDITY
    ) -> IssuedCertificate:
        """A new server key and certificate for ``names`` (plus the local names)."""
        names = list(names)
        general = sorted(
            {_general_name(n) for n in (*names, *LOCAL_NAMES)}, key=lambda g: str(g.value)
        )
        dns = [g for g in general if isinstance(g, x509.DNSName)]
        ips = [g for g in general if isinstance(g, x509.IPAddress)]
        first = next((n.strip() for n in names if n.strip()), "localhost")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, f"remo server {first}"[:64]),
            ]
        )
        key = _new_key()
        now = _now()
        cert = (
            self._leaf_builder(subject, key.public_key(), now - BACKDATE, now + validity)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([*dns, *ips]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(cert, _cert_pem(cert), _key_pem(key))

    def ensure_server_certificate(self, names: Iterable[str]) -> IssuedCertificate:
        """The server certificate for ``names``: the stored one, or a freshly issued one.

        A new certificate (and key) replaces the stored one when the advertised names
        changed, when it ends within :data:`SERVER_RENEW_BEFORE`, when it was not issued
        by this CA, or when the stored files are missing, unreadable or mismatched.
        """
        names = list(names)
        wanted = normalize_names(names)
        with _locked(self.state_dir):
            current = self._load_server()
            if current is not None:
                cert = current.certificate
                fresh = cert.not_valid_after_utc - _now() > SERVER_RENEW_BEFORE
                if fresh and server_names(cert) == wanted:
                    return current
            issued = self.issue_server(names)
            write_file_atomic(self.state_dir / SERVER_KEY_FILE, issued.key_pem, 0o600)
            write_file_atomic(self.state_dir / SERVER_CERT_FILE, issued.cert_pem, 0o644)
            return issued

    def _load_server(self) -> IssuedCertificate | None:
        key_path = self.state_dir / SERVER_KEY_FILE
        cert_path = self.state_dir / SERVER_CERT_FILE
        if not key_path.exists() or not cert_path.exists():
            return None
        key_pem = _read_private(key_path, "server key")
        try:
            cert_pem = cert_path.read_bytes()
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
            cert.verify_directly_issued_by(self.certificate)
        except (OSError, ValueError, TypeError, InvalidSignature):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_public_key(cert, key):
            return None
        return IssuedCertificate(cert, cert_pem, key_pem)

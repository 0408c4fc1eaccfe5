"""The record of every client certificate remo issued, and the check run on every RPC.

Stored in ``<state_dir>/identities.db`` (SQLite, WAL, mode 0600), table
``certificates``: ``serial`` (hex, primary key), ``user``, ``role``, ``not_before``,
``not_after``, ``issued_at``, ``revoked_at`` (times as ISO-8601 UTC text, ``revoked_at``
NULL while valid); table ``banned_accounts``: ``user``, ``banned_at`` — accounts whose
every certificate is refused and which may not be issued a new one until allowed again.
Server certificates are not recorded: they can never pass :meth:`Registry.check` (no
clientAuth usage).

:meth:`Registry.check` is cheap: the parsed and statically verified certificate
(signature, issuer, key strength, hash, usage, user, role) is cached by its DER bytes;
the validity period and the registry row (recorded? revoked?) are looked up on every
call, so a revocation, even by another process, takes effect on the next RPC. It may be
called from any thread (the API server calls it from worker threads, off its event loop).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from remo.pki.ca import Role, role_of, serial_hex, user_of
from remo.pki.errors import (
    AccountBanned,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    MalformedCertificate,
    PkiError,
    UnknownCertificate,
    UntrustedCertificate,
    WeakCertificate,
    WrongCertificatePurpose,
)

DB_FILE = "identities.db"
SCHEMA_VERSION = 2
MIN_RSA_BITS = 2048
ACCEPTED_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial     TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    role       TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after  TEXT NOT NULL,
    issued_at  TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS certificates_user ON certificates (user);
CREATE TABLE IF NOT EXISTS banned_accounts (
    user      TEXT PRIMARY KEY,
    banned_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Identity:
    """Who is calling: the account name, its role, and the certificate serial (hex);
    and when the certificate expires (not part of the identity's equality)."""

    user: str
    role: Role
    serial: str
    not_after: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CertRecord:
    """One row of the registry."""

    serial: str
    user: str
    role: Role
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def valid_at(self, when: datetime) -> bool:
        return not self.revoked and self.not_before <= when <= self.not_after


@dataclass(frozen=True)
class _Parsed:
    """What :meth:`Registry.check` caches per certificate: everything that cannot change."""

    serial: str
    user: str
    role: Role
    not_before: datetime
    not_after: datetime


def _text(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def normalize_serial(serial: str) -> str:
    """A serial as typed by a person (any case, ``:`` separators) in the stored form."""
    text = serial.strip().lower().replace(":", "")
    try:
        return f"{int(text, 16):032x}"
    except ValueError:
        return text


class Registry:
    """The identities database. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        ca_certificate: x509.Certificate,
        *,
        cache_size: int = 4096,
    ) -> None:
        self.path = Path(path)
        self.ca_certificate = ca_certificate
        self._cache: OrderedDict[bytes, _Parsed] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        if not self.path.exists():
            # Create the file with its final mode; SQLite gives -wal and -shm the same.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            self._migrate()
        except sqlite3.Error as err:
            self._db.close()
            raise PkiError(f"cannot open identity registry {self.path}: {err}") from err
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise PkiError(
                f"{self.path} was written by a newer remo (schema {version}); upgrade remo"
            )
        if version == SCHEMA_VERSION:
            return  # no write: a server must be able to start on a full disk
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str], ca_certificate: x509.Certificate) -> Registry:
        """The registry of the state directory ``state_dir`` (``identities.db``)."""
        return cls(Path(state_dir) / DB_FILE, ca_certificate)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _integrity(serial: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise PkiError(f"certificate {serial} is already recorded") from None

    def record(self, cert: x509.Certificate) -> CertRecord:
        """Record a client certificate remo just issued; returns its row.

        Raises :class:`AccountBanned` for an account that is banned.
        """
        self.refuse_if_banned(user_of(cert))
        rec = CertRecord(
            serial=serial_hex(cert),
            user=user_of(cert),
            role=role_of(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            issued_at=_now().replace(microsecond=0),
            revoked_at=None,
        )
        with self._lock, self._integrity(rec.serial):
            self._db.execute(
                "INSERT INTO certificates"
                " (serial, user, role, not_before, not_after, issued_at, revoked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    rec.serial,
                    rec.user,
                    rec.role.value,
                    _text(rec.not_before),
                    _text(rec.not_after),
                    _text(rec.issued_at),
                ),
            )
        return rec

    def revoke(self, serial: str) -> CertRecord | None:
        """Revoke one certificate by serial (hex, any case, ``:`` allowed).

        Returns its row (with the first revocation time if it was already revoked),
        or None when no such certificate was issued.
        """
        serial = normalize_serial(serial)
        with self._lock:
            self._db.execute(
                "UPDATE certificates SET revoked_at = ? WHERE serial = ? AND revoked_at IS NULL",
                (_text(_now()), serial),
            )
        return self.get(serial)

    def revoke_user(self, user: str) -> list[CertRecord]:
        """Revoke every certificate of ``user``; returns those revoked by this call."""
        when = _text(_now())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT serial FROM certificates WHERE user = ? AND revoked_at IS NULL",
                    (user,),
                ).fetchall()
                self._db.execute(
                    "UPDATE certificates SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL",
                    (when, user),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        serials = {row[0] for row in rows}
        return [r for r in self.list_records(user=user) if r.serial in serials]

    def ban(self, user: str) -> tuple[datetime, list[CertRecord]]:
        """Ban ``user``: revoke every certificate of it and refuse new ones until
        :meth:`allow`. Returns when the ban began (the first one, if already banned)
        and the certificates this call revoked."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO banned_accounts (user, banned_at) VALUES (?, ?)",
                (user, _text(_now())),
            )
        since = self.banned_since(user)
        assert since is not None
        return since, self.revoke_user(user)

    def allow(self, user: str) -> bool:
        """Lift the ban of ``user`` (it may register again); False if it was not banned.
        Its revoked certificates stay revoked."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM banned_accounts WHERE user = ?", (user,))
        return cursor.rowcount > 0

    def banned_since(self, user: str) -> datetime | None:
        """When ``user`` was banned, or None if it is not."""
        with self._lock:
            row = self._db.execute(
                "SELECT banned_at FROM banned_accounts WHERE user = ?", (user,)
            ).fetchone()
        return _time(row[0]) if row else None

    def refuse_if_banned(self, user: str) -> None:
        """Raise :class:`AccountBanned` if ``user`` is banned."""
        since = self.banned_since(user)
        if since is not None:
            raise AccountBanned(user, since)

    def banned(self) -> list[tuple[str, datetime]]:
        """Every banned account and since when, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT user, banned_at FROM banned_accounts ORDER BY user"
            ).fetchall()
        return [(str(user), _time(since)) for user, since in rows]

    # -- reading ---------------------------------------------------------------------

    @staticmethod
    def _row(row: tuple[str, str, str, str, str, str, str | None]) -> CertRecord:
        serial, user, role, not_before, not_after, issued_at, revoked_at = row
        return CertRecord(
            serial=serial,
            user=user,
            role=Role(role),
            not_before=_time(not_before),
            not_after=_time(not_after),
            issued_at=_time(issued_at),
            revoked_at=_time(revoked_at) if revoked_at else None,
        )

    _COLUMNS = "serial, user, role, not_before, not_after, issued_at, revoked_at"

    def get(self, serial: str) -> CertRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        return self._row(row) if row else None

    def list_records(
        self, *, user: str | None = None, include_revoked: bool = True
    ) -> list[CertRecord]:
        """Every recorded certificate (of ``user`` if given), oldest first."""
        query = f"SELECT {self._COLUMNS} FROM certificates"
        clauses: list[str] = []
        params: list[str] = []
        if user is not None:
            clauses.append("user = ?")
            params.append(user)
        if not include_revoked:
            clauses.append("revoked_at IS NULL")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY issued_at, serial"
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [self._row(r) for r in rows]

    # -- the per-RPC check -------------------------------------------------------------

    def check(self, cert_der: bytes, *, now: datetime | None = None) -> Identity:
        """The caller's identity, or a :class:`~remo.pki.errors.CertificateRejected`.

        Rejects a certificate that is not signed by our CA, uses SHA-1 (or any hash but
        SHA-256/384/512), has an RSA key under 2048 bits (or another weak key), lacks the
        clientAuth usage, is outside its validity period, was never recorded, or was
        revoked.
        """
        parsed = self._cache.get(cert_der)
        if parsed is None:
            parsed = self._parse(cert_der)
            with self._lock:
                self._cache[cert_der] = parsed
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        when = now if now is not None else _now()
        if when < parsed.not_before:
            raise CertificateNotYetValid(parsed.serial, parsed.not_before)
        if when > parsed.not_after:
            raise CertificateExpired(parsed.serial, parsed.not_after)
        with self._lock:
            row = self._db.execute(
                "SELECT c.user, c.role, c.revoked_at, b.banned_at FROM certificates c"
                " LEFT JOIN banned_accounts b ON b.user = c.user WHERE c.serial = ?",
                (parsed.serial,),
            ).fetchone()
        if row is None:
            raise UnknownCertificate(
                f"certificate {parsed.serial} of {parsed.user!r} is signed by this server's CA "
                "but was never recorded as issued",
                parsed.serial,
            )
        user, role, revoked_at, banned_at = row
        if banned_at is not None:
            raise AccountBanned(user, _time(banned_at), parsed.serial)
        if revoked_at is not None:
            raise CertificateRevoked(parsed.serial, user, _time(revoked_at))
        if user != parsed.user or role != parsed.role.value:
            raise UnknownCertificate(
                f"certificate {parsed.serial} does not match its record "
                f"({parsed.user!r}/{parsed.role} against {user!r}/{role})",
                parsed.serial,
            )
        return Identity(parsed.user, parsed.role, parsed.serial, parsed.not_after)

    def _parse(self, cert_der: bytes) -> _Parsed:
        """Parse and verify everything about a certificate that does not depend on time."""
        try:
            cert = x509.load_der_x509_certificate(cert_der)
            serial = serial_hex(cert)
        except ValueError as err:
            raise MalformedCertificate(f"the client certificate cannot be parsed: {err}") from err
        try:
            return self._verify(cert, serial)
        except ValueError as err:  # malformed extensions surface lazily
            raise MalformedCertificate(
                f"certificate {serial} cannot be parsed: {err}", serial
            ) from err

    def _verify(self, cert: x509.Certificate, serial: str) -> _Parsed:
        ca = self.ca_certificate
        if cert.issuer != ca.subject:
            raise UntrustedCertificate(
                f"certificate {serial} was not issued by this server's CA "
                f"(issuer {cert.issuer.rfc4514_string()!r})",
                serial,
            )
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            algorithm = None
        if algorithm is None or not isinstance(algorithm, ACCEPTED_HASHES):
            name = (
                algorithm.name
                if algorithm is not None
                else cert.signature_algorithm_oid.dotted_string
            )
            raise WeakCertificate(
                f"certificate {serial} is signed with {name.upper()}; "
                "remo requires SHA-256 or better",
                serial,
            )
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise UntrustedCertificate(
                f"certificate {serial} names this server's CA as issuer "
                "but its signature does not verify",
                serial,
            ) from None
        try:
            key = cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as err:
            raise MalformedCertificate(
                f"certificate {serial} has an unusable key: {err}", serial
            ) from err
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_BITS:
                raise WeakCertificate(
                    f"certificate {serial} has a {key.key_size}-bit RSA key; "
                    f"remo requires at least {MIN_RSA_BITS} bits",
                    serial,
                )
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ACCEPTED_CURVES):
                raise WeakCertificate(
                    f"certificate {serial} uses the curve {key.curve.name}; "
                    "remo accepts P-256, P-384 and P-521",
                    serial,
                )
        elif isinstance(key, dsa.DSAPublicKey):
            raise WeakCertificate(f"certificate {serial} has a DSA key", serial)
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            if constraints.ca:
                raise WrongCertificatePurpose(
                    f"certificate {serial} is a CA certificate, not a client certificate", serial
                )
        except x509.ExtensionNotFound:
            pass
        # A plain list of OIDs: newer cryptography refuses to build an empty ExtendedKeyUsage.
        usages: list[x509.ObjectIdentifier] = []
        with contextlib.suppress(x509.ExtensionNotFound):
            usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise WrongCertificatePurpose(
                f"certificate {serial} is not meant for clients (no clientAuth key usage)", serial
            )
        return _Parsed(
            serial=serial,
            user=user_of(cert),
            role=role_of(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

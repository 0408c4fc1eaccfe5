"""The errors raised by :mod:`remo.pki` and :mod:`remo.server.tls`.

Every message is a single line meant to be shown to a person as is.

- :class:`PkiError` is the base of them all.
- :class:`CertificateRejected` and its subclasses: a client certificate presented to the
  server is not acceptable (raised by :meth:`remo.pki.registry.Registry.check`). The API
  layer maps all of them to ``UNAUTHENTICATED``.
- :class:`CredentialError` and its subclasses: a credential file cannot be used
  (raised by :func:`remo.pki.package.load`).
- :class:`RegisterError` and its subclasses: ``remo register`` could not get a credential.
- :class:`CaError`: the CA or server certificate in the state directory cannot be used.
- :class:`TlsPolicyError`: the TLS 1.3-only policy cannot be guaranteed.
"""

from __future__ import annotations

from datetime import datetime

from remo.core.errors import RemoError


def format_time(when: datetime) -> str:
    """``2025-01-31 12:00:00 UTC``: the way every date appears in a remo message."""
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


class PkiError(RemoError):
    """Base class of the certificate, credential and TLS errors."""


class CaError(PkiError):
    """Raised when the CA or server key material in the state directory is unusable."""


class TlsPolicyError(PkiError):
    """Raised when the server cannot guarantee that only TLS 1.3 will be negotiated."""


# -- certificates presented by clients -------------------------------------------------


class CertificateRejected(PkiError):
    """Base class: a client certificate must not be accepted. ``serial`` is hex or ``""``."""

    def __init__(self, message: str, serial: str = "") -> None:
        super().__init__(message)
        self.serial = serial


class MalformedCertificate(CertificateRejected):
    """Raised when the certificate cannot be parsed or lacks the user name or role."""


class UntrustedCertificate(CertificateRejected):
    """Raised when the certificate was not issued (signed) by this server's CA."""


class UnknownCertificate(CertificateRejected):
    """Raised when the certificate is signed by our CA but was never recorded as issued."""


class CertificateRevoked(CertificateRejected):
    """Raised when the certificate was revoked; ``revoked_at`` says when."""

    def __init__(self, serial: str, user: str, revoked_at: datetime) -> None:
        super().__init__(
            f"certificate {serial} of {user!r} was revoked on {format_time(revoked_at)}", serial
        )
        self.user = user
        self.revoked_at = revoked_at


class AccountBanned(CertificateRejected):
    """Raised for any certificate of an account an admin banned (`remo admin revoke
    --user`), and when something tries to record a new one; ``since`` says when."""

    def __init__(self, user: str, since: datetime, serial: str = "") -> None:
        super().__init__(
            f"account {user!r} is banned from this server since {format_time(since)}"
            f" (an admin lifts it with `remo admin allow {user}`)",
            serial,
        )
        self.user = user
        self.since = since


class CertificateExpired(CertificateRejected):
    """Raised when the certificate's validity period has ended."""

    def __init__(self, serial: str, not_after: datetime) -> None:
        super().__init__(f"certificate {serial} expired on {format_time(not_after)}", serial)
        self.not_after = not_after


class CertificateNotYetValid(CertificateRejected):
    """Raised when the certificate's validity period has not started yet."""

    def __init__(self, serial: str, not_before: datetime) -> None:
        super().__init__(
            f"certificate {serial} is not valid before {format_time(not_before)}", serial
        )
        self.not_before = not_before


class WeakCertificate(CertificateRejected):
    """Raised for weak cryptography: RSA keys under 2048 bits, SHA-1 signatures, odd curves."""


class WrongCertificatePurpose(CertificateRejected):
    """Raised when the certificate lacks the clientAuth extended key usage (or is a CA)."""


# -- credential files -----------------------------------------------------------------


class CredentialError(PkiError):
    """Base class: a credential file cannot be used. ``path`` names the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class CredentialUnreadable(CredentialError):
    """Raised when the credential file does not exist or cannot be read."""


class CredentialCorrupt(CredentialError):
    """Raised when the file is not a remo credential, is truncated, or does not parse."""


class CredentialIncomplete(CredentialError):
    """Raised when a part (address, CA certificate, certificate, key) is missing."""

    def __init__(self, path: str, missing: list[str]) -> None:
        super().__init__(
            path,
            f"credential file {path} is incomplete: no {', no '.join(missing)}; "
            "get a new one with `remo register`",
        )
        self.missing = missing


class CredentialKeyMismatch(CredentialError):
    """Raised when the private key does not belong to the certificate."""


class CredentialPermissions(CredentialError):
    """Raised when group or others may access the credential file."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(
            path,
            f"credential file {path} is accessible by other users (mode {mode:04o}); "
            f"it holds a private key: run `chmod 600 {path}`",
        )
        self.mode = mode


class CredentialExpired(CredentialError):
    """Raised when the certificate in the credential file has expired."""

    def __init__(self, path: str, not_before: datetime, not_after: datetime) -> None:
        super().__init__(
            path,
            f"credential file {path} expired on {format_time(not_after)} "
            f"(valid from {format_time(not_before)}); get a new one with `remo register`",
        )
        self.not_before = not_before
        self.not_after = not_after


class CredentialNotYetValid(CredentialError):
    """Raised when the certificate in the credential file is not valid yet."""

    def __init__(self, path: str, not_before: datetime, not_after: datetime) -> None:
        super().__init__(
            path,
            f"credential file {path} is not valid before {format_time(not_before)} "
            f"(valid until {format_time(not_after)}); check this machine's clock",
        )
        self.not_before = not_before
        self.not_after = not_after


# -- the register socket ----------------------------------------------------------------


class RegisterError(PkiError):
    """Base class: ``remo register`` could not obtain a credential."""


class RegisterUnavailable(RegisterError):
    """Raised when no remo server listens on the register socket."""


class RegisterRefused(RegisterError):
    """Raised when the server refused to issue a credential to the caller."""

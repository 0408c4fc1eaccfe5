"""Who is calling: the per-call certificate check, kept off the event loop.

On the loop only the client certificate is taken from the call (a lookup and a base64
decode): :meth:`Authenticator.certificate`. The registry check
(:meth:`remo.pki.registry.Registry.check`: one indexed SQLite read; the first time a
certificate is seen, its parsing and signature check too) is
:meth:`Authenticator.check`, which blocks and runs in a worker thread: a slow disk, or
the registry's lock held while the register socket records a new certificate, then
stalls that call alone. Calls that only read run their handler in the same thread
right after it (:func:`remo.server.servicer.read_rpc`), so they pay one thread hop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from remo.pki.errors import (
    AccountBanned,
    CertificateExpired,
    CertificateRejected,
    CertificateRevoked,
)
from remo.pki.registry import Registry
from remo.server import authz, tls


@dataclass(frozen=True)
class Caller:
    """The authenticated peer of one RPC."""

    user: str
    role: str
    serial: str
    not_after: float

    @property
    def admin(self) -> bool:
        return authz.sees_everyone(self.role)


class Unauthenticated(Exception):
    """The client certificate is not acceptable; the message says why, ``reason`` in a
    word (``ErrorInfo.reason``)."""

    def __init__(self, message: str, reason: str = "CREDENTIAL_UNKNOWN") -> None:
        super().__init__(message)
        self.reason = reason


def _reason(err: CertificateRejected) -> str:
    if isinstance(err, CertificateRevoked):
        return "CREDENTIAL_REVOKED"
    if isinstance(err, AccountBanned):
        return "ACCOUNT_BANNED"
    if isinstance(err, CertificateExpired):
        return "CREDENTIAL_EXPIRED"
    return "CREDENTIAL_UNKNOWN"


class Authenticator:
    """``await authenticator(context)``: the caller of a grpc.aio call, or
    :class:`Unauthenticated` with the reason."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @staticmethod
    def certificate(context: Any) -> bytes:
        """The call's client certificate (DER). Cheap: on the event loop."""
        try:
            der = tls.peer_certificate_der(context)
        except CertificateRejected as err:
            raise Unauthenticated(str(err), _reason(err)) from None
        if der is None:
            raise Unauthenticated("the call carries no client certificate", "CREDENTIAL_MISSING")
        return der

    def check(self, der: bytes) -> Caller:
        """The caller with this certificate, checked against the registry. Blocks
        (SQLite): call it from a worker thread."""
        try:
            identity = self._registry.check(der)
        except CertificateRejected as err:
            raise Unauthenticated(str(err), _reason(err)) from None
        not_after = identity.not_after.timestamp() if identity.not_after else 0.0
        return Caller(identity.user, identity.role.value, identity.serial, not_after)

    async def __call__(self, context: Any) -> Caller:
        der = self.certificate(context)
        return await asyncio.get_running_loop().run_in_executor(None, self.check, der)

"""The errors the remo client raises, and their exit codes.

Every error carries a one-line message meant to be shown as is, and the exit code the
CLI uses for it:

====  =====================================================================
code  meaning
====  =====================================================================
2     usage: a bad flag or value, no profile, a request the server rejected
      as invalid (``INVALID_ARGUMENT``)
3     connection: server unreachable, TLS handshake refused, connection lost
4     authentication/authorization: the credential is unusable (expired, not
      yet valid, unreadable, loose mode, corrupt), or the server answered
      ``UNAUTHENTICATED`` / ``PERMISSION_DENIED``
5     not found: no such job or schedule
6     remote failure: any other error reported by the server (the command
      could not start, the job is still running, the server is full...)
====  =====================================================================

:func:`from_rpc_error` turns a ``grpc.RpcError`` into one of these: by the
``ErrorInfo.reason`` the server sends (``JOB_NOT_FOUND``, ``CREDENTIAL_REVOKED``...; the
list is in proto/remo/v1/jobs.proto), which every error keeps in ``reason`` with its
``metadata`` and, for bad input, the ``fields`` at fault; by the status code when there
is no reason (errors of the connection itself). This module imports grpc only to read a
status: importing it is cheap.
"""

from __future__ import annotations

from typing import Any

from remo.core.errors import InvalidArgument, RemoError

EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_REMOTE = 6
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


class ClientError(RemoError):
    """Base class of the client's errors. ``code`` is the gRPC status name, if any;
    ``reason`` and ``metadata`` the server's ``ErrorInfo`` (empty for errors of the
    connection); ``fields`` the request fields a ``BadRequest`` named."""

    exit_code = EXIT_REMOTE
    reason = ""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        reason: str = "",
        metadata: dict[str, str] | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or type(self).reason
        self._metadata = metadata or {}
        self.fields = fields

    def metadata(self) -> dict[str, str]:
        """The server's ``ErrorInfo.metadata`` (``{"stage": "exec", "errno": "ENOENT"}``)."""
        return dict(self._metadata)


class UsageError(ClientError):
    """Raised for a bad command line or value, before anything is sent."""

    exit_code = EXIT_USAGE


class ProfileError(UsageError):
    """Raised when no profile can be selected, or a named profile does not exist."""


class InvalidRequest(UsageError):
    """Raised when the server rejected the request as invalid (``INVALID_ARGUMENT``)."""


class ConnectionFailed(ClientError):
    """Raised when the server cannot be reached or the connection broke for good."""

    exit_code = EXIT_CONNECTION


class TlsHandshakeFailed(ConnectionFailed):
    """Raised when the TLS handshake failed: wrong server, refused credential, clock."""


class CredentialProblem(ClientError):
    """Raised when the local credential file cannot be used (checked before connecting)."""

    exit_code = EXIT_AUTH


class AuthError(ClientError):
    """Raised when the server does not accept the caller for this request."""

    exit_code = EXIT_AUTH


class Unauthenticated(AuthError):
    """The server does not recognize the certificate (not issued there, or revoked)."""


class CredentialRevoked(Unauthenticated):
    """The credential was revoked (``CREDENTIAL_REVOKED``) or its account banned
    (``ACCOUNT_BANNED``)."""


class PermissionDenied(AuthError):
    """The certificate's role does not allow the request."""


class NotFound(ClientError):
    """No such job or schedule (or one the caller may not see)."""

    exit_code = EXIT_NOT_FOUND


class RemoteError(ClientError):
    """Any other error reported by the server."""

    exit_code = EXIT_REMOTE


class JobLost(RemoteError):
    """The job ended without an exit status remo could record."""


class StartFailed(RemoteError):
    """The command could not start (``START_FAILED``): ``metadata`` has the ``stage``
    (``exec``, ``chdir``, ``user``...) and the ``errno`` name (``ENOENT``)."""


class JobStillRunning(RemoteError):
    """The job must have ended first (``JOB_STILL_RUNNING``): remove a running job."""


class JobNotRunning(RemoteError):
    """The job must be running (``JOB_NOT_RUNNING``): kill an ended job."""


class StdinNotOpen(RemoteError):
    """The job has no stdin open for writing (``STDIN_NOT_OPEN``)."""


class NameTaken(RemoteError):
    """Another of the caller's jobs or schedules has the name (``NAME_TAKEN``)."""


class LimitOutOfRange(InvalidRequest):
    """A limit is outside what the server allows (``LIMIT_OUT_OF_RANGE``)."""


class ServerFull(RemoteError):
    """The server takes no new jobs until space is freed (``SERVER_DISK_FULL``)."""


class TooManyOutputs(RemoteError):
    """The caller reads as many job outputs at once as the server allows it
    (``TOO_MANY_OUTPUTS``): end some follows, or follow many jobs in one ``output_many``."""


class WaitTimeout(ClientError, TimeoutError):
    """``wait(..., timeout=)`` ran out before the job ended (the job goes on)."""

    exit_code = EXIT_REMOTE


#: The class raised for each ``ErrorInfo.reason``; other reasons go by status code.
BY_REASON: dict[str, type[ClientError]] = {
    "CREDENTIAL_REVOKED": CredentialRevoked,
    "ACCOUNT_BANNED": CredentialRevoked,
    "START_FAILED": StartFailed,
    "JOB_STILL_RUNNING": JobStillRunning,
    "JOB_NOT_RUNNING": JobNotRunning,
    "STDIN_NOT_OPEN": StdinNotOpen,
    "NAME_TAKEN": NameTaken,
    "LIMIT_OUT_OF_RANGE": LimitOutOfRange,
    "SERVER_DISK_FULL": ServerFull,
    "TOO_MANY_OUTPUTS": TooManyOutputs,
}


def exit_code_of(err: BaseException) -> int:
    """The CLI exit code for ``err``."""
    if isinstance(err, ClientError):
        return err.exit_code
    from remo.pki.errors import CredentialError

    if isinstance(err, CredentialError):
        return EXIT_AUTH
    if isinstance(err, InvalidArgument):
        return EXIT_USAGE
    if isinstance(err, RemoError):
        return EXIT_REMOTE
    return EXIT_INTERNAL


def message_of(err: BaseException) -> str:
    """``err`` as one line of text (the CLI prefixes it with ``remo: ``)."""
    text = str(err).strip() or type(err).__name__
    return " ".join(text.split())


_TLS_REFUSED = (
    "the server at {target} refused the TLS handshake: check that the credential "
    "{path}is from this server and was not replaced, that it is not expired or revoked "
    "(`remo register` on the server gives a new one), and that both clocks are right"
)
_TLS_UNTRUSTED = (
    "the server at {target} is not the one the credential {path}was issued by: its "
    "certificate is not signed by the credential's CA (the address now points at "
    "another machine, or the server's state was recreated; get a new credential with "
    "`remo register`)"
)
_TLS_NAME = (
    "the server at {target} has a certificate that does not name {host}: use one of "
    "the addresses the server advertises (remo server --advertise), or get a new "
    "credential with `remo register`"
)


def _connection_error(
    details: str, target: str, path: str, *, reached: bool = False
) -> ConnectionFailed:
    """Explain an ``UNAVAILABLE`` status raised before any answer from the server.

    ``reached``: this client was connected to the server before (its credential was
    accepted then), so a connection closed during the handshake is the server going
    away, not a refusal of the credential.
    """
    low = details.lower()
    shown_path = f"{path} " if path else ""
    host = target.rsplit(":", 1)[0]
    if "hostname verification" in low:
        return TlsHandshakeFailed(_TLS_NAME.format(target=target, host=host), code="UNAVAILABLE")
    if "certificate_verify_failed" in low or "tls handshake failed" in low:
        return TlsHandshakeFailed(
            _TLS_UNTRUSTED.format(target=target, path=shown_path), code="UNAVAILABLE"
        )
    if "handshake read failed" in low or "handshake write failed" in low:
        # The connection broke mid-handshake: a restarting or overloaded server, not a
        # refused credential (which closes the socket after the server's alert).
        return ConnectionFailed(
            f"the connection to {target} broke during the TLS handshake: the server may "
            "be restarting or overloaded; try again in a moment",
            code="UNAVAILABLE",
        )
    if reached and ("socket closed" in low or "handshake" in low or "ssl" in low):
        return ConnectionFailed(
            f"the server at {target} closed the connection before it was set up: the "
            "server may be restarting or overloaded; try again in a moment",
            code="UNAVAILABLE",
        )
    if "socket closed" in low or "handshake" in low or "ssl" in low:
        return TlsHandshakeFailed(
            _TLS_REFUSED.format(target=target, path=shown_path), code="UNAVAILABLE"
        )
    if "connection refused" in low:
        return ConnectionFailed(
            f"cannot connect to {target}: connection refused; check that `remo server` "
            "is running there, that it listens on this address and port, and that no "
            "firewall is in the way",
            code="UNAVAILABLE",
        )
    if "resolv" in low or "dns" in low or "domain name not found" in low:
        return ConnectionFailed(
            f"cannot resolve the server name {host!r} (from {target}): check the "
            "address in the credential and this machine's DNS",
            code="UNAVAILABLE",
        )
    if "no route to host" in low or "network is unreachable" in low or "timed out" in low:
        return ConnectionFailed(
            f"cannot reach {target}: {_last_error(details)}; check the network path "
            "to the server and its firewall",
            code="UNAVAILABLE",
        )
    return ConnectionFailed(
        f"cannot reach the remo server at {target}: {_last_error(details)}", code="UNAVAILABLE"
    )


def _last_error(details: str) -> str:
    """The useful tail of grpc's "failed to connect to all addresses; ..." text."""
    text = details.rpartition("last error: ")[2] or details
    # "UNKNOWN: ipv4:1.2.3.4:5: Failed to connect to remote host: No route to host"
    parts = text.split(": ")
    tail = [p for p in parts if p and not p.isupper() and not p.startswith(("ipv4:", "ipv6:"))]
    return (": ".join(tail) or text).strip() or "unavailable"


def error_details(err: Any) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """The ``ErrorInfo`` reason and metadata and the ``BadRequest`` fields of a failed
    call's ``google.rpc.Status`` (empty when it has none), read with grpcio-status."""
    if not callable(getattr(err, "trailing_metadata", None)):
        return "", {}, ()
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(err)
    except ValueError:  # a status that contradicts the call's code: ignore it
        return "", {}, ()
    reason, metadata = "", {}
    fields: list[str] = []
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(bad):
            fields.extend(v.field for v in bad.field_violations)
    return reason, metadata, tuple(fields)


#: The class raised for each status code, when the reason does not choose one.
BY_CODE: dict[str, type[ClientError]] = {
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "INVALID_ARGUMENT": InvalidRequest,
    "UNAVAILABLE": ConnectionFailed,
}


def from_rpc_error(
    err: Any,
    *,
    target: str = "",
    path: str = "",
    what: str = "",
    timeout: float | None = None,
    reached: bool = False,
) -> ClientError:
    """Translate a ``grpc.RpcError`` into a :class:`ClientError` with one clear line.

    ``target`` is the server address, ``path`` the credential file (both only for the
    message); ``what`` names the object of the call (``job 12``) for NOT_FOUND;
    ``reached`` says the client was connected to this server before.
    """
    code_obj = err.code() if callable(getattr(err, "code", None)) else None
    code = getattr(code_obj, "name", "") or "UNKNOWN"
    details = ""
    if callable(getattr(err, "details", None)):
        details = err.details() or ""
    details = " ".join(details.split())
    reason, metadata, fields = error_details(err)
    if reason:
        cls = BY_REASON.get(reason) or BY_CODE.get(code, RemoteError)
        message = details or reason.lower().replace("_", " ")
        if cls is Unauthenticated or cls is CredentialRevoked:
            message = f"the server does not accept this credential: {message}"
        return cls(message, code=code, reason=reason, metadata=metadata, fields=fields)
    if code == "UNAVAILABLE":
        if "failed to connect" in details or "resolv" in details or not details:
            return _connection_error(details, target, path, reached=reached)
        return ConnectionFailed(
            f"the server at {target} is restarting or unreachable: {details}", code=code
        )
    if code == "DEADLINE_EXCEEDED":
        within = f" within {timeout:g}s" if timeout else ""
        return ConnectionFailed(
            f"no answer from {target}{within}: is a remo server listening there, and is "
            "the network path to it working?",
            code=code,
        )
    if code == "UNAUTHENTICATED":
        return Unauthenticated(
            f"the server does not accept this credential: {details or 'unauthenticated'}",
            code=code,
        )
    if code == "PERMISSION_DENIED":
        return PermissionDenied(details or "permission denied", code=code)
    if code == "NOT_FOUND":
        return NotFound(details or (f"no {what}" if what else "not found"), code=code)
    if code == "INVALID_ARGUMENT":
        return InvalidRequest(details or "invalid request", code=code)
    if code == "CANCELLED":
        return ConnectionFailed(f"the call to {target} was cancelled: {details}", code=code)
    return RemoteError(details or f"the server failed ({code.lower()})", code=code)

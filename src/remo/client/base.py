"""What :class:`~remo.client.Client` and :class:`~remo.client.AsyncClient` share before
any call: the credential, the address, the timeouts, the channels (one for short calls,
lanes for follows and waits), the ways to make one, and the translation of errors."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Self

import grpc

from remo.client import calls
from remo.client.calls import DEFAULT_RECONNECT_TIMEOUT, DEFAULT_TIMEOUT
from remo.client.errors import ClientError, from_rpc_error
from remo.client.profiles import credential_from_bytes, load_credential, select
from remo.pki.credfile import Credential
from remo.v1 import jobs_pb2_grpc as pb_grpc

#: Makes a channel: (address, credentials, options) -> channel (grpc or grpc.aio).
ChannelMaker = Callable[[str, grpc.ChannelCredentials, list[tuple[str, Any]]], Any]


class ClientBase:
    """The part of a client that does not depend on how it waits."""

    #: ``grpc.secure_channel`` or ``grpc.aio.secure_channel``.
    make_channel: ChannelMaker

    def __init__(
        self,
        credential: Credential,
        *,
        address: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
    ) -> None:
        self.credential = credential
        self.address = address or credential.addresses[0]
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        creds = grpc.ssl_channel_credentials(
            root_certificates=credential.ca_pem,
            private_key=credential.key_pem,
            certificate_chain=credential.cert_pem,
        )
        make = type(self).make_channel
        self._channel = make(self.address, creds, calls.CHANNEL_OPTIONS)
        self._stub = pb_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]

        def lane() -> tuple[Any, pb_grpc.JobServiceStub, Any]:
            channel = make(self.address, creds, calls.CHANNEL_OPTIONS + calls.LANE_OPTIONS)
            stub = pb_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
            return channel, stub, calls.output_callable(channel)

        #: Channels for follows and waits (see calls.Lanes).
        self._lanes = calls.Lanes(lane)
        #: Stops in flight on the short calls' channel (see calls.STOPS_ON_SHORT_CHANNEL).
        self._stop_seats = calls.Seats(calls.STOPS_ON_SHORT_CHANNEL)

    @property
    def reached(self) -> bool:
        """Whether this client has had an answer from the server."""
        raise NotImplementedError

    def _stop_route(self) -> tuple[Any, calls.Lane | None]:
        """The stub a Stop goes on: the short calls' while fewer than
        :data:`calls.STOPS_ON_SHORT_CHANNEL` are in flight there, else a lane's (then
        returned too). Give it back with :meth:`_stop_done`."""
        if self._stop_seats.take():
            return self._stub, None
        lane = self._lanes.take()
        return lane.stub, lane

    def _stop_done(self, lane: calls.Lane | None) -> None:
        if lane is None:
            self._stop_seats.give()
        else:
            self._lanes.give(lane)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Self:
        """A client for the credential file at ``path`` (checked before use)."""
        return cls(load_credential(path), **kwargs)

    @classmethod
    def from_profile(
        cls, profile: str | None = None, *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Self:
        """A client for an installed profile (``remo login``), by name; the default one
        without a name (see :func:`remo.client.profiles.select`)."""
        return cls.from_file(select(profile, env).path, **kwargs)

    @classmethod
    def from_credential(cls, data: bytes, **kwargs: Any) -> Self:
        """A client for a credential file's contents (from a secret store, say)."""
        return cls(credential_from_bytes(data), **kwargs)

    def _error(
        self, err: grpc.RpcError, what: str = "", timeout: float | None = None
    ) -> ClientError:
        return from_rpc_error(
            err,
            target=self.address,
            path=self.credential.path,
            what=what,
            timeout=timeout,
            reached=self.reached,
        )

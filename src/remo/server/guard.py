"""Every service on the mTLS port behind the same certificate check as ``remo.v1.JobService``.

The TLS handshake only proves that a certificate chains to our CA; the registry decides
whether it was issued, is unrevoked and belongs to an account that is not banned
(:meth:`remo.pki.registry.Registry.check`). ``remo.v1.JobService`` runs that check itself on
every call (it needs the caller's identity); this interceptor runs the same check for
every other service — health and reflection — so that a revoked or never-issued
certificate learns nothing, not even the API's descriptors.

grpc.aio interceptors see the method name but not the peer, so the check wraps the
handler's behaviour, which receives the call's context.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from remo.server.authn import Unauthenticated
from remo.server.errors import abort, unauthenticated

#: Methods under this prefix authenticate by themselves (and need the identity).
SELF_CHECKING = "/remo.v1.JobService/"


class RequireRegisteredCertificate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuse a call with UNAUTHENTICATED unless ``await authenticate(context)`` accepts
    it (it raises :class:`Unauthenticated`, whose message becomes the status detail)."""

    def __init__(self, authenticate: Callable[[Any], Awaitable[object]]) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(SELF_CHECKING):
            return handler
        return self._guarded(handler)

    async def _refuse_unless_registered(self, context: grpc.aio.ServicerContext) -> None:
        try:
            await self._authenticate(context)
        except Unauthenticated as err:
            await abort(context, unauthenticated(err, err.reason))

    def _guarded(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        check = self._refuse_unless_registered
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary_unary = handler.unary_unary

            async def one_to_one(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await check(context)
                return await unary_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(one_to_one, **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, check), **codec
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, check), **codec
            )
        stream_unary = handler.stream_unary

        async def many_to_one(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(many_to_one, **codec)


def _streaming(
    inner: Callable[..., Any], check: Callable[[grpc.aio.ServicerContext], Awaitable[None]]
) -> Callable[..., Any]:
    """Wrap a streaming behaviour of either kind grpc.aio accepts: an async generator
    (reflection) or a coroutine that writes through the context (health's Watch)."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(context)
            async for response in inner(request, context):
                yield response

        return generator

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(context)
        return await inner(request, context)

    return writer

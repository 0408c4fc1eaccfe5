"""The grpc.aio interceptor that counts every call of the server as it ends (the
outermost interceptor, so it sees the certificate guard's refusals too): calls by
method and status code, unary latency by method, jobs started, start failures by stage
(the ``stage`` of a START_FAILED ``ErrorInfo``), stops, refusals by ``ErrorInfo``
reason. Each costs a few microseconds of the call that is ending."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from remo.server.metrics import Metrics

log = logging.getLogger("remo.server.metrics")

JOB_SERVICE = "/remo.v1.JobService/"
START = JOB_SERVICE + "Start"
STOP = JOB_SERVICE + "Stop"
#: Status codes whose ``ErrorInfo.reason`` is counted as a refusal.
REFUSED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})

#: A label value taken from an error's metadata (a stage, a reason) must look like one.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_STATUS_DETAILS = "grpc-status-details-bin"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def label(value: str) -> str:
    """``value`` as a label value if it looks like one (a stage, a reason), else other."""
    return value if _LABEL_VALUE.fullmatch(value) else "other"


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every call as it ends: its method and code; unary calls' latency; and
    what Start, Stop and refused calls say about jobs and callers."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED, not counted
            return handler
        method: str = details.method
        done = self._done
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        # One answer (Start, ..., WriteStdin's client stream): timed and counted alike.
        single = handler.unary_unary or handler.stream_unary
        if single is not None:
            inner = single

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                began = time.perf_counter()
                response = None
                error: BaseException | None = None
                try:
                    response = await inner(request, context)
                except BaseException as err:
                    error = err
                    raise
                finally:
                    done(method, context, error, response, time.perf_counter() - began)
                return response

            if handler.unary_unary is not None:
                return grpc.unary_unary_rpc_method_handler(unary, **codec)
            return grpc.stream_unary_rpc_method_handler(unary, **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, method, done), **codec
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, method, done), **codec
            )
        return handler

    def _done(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        error: BaseException | None,
        response: Any,
        seconds: float | None,
    ) -> None:
        try:
            code = _code_of(context, error)
            m = self._m
            m.rpcs.labels(method, code.name).inc()
            if seconds is not None:
                m.rpc_seconds.labels(method).observe(seconds)
            if code is grpc.StatusCode.OK:
                if method == START and response is not None and response.HasField("job"):
                    m.started.inc()
                elif method == STOP:
                    m.stopped.inc()
                return
            info = _error_info(context)
            if code in REFUSED:
                m.refused.labels(label(info.reason if info else code.name)).inc()
            elif method == START and info is not None and info.reason == "START_FAILED":
                m.start_failures.labels(label(info.metadata.get("stage", "") or "unknown")).inc()
        except Exception:  # a metric must never fail a call
            log.exception("cannot count a call of %s", method)


def _streaming(
    inner: Callable[..., Any],
    method: str,
    done: Callable[[str, Any, BaseException | None, Any, float | None], None],
) -> Callable[..., Any]:
    """Count a streaming behaviour of either kind grpc.aio accepts (see remo.server.guard)."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                async for response in inner(request, context):
                    yield response
            except BaseException as err:
                error = err
                raise
            finally:
                done(method, context, error, None, None)

        return generator

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        error: BaseException | None = None
        try:
            return await inner(request, context)
        except BaseException as err:
            error = err
            raise
        finally:
            done(method, context, error, None, None)

    return writer


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ends with: the one it aborted with or set; CANCELLED when it
    was cancelled (its client left, or the server stops); UNKNOWN for an exception."""
    code = context.code()
    if isinstance(code, int):
        code = _CODES.get(code, grpc.StatusCode.UNKNOWN)
    if isinstance(code, grpc.StatusCode) and (code is not grpc.StatusCode.OK or error is None):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _error_info(context: grpc.aio.ServicerContext) -> error_details_pb2.ErrorInfo | None:
    """The ``ErrorInfo`` of the call's ``google.rpc.Status`` trailer, if it has one."""
    for key, value in context.trailing_metadata() or ():
        if key != _STATUS_DETAILS or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None

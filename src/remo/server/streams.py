"""The wire side of the two byte streams: Output's window and pieces, WriteStdin's chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from remo.api import output_wire
from remo.core.errors import InvalidArgument
from remo.server import authz
from remo.v1 import jobs_pb2 as pb
from remo.worker import Piece, Window

#: Wire enum -> the stream numbers of the on-disk format (the same numbers, checked).
_STREAMS = {pb.OUTPUT_STREAM_STDOUT: 1, pb.OUTPUT_STREAM_STDERR: 2}


def window_from_pb(request: pb.OutputRequest) -> Window:
    """What part of the output ``request`` asks for; raises InvalidArgument."""
    streams = set()
    for value in request.streams:
        if value not in _STREAMS:
            raise InvalidArgument(
                f"streams: {value} is not a stream (1 stdout, 2 stderr)", field="streams"
            )
        streams.add(_STREAMS[value])
    tail = request.tail_lines if request.HasField("tail_lines") else None
    if tail is not None and tail < 0:
        raise InvalidArgument(f"tail_lines must be 0 or more, got {tail}", field="tail_lines")
    end = request.end_offset if request.HasField("end_offset") else None
    if end is not None and end < 0:
        raise InvalidArgument(f"end_offset must be 0 or more, got {end}", field="end_offset")
    since = request.since.ToNanoseconds() if request.HasField("since") else None
    return Window(
        streams=frozenset(streams or _STREAMS.values()),
        tail_lines=tail,
        since_ns=since,
        end=end,
        each_record=request.timestamps,
    )


def piece_to_wire(piece: Piece) -> bytes:
    """The piece as an encoded OutputResponse (see :mod:`remo.api.output_wire`: its data
    copied once, not three times through a protobuf message)."""
    return output_wire.encode(piece.offset, piece.data, piece.stream, piece.time_ns)


_OUTPUT = authz.method("Output")


def _as_is(encoded: bytes) -> bytes:
    return encoded


class OutputCodec(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Output's messages leave the servicer already encoded (:func:`piece_to_wire`): this
    gives that one method a serializer that sends those bytes as they are. It must be
    the innermost interceptor (last in the list): the others keep the codec they find."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method != _OUTPUT or handler.unary_stream is None:
            return handler
        return grpc.unary_stream_rpc_method_handler(
            handler.unary_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=_as_is,
        )


class StdinStream:
    """The bytes of a WriteStdin call: its first message names the job."""

    def __init__(self, requests: AsyncIterator[Any]) -> None:
        self._requests = requests
        self.first: pb.WriteStdinRequest | None = None

    async def open(self) -> str:
        """Read the first message; the raw job id it names ("" when the stream is empty)."""
        async for message in self._requests:
            self.first = message
            return str(message.id)
        return ""

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every message's bytes, the first one's included."""
        # (each read of a bytes field copies it: read once)
        if self.first is not None and (data := self.first.data):
            yield data
        async for message in self._requests:
            if data := message.data:
                yield data

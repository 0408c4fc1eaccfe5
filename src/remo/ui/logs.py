"""A job's output for the page: the last lines first, earlier lines on demand, then
the rest live, so that a log of any size opens as fast as a short one.

The page never asks for a whole log. It asks for a *window*: the last N lines before
an offset (the end, at first; then the start of what it already shows, to scroll
back), which the server cuts (``tail_lines`` and ``end_offset``), and it follows from
the window's end. Pieces come one per arrival (``timestamps``), each with its stream
(``stdout``/``stderr``) and the time it reached the server. Bytes become text as UTF-8
(an invalid byte shows as U+FFFD); a character split between two pieces of a stream is
kept whole (one decoder per stream). A window holds at most :data:`MAX_WINDOW_BYTES`,
however long its lines.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from remo.client.aio import AsyncClient
from remo.client.types import OutputChunk

#: Lines of a window.
TAIL_LINES = 500
#: The most bytes of a window: lines can be long (a log of progress bars has no
#: newline at all), and the page must stay light.
MAX_WINDOW_BYTES = 2 << 20

T = TypeVar("T")


@asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``stream``, closed on the way out: its call is cancelled at once when the reader
    stops early (a browser that went away), as :func:`contextlib.aclosing` does for a
    typed generator."""
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


@dataclass
class Decoder:
    """Bytes to text for one reader: one incremental UTF-8 decoder per stream."""

    _by_stream: dict[str, Any] = field(default_factory=dict)

    def piece(self, chunk: OutputChunk) -> dict[str, Any]:
        """A chunk as the page reads it."""
        decoder = self._by_stream.get(chunk.stream)
        if decoder is None:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._by_stream[chunk.stream] = decoder
        return {
            "offset": chunk.offset,
            "end": chunk.end,
            "stream": chunk.stream,
            "time": chunk.time,
            "text": decoder.decode(chunk.data),
        }


@dataclass
class Window:
    """Lines of output from byte ``start`` to byte ``end`` of the merged output."""

    start: int
    end: int
    pieces: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "pieces": self.pieces}


async def window(
    client: AsyncClient, job_id: str, *, lines: int = TAIL_LINES, end: int | None = None
) -> Window:
    """The last ``lines`` lines before byte ``end`` (the end of the output: None)."""
    decoder = Decoder()
    start = 0 if end is None else max(0, end - MAX_WINDOW_BYTES)
    chunks = client.output(job_id, offset=start, tail_lines=lines, end_offset=end, timestamps=True)
    pieces: deque[dict[str, Any]] = deque()
    size = 0
    async with closing(chunks) as reading:
        async for chunk in reading:
            pieces.append(decoder.piece(chunk))
            size += len(chunk.data)
            while size > MAX_WINDOW_BYTES and len(pieces) > 1:
                first = pieces.popleft()
                size -= first["end"] - first["offset"]
    if not pieces:
        at = end or 0
        return Window(at, at, [])
    return Window(pieces[0]["offset"], pieces[-1]["end"], list(pieces))


async def follow(client: AsyncClient, job_id: str, offset: int) -> AsyncIterator[dict[str, Any]]:
    """The output from ``offset`` as it is written, until the job has ended and every
    byte was given."""
    decoder = Decoder()
    chunks = client.output(job_id, offset=offset, follow=True, timestamps=True)
    async with closing(chunks) as reading:
        async for chunk in reading:
            yield decoder.piece(chunk)

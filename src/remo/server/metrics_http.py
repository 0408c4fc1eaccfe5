"""The metrics page over plaintext HTTP/1.1, on the server's own event loop.

Hand-written rather than prometheus_client's ``start_http_server``, whose threading HTTP
server takes a thread per connection without bound: here requests are bounded (8 KiB
of head, 10 s to send it and read the answer, 16 connections at once), the page is
built on one thread of its own, never on the loop, and concurrent scrapes share the
page being built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST

from remo.server.config import local_listen, split_listen
from remo.server.metrics import Metrics

log = logging.getLogger("remo.server.metrics")

#: Bounds of the HTTP side.
MAX_HEAD = 8192
HTTP_TIMEOUT = 10.0
MAX_HTTP_CONNECTIONS = 16


class MetricsServer:
    """``GET /metrics`` over plaintext HTTP/1.1 on the event loop; the page is built on
    a thread of its own. One request per connection (``Connection: close``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remo-metrics")
        self._building: asyncio.Future[bytes] | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self, listen: str) -> int:
        """Listen on ``listen`` (HOST:PORT); the port bound."""
        host, port = split_listen(local_listen(listen))
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown)

    async def page(self) -> bytes:
        """The page; scrapes that arrive while one is built get that one."""
        if self._building is None:
            self._building = asyncio.ensure_future(self._build())
            self._building.add_done_callback(self._built)
        return await asyncio.shield(self._building)

    async def _build(self) -> bytes:
        try:
            await self._metrics.refresh_live()
        except Exception as err:  # the rest of the page is worth serving
            log.warning("metrics: cannot read the running jobs' usage: %s", err)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._metrics.page)

    def _built(self, _: asyncio.Future[bytes]) -> None:
        self._building = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_HTTP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                await self._answer(head, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("metrics: the scrape failed")
            with contextlib.suppress(Exception):
                await _respond(writer, 500, b"cannot build the metrics page\n")
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        request = head.split(b"\r\n", 1)[0].split()
        if len(request) != 3 or not request[2].startswith(b"HTTP/1."):
            await _respond(writer, 400, b"bad request\n")
            return
        verb, target = request[0], request[1].split(b"?", 1)[0]
        if target != b"/metrics":
            await _respond(writer, 404, b"only /metrics is served here\n")
            return
        if verb not in (b"GET", b"HEAD"):
            await _respond(writer, 405, b"GET /metrics\n", [("Allow", "GET, HEAD")])
            return
        body = await self.page()
        await _respond(
            writer, 200, body, [("Content-Type", CONTENT_TYPE_LATEST)], head_only=verb == b"HEAD"
        )


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (("Content-Type", "text/plain; charset=utf-8"),),
    *,
    head_only: bool = False,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body))
    await writer.drain()

"""The floor of one streamed message through gRPC Python on this machine: what remo's
follow latency (``remo logs -f``: a job's line to the client) cannot go under.

A ``grpc.aio`` server (remo's server is one) yields one small message of a server stream
each time a byte arrives on a pipe; a sync client (the CLI is one) waits for it. No TLS,
no files, no remo: one pipe wake-up, one message, loopback. Run::

    .venv/bin/python bench/grpc_floor.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class _Ticks(health_pb2_grpc.HealthServicer):
    """Watch answers once per byte written to ``fd``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        ticks: asyncio.Queue[None] = asyncio.Queue()
        loop.add_reader(self._fd, lambda: (os.read(self._fd, 1), ticks.put_nowait(None)))
        while True:
            await ticks.get()
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def _serve(fd: int, port: int) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(_Ticks(fd), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the server
        os.close(write_end)
        _serve(read_end, port)
        os._exit(0)
    os.close(read_end)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = health_pb2_grpc.HealthStub(channel)
            replies = stub.Watch(health_pb2.HealthCheckRequest())
            latencies = []
            for _ in range(rounds):
                began = time.perf_counter()
                os.write(write_end, b"x")
                next(replies)
                latencies.append(time.perf_counter() - began)
                time.sleep(0.005)
            replies.cancel()
        kept = sorted(latencies[20:])
        median, p99 = statistics.median(kept), kept[int(len(kept) * 0.99)]
        print(
            f"grpc.aio server stream -> sync client, loopback, no TLS: median "
            f"{median * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms ({len(kept)} messages)"
        )
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()

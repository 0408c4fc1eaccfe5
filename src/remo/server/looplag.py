"""Event-loop lag probe for benchmarks; off unless ``REMO_LOOP_LAG_FILE`` names a file.

A timer callback due every 10 ms notes how late the loop ran it (when it ran minus when
it was due). Every callback of the server, an RPC's included, waits about that long
when the loop is busy or blocked, so the figure is the server's responsiveness under
load. Each tick appends one line, ``<unix time> <lateness in ms>``, to the file; lines
are written in batches once a second and when the server stops. The file grows by
about 2 KiB a second: a measurement aid (``bench/load_bench.py --load`` sets the
variable and reports p50/p99/max per round), not for a long-running server.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TextIO

ENV = "REMO_LOOP_LAG_FILE"
#: How often the probe asks to run.
INTERVAL = 0.010
#: Lines kept before they are written (one second's worth).
BATCH = 100


class LoopLagProbe:
    """Samples the running loop's lateness into ``path`` until :meth:`close`."""

    def __init__(self, path: str, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._loop = asyncio.get_running_loop()
        self._file: TextIO | None = open(path, "a", encoding="ascii")  # noqa: SIM115
        self._lines: list[str] = []
        self._due = self._loop.time() + interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        late_ms = max(0.0, (now - self._due) * 1000)
        self._lines.append(f"{time.time():.4f} {late_ms:.3f}\n")
        if len(self._lines) >= BATCH:
            self._flush()
        self._due = now + self.interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def _flush(self) -> None:
        if self._file is not None and self._lines:
            self._file.write("".join(self._lines))
            self._file.flush()
        self._lines.clear()

    def close(self) -> None:
        self._timer.cancel()
        self._flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def start_from_env() -> LoopLagProbe | None:
    """A probe on the running loop if ``REMO_LOOP_LAG_FILE`` is set, else None."""
    path = os.environ.get(ENV)
    return LoopLagProbe(path) if path else None

"""Read many jobs' output at once, in rounds: one task and one wake-up for all of them.

Why not one :func:`~remo.output.reader.read_output` per job: each costs a task, an
event, a timer per wait and a gRPC message per line. Measured with 1,000 jobs printing
ten lines a second each, one follower per job took ~180 µs of the server's CPU per line
and the two-core machine could not keep up. Here every job's watch only marks it ready
(:meth:`~remo.output.watcher.DirWatch.on_change`); one loop waits for any to be ready,
then reads each ready job with the same :class:`~remo.output.reader.Cursor` as a single
follower and hands back everything read in that round as one batch. The busier the
jobs, the more each round carries.

Bounded: a round stops at ``batch_bytes``; the jobs it did not reach (or did not finish)
go first in the next one. Nothing is read ahead of the caller: a slow consumer leaves
the bytes in the files.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

from remo.output.reader import BACKSTOP_SECONDS, Cursor, Piece, Window
from remo.output.watcher import FALLBACK_WAIT, OutputWatcher

#: Bytes one job gives a round at a time (a job with a backlog does not fill it alone).
READ_CHUNK = 256 << 10
#: Bytes of data a round carries at most (one larger piece goes alone).
BATCH_BYTES = 1 << 20
#: Seconds between the starts of two rounds at least: what becomes ready meanwhile goes
#: in the next one. Each round is a message on the wire, which costs the server and the
#: client ~50 µs of CPU or more whatever it carries: at 1,000 jobs printing ten lines a
#: second, rounds as fast as possible made ~2,500 messages a second of 4 lines each.
ROUND_INTERVAL = 0.002
#: The safety-net sweep (every job read in full once per backstop period, woken or not)
#: goes a slice at a time: all 1,000 jobs of a call at once were one round of ~12 ms of
#: reads (bench/many_round_bench.py; 25-97 ms on a busy two-core machine) every 5 s,
#: which every line arriving meanwhile waited for. Without inotify the sweep is how
#: output is seen, and it stays whole.
SWEEP_SLICES = 50


@dataclass(frozen=True)
class OneRead:
    """What to read of one job: as :func:`~remo.output.reader.read_output` takes it."""

    job_dir: str
    offset: int = 0
    follow: bool = False
    window: Window = field(default_factory=Window)


#: (index of the read, a piece of it, or None once it has ended; why it ended early)
Item = tuple[int, Piece | None, str]


async def read_many(
    watcher: OutputWatcher,
    reads: Sequence[OneRead],
    *,
    chunk: int = READ_CHUNK,
    batch_bytes: int = BATCH_BYTES,
) -> AsyncGenerator[list[Item], None]:
    """Batches of what the reads have ready, until every one has ended; each read's
    pieces in order, then ``(index, None, "")`` (or a reason, if its files could not be
    read). Raises InvalidArgument for a bad offset or window before the first batch."""
    cursors: dict[int, Cursor] = {}
    ready: dict[int, None] = {}  # (an ordered set)
    woken = asyncio.Event()

    def waker(index: int) -> Callable[[], None]:
        def wake() -> None:
            ready[index] = None
            woken.set()

        return wake

    try:
        ended: list[Item] = []
        for index, read in enumerate(reads):
            try:
                cursor = Cursor.open(watcher, read.job_dir, read.offset, read.follow, read.window)
            except OSError as err:  # out of descriptors or inotify watches, say
                ended.append((index, None, _unreadable(err)))
                continue
            if cursor is None:  # followed, and its directory is gone
                ended.append((index, None, ""))
                continue
            cursors[index] = cursor
            if cursor.watch is not None:
                cursor.watch.on_change(waker(index))
            ready[index] = None
        if ended:
            yield ended
        polling = not watcher.uses_inotify
        every = FALLBACK_WAIT if polling else BACKSTOP_SECONDS
        rotation = deque(cursors)
        loop = asyncio.get_running_loop()
        sweep = loop.time() + every / _slices(polling, len(cursors))
        last_round = -ROUND_INTERVAL
        unchecked: set[int] = set()  # to be looked at in full (Cursor.begin) next time
        while cursors:
            if loop.time() >= sweep:
                # Everyone is read at least once a period, woken or not: the safety net
                # of a single follower (or the poll, without inotify). Fewer slices as
                # jobs end: each job is still read once a period, not more often.
                slices = _slices(polling, len(cursors))
                sweep = loop.time() + every / slices
                due = next_slice(rotation, cursors, slices)
                ready.update(dict.fromkeys(due))
                unchecked.update(due)
                if polling:
                    _forget_removed([cursors[index] for index in due])
            if not ready:
                woken.clear()
                try:
                    async with asyncio.timeout(max(0.0, sweep - loop.time())):
                        await woken.wait()
                except TimeoutError:
                    pass
                continue
            wait = last_round + ROUND_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            last_round = loop.time()
            batch = _round(cursors, ready, unchecked, chunk, batch_bytes)
            if batch:
                yield batch
    finally:
        for cursor in cursors.values():
            cursor.close()


def _round(
    cursors: dict[int, Cursor],
    ready: dict[int, None],
    unchecked: set[int],
    chunk: int,
    batch_bytes: int,
) -> list[Item]:
    """Read every ready job once (until ``batch_bytes``); those not done go back to
    ``ready``, the ones not reached first."""
    turn = list(ready)
    ready.clear()
    batch: list[Item] = []
    size = 0
    for n, index in enumerate(turn):
        cursor = cursors[index]
        full = False
        try:
            last = cursor.begin(full=index in unchecked)
            unchecked.discard(index)
            for piece in cursor.pieces(chunk):
                batch.append((index, piece, ""))
                size += len(piece.data)
                if size >= batch_bytes:
                    full = True
                    break
        except OSError as err:
            cursors.pop(index).close()
            batch.append((index, None, _unreadable(err)))
            continue
        if not full and (last or cursor.reached_end):
            cursors.pop(index).close()
            batch.append((index, None, ""))
        elif full:
            ready.update(dict.fromkeys(turn[n + 1 :]))
            ready[index] = None
            break
    return batch


def _unreadable(err: OSError) -> str:
    return f"could not read the output: {err.strerror or err}"


def _slices(polling: bool, open_reads: int) -> int:
    """How many slices a sweep of ``open_reads`` jobs takes (whole when polling)."""
    return 1 if polling else max(1, min(SWEEP_SLICES, open_reads))


def next_slice(rotation: deque[int], cursors: dict[int, Cursor], slices: int) -> list[int]:
    """The next ``1/slices`` of the reads still open, in turn (``rotation`` goes round:
    each open read comes once every ``slices`` calls; ended ones drop out)."""
    due: list[int] = []
    wanted = -(-len(cursors) // slices)
    while rotation and len(due) < wanted:
        index = rotation.popleft()
        if index in cursors:
            due.append(index)
    rotation.extend(due)
    return due


def _forget_removed(cursors: Sequence[Cursor]) -> None:
    """Without inotify, a removed job's directory is noticed by looking."""
    for cursor in cursors:
        if cursor.watch is not None and not os.path.isdir(cursor.job_dir):
            cursor.watch.mark_gone()

"""Stream a job's output to one reader, optionally following it until the job ends.

The contract with the supervisor: the job's output (:mod:`remo.core.output_format`) is
only ever appended to; once the job has ended and every process of it is gone, the
supervisor atomically creates ``<job_dir>/exit`` (written under a temporary name, then
renamed). So once ``exit`` exists no record will ever be added, and the follower's last
step is a read to the end that starts *after* ``exit`` was seen. Reading first and
checking second would lose whatever the job wrote between that read and its exit.

What a reader gets are :class:`Piece` objects: bytes of one stream with their merged
offset (the one number a reader resumes at, whatever streams it shows) and the time the
first of them arrived. Consecutive records of one stream are read with one ``pread``
into one piece (up to ``chunk`` bytes) unless the caller wants every record's time.

Why reads happen on the event loop: measured on the development machine, ``os.pread``
of 1 MiB served from the page cache takes about 32 us median and under 130 us at the
99th percentile (1000 reads from a cached 64 MiB file), shorter than one asyncio
scheduling round, so a hop to a thread pool would cost more than it saves. After every
full chunk the generator yields to the loop so that one follower draining a large file
cannot starve the others. A cold read from disk blocks for one device round trip per
chunk; remo accepts that, since followers almost always read data the job wrote
moments ago.

Memory per follower is one chunk: the files are never read whole.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import AsyncGenerator, Collection, Iterator
from dataclasses import dataclass

from remo.core.errors import InvalidArgument
from remo.core.output_format import STREAMS
from remo.core.paths import EXIT_FILE
from remo.output import seek
from remo.output.files import OutputFiles
from remo.output.watcher import DirWatch, OutputWatcher

#: A follower re-checks the files at least this often even without any inotify event.
#: inotify does not see writes made through a shared mmap or on another NFS client;
#: this bounds how long such output can be delayed. It is a safety net, not a poll.
BACKSTOP_SECONDS = 5.0

DEFAULT_CHUNK = 1 << 20
#: Records read at once.
_BATCH = 1024


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes of one stream: ``data`` starts at merged offset ``offset``; the first of
    them arrived at ``time_ns`` (nanoseconds since the epoch; 0 when not known)."""

    offset: int
    stream: int
    time_ns: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class Window:
    """Which part of the output to read.

    ``streams``: the streams shown (the others are skipped, their bytes still count in
    offsets). ``tail_lines``: start that many lines before the end (or before ``end``).
    ``since_ns``: start at the first byte that arrived then or later. ``end``: stop at
    this merged offset. ``each_record``: one piece per record, so every time is exact.
    The start is the latest of ``offset``, the tail and ``since_ns``.
    """

    streams: Collection[int] = STREAMS
    tail_lines: int | None = None
    since_ns: int | None = None
    end: int | None = None
    each_record: bool = False

    def check(self) -> None:
        if not self.streams or not set(self.streams) <= set(STREAMS):
            raise InvalidArgument("choose stdout, stderr or both", field="streams")
        if self.tail_lines is not None and self.tail_lines < 0:
            raise InvalidArgument(
                f"tail must be 0 lines or more, got {self.tail_lines}", field="tail_lines"
            )
        if self.end is not None and self.end < 0:
            raise InvalidArgument(f"end offset must be 0 or more, got {self.end}", field="end")


async def read_output(
    watcher: OutputWatcher,
    job_dir: str,
    offset: int = 0,
    follow: bool = False,
    chunk: int = DEFAULT_CHUNK,
    window: Window | None = None,
) -> AsyncGenerator[Piece, None]:
    """Yield the job's output from merged offset ``offset`` as :class:`Piece` objects of
    at most ``chunk`` bytes, in the order it was written.

    Without ``follow``: yield what is there now and stop. With ``follow``: keep waiting
    for more until the job has exited and every byte was yielded (or ``window.end`` was
    reached). Output that does not exist yet reads as empty; an offset past the end of
    a finished job's output yields nothing. If the job directory is deleted (or renamed)
    while following, or does not exist at all, the stream ends cleanly: the caller is
    the one to decide whether the job exists.

    Raises :class:`InvalidArgument` (on first iteration) for a negative offset, a chunk
    size below 1 or a bad window. Wrap the iteration in :func:`contextlib.aclosing` when
    it may be abandoned early, so the files and the watch are released at once.
    """
    window = window or Window()
    if chunk < 1:
        raise InvalidArgument(f"output chunk size must be at least 1 byte, got {chunk}")
    cursor = Cursor.open(watcher, job_dir, offset, follow, window)
    if cursor is None:
        return
    woken = False
    try:
        while True:
            watch = cursor.watch
            seen = watch.generation if watch is not None else 0
            last = cursor.begin(full=not woken)
            for piece in cursor.pieces(chunk):
                yield piece
                if len(piece.data) == chunk:
                    await asyncio.sleep(0)  # let other followers and RPCs run
            if last or cursor.reached_end or watch is None:
                return
            woken = await watch.wait(seen, BACKSTOP_SECONDS)
    finally:
        cursor.close()


class Cursor:
    """Where one reader stands in a job's output, advanced without waiting: the loop of
    :func:`read_output` and the rounds of :func:`remo.output.many.read_many` share it.

    Each step is :meth:`begin` (is this the last read?) then :meth:`pieces`. ``begin``
    must come first: see the module's docstring for why ``exit`` is checked before the
    read, never after."""

    def __init__(
        self,
        job_dir: str,
        position: int,
        window: Window,
        files: OutputFiles,
        watch: DirWatch | None,
    ) -> None:
        self.job_dir = job_dir
        self.position = position
        self.window = window
        self.watch = watch
        self._files = files
        self._exit_path = os.path.join(job_dir, EXIT_FILE)
        self._checked: int | None = None  # the watch's ``reshaped`` when last looked

    @classmethod
    def open(
        cls, watcher: OutputWatcher, job_dir: str, offset: int, follow: bool, window: Window
    ) -> Cursor | None:
        """A cursor at ``offset`` (or the window's start); None when following a job
        directory that does not exist. Raises InvalidArgument for a bad offset or window."""
        if offset < 0:
            raise InvalidArgument(f"output offset must be 0 or more, got {offset}")
        window.check()
        files = OutputFiles(job_dir)
        watch = None
        try:
            if follow:
                try:
                    watch = watcher.watch(job_dir)  # before the first read: no write slips by
                except (FileNotFoundError, NotADirectoryError):
                    files.close()
                    return None
            return cls(job_dir, _start(files, offset, window), window, files, watch)
        except BaseException:
            files.close()
            if watch is not None:
                watch.close()
            raise

    def begin(self, full: bool = False) -> bool:
        """Before a read: True when it is the last one (not following, the job has
        exited, or its directory is gone).

        Looking costs two system calls; they are skipped while the watch saw nothing but
        writes since the last look found neither (``exit`` appears by a rename, files go
        by unlinks: both are events). ``full`` looks anyway: for the safety net, which
        exists for what events may miss."""
        watch = self.watch
        if watch is None or watch.gone:
            return True
        reshaped = watch.reshaped
        if not full and reshaped is not None and reshaped == self._checked:
            return False
        if self._files.unlinked() or os.path.exists(self._exit_path):
            return True
        self._checked = reshaped
        return False

    def pieces(self, chunk: int) -> Iterator[Piece]:
        """What there is from the position on, in pieces of at most ``chunk`` bytes; the
        position follows each piece taken (a caller may stop early)."""
        # From the record before the one that holds the position: a legacy job's
        # single record grows, and one extra record read costs nothing.
        index = max(self._files.find(self.position) - 1, 0)
        for piece in _pieces(self._files, index, self.position, chunk, self.window):
            self.position = piece.end
            yield piece

    @property
    def reached_end(self) -> bool:
        """True once the window's end offset was reached."""
        return self.window.end is not None and self.position >= self.window.end

    def close(self) -> None:
        self._files.close()
        if self.watch is not None:
            self.watch.close()


def _start(files: OutputFiles, offset: int, window: Window) -> int:
    """The merged offset to read from: the latest of ``offset``, the tail, the time."""
    start = offset
    if window.tail_lines is not None:
        start = max(
            start, seek.offset_of_tail(files, window.tail_lines, window.streams, window.end)
        )
    if window.since_ns is not None:
        start = max(start, seek.offset_since(files, window.since_ns))
    return start


def _pieces(
    files: OutputFiles, index: int, position: int, chunk: int, window: Window
) -> Iterator[Piece]:
    """The pieces from record ``index`` on that hold bytes at or after ``position``.

    Records are plain tuples here (offset, stream offset, time, length, stream: no
    object per record), and a run of one stream is found by binary search: within it,
    offset minus stream offset (the other stream's bytes before) stays the same, and
    it differs for every record after it. A log written in many small pieces then
    costs a few operations per read, not per record."""
    end = window.end
    streams = window.streams
    while True:
        records = files.raw_records(index, index + _BATCH)
        count = len(records)
        i = 0
        while i < count:
            if end is not None and position >= end:
                return
            offset, stream_offset, time_ns, length, stream = records[i]
            if offset + length <= position:
                # skip to the record that holds the position (records are contiguous)
                k = bisect.bisect_right(records, position, i, count, key=_offset) - 1
                i = k if records[k][0] + records[k][3] > position else k + 1
                continue
            if stream not in streams:
                position = offset + length
                i += 1
                continue
            start = max(position, offset)
            if window.each_record:
                last = i
            else:
                run_end = _run_end(records, i, count, stream, offset - stream_offset)
                last = bisect.bisect_left(records, start + chunk, i, run_end, key=_offset) - 1
                last = max(last, i)
            stop = records[last][0] + records[last][3]
            if end is not None:
                stop = min(stop, end)
            size = min(stop - start, chunk)
            data = files.read(stream, size, stream_offset + start - offset)
            if not data:
                return  # (a legacy file cut short under us: nothing more to read now)
            position = start + len(data)
            yield Piece(start, stream, time_ns, data)
            # on from the record that holds the position (the next one after a whole run)
            i = bisect.bisect_right(records, position, i, last + 1, key=_offset) - 1
            if records[i][0] + records[i][3] <= position:
                i += 1
        if count < _BATCH:
            return
        index += count


def _offset(record: tuple[int, ...]) -> int:
    return record[0]


def _run_end(records: list[tuple[int, ...]], i: int, count: int, stream: int, delta: int) -> int:
    """One past the last record of the run of ``stream`` that starts at ``i``."""
    low, high = i + 1, count
    while low < high:
        middle = (low + high) // 2
        record = records[middle]
        if record[4] == stream and record[0] - record[1] == delta:
            low = middle + 1
        else:
            high = middle
    return low

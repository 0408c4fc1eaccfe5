"""Where to start reading: the last N lines, or what was written since a time.

Both answer with a merged offset (see :mod:`remo.core.output_format`) and never scan
the whole output: the time is a binary search over the records (their times never go
down), the lines are counted backwards from the end, block by block, so ``--tail 3`` of
a 1 GiB log reads a few kilobytes.
"""

from __future__ import annotations

from collections.abc import Collection

from remo.output.files import OutputFiles

#: Records read at once when walking backwards.
_BATCH = 512
#: Bytes read at once when counting lines backwards.
_BLOCK = 64 << 10
#: A tail looks back at most this far: the last lines of a log that has (almost) no
#: newlines start here rather than at the beginning of a gigabyte-long line.
TAIL_LOOKBACK = 32 << 20


def offset_since(files: OutputFiles, since_ns: int) -> int:
    """The merged offset of the first byte that arrived at ``since_ns`` or later (the
    end of the output when none did). Untimed output (a job from before times were
    kept) is shown whole."""
    if files.legacy:
        return 0
    low, high = 0, files.count()
    while low < high:
        middle = (low + high) // 2
        (record,) = files.records(middle, middle + 1)
        if record.time_ns < since_ns:
            low = middle + 1
        else:
            high = middle
    if low == files.count():
        return files.end()
    (first,) = files.records(low, low + 1)
    return first.offset


def offset_of_tail(
    files: OutputFiles, lines: int, streams: Collection[int], end: int | None = None
) -> int:
    """The merged offset where the last ``lines`` lines of ``streams`` begin, counting
    only bytes before ``end`` (the whole output without it). A last line without a
    newline counts as a line, as in ``tail -n``. At most :data:`TAIL_LOOKBACK` bytes
    before the end are looked at."""
    stop = files.end() if end is None else min(end, files.end())
    if lines <= 0:
        return stop
    index = files.find(stop - 1) if stop > 0 else 0
    floor = max(0, stop - TAIL_LOOKBACK)
    newlines = 0
    last_byte: int | None = None  # the last byte shown: a newline there ends no line
    while index >= 0:
        batch_start = max(0, index - _BATCH + 1)
        for record in reversed(files.records(batch_start, index + 1)):
            if record.stream not in streams or record.offset >= stop:
                continue
            high = min(record.end, stop)
            while high > record.offset:
                if high <= floor:
                    return floor
                low = max(record.offset, high - _BLOCK, floor)
                at = record.stream_offset + (low - record.offset)
                data = files.read(record.stream, high - low, at)
                if last_byte is None and data:
                    last_byte = low + len(data) - 1
                position = len(data)
                while (position := data.rfind(b"\n", 0, position)) >= 0:
                    if low + position == last_byte:
                        continue
                    newlines += 1
                    if newlines == lines:
                        return low + position + 1
                high = low
        index = batch_start - 1
    return floor

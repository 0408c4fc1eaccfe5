"""How a job's output is kept on disk: two data files and one index of timed records.

A job writes to two pipes, stdout and stderr; its init moves what arrives on each into
a file of its own (``stdout``, ``stderr``, with ``splice(2)``: no copy through user
space) and then appends one fixed-size *record* to ``records``:

    merged offset (u64) | offset in its stream's file (u64) | time (i64, ns since the
    epoch) | length (u32) | stream (u8: 1 stdout, 2 stderr) | 3 bytes of padding

little-endian, 32 bytes. The record is the commit point: bytes of a data file that no
record covers (an init killed between the two writes) do not exist for readers.

Why this layout:

* **Merged order, exactly.** Records are appended in the order the init read the pipes,
  so reading them in order replays stdout and stderr interleaved as they arrived. The
  *merged offset* of a byte is its position in that interleaving: the single number a
  reader resumes at (the API's ``offset``), whatever streams it shows.
* **Raw speed.** A record covers whatever the init read at once (up to 1 MiB), so a
  1 GiB output is a few thousand records and reading it is a ``pread`` per run of
  records of one stream: no framing to parse inside the data.
* **Seeking without scanning.** Records have a fixed size and non-decreasing merged
  offsets and times (the init never lets a record's time go below the one before), so
  "the byte at offset N" and "the first byte written after time T" are binary searches,
  and "the last N lines" reads backwards from the end.

A record costs 32 bytes, counted against the job's output cap together with the data,
so a job writing a byte at a time cannot grow the index without bound.

Jobs from before this layout have one file, ``output`` (stdout and stderr together,
untimed): readers treat it as one stdout record that grows with the file.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"
RECORDS_FILE = "records"
#: The single file of jobs written before stdout and stderr were kept apart.
LEGACY_OUTPUT_FILE = "output"

STDOUT = 1
STDERR = 2
STREAMS = (STDOUT, STDERR)
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
STREAM_FILES = {STDOUT: STDOUT_FILE, STDERR: STDERR_FILE}

RECORD = struct.Struct("<QQqIB3x")
RECORD_SIZE = RECORD.size  # 32


class Record(NamedTuple):
    """One piece of output as the init read it from one pipe."""

    #: Position of its first byte in the merged output (stdout and stderr interleaved).
    offset: int
    #: Position of its first byte in its stream's file.
    stream_offset: int
    #: When the init read it, in nanoseconds since the epoch (0: not known).
    time_ns: int
    length: int
    stream: int

    @property
    def end(self) -> int:
        """The merged offset just past this record."""
        return self.offset + self.length


def pack(record: Record) -> bytes:
    return RECORD.pack(*record)


def unpack_many(data: bytes) -> list[Record]:
    """The whole records in ``data`` (a trailing partial one is ignored)."""
    whole = len(data) - len(data) % RECORD_SIZE
    return [Record(*fields) for fields in RECORD.iter_unpack(data[:whole])]

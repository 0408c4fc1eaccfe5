"""A job's output files, opened for reading: records and data, in either on-disk layout.

:class:`OutputFiles` hides the difference between the layout of
:mod:`remo.core.output_format` (``stdout``, ``stderr``, ``records``) and the single
``output`` file of jobs written before it, which reads as one untimed stdout record
that grows with the file. Everything above (following, seeking) works on records.
"""

from __future__ import annotations

import os

from remo.core import output_format
from remo.core.output_format import RECORD_SIZE, Record

#: Largest file offset: pread fails with EINVAL when offset + count would pass it.
MAX_OFFSET = (1 << 63) - 1


class OutputFiles:
    """The output of the job in ``job_dir``, files opened on first use (a job may not
    have created them yet) and kept open until :meth:`close`."""

    def __init__(self, job_dir: str) -> None:
        self._dir = job_dir
        self._records: int | None = None
        self._legacy: int | None = None
        self._data: dict[int, int] = {}
        #: (merged offset, record index) just past the last records read: where a
        #: follower that read them resumes, found without a search (see :meth:`find`).
        self._next: tuple[int, int] | None = None

    def _open(self, name: str) -> int | None:
        try:
            return os.open(os.path.join(self._dir, name), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _layout(self) -> bool:
        """Open the records (or the legacy file); False while neither exists."""
        if self._records is not None or self._legacy is not None:
            return True
        self._records = self._open(output_format.RECORDS_FILE)
        if self._records is None:
            self._legacy = self._open(output_format.LEGACY_OUTPUT_FILE)
        return self._records is not None or self._legacy is not None

    @property
    def legacy(self) -> bool:
        """True for a job written before stdout and stderr were kept apart."""
        return self._legacy is not None

    def count(self) -> int:
        """How many records there are now."""
        if not self._layout():
            return 0
        if self._records is not None:
            return os.fstat(self._records).st_size // RECORD_SIZE
        return 1

    def records(self, start: int, stop: int) -> list[Record]:
        """Records ``start`` to ``stop`` (fewer when fewer exist)."""
        if stop <= start or not self._layout():
            return []
        if self._records is not None:
            data = os.pread(self._records, (stop - start) * RECORD_SIZE, start * RECORD_SIZE)
            return output_format.unpack_many(data)
        assert self._legacy is not None
        if start > 0:
            return []
        size = os.fstat(self._legacy).st_size
        return [Record(0, 0, 0, size, output_format.STDOUT)]

    def raw_records(self, start: int, stop: int) -> list[tuple[int, ...]]:
        """:meth:`records` as plain tuples, in the same field order (cheaper to make)."""
        if stop <= start or not self._layout():
            return []
        if self._records is not None:
            data = os.pread(self._records, (stop - start) * RECORD_SIZE, start * RECORD_SIZE)
            whole = len(data) - len(data) % RECORD_SIZE
            records = list(output_format.RECORD.iter_unpack(data[:whole]))
            if records:
                last = records[-1]
                self._next = (last[0] + last[3], start + len(records))
            return records
        return [tuple(record) for record in self.records(start, stop)]

    def read(self, stream: int, size: int, at: int) -> bytes:
        """Up to ``size`` bytes of ``stream``'s file from byte ``at``."""
        fd = self._legacy if self._legacy is not None else self._data.get(stream)
        if fd is None:
            fd = self._open(output_format.STREAM_FILES[stream])
            if fd is None:
                return b""
            self._data[stream] = fd
        # an offset near 2^63 is past any end of file: read nothing, no EINVAL
        return os.pread(fd, min(size, MAX_OFFSET - at), at)

    def unlinked(self) -> bool:
        """True once the files we hold open were deleted, i.e. the job is being removed.

        This has to be checked by hand: while any process holds a file of a deleted
        directory open, the kernel defers the directory's ``IN_DELETE_SELF`` until that
        file is closed, so a follower holding the output open would never see it.
        """
        fd = self._records if self._records is not None else self._legacy
        return fd is not None and os.fstat(fd).st_nlink == 0

    def find(self, offset: int) -> int:
        """The index of the record that holds merged byte ``offset`` (or of the first one
        after it; :meth:`count` when there is none): a binary search, unless ``offset``
        is just past the records :meth:`raw_records` read last (a follower resuming)."""
        if self._next is not None and self._next[0] == offset and self._records is not None:
            return self._next[1]  # records are contiguous: the next one starts there
        low, high = 0, self.count()
        while low < high:
            middle = (low + high) // 2
            (record,) = self.records(middle, middle + 1)
            if record.end <= offset:
                low = middle + 1
            else:
                high = middle
        return low

    def end(self) -> int:
        """The merged offset just past the last record (the output's length now)."""
        count = self.count()
        if not count:
            return 0
        (last,) = self.records(count - 1, count)
        return last.end

    def close(self) -> None:
        fds = [self._records, self._legacy, *self._data.values()]
        self._records = self._legacy = None
        self._data.clear()
        for fd in fds:
            if fd is not None:
                os.close(fd)

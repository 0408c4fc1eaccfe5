"""The output layout of stdout, stderr and records, read back every way a reader can ask:
against a plain reference built from what was written."""

from __future__ import annotations

import asyncio
import os
from contextlib import aclosing
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remo.core import output_format
from remo.core.output_format import STDERR, STDOUT, Record
from remo.output.files import OutputFiles
from remo.output.reader import Piece, Window, read_output
from remo.output.seek import offset_of_tail, offset_since
from remo.output.watcher import OutputWatcher

Written = list[tuple[int, bytes]]

pieces = st.lists(
    st.tuples(
        st.sampled_from([STDOUT, STDERR]),
        # lines matter (tails): newlines are frequent, and a few other bytes
        st.one_of(
            st.text(alphabet="ab\n", min_size=1, max_size=30).map(str.encode),
            st.binary(min_size=1, max_size=40),
        ),
    ),
    max_size=40,
)


def write_layout(job: Path, written: Written) -> None:
    """The files the init writes for ``written`` (one record per piece, times 1, 2, ...)."""
    job.mkdir(parents=True, exist_ok=True)
    streams = {STDOUT: bytearray(), STDERR: bytearray()}
    records = bytearray()
    merged = 0
    for n, (stream, data) in enumerate(written, 1):
        at = len(streams[stream])
        records += output_format.pack(Record(merged, at, n * 1000, len(data), stream))
        streams[stream] += data
        merged += len(data)
    (job / "stdout").write_bytes(streams[STDOUT])
    (job / "stderr").write_bytes(streams[STDERR])
    (job / "records").write_bytes(records)


def reference(written: Written, start: int, shown: set[int], end: int | None) -> bytes:
    out = bytearray()
    position = 0
    for stream, data in written:
        for byte in data:
            if position >= start and (end is None or position < end) and stream in shown:
                out.append(byte)
            position += 1
    return bytes(out)


async def read_all(job: Path, offset: int, chunk: int, window: Window) -> list[Piece]:
    got = []
    async with aclosing(read_output(OutputWatcher(), str(job), offset, False, chunk, window)) as s:
        async for piece in s:
            got.append(piece)
    return got


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    written=pieces,
    offset=st.integers(0, 1000),
    chunk=st.integers(1, 64),
    shown=st.sampled_from([{STDOUT, STDERR}, {STDOUT}, {STDERR}]),
    end=st.none() | st.integers(0, 1000),
    each_record=st.booleans(),
)
def test_reads_give_exactly_the_bytes_asked_for(
    tmp_path: Path,
    written: Written,
    offset: int,
    chunk: int,
    shown: set[int],
    end: int | None,
    each_record: bool,
) -> None:
    job = tmp_path / f"job-{os.urandom(4).hex()}"
    write_layout(job, written)
    window = Window(streams=frozenset(shown), end=end, each_record=each_record)
    got = asyncio.run(read_all(job, offset, chunk, window))
    assert b"".join(p.data for p in got) == reference(written, offset, shown, end)
    merged = b"".join(data for _, data in written)
    for piece in got:
        assert 0 < len(piece.data) <= chunk
        assert piece.stream in shown
        assert merged[piece.offset : piece.end] == piece.data  # offsets are merged offsets
    if each_record:  # one piece per record: the time is the record's own
        starts = {}
        position = 0
        for n, (_, data) in enumerate(written, 1):
            for k in range(len(data)):
                starts[position + k] = n * 1000
            position += len(data)
        assert all(p.time_ns == starts[p.offset] for p in got)


def tail_reference(written: Written, lines: int, shown: set[int]) -> int:
    """Merged offset where ``tail -n lines`` of the shown streams starts."""
    positions = []
    position = 0
    for stream, data in written:
        for byte in data:
            if stream in shown:
                positions.append((position, byte))
            position += 1
    if lines == 0:
        return position
    text = bytes(b for _, b in positions)
    starts = [0] + [k + 1 for k, b in enumerate(text) if b == 0x0A and k + 1 < len(text)]
    if lines >= len(starts):
        return 0
    k = starts[-lines]
    return positions[k][0]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    written=pieces,
    lines=st.integers(0, 12),
    shown=st.sampled_from([{STDOUT, STDERR}, {STDOUT}, {STDERR}]),
)
def test_the_tail_starts_where_tail_n_would(
    tmp_path: Path, written: Written, lines: int, shown: set[int]
) -> None:
    job = tmp_path / f"job-{os.urandom(4).hex()}"
    write_layout(job, written)
    files = OutputFiles(str(job))
    try:
        got = offset_of_tail(files, lines, shown)
    finally:
        files.close()
    expected = tail_reference(written, lines, shown)
    assert reference(written, got, shown, None) == reference(written, expected, shown, None)
    tail = asyncio.run(
        read_all(job, 0, 1 << 20, Window(streams=frozenset(shown), tail_lines=lines))
    )
    assert b"".join(p.data for p in tail) == reference(written, expected, shown, None)


def test_since_finds_the_first_record_at_or_after_a_time(tmp_path: Path) -> None:
    written = [(STDOUT, b"a\n"), (STDERR, b"b\n"), (STDOUT, b"c\n")]  # times 1000, 2000, 3000
    write_layout(tmp_path / "job", written)
    files = OutputFiles(str(tmp_path / "job"))
    try:
        assert [offset_since(files, t) for t in (0, 1000, 1001, 2000, 3000, 3001)] == [
            0, 0, 2, 2, 4, 6,
        ]  # fmt: skip
    finally:
        files.close()


def test_a_tail_looks_back_a_bounded_way(tmp_path: Path) -> None:
    """A log without newlines: its tail is its last TAIL_LOOKBACK bytes, not all of it."""
    from remo.output.seek import TAIL_LOOKBACK

    size = TAIL_LOOKBACK + (1 << 20)
    write_layout(tmp_path / "job", [(STDOUT, b"x" * size)])
    files = OutputFiles(str(tmp_path / "job"))
    try:
        assert offset_of_tail(files, 3, {STDOUT}) == size - TAIL_LOOKBACK
        assert offset_of_tail(files, 3, {STDOUT}, end=1 << 20) == 0  # within the lookback
    finally:
        files.close()


def append_piece(job: Path, merged: int, stream: int, data: bytes) -> None:
    """What the init does for one move: the data into its file, then its record."""
    path = job / output_format.STREAM_FILES[stream]
    at = path.stat().st_size if path.exists() else 0
    with open(path, "ab") as f:
        f.write(data)
    with open(job / "records", "ab") as f:
        f.write(output_format.pack(Record(merged, at, merged + 1, len(data), stream)))


def test_a_follower_woken_for_each_record_gets_every_byte(tmp_path: Path) -> None:
    """A job printing a line at a time: each wake reads one new record (the follower
    resumes after the records it read, without a search), then bursts of several."""
    job = tmp_path / "job"
    job.mkdir()
    written = [(STDOUT if n % 3 else STDERR, f"line {n}\n".encode()) for n in range(60)]

    async def follow() -> None:
        got = bytearray()
        arrived = asyncio.Event()

        async def read() -> None:
            stream = read_output(OutputWatcher(), str(job), 0, True)
            async with aclosing(stream):
                async for piece in stream:
                    got.extend(piece.data)
                    arrived.set()

        reader = asyncio.create_task(read())
        merged = 0
        for n, (stream, data) in enumerate(written):
            append_piece(job, merged, stream, data)
            merged += len(data)
            if n < 40:  # one record per wake; then bursts the follower reads together
                await asyncio.wait_for(arrived.wait(), 10)
                arrived.clear()
                assert bytes(got) == reference(written[: n + 1], 0, {STDOUT, STDERR}, None)
        (job / "exit").write_text("0\n")
        await asyncio.wait_for(reader, 10)
        assert bytes(got) == reference(written, 0, {STDOUT, STDERR}, None)

    asyncio.run(follow())

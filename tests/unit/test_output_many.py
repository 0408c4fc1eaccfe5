"""remo.output.many.read_many against job directories written here, as the init writes
them: every job's bytes once and in order, its end once, bounded rounds, a removed job,
the safety net without inotify, and nothing left open."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from collections import defaultdict, deque
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import pytest

from remo.core import output_format
from remo.core.output_format import STDERR, STDOUT, Record
from remo.output import many
from remo.output.many import Item, OneRead, read_many
from remo.output.reader import Cursor, Window
from remo.output.watcher import OutputWatcher

TIMEOUT = 10.0


def append_piece(job: Path, stream: int, data: bytes) -> None:
    """What the init does for one read of the job's pipe: the data, then its record."""
    records = job / "records"
    merged = sum(
        r[3]
        for r in output_format.RECORD.iter_unpack(records.read_bytes() if records.exists() else b"")
    )
    path = job / output_format.STREAM_FILES[stream]
    at = path.stat().st_size if path.exists() else 0
    with open(path, "ab") as f:
        f.write(data)
    with open(records, "ab") as f:
        f.write(output_format.pack(Record(merged, at, merged + 1, len(data), stream)))


def finish(job: Path) -> None:
    tmp = job / ".exit.tmp"
    tmp.write_text("0\n")
    os.rename(tmp, job / "exit")


def jobs(tmp_path: Path, count: int) -> list[Path]:
    made = []
    for n in range(count):
        job = tmp_path / f"job{n}"
        job.mkdir()
        made.append(job)
    return made


class Collected:
    """What read_many gave, per read: its bytes, its end, and the batches."""

    def __init__(self) -> None:
        self.data: dict[int, bytearray] = defaultdict(bytearray)
        self.ended: dict[int, str] = {}
        self.offsets: dict[int, list[int]] = defaultdict(list)
        self.batches: list[list[Item]] = []
        self.arrived = asyncio.Event()

    def take(self, batch: list[Item]) -> None:
        self.batches.append(batch)
        for index, piece, error in batch:
            assert index not in self.ended, f"read {index} gave something after its end"
            if piece is None:
                self.ended[index] = error
            else:
                mark = self.offsets[index]
                assert not mark or piece.offset >= mark[-1], "a repeat"
                mark.append(piece.offset + len(piece.data))
                self.data[index] += piece.data
        self.arrived.set()


async def drain(stream: AsyncGenerator[list[Item], None], got: Collected) -> None:
    async with aclosing(stream):
        async for batch in stream:
            got.take(batch)


async def test_followed_jobs_give_every_byte_once_and_end_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(many, "BACKSTOP_SECONDS", 3600.0)  # woken by inotify only
    dirs = jobs(tmp_path, 5)
    watcher = OutputWatcher()
    got = Collected()
    reads = [OneRead(str(d), follow=True) for d in dirs]
    reader = asyncio.create_task(drain(read_many(watcher, reads), got))
    expected: dict[int, bytes] = defaultdict(bytes)
    for line in range(30):
        for n, job in enumerate(dirs):
            data = f"job {n} line {line}\n".encode()
            append_piece(job, STDERR if line % 4 == 0 else STDOUT, data)
            expected[n] += data
        if line % 10 == 0:  # now and then wait for the reader; otherwise it falls behind
            await asyncio.wait_for(got.arrived.wait(), TIMEOUT)
            got.arrived.clear()
    for job in dirs:
        finish(job)
    await asyncio.wait_for(reader, TIMEOUT)
    assert {n: bytes(d) for n, d in got.data.items()} == dict(expected)
    assert got.ended == dict.fromkeys(range(5), "")
    assert watcher.watch_count == 0
    assert len(got.batches) < 5 * 30, "one batch per line: the rounds did not gather"


async def test_without_follow_it_reads_what_is_there_with_the_window(tmp_path: Path) -> None:
    first, second, empty = jobs(tmp_path, 3)
    append_piece(first, STDOUT, b"out\n")
    append_piece(first, STDERR, b"err\n")
    append_piece(second, STDOUT, b"a\nb\nc\n")
    reads = [
        OneRead(str(first), window=Window(streams=frozenset({STDERR}))),
        OneRead(str(second), window=Window(tail_lines=1)),
        OneRead(str(empty)),
        OneRead(str(tmp_path / "missing")),
    ]
    got = Collected()
    await asyncio.wait_for(drain(read_many(OutputWatcher(), reads), got), TIMEOUT)
    assert bytes(got.data[0]) == b"err\n"
    assert got.data[1] == b"c\n"
    assert got.offsets[0] == [8]  # merged offsets: the stdout skipped still counts
    assert got.offsets[1] == [6]
    assert 2 not in got.data and 3 not in got.data
    assert got.ended == {0: "", 1: "", 2: "", 3: ""}


async def test_a_followed_job_that_is_missing_ends_at_once(tmp_path: Path) -> None:
    (job,) = jobs(tmp_path, 1)
    append_piece(job, STDOUT, b"x\n")
    finish(job)
    reads = [OneRead(str(tmp_path / "gone"), follow=True), OneRead(str(job), follow=True)]
    got = Collected()
    await asyncio.wait_for(drain(read_many(OutputWatcher(), reads), got), TIMEOUT)
    assert got.ended == {0: "", 1: ""} and bytes(got.data[1]) == b"x\n"


async def test_a_round_is_bounded_and_the_others_go_first_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(many, "ROUND_INTERVAL", 0.0)
    big, small = jobs(tmp_path, 2)
    for _ in range(40):
        append_piece(big, STDOUT, b"x" * 1000)
    append_piece(small, STDOUT, b"small\n")
    reads = [OneRead(str(big)), OneRead(str(small))]
    got = Collected()
    stream = read_many(OutputWatcher(), reads, chunk=4000, batch_bytes=10_000)
    await asyncio.wait_for(drain(stream, got), TIMEOUT)
    sizes = [sum(len(p.data) for _, p, _ in batch if p is not None) for batch in got.batches]
    assert max(sizes) <= 10_000 + 4000, sizes
    assert len(got.data[0]) == 40_000
    # the small job was not left waiting until the big one was drained
    first_small = next(n for n, b in enumerate(got.batches) if any(i == 1 for i, _, _ in b))
    assert first_small <= 1, [[(i, p is None) for i, p, _ in b] for b in got.batches]


async def test_a_removed_job_ends_and_the_others_go_on(tmp_path: Path) -> None:
    kept, removed = jobs(tmp_path, 2)
    append_piece(kept, STDOUT, b"kept\n")
    append_piece(removed, STDOUT, b"removed\n")
    watcher = OutputWatcher()
    got = Collected()
    reads = [OneRead(str(kept), follow=True), OneRead(str(removed), follow=True)]
    reader = asyncio.create_task(drain(read_many(watcher, reads), got))
    while len(got.data) < 2:
        await asyncio.wait_for(got.arrived.wait(), TIMEOUT)
        got.arrived.clear()
    shutil.rmtree(removed)
    while 1 not in got.ended:
        await asyncio.wait_for(got.arrived.wait(), TIMEOUT)
        got.arrived.clear()
    assert 0 not in got.ended
    append_piece(kept, STDOUT, b"more\n")
    finish(kept)
    await asyncio.wait_for(reader, TIMEOUT)
    assert bytes(got.data[0]) == b"kept\nmore\n"


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
async def test_writes_no_event_announces_are_found_by_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inotify: bool
) -> None:
    """Without inotify (or for writes it cannot see) every job is read each sweep."""
    monkeypatch.setattr(many, "BACKSTOP_SECONDS", 0.2)
    (job,) = jobs(tmp_path, 1)
    watcher = OutputWatcher(use_inotify=inotify)
    got = Collected()
    reader = asyncio.create_task(drain(read_many(watcher, [OneRead(str(job), follow=True)]), got))
    await asyncio.sleep(0)  # (the read is open: its watch is in place)
    append_piece(job, STDOUT, b"late\n")
    if inotify:
        watcher.close()  # from now on no event comes: only the sweep can find more
    while bytes(got.data[0]) != b"late\n":
        await asyncio.wait_for(got.arrived.wait(), TIMEOUT)
        got.arrived.clear()
    finish(job)
    await asyncio.wait_for(reader, TIMEOUT)
    assert got.ended == {0: ""}


async def test_the_sweep_reads_every_job_a_slice_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With inotify, each round of the sweep looks at a slice of the jobs, not all of
    them at once, and every job is still looked at within the period."""
    monkeypatch.setattr(many, "BACKSTOP_SECONDS", 0.5)
    monkeypatch.setattr(many, "SWEEP_SLICES", 5)
    looked: list[list[int]] = []
    real = many._round

    def spy(
        cursors: dict[int, Cursor], ready: dict[int, None], unchecked: set[int], *a: int
    ) -> list[Item]:
        looked.append(sorted(unchecked))
        return real(cursors, ready, unchecked, *a)

    monkeypatch.setattr(many, "_round", spy)
    made = jobs(tmp_path, 10)
    watcher = OutputWatcher(use_inotify=True)
    got = Collected()
    reads = [OneRead(str(job), follow=True) for job in made]
    reader = asyncio.create_task(drain(read_many(watcher, reads), got))
    await asyncio.sleep(0)
    for job in made:
        append_piece(job, STDOUT, b"late\n")
    watcher.close()  # no event from now on: only the sweep finds the lines
    while len([d for d in got.data.values() if bytes(d) == b"late\n"]) < 10:
        await asyncio.wait_for(got.arrived.wait(), TIMEOUT)
        got.arrived.clear()
    for job in made:
        finish(job)
    await asyncio.wait_for(reader, TIMEOUT)
    assert max(len(slice_) for slice_ in looked) <= 2  # 10 jobs in 5 slices
    assert set().union(*looked) == set(range(10))


def test_slices_take_each_open_read_in_turn() -> None:
    cursors = dict.fromkeys(range(10))
    rotation = deque(cursors)
    taken = [many.next_slice(rotation, cursors, 5) for _ in range(5)]  # type: ignore[arg-type]
    assert sorted(i for slice_ in taken for i in slice_) == list(range(10))
    assert all(len(slice_) == 2 for slice_ in taken)
    for ended in (0, 1, 2, 3, 4, 5):
        del cursors[ended]
    later = [many.next_slice(rotation, cursors, 5) for _ in range(4)]  # type: ignore[arg-type]
    assert later == [[6], [7], [8], [9]]  # one each now, the ended ones dropped


async def test_closing_early_releases_files_and_watches(tmp_path: Path) -> None:
    dirs = jobs(tmp_path, 3)
    for job in dirs:
        append_piece(job, STDOUT, b"x\n")
    watcher = OutputWatcher()
    before = len(os.listdir("/proc/self/fd"))
    stream = read_many(watcher, [OneRead(str(d), follow=True) for d in dirs])
    async with aclosing(stream):
        async for _batch in stream:
            break
    assert watcher.watch_count == 0
    assert len(os.listdir("/proc/self/fd")) <= before + 1  # (the watcher's own descriptor)


async def test_a_cursor_looks_for_the_end_after_any_event_but_a_write(tmp_path: Path) -> None:
    """Cursor.begin skips its two system calls while its watch saw only writes; the
    rename that makes ``exit`` is an event, and ``full`` (the safety net) always looks."""
    (job,) = jobs(tmp_path, 1)
    watcher = OutputWatcher()
    cursor = Cursor.open(watcher, str(job), 0, True, Window())
    assert cursor is not None and cursor.watch is not None
    try:
        assert cursor.begin() is False
        append_piece(job, STDOUT, b"x\n")
        seen = cursor.watch.generation
        await asyncio.wait_for(cursor.watch.wait(seen), TIMEOUT)  # (the write's events)
        assert cursor.begin() is False
        finish(job)
        # not yet dispatched: what the watch knows has not changed, so no look...
        assert cursor.begin() is False
        assert cursor.begin(full=True) is True  # ...unless asked to look anyway
        seen = cursor.watch.generation
        await asyncio.wait_for(cursor.watch.wait(seen), TIMEOUT)  # the rename's event
        assert cursor.begin() is True
    finally:
        cursor.close()


async def test_a_job_that_cannot_be_opened_ends_with_the_reason_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of descriptors (EMFILE) while opening one job: that job ends with the reason,
    the others are read; the call itself does not fail."""
    first, second = jobs(tmp_path, 2)
    append_piece(first, STDOUT, b"one\n")
    append_piece(second, STDOUT, b"two\n")
    opened = Cursor.open

    def open_or_fail(watcher: OutputWatcher, job_dir: str, *rest: object) -> Cursor | None:
        if job_dir == str(first):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return opened(watcher, job_dir, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(Cursor, "open", open_or_fail)
    got = Collected()
    reads = [OneRead(str(first)), OneRead(str(second))]
    await asyncio.wait_for(drain(read_many(OutputWatcher(), reads), got), TIMEOUT)
    assert got.ended == {0: "could not read the output: Too many open files", 1: ""}
    assert bytes(got.data[1]) == b"two\n" and 0 not in got.data

"""Job output files and their followers, against real files and real writers.

Nothing here sleeps to wait for a condition: tests wait on events or task completion,
always under a timeout, and use ``asyncio.sleep(0)`` only to let other tasks run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import struct
import sys
from collections import Counter
from contextlib import aclosing
from pathlib import Path

import pytest

from remo.core.errors import InvalidArgument
from remo.core.output_format import LEGACY_OUTPUT_FILE as OUTPUT_FILE
from remo.core.output_format import RECORDS_FILE
from remo.core.paths import EXIT_FILE
from remo.output import inotify
from remo.output.reader import read_output
from remo.output.watcher import OutputWatcher

linux_only = pytest.mark.skipif(not inotify.AVAILABLE, reason="needs inotify")

TIMEOUT = 30.0

# Appends a source file to the output in random-sized writes, like a chatty job; with a
# fourth argument it then creates ``exit`` itself, the way the supervisor does.
WRITER = r"""
import os, random, sys
src, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
with open(src, "rb") as f:
    data = f.read()
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
pos = 0
while pos < len(data):
    pos += os.write(fd, data[pos : pos + rng.randint(1, 256 * 1024)])
os.close(fd)
if len(sys.argv) > 4:
    job = os.path.dirname(out)
    tmp = os.path.join(job, ".exit.tmp")
    with open(tmp, "w") as f:
        f.write("0\n")
    os.rename(tmp, os.path.join(job, "exit"))
"""


# ---------------------------------------------------------------- helpers


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    path = tmp_path / "job"
    path.mkdir()
    return path


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def finish(job: Path) -> None:
    """Create ``exit`` the way the supervisor does: temp name in the same dir, then rename."""
    tmp = job / ".exit.tmp"
    tmp.write_text("0\n")
    os.rename(tmp, job / EXIT_FILE)


def append(job: Path, data: bytes) -> None:
    fd = os.open(job / OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


async def run_writer(job: Path, src: Path, seed: int, *, finish_too: bool = False) -> None:
    args = [sys.executable, "-c", WRITER, str(src), str(job / OUTPUT_FILE), str(seed)]
    if finish_too:
        args.append("exit")
    proc = await asyncio.create_subprocess_exec(*args)
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0


async def collect(
    watcher: OutputWatcher,
    job: Path,
    offset: int = 0,
    follow: bool = False,
    chunk: int = 1 << 20,
) -> bytes:
    parts = []
    stream = read_output(watcher, str(job), offset=offset, follow=follow, chunk=chunk)
    async with aclosing(stream):
        async for piece in stream:
            parts.append(piece.data)
    return b"".join(parts)


class Follower:
    """A follower task that records what it got and signals once it has some bytes."""

    def __init__(self, watcher: OutputWatcher, job: Path, offset: int = 0) -> None:
        self.received = bytearray()
        self.got_some = asyncio.Event()
        self.task = asyncio.create_task(self._run(watcher, job, offset))

    async def _run(self, watcher: OutputWatcher, job: Path, offset: int) -> None:
        stream = read_output(watcher, str(job), offset=offset, follow=True)
        async with aclosing(stream):
            async for piece in stream:
                self.received += piece.data
                self.got_some.set()


async def attached(followers: list[Follower]) -> None:
    """Wait until every follower has received its first bytes (so it holds its watch)."""
    await asyncio.wait_for(asyncio.gather(*(f.got_some.wait() for f in followers)), TIMEOUT)


async def ended(followers: list[Follower]) -> None:
    await asyncio.wait_for(asyncio.gather(*(f.task for f in followers)), TIMEOUT)


def kernel_watches(watcher: OutputWatcher) -> int:
    """Watches the kernel reports on the watcher's inotify fd (independent of our books)."""
    fd = watcher.fileno()
    if fd is None:
        return 0
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return sum(1 for line in f if line.startswith("inotify wd:"))


def open_fds() -> list[str]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink(f"/proc/self/fd/{name}"))
        except FileNotFoundError:  # the directory fd listdir itself used
            continue
    return sorted(fds)


# ---------------------------------------------------------------- reading without follow


async def test_finished_output_byte_exact_from_start_and_middle(job_dir: Path) -> None:
    data = payload(10 << 20)
    append(job_dir, data)
    finish(job_dir)
    watcher = OutputWatcher()
    middle = 3_333_333
    assert sha(await collect(watcher, job_dir)) == sha(data)
    assert sha(await collect(watcher, job_dir, offset=middle)) == sha(data[middle:])
    assert sha(await collect(watcher, job_dir, chunk=4097)) == sha(data)


async def test_chunks_are_bounded(job_dir: Path) -> None:
    append(job_dir, payload(1 << 20))
    watcher = OutputWatcher()
    async with aclosing(read_output(watcher, str(job_dir), chunk=1000)) as stream:
        sizes = [len(piece.data) async for piece in stream]
    assert max(sizes) == 1000
    assert sum(sizes) == 1 << 20


async def test_without_follow_reads_what_is_there_and_stops(job_dir: Path) -> None:
    append(job_dir, b"partial")  # job still running: no exit file
    assert await asyncio.wait_for(collect(OutputWatcher(), job_dir), TIMEOUT) == b"partial"


@pytest.mark.parametrize("follow", [False, True])
async def test_offset_past_end_of_finished_job_yields_nothing(job_dir: Path, follow: bool) -> None:
    append(job_dir, b"12345")
    finish(job_dir)
    watcher = OutputWatcher()
    assert await collect(watcher, job_dir, offset=5, follow=follow) == b""
    assert await collect(watcher, job_dir, offset=1 << 40, follow=follow) == b""


@pytest.mark.parametrize("follow", [False, True])
async def test_negative_offset_is_invalid(job_dir: Path, follow: bool) -> None:
    with pytest.raises(InvalidArgument, match="offset"):
        await collect(OutputWatcher(), job_dir, offset=-1, follow=follow)


async def test_zero_chunk_is_invalid(job_dir: Path) -> None:
    with pytest.raises(InvalidArgument, match="chunk"):
        await collect(OutputWatcher(), job_dir, chunk=0)


async def test_missing_output_reads_as_empty(job_dir: Path) -> None:
    watcher = OutputWatcher()
    assert await collect(watcher, job_dir) == b""
    finish(job_dir)
    assert await collect(watcher, job_dir, follow=True) == b""


@pytest.mark.parametrize("follow", [False, True])
async def test_missing_job_dir_ends_at_once(tmp_path: Path, follow: bool) -> None:
    watcher = OutputWatcher()
    assert await collect(watcher, tmp_path / "nope", follow=follow) == b""
    assert watcher.watch_count == 0


# ---------------------------------------------------------------- following


async def test_follow_10mib_byte_exact_from_start_and_middle(job_dir: Path, tmp_path: Path) -> None:
    data = payload(10 << 20, seed=2)
    src = tmp_path / "src"
    src.write_bytes(data)
    append(job_dir, data[:1000])  # so followers can prove they are attached
    watcher = OutputWatcher()
    middle = 5_000_001
    followers = [Follower(watcher, job_dir), Follower(watcher, job_dir, offset=middle)]
    await attached(followers[:1])  # the middle one has nothing to read yet
    assert watcher.followers(str(job_dir)) == 2
    rest = tmp_path / "rest"
    rest.write_bytes(data[1000:])
    await run_writer(job_dir, rest, seed=3)
    finish(job_dir)
    await ended(followers)
    assert sha(bytes(followers[0].received)) == sha(data)
    assert sha(bytes(followers[1].received)) == sha(data[middle:])


async def test_output_created_after_follower_started(job_dir: Path) -> None:
    watcher = OutputWatcher()
    task = asyncio.create_task(collect(watcher, job_dir, follow=True))
    await asyncio.sleep(0)  # let the follower attach and find no output file
    assert watcher.followers(str(job_dir)) == 1
    assert not (job_dir / OUTPUT_FILE).exists()
    append(job_dir, b"late ")
    append(job_dir, b"start")
    finish(job_dir)
    assert await asyncio.wait_for(task, TIMEOUT) == b"late start"


async def test_fifty_followers_identical_and_end_on_exit(job_dir: Path, tmp_path: Path) -> None:
    data = payload(4 << 20, seed=4)
    src = tmp_path / "src"
    src.write_bytes(data[64:])
    append(job_dir, data[:64])
    watcher = OutputWatcher()
    followers = [Follower(watcher, job_dir) for _ in range(50)]
    await attached(followers)
    assert watcher.followers(str(job_dir)) == 50
    await run_writer(job_dir, src, seed=5)
    assert not any(f.task.done() for f in followers)  # no exit yet: still following
    finish(job_dir)
    await ended(followers)
    digests = {sha(bytes(f.received)) for f in followers}
    assert digests == {sha(data)}
    assert watcher.watch_count == 0


async def test_follower_ends_when_exit_appears_after_writer_finished(job_dir: Path) -> None:
    watcher = OutputWatcher()
    follower = Follower(watcher, job_dir)
    append(job_dir, b"all the output")
    await attached([follower])
    while len(follower.received) < 14:  # the append may arrive in pieces
        follower.got_some.clear()
        await asyncio.wait_for(follower.got_some.wait(), TIMEOUT)
    assert not follower.task.done()
    finish(job_dir)
    await ended([follower])
    assert bytes(follower.received) == b"all the output"


async def test_exit_already_present_when_following_starts(job_dir: Path) -> None:
    append(job_dir, b"done")
    finish(job_dir)
    assert await asyncio.wait_for(collect(OutputWatcher(), job_dir, follow=True), TIMEOUT) == (
        b"done"
    )


async def test_bytes_written_between_a_read_and_exit_are_delivered(job_dir: Path) -> None:
    # The consumer runs between the follower's read and its next step: appending and
    # exiting there is the worst case for a follower that reads first and checks exit
    # second, which would end without the tail.
    append(job_dir, b"head ")
    got = bytearray()
    stream = read_output(OutputWatcher(), str(job_dir), follow=True)
    async with aclosing(stream):
        async for piece in stream:
            got += piece.data
            if piece.data == b"head ":
                append(job_dir, b"tail")
                finish(job_dir)
    assert bytes(got) == b"head tail"


@linux_only
async def test_change_dispatched_while_the_consumer_awaits_is_not_lost(job_dir: Path) -> None:
    # The write's event is dispatched while the follower is suspended in its yield; a
    # follower that noted the generation only after reading would then wait for a
    # change that already happened (until its backstop, well past this timeout).
    watcher = OutputWatcher()
    append(job_dir, b"one ")
    got = bytearray()
    with watcher.watch(str(job_dir)) as probe:
        stream = read_output(watcher, str(job_dir), follow=True)
        async with asyncio.timeout(3), aclosing(stream):
            async for piece in stream:
                got += piece.data
                if bytes(got) == b"one ":
                    seen = probe.generation
                    append(job_dir, b"two")
                    assert await probe.wait(seen)  # dispatched before the follower resumes
                elif bytes(got) == b"one two":
                    finish(job_dir)
    assert bytes(got) == b"one two"


async def test_final_bytes_written_just_before_exit_are_never_lost(
    tmp_path: Path,
) -> None:
    # The writer process appends and then immediately creates exit; repeated so that
    # the follower's check-exit-then-read ordering is exercised against real timing.
    watcher = OutputWatcher()
    for i in range(12):
        job = tmp_path / f"job{i}"
        job.mkdir()
        data = payload(300_000 + i * 7919, seed=100 + i)
        src = tmp_path / f"src{i}"
        src.write_bytes(data)
        task = asyncio.create_task(collect(watcher, job, follow=True))
        await asyncio.sleep(0)
        await run_writer(job, src, seed=i, finish_too=True)
        assert sha(await asyncio.wait_for(task, TIMEOUT)) == sha(data), f"round {i}"


async def test_job_dir_removed_while_following_ends_cleanly(job_dir: Path) -> None:
    watcher = OutputWatcher()
    follower = Follower(watcher, job_dir)
    append(job_dir, b"bye")
    await attached([follower])
    shutil.rmtree(job_dir)
    await ended([follower])
    assert bytes(follower.received) == b"bye"
    assert watcher.watch_count == 0
    assert watcher.watch_count == 0


async def test_abandoned_follower_releases_its_watch(job_dir: Path) -> None:
    append(job_dir, b"x" * 10)
    watcher = OutputWatcher()
    async with aclosing(read_output(watcher, str(job_dir), follow=True, chunk=2)) as stream:
        async for _ in stream:
            assert watcher.followers(str(job_dir)) == 1
            break
    assert watcher.followers(str(job_dir)) == 0
    assert watcher.watch_count == 0


async def test_fallback_without_inotify_still_delivers_everything(job_dir: Path) -> None:
    watcher = OutputWatcher(use_inotify=False)
    follower = Follower(watcher, job_dir)
    append(job_dir, b"slow ")
    await attached([follower])
    assert watcher.watch_count == 0
    assert watcher.watch_count == 0
    append(job_dir, b"but sure")
    finish(job_dir)
    await ended([follower])
    assert bytes(follower.received) == b"slow but sure"


async def test_fallback_notices_removed_job_dir(job_dir: Path) -> None:
    watcher = OutputWatcher(use_inotify=False)
    follower = Follower(watcher, job_dir)
    append(job_dir, b"x")
    await attached([follower])
    shutil.rmtree(job_dir)
    await ended([follower])


# ---------------------------------------------------------------- watches and descriptors


@linux_only
async def test_one_watch_per_directory_regardless_of_followers(tmp_path: Path) -> None:
    jobs = [tmp_path / "a", tmp_path / "b"]
    for job in jobs:
        job.mkdir()
        append(job, b"hello\n")
    watcher = OutputWatcher()
    group_a = [Follower(watcher, jobs[0]) for _ in range(50)]
    group_b = [Follower(watcher, jobs[1]) for _ in range(30)]
    await attached(group_a + group_b)
    assert watcher.watch_count == 2
    assert kernel_watches(watcher) == 2
    assert watcher.followers(str(jobs[0])) == 50
    assert watcher.followers(str(jobs[1])) == 30

    finish(jobs[0])
    await ended(group_a)
    assert watcher.watch_count == 1
    assert kernel_watches(watcher) == 1
    assert watcher.followers(str(jobs[0])) == 0

    finish(jobs[1])
    await ended(group_b)
    assert watcher.watch_count == 0
    assert watcher.watch_count == 0


@linux_only
async def test_one_watch_for_two_spellings_of_a_directory(job_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(job_dir)
    append(job_dir, b"x")
    watcher = OutputWatcher()
    followers = [Follower(watcher, job_dir), Follower(watcher, link)]
    await attached(followers)
    assert watcher.watch_count == 1
    assert kernel_watches(watcher) == 1
    append(job_dir, b"y")
    finish(job_dir)
    await ended(followers)
    assert [bytes(f.received) for f in followers] == [b"xy", b"xy"]
    assert watcher.watch_count == 0


@linux_only
async def test_no_inotify_fd_leak_after_followers_finish(job_dir: Path) -> None:
    before = open_fds()
    watcher = OutputWatcher()
    followers = [Follower(watcher, job_dir) for _ in range(20)]
    for i in range(5):
        append(job_dir, b"line %d\n" % i)
        await asyncio.sleep(0)
    await attached(followers)
    during = open_fds()
    assert during.count("anon_inode:inotify") == before.count("anon_inode:inotify") + 1
    finish(job_dir)
    await ended(followers)
    assert watcher.watch_count == 0
    # One inotify descriptor is kept for the watcher's life (closing one stalls the
    # loop); a new round of followers reuses it rather than opening another.
    again = Follower(watcher, job_dir)
    await ended([again])
    assert open_fds().count("anon_inode:inotify") == before.count("anon_inode:inotify") + 1
    watcher.close()
    # Nothing of ours is left open (other tests' objects may close theirs meanwhile).
    assert Counter(open_fds()) - Counter(before) == Counter()


@linux_only
async def test_wait_returns_at_once_for_a_change_before_the_wait(job_dir: Path) -> None:
    watcher = OutputWatcher()
    with watcher.watch(str(job_dir)) as watch:
        seen = watch.generation
        append(job_dir, b"written between a read and a wait")
        # The change may not even be dispatched yet; the wait must still see it.
        assert await asyncio.wait_for(watch.wait(seen), TIMEOUT)
        assert watch.generation != seen
    assert watcher.watch_count == 0


def write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture
def events_read(monkeypatch: pytest.MonkeyPatch) -> list[inotify.Event]:
    """Every inotify event a watcher reads from now on."""
    seen: list[inotify.Event] = []
    original = inotify.Inotify.read_events

    def recording(self: inotify.Inotify) -> list[inotify.Event]:
        events = original(self)
        seen.extend(events)
        return events

    monkeypatch.setattr(inotify.Inotify, "read_events", recording)
    return seen


@linux_only
async def test_a_data_files_write_queues_no_event_a_records_write_wakes(
    job_dir: Path, events_read: list[inotify.Event]
) -> None:
    """The init writes a line's data, then its record: only the record's write is
    watched (half the events of every line printed, each queued by the job's init and
    read by the server)."""
    for name in ("stdout", "stderr", RECORDS_FILE):
        (job_dir / name).write_bytes(b"")
    link = job_dir.parent / "link"
    link.symlink_to(job_dir)
    watcher = OutputWatcher()
    # (a second spelling of the directory must not give it back its writes)
    with watcher.watch(str(job_dir)) as watch, watcher.watch(str(link)):
        assert kernel_watches(watcher) == 2  # the directory, and its records file
        seen, reshaped = watch.generation, watch.reshaped
        # (open throughout, as the init keeps them: no close to see)
        data = os.open(job_dir / "stdout", os.O_WRONLY | os.O_APPEND)
        records = os.open(job_dir / RECORDS_FILE, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(data, b"a line\n")
            os.write(records, b"r" * 32)
            assert await asyncio.wait_for(watch.wait(seen), TIMEOUT)
        finally:
            os.close(data)
            os.close(records)
        # the record's write alone, on the file's own watch (no name)
        assert [(e.mask, e.name) for e in events_read] == [(inotify.IN_MODIFY, b"")]
        assert watch.reshaped == reshaped  # (data: no file came or went)
    assert kernel_watches(watcher) == 0


@linux_only
async def test_a_records_file_linked_into_another_directory_keeps_its_watch(
    tmp_path: Path,
) -> None:
    """A second directory holding the same records file (a link; jobs cannot make one)
    does not take the first one's records watch, which the kernel would hand back."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / RECORDS_FILE).write_bytes(b"")
    os.link(first / RECORDS_FILE, second / RECORDS_FILE)
    watcher = OutputWatcher()
    with watcher.watch(str(first)) as one, watcher.watch(str(second)) as other:
        assert other.generation == 0
        seen = one.generation
        records = os.open(first / RECORDS_FILE, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(records, b"r" * 32)
            assert await asyncio.wait_for(one.wait(seen), 5)
        finally:
            os.close(records)


@linux_only
async def test_writes_wake_through_the_directory_once_the_records_watch_ended(
    job_dir: Path,
) -> None:
    """(remo never replaces a job's records file; if its watch ends all the same, the
    directory's watch takes writes again.)"""
    (job_dir / RECORDS_FILE).write_bytes(b"")
    watcher = OutputWatcher()
    with watcher.watch(str(job_dir)) as watch:
        (job_dir / RECORDS_FILE).unlink()
        # (its watch goes with it: the directory's takes writes again)
        while kernel_watches(watcher) != 1:
            await asyncio.wait_for(watch.wait(watch.generation), TIMEOUT)
        reshaped = watch.reshaped
        # a new file, not the one watched (open throughout: no close to see)
        records = os.open(job_dir / RECORDS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while watch.reshaped == reshaped:  # (its creation seen)
                await asyncio.wait_for(watch.wait(watch.generation), TIMEOUT)
            seen = watch.generation
            os.write(records, b"r" * 32)
            assert await asyncio.wait_for(watch.wait(seen), 5)
        finally:
            os.close(records)


@linux_only
async def test_wait_times_out_without_changes(job_dir: Path) -> None:
    watcher = OutputWatcher()
    with watcher.watch(str(job_dir)) as watch:
        assert not await watch.wait(watch.generation, timeout=0.01)


async def test_closing_the_watcher_keeps_followers_working(job_dir: Path) -> None:
    watcher = OutputWatcher()
    follower = Follower(watcher, job_dir)
    append(job_dir, b"before ")
    await attached([follower])
    watcher.close()
    assert watcher.watch_count == 0
    append(job_dir, b"after")
    finish(job_dir)
    await ended([follower])
    assert bytes(follower.received) == b"before after"


def test_watch_of_missing_directory_raises(tmp_path: Path) -> None:
    async def attempt(use_inotify: bool) -> None:
        watcher = OutputWatcher(use_inotify=use_inotify)
        with pytest.raises(FileNotFoundError):
            watcher.watch(str(tmp_path / "missing"))
        assert watcher.watch_count == 0
        watcher.close()
        assert watcher.watch_count == 0

    asyncio.run(attempt(False))
    if inotify.AVAILABLE:
        asyncio.run(attempt(True))


# ---------------------------------------------------------------- the inotify binding


def _raw_event(wd: int, mask: int, name: bytes) -> bytes:
    padded = name + b"\0" * (-len(name) % 16 or (16 if name else 0))
    return struct.pack("iIII", wd, mask, 0, len(padded)) + padded


def test_parse_events_decodes_names_and_padding() -> None:
    buf = _raw_event(1, inotify.IN_MODIFY, b"output") + _raw_event(2, inotify.IN_DELETE_SELF, b"")
    assert inotify.parse_events(buf) == [
        inotify.Event(1, inotify.IN_MODIFY, 0, b"output"),
        inotify.Event(2, inotify.IN_DELETE_SELF, 0, b""),
    ]


@pytest.mark.parametrize("cut", [3, 20])
def test_parse_events_rejects_truncated_buffers(cut: int) -> None:
    buf = _raw_event(1, inotify.IN_MODIFY, b"output")
    with pytest.raises(ValueError, match="truncated"):
        inotify.parse_events(buf[:cut])


@linux_only
def test_inotify_reports_real_events(tmp_path: Path) -> None:
    ino = inotify.Inotify()
    try:
        wd = ino.add_watch(str(tmp_path), inotify.IN_CREATE)
        assert ino.read_events() == []
        (tmp_path / "f").write_bytes(b"")
        events = ino.read_events()
        assert [(e.wd, e.name) for e in events] == [(wd, b"f")]
        ino.rm_watch(wd)
        ino.rm_watch(wd)  # already gone: not an error
    finally:
        ino.close()
        ino.close()
    assert ino.closed

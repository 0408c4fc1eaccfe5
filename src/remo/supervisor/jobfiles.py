"""A job's files on disk: its directory, output, the init's record and the exit marker.

``jobs/<owner>/<n>/`` holds ``stdout``, ``stderr`` and ``records`` (the job's output,
written by its init: :mod:`remo.core.output_format`), ``.status`` (the
init's record of how the job ended and what output it dropped) and, once the end is in
the database, ``exit``: its appearance tells followers that every byte is written.
``exit`` is written into ``.exit.tmp``, made with the others, and renamed into place:
a new file costs an inode (80-90 µs on this ext4, where writing into one made ahead and
renaming it take ~30 µs: bench/marker_cost.py), and a job's end is on the path of
whoever waits for it.
(Made ahead in a waiting init's spare directory; where there is none — ``jobs/`` on
another filesystem — the start makes them all, this one too.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from remo.core import output_format
from remo.core.errors import ResourceExhausted
from remo.core.outcome import Dropped, JobEnd
from remo.core.paths import EXIT_FILE, STATUS_FILE
from remo.supervisor import init

log = logging.getLogger("remo.supervisor")

#: Where the exit marker is written before it is renamed into place.
EXIT_TMP_FILE = f".{EXIT_FILE}.tmp"

#: New jobs are refused when the state dir's filesystem has less than this free.
MIN_FREE_BYTES = 4 << 20


def check_free_space(root: Path) -> None:
    """Refuse new jobs before the disk is completely full: the space left is what
    running jobs' output and their final records need."""
    stats = os.statvfs(root)
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise ResourceExhausted(
            f"the server's disk is full ({free >> 10} KiB free in {root}); "
            "no new jobs until space is freed (remo rm old jobs); running jobs continue"
        )


def create_files(job_dir: Path, fds: list[int]) -> None:
    """A job's directory, its output and status files and the exit marker's (empty);
    the descriptors of the first four (for the init, in the order it expects: stdout,
    stderr, records, status) are appended to ``fds``."""
    try:
        job_dir.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        # Left by a supervisor that died between handing out this number and recording
        # it: no row names it, so it is garbage.
        shutil.rmtree(job_dir)
        job_dir.mkdir(mode=0o700)
    # Not O_APPEND: the init splice(2)s into the data files, which append mode forbids.
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    fds.append(os.open(job_dir / output_format.STDOUT_FILE, flags, 0o600))
    fds.append(os.open(job_dir / output_format.STDERR_FILE, flags, 0o600))
    fds.append(os.open(job_dir / output_format.RECORDS_FILE, flags | os.O_APPEND, 0o600))
    fds.append(os.open(job_dir / STATUS_FILE, flags, 0o600))
    # The init overwrites this in place at the end, so that needs no new block.
    os.write(fds[-1], b" " * init.STATUS_RECORD_SIZE)
    os.close(os.open(job_dir / EXIT_TMP_FILE, flags, 0o600))


def rename_spare(spare: Path, job_dir: Path) -> None:
    """Move a directory made ahead of time (see :func:`create_files`) into place."""
    try:
        os.rename(spare, job_dir)
    except FileNotFoundError:
        job_dir.parent.mkdir(parents=True, exist_ok=True)  # the owner's first job
        os.rename(spare, job_dir)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # Left by a supervisor that died between handing out this number and recording
        # it: no row names it, so it is garbage.
        shutil.rmtree(job_dir)
        os.rename(spare, job_dir)


@dataclass(frozen=True)
class InitRecord:
    """What the init wrote: the job's wait status (None while it ran: the init died
    before the end, but its drop counts were kept) and the output it dropped."""

    wait_status: int | None
    dropped: Dropped


def read_init_record(status_file: Path) -> InitRecord | None:
    """The init's record (``<status or -> <written> <dropped> [<disk full>]``), or None
    when it wrote none (killed with the job at the end of a stop, before any drop).

    The file is left in place: until the job's final row is committed it is the only
    copy of the job's outcome, and a supervisor killed meanwhile (a full disk can hold
    the row back for a long time) must find it again. :func:`remove_init_record` goes
    once the row is written.
    """
    try:
        fields = status_file.read_text().split()
    except OSError:
        return None
    if len(fields) not in (3, 4) or not all(f.isdigit() for f in fields[1:]):
        return None
    if fields[0] != "-" and not fields[0].isdigit():
        return None
    disk_full = len(fields) == 4 and fields[3] == "1"
    wait_status = None if fields[0] == "-" else int(fields[0])
    return InitRecord(wait_status, Dropped(int(fields[2]), disk_full))


_STOP_MARK = ".stop-"


def mark_stop(job_dir: Path, kill_at: float) -> None:
    """Record a stop and its deadline where a full disk still lets us: in the name of an
    empty file (an inode and a directory entry, no data block)."""
    try:
        os.close(os.open(job_dir / f"{_STOP_MARK}{kill_at!r}", os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as err:
        log.error("cannot mark the stop of %s either: %s", job_dir, err)


def marked_stop(job_dir: Path) -> float | None:
    """The earliest deadline :func:`mark_stop` recorded for the job, if any."""
    try:
        names = os.listdir(job_dir)
    except OSError:
        return None
    deadlines = []
    for name in names:
        if name.startswith(_STOP_MARK):
            with contextlib.suppress(ValueError):
                deadlines.append(float(name[len(_STOP_MARK) :]))
    return min(deadlines, default=None)


def remove_init_record(status_file: Path) -> None:
    """Remove the init's record once the job's end is in the database."""
    with contextlib.suppress(OSError):
        status_file.unlink()


def write_exit_marker(job_dir: Path, end: JobEnd) -> None:
    """Atomically create ``exit``: its appearance tells followers the output is complete.

    Its content (the end, as JSON) is for people reading the state dir; remo itself
    reads the database row.
    """
    record = {
        "state": end.state.value,
        "exit_code": end.exit_code,
        "signal": end.signal,
        "reason": end.reason,
        "output_dropped_bytes": end.dropped.bytes,
        "ended_at": end.ended_at,
    }
    tmp = job_dir / EXIT_TMP_FILE
    try:
        # (O_CREAT: a job directory made before the file was made with the others)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        os.rename(tmp, job_dir / EXIT_FILE)
    except FileNotFoundError:
        pass  # the job was removed meanwhile; nobody can be following it
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Disk full: the database row already says the job ended; an empty marker is
        # enough for followers: the one made ahead, renamed, else a new name (which
        # needs no data blocks on most filesystems).
        log.error("exit marker of %s written empty: disk full", job_dir)
        try:
            os.rename(tmp, job_dir / EXIT_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                os.close(os.open(job_dir / EXIT_FILE, os.O_CREAT | os.O_WRONLY, 0o600))

"""A job's files (remo.supervisor.jobfiles): made ahead of its start, and the exit marker
written at its end into the file made for it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from remo.core.outcome import Dropped, Exited, JobEnd, Usage
from remo.core.paths import EXIT_FILE, STATUS_FILE
from remo.supervisor import jobfiles
from remo.supervisor.jobfiles import EXIT_TMP_FILE, create_files, write_exit_marker

END = JobEnd(Exited(3), False, Usage(), Dropped(7), "", 1_700_000_000.0)


def made(job_dir: Path) -> list[int]:
    fds: list[int] = []
    create_files(job_dir, fds)
    return fds


def test_a_jobs_files_include_the_exit_markers_but_not_the_marker(tmp_path: Path) -> None:
    job_dir = tmp_path / "alice" / "1"
    fds = made(job_dir)
    try:
        assert len(fds) == 4  # stdout, stderr, records, status: the init's
        assert (job_dir / EXIT_TMP_FILE).stat().st_size == 0
        assert not (job_dir / EXIT_FILE).exists()  # followers: "not ended yet"
        assert (job_dir / STATUS_FILE).exists()
    finally:
        for fd in fds:
            os.close(fd)


def test_the_marker_is_written_into_the_file_made_for_it(tmp_path: Path) -> None:
    job_dir = tmp_path / "1"
    for fd in made(job_dir):
        os.close(fd)
    inode = (job_dir / EXIT_TMP_FILE).stat().st_ino
    write_exit_marker(job_dir, END)
    marker = job_dir / EXIT_FILE
    assert marker.stat().st_ino == inode  # no new file at the end
    assert not (job_dir / EXIT_TMP_FILE).exists()
    record = json.loads(marker.read_text())
    assert record["state"] == "failed"
    assert record["exit_code"] == 3
    assert record["output_dropped_bytes"] == 7


def test_stale_bytes_in_the_made_file_do_not_survive(tmp_path: Path) -> None:
    job_dir = tmp_path / "1"
    job_dir.mkdir()
    (job_dir / EXIT_TMP_FILE).write_text("x" * 4096)
    write_exit_marker(job_dir, END)
    assert json.loads((job_dir / EXIT_FILE).read_text())["exit_code"] == 3


def test_a_directory_without_the_made_file_still_gets_its_marker(tmp_path: Path) -> None:
    """Job directories made before the file was made with the others."""
    job_dir = tmp_path / "1"
    job_dir.mkdir()
    write_exit_marker(job_dir, END)
    assert json.loads((job_dir / EXIT_FILE).read_text())["state"] == "failed"


def test_a_removed_job_gets_no_marker_and_no_error(tmp_path: Path) -> None:
    write_exit_marker(tmp_path / "gone", END)
    assert not (tmp_path / "gone").exists()


def test_on_a_full_disk_the_made_file_becomes_an_empty_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_dir = tmp_path / "1"
    for fd in made(job_dir):
        os.close(fd)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    inode = (job_dir / EXIT_TMP_FILE).stat().st_ino
    monkeypatch.setattr(jobfiles.os, "write", full)
    write_exit_marker(job_dir, END)
    marker = (job_dir / EXIT_FILE).stat()
    assert (marker.st_size, marker.st_ino) == (0, inode)  # renamed: no new inode needed


def test_over_quota_is_a_full_disk_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job_dir = tmp_path / "1"
    for fd in made(job_dir):
        os.close(fd)

    def over_quota(fd: int, data: bytes) -> int:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(jobfiles.os, "write", over_quota)
    write_exit_marker(job_dir, END)
    assert (job_dir / EXIT_FILE).exists()

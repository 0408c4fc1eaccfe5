"""A job's directory on the shared filesystem: made by the server, written by the job's
init on the node, read by the server's readers and followers (as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from remo.core.paths import EXIT_FILE, STATUS_FILE
from remo.slurm.commands import Account


def job_env(account: Account, requested: dict[str, str]) -> dict[str, str]:
    """As the local backend's (:func:`remo.supervisor.accounts.job_environment`)."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": account.home,
        "LANG": "C.UTF-8",
    }
    env.update(requested)
    env["USER"] = env["LOGNAME"] = account.name
    return env


#: The files of a job's directory, made by the server and written by the job's init
#: (and Slurm's own messages: ``slurm.log``).
JOB_FILES = ("stdout", "stderr", "records", STATUS_FILE, "slurm.log")


def make(job_dir: Path, account: Account) -> None:
    """``<shared>/<owner>/<n>``: the server's directory (root, group the account's,
    0750) holding files the server makes and gives to the account (0600).

    Why not the account's own directory: the server reads these files as root, and
    in a directory of its own the account could put a symlink to any file of the
    machine in place of ``stdout`` and read it through ``remo logs``, or end followers
    early with an ``exit`` file. Here it can write the files' contents, nothing else.
    """
    owner_dir = job_dir.parent
    owner_dir.mkdir(mode=0o755, exist_ok=True)
    shutil.rmtree(job_dir, ignore_errors=True)  # a number handed out again after a failure
    job_dir.mkdir(mode=0o700)
    for name in JOB_FILES:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(job_dir / name, flags, 0o600)
        try:
            os.fchown(fd, account.uid, account.gid)
        finally:
            os.close(fd)
    os.chown(job_dir, os.geteuid(), account.gid)
    job_dir.chmod(0o750)


def mark_ended(job_dir: Path) -> None:
    """The ``exit`` file that ends followers (:func:`remo.output.reader.read_output`),
    written once the end is recorded."""
    with contextlib.suppress(OSError):
        (job_dir / EXIT_FILE).touch()

"""Slurm's commands, run with machine-readable output only.

``sbatch --parsable`` prints the job id; ``squeue`` is asked for explicit fields
(``-o`` with ``|`` between them, the free-text reason last) and times as Unix seconds
(``SLURM_TIME_FORMAT=%s``); ``scancel`` prints nothing. Why not ``squeue --json``: in
22.05 it ignores ``--jobs`` (it lists every job of the cluster) and took 133 ms against
18 ms for the same question here.

Submissions run as the job's account (the server is root on a submit node: ``sbatch``
authenticates the caller through munge, so Slurm records the account as the job's
user). Queries and cancellations run as the server, which Slurm lets see and cancel
every job when it is root or a Slurm operator (see docs/SLURM.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from remo.core.errors import RemoError, StartFailed

#: squeue's fields, in the order of :class:`QueueEntry`: id, state, user, start and end
#: time, node, then the reason (free text: last, so a ``|`` in it cannot shift fields).
SQUEUE_FORMAT = "%i|%T|%u|%S|%e|%B|%r"
#: Environment of the commands: only what they need, so the server's own settings
#: (and the tests' pyenv) never leak into a user's job through ``--export=ALL``.
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
#: States after which Slurm does nothing more with a job.
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
#: States of a job that waits for its resources.
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})


class SlurmError(RemoError):
    """A Slurm command failed; the message is its first line of complaint."""


@dataclass(frozen=True)
class QueueEntry:
    """One job as ``squeue`` reports it."""

    slurm_id: int
    state: str
    user: str
    start_time: float | None
    end_time: float | None
    node: str
    reason: str

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def queued(self) -> bool:
        return self.state in QUEUED_STATES


@dataclass(frozen=True)
class Account:
    """Who a submission runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


class Slurm:
    """Runs Slurm's commands with one slurm.conf."""

    def __init__(self, slurm_conf: Path | None = None) -> None:
        self.env = dict(BASE_ENV)
        if slurm_conf is not None:
            self.env["SLURM_CONF"] = str(slurm_conf)

    async def _run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        account: Account | None = None,
        times: bool = False,
    ) -> tuple[int, str, str]:
        env = dict(self.env)
        if times:
            env["SLURM_TIME_FORMAT"] = "%s"  # strftime's: Unix seconds, no time zone
        prefix: list[str] = []
        if account is not None and account.uid != os.geteuid():
            # setpriv rather than subprocess's user/group: those make Python fork() for
            # real (no vfork), and grpc's fork handlers abort such a child now and then.
            prefix = [
                "setpriv",
                f"--reuid={account.uid}",
                f"--regid={account.gid}",
                "--groups=" + ",".join(map(str, account.groups or (account.gid,))),
                "--",
            ]
            env.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
        try:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd="/",
            )
        except OSError as err:
            raise SlurmError(f"cannot run {argv[0]}: {err.strerror or err}") from err
        out, complaint = await proc.communicate(stdin)
        text = out.decode(errors="replace"), complaint.decode(errors="replace")
        return proc.returncode or 0, *text

    async def submit(self, options: Sequence[str], script: bytes, account: Account) -> int:
        """``sbatch`` the script as ``account``; Slurm's job id. Raises
        :class:`StartFailed` with sbatch's complaint (a partition that does not exist,
        memory above what any node has...)."""
        code, out, err = await self._run(["sbatch", *options], stdin=script, account=account)
        if code != 0:
            raise StartFailed("slurm", None, f"sbatch refused the job: {_first_line(err)}")
        job_id = out.strip().split(";", 1)[0]  # "ID" or "ID;CLUSTER"
        if not job_id.isdigit():
            raise StartFailed("slurm", None, f"sbatch printed no job id: {out.strip()!r}")
        return int(job_id)

    async def queue(self, slurm_ids: Iterable[int]) -> dict[int, QueueEntry]:
        """What Slurm knows of these jobs, by id; jobs it has forgotten (older than its
        MinJobAge, or unknown) are missing from the answer."""
        ids = sorted(set(slurm_ids))
        if not ids:
            return {}
        argv = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"]
        argv.append("--jobs=" + ",".join(map(str, ids)))
        code, out, err = await self._run(argv, times=True)
        if code != 0:
            # One id that Slurm no longer knows fails the whole command (several do not).
            if len(ids) == 1 and "Invalid job id" in err:
                return {}
            raise SlurmError(f"squeue failed: {_first_line(err)}")
        found = {}
        for line in out.splitlines():
            entry = parse_queue_line(line)
            if entry is not None:
                found[entry.slurm_id] = entry
        return found

    async def find_by_name(self, name: str, user: str) -> int | None:
        """The id of ``user``'s job named ``name`` (a submission whose id was not
        recorded: the server stopped in between)."""
        argv = ["squeue", "--noheader", "--states=all", "--format=%i", f"--name={name}"]
        code, out, err = await self._run([*argv, f"--user={user}"])
        if code != 0:
            raise SlurmError(f"squeue failed: {_first_line(err)}")
        ids = [int(x) for x in out.split() if x.isdigit()]
        return max(ids) if ids else None

    async def signal(self, slurm_id: int, signal: int | None = None) -> None:
        """Cancel the job (``signal`` None: a queued job leaves the queue, a running one
        gets Slurm's TERM, grace, KILL), or send every process of it ``signal``
        (``--full``: the batch step's processes too, the job's own among them)."""
        argv = ["scancel"]
        if signal is not None:
            argv += [f"--signal={signal}", "--full"]
        code, _, err = await self._run([*argv, str(slurm_id)])
        if code != 0:
            raise SlurmError(f"scancel failed: {_first_line(err)}")


def parse_queue_line(line: str) -> QueueEntry | None:
    """One line of :data:`SQUEUE_FORMAT` output (None for a line that is not one)."""
    fields = line.strip().split("|", 6)
    if len(fields) != 7 or not fields[0].isdigit():
        return None
    slurm_id, state, user, start, end, node, reason = fields
    return QueueEntry(
        int(slurm_id),
        state.split()[0] if state else "",
        user,
        _time(start),
        _time(end),
        "" if node in ("n/a", "(null)") else node,
        "" if reason == "None" else reason,
    )


def _time(text: str) -> float | None:
    """A time printed with ``SLURM_TIME_FORMAT=%s``; None for 0, "N/A", "Unknown"."""
    return float(text) if text.isdigit() and int(text) > 0 else None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"

"""How many jobs' outputs the server reads at once: in all, and for any one user.

Why: every output being read holds file descriptors (its records file and up to two
data files), and one OutputMany call names up to 1,000 jobs. Unbounded, one operator
credential could open outputs until the server ran out of descriptors; then no one
could connect, read or follow until those calls ended. Each Output takes one place and
each OutputMany one per job, before the first message, and gives them back when the
stream ends; a call beyond the budget is refused as RESOURCE_EXHAUSTED
(``TOO_MANY_OUTPUTS``) and nothing is opened for it.

The budget follows the descriptors the server may hold (RLIMIT_NOFILE, raised to its
hard limit at start), less a reserve for connections and the rest of the server; one
user may hold a quarter of it, at most :data:`MOST_PER_USER` (``max_outputs_per_user``
sets that share), so that it takes several accounts, not one or two, to fill it.
Everything here runs on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections import Counter
from collections.abc import Iterator

from remo.core.errors import TooManyOutputs
from remo.core.paths import JOB_NOFILE_ENV

#: Descriptors one output being read may hold: records, stdout, stderr.
FDS_PER_OUTPUT = 3

#: Descriptors kept for everything else: connections (each is one), the database and
#: its readers, the supervisor's socket, the inotify descriptor, logs.
RESERVED_FDS = 4096 + 512

#: One user's share when the limit allows more: ten OutputMany calls of 1,000 jobs.
MOST_PER_USER = 10_000

#: Never fewer than this, however low the descriptor limit (a server that cannot hold
#: these fails the reads themselves, each with its reason).
LEAST = 64


def fd_limit() -> int:
    """The soft RLIMIT_NOFILE in force."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (a server started from a shell keeps
    the shell's, often 1,024); return the soft limit now in force.

    Jobs keep the limit they had: the old soft limit goes to the supervisor it launches
    in :data:`JOB_NOFILE_ENV` (the environment is how it reaches the job's init, which
    sets it before the job starts), since some programs close every descriptor up to
    the limit, or break past 1,024 with ``select``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            os.environ.setdefault(JOB_NOFILE_ENV, str(soft))
    return fd_limit()


class OutputBudget:
    """Places for outputs being read: ``total`` in all, ``per_user`` for any one user."""

    def __init__(self, total: int, per_user: int) -> None:
        self.total = total
        self.per_user = min(per_user, total)
        self._held: Counter[str] = Counter()
        self._in_use = 0

    @classmethod
    def for_fd_limit(cls, fd_limit: int, per_user: int | None = None) -> OutputBudget:
        """The budget a server allowed ``fd_limit`` descriptors has; ``per_user`` (the
        ``max_outputs_per_user`` setting) replaces the default share."""
        room = fd_limit - min(RESERVED_FDS, fd_limit // 4)
        total = max(LEAST, room // FDS_PER_OUTPUT)
        share = per_user if per_user is not None else min(total // 4, MOST_PER_USER)
        return cls(total, max(1, share))

    def held(self, user: str) -> int:
        """Places ``user`` holds now."""
        return self._held[user]

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextlib.contextmanager
    def hold(self, user: str, count: int) -> Iterator[None]:
        """``count`` places for ``user`` while the block runs; raise
        :class:`~remo.core.errors.TooManyOutputs` (taking none) when they do not fit."""
        mine = self._held[user]
        if mine + count > self.per_user:
            raise TooManyOutputs(
                f"too many outputs open: you are reading {mine} job outputs and this call "
                f"asks for {count} more; at most {self.per_user} at once per user "
                "(end some follows first)"
            )
        if self._in_use + count > self.total:
            raise TooManyOutputs(
                f"too many outputs open on the server: {self._in_use} of {self.total} places "
                f"are in use and this call asks for {count}; try again later"
            )
        self._held[user] = mine + count
        self._in_use += count
        try:
            yield
        finally:
            self._in_use -= count
            left = self._held[user] - count
            if left:
                self._held[user] = left
            else:
                del self._held[user]

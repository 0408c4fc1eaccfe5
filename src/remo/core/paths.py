"""Where things live inside a state directory. Pure path arithmetic, no I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StatePaths:
    """The layout of a remo state directory (private, mode 0700).

    ``jobs.db`` holds job records, ``jobs/<owner>/<n>/`` each job's ``output`` and
    ``exit`` files, ``spare/<pid>/`` job directories made ahead of time for the init
    ``pid`` that waits for a job (renamed into ``jobs/`` at its start),
    ``supervisor.*`` the supervisor's socket, lock and log.
    """

    root: Path

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.db"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def job_dir(self, owner: str, seq: int) -> Path:
        return self.jobs_dir / owner / str(seq)

    @property
    def spare_dir(self) -> Path:
        return self.root / "spare"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def supervisor_lock(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"


EXIT_FILE = "exit"
STATUS_FILE = ".status"

#: The soft RLIMIT_NOFILE jobs start with, when the server raised its own (from the
#: server to the supervisor, the spawner and the job's init through the environment).
JOB_NOFILE_ENV = "REMO_JOB_NOFILE"


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/remo")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "remo"


def default_run_dir() -> Path:
    """Where the register socket goes: /run/remo for root, the user's runtime dir else
    (a server run by an ordinary account cannot create /run/remo)."""
    if os.geteuid() == 0:
        return Path("/run/remo")
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/remo-{os.geteuid()}"
    return Path(runtime) / "remo"

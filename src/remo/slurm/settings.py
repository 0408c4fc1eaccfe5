"""The Slurm backend's settings (``[slurm]`` in server.toml, ``--backend slurm``).

Plain data with no imports beyond the standard library: :mod:`remo.server.config`
holds one, and client commands that import the config must not pay for the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: How often Slurm is asked about queued and running jobs, by default (seconds).
DEFAULT_POLL_INTERVAL = 1.0
#: The interpreter the job's init runs under on compute nodes: the system's, which any
#: account can run (the server's own may be private to root, as here).
DEFAULT_PYTHON = "/usr/bin/python3"
#: The label a start names its partition with (the API has no field for it, and labels
#: carry it without a proto change): ``remo run --label slurm/partition=gpu ...``.
PARTITION_LABEL = "slurm/partition"


@dataclass
class SlurmSettings:
    """Where and how jobs go to Slurm."""

    #: A directory every compute node and this server see at the same path: each job's
    #: output lands in ``<shared_dir>/<owner>/<n>/``.
    shared_dir: Path = Path("/srv/remo-slurm")
    #: Partition of jobs that name none ("": Slurm's default partition).
    partition: str = ""
    #: Partitions a job may name with the ``slurm/partition`` label (empty: only the
    #: default).
    partitions: list[str] = field(default_factory=list)
    #: Seconds between two questions to Slurm about the jobs in progress.
    poll_interval: float = DEFAULT_POLL_INTERVAL
    #: Follow output with inotify (the shared directory is local, or a filesystem whose
    #: remote writes inotify sees); False polls, for NFS and its kind.
    inotify: bool = False
    #: The slurm.conf the Slurm commands read (None: theirs, /etc/slurm/slurm.conf or
    #: $SLURM_CONF).
    slurm_conf: Path | None = None
    #: Interpreter of the job's init on compute nodes.
    python: str = DEFAULT_PYTHON

    def check(self) -> list[str]:
        """One line per problem (empty when the settings can work)."""
        problems = []
        if not self.shared_dir.is_absolute():
            problems.append(f"slurm.shared_dir must be an absolute path, got {self.shared_dir}")
        if not 0.05 <= self.poll_interval <= 60:
            problems.append(
                f"slurm.poll_interval must be between 0.05s and 60s, got {self.poll_interval:g}s"
            )
        if self.partitions and self.partition and self.partition not in self.partitions:
            problems.append(
                f"slurm.partition {self.partition!r} is not among slurm.partitions"
                f" ({', '.join(self.partitions)})"
            )
        if not self.python.startswith("/"):
            problems.append(f"slurm.python must be an absolute path, got {self.python!r}")
        return problems

    def allowed(self, partition: str) -> bool:
        """Whether a job may name ``partition``."""
        return partition == self.partition or partition in self.partitions

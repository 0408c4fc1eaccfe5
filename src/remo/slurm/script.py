"""A remo job as a Slurm batch job: the ``sbatch`` options and the batch script.

Limits map to what Slurm enforces (``cpu`` -> ``--cpus-per-task``, rounded up: Slurm
allocates whole CPUs; ``memory`` -> ``--mem`` in MiB, rounded up); the output cap is
the job's init's own. What Slurm cannot enforce per job is refused, all of it named in
one line, never dropped silently: IO rates and a process count (no sbatch option),
``network=none`` and a private /tmp (a namespace the job's account cannot make, and
Slurm's job_container plugins are the cluster's choice, not the job's).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from remo.core.errors import InvalidArgument
from remo.core.spec import JobSpec, Limits
from remo.slurm.settings import PARTITION_LABEL, SlurmSettings

MIB = 1 << 20
#: remo's names of the limits Slurm cannot enforce, by Limits field.
UNSUPPORTED_LIMITS = {"io_read_bps": "io-read", "io_write_bps": "io-write", "pids": "pids"}


def job_name(owner: str, seq: int, instance: str) -> str:
    """The Slurm job name of remo job ``owner/seq`` of the job table ``instance``
    (found again by it after a crash)."""
    return f"remo:{owner}/{seq}@{instance}"


def refuse_unsupported(spec: JobSpec) -> None:
    """Raise :class:`InvalidArgument` naming every setting of ``spec`` this backend
    cannot honour."""
    names = [label for name, label in UNSUPPORTED_LIMITS.items() if getattr(spec.limits, name)]
    if spec.network == "none":
        names.append("network none")
    if spec.private_tmp:
        names.append("private /tmp")
    if names:
        raise InvalidArgument(
            f"the Slurm backend cannot enforce: {', '.join(names)} (leave them out)",
            field="limits",
        )


def partition_of(spec: JobSpec, settings: SlurmSettings) -> str:
    """The partition the job asks for (its ``slurm/partition`` label) or the default;
    raises :class:`InvalidArgument` for one the server does not allow."""
    wanted = (spec.labels or {}).get(PARTITION_LABEL, settings.partition)
    if not settings.allowed(wanted):
        allowed = sorted({settings.partition, *settings.partitions} - {""})
        raise InvalidArgument(
            f"partition {wanted!r} is not allowed here (allowed: {', '.join(allowed) or 'none'})",
            field="labels",
        )
    return wanted


@dataclass(frozen=True)
class Batch:
    """What ``sbatch`` gets: its options and the script on its stdin."""

    options: list[str]
    script: bytes


def sbatch_options(limits: Limits, name: str, partition: str, job_dir: Path) -> list[str]:
    """The options of the batch job: one task on one node, the limits, where its own
    messages go (Slurm's, not the job's: the job's output is the init's). The batch
    script starts in the job's directory, which exists; the init enters the job's
    ``cwd`` itself and says so on the job's stderr when it cannot."""
    options = [
        "--parsable",
        f"--job-name={name}",
        "--nodes=1",
        "--ntasks=1",
        f"--chdir={job_dir}",
        f"--output={job_dir / 'slurm.log'}",
        "--open-mode=append",
        "--export=ALL",
    ]
    if partition:
        options.append(f"--partition={partition}")
    if limits.cpu is not None:
        options.append(f"--cpus-per-task={math.ceil(limits.cpu)}")
    if limits.memory is not None:
        options.append(f"--mem={math.ceil(limits.memory / MIB)}M")
    return options


def batch_script(python: str, config: Mapping[str, object]) -> bytes:
    """The init's source (:mod:`remo.slurm.jobinit`) run by ``python`` with ``config``."""
    source = (Path(__file__).parent / "jobinit.py").read_text()
    call = f"\nmain(json.loads({json.dumps(json.dumps(config))}))\n"
    return f"#!{python}\n{source}{call}".encode()


def make_batch(
    spec: JobSpec,
    env: dict[str, str],
    owner: str,
    seq: int,
    job_dir: Path,
    partition: str,
    settings: SlurmSettings,
    instance: str,
) -> Batch:
    """Everything ``sbatch`` needs to run ``spec`` (limits already made effective)."""
    cwd = spec.cwd or env.get("HOME", "/")
    config = {
        "dir": str(job_dir),
        "argv": list(spec.argv),
        "env": env,
        "cwd": cwd,
        "cap": spec.limits.output_bytes,
    }
    options = sbatch_options(spec.limits, job_name(owner, seq, instance), partition, job_dir)
    return Batch(options, batch_script(settings.python, config))

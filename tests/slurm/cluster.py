"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd from
Debian, started without systemd, each a child of the test process, ended by its PID.

Everything lives in one directory under /tmp (mode 0755: the test accounts submit with
it, reaching the munge socket and slurm.conf): the munge key and socket, slurm.conf and
cgroup.conf, Slurm's state and spool, the logs, and the shared directory job output
goes to. Ports are free ones of 127.0.0.1, so a cluster of the machine (there is none
here) is never touched.

Plugins: proctrack/cgroup and task/cgroup on cgroup v1 (this machine's hierarchies are
v1 with a named systemd one: "hybrid" for remo), so memory limits are enforced by
Slurm's memory cgroup (ConstrainRAMSpace) and a job's processes are tracked by cgroup.
No accounting daemon: sacct is not used; the job's init reports CPU seconds and peak
memory itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tests.support import wait_until_sync

DAEMONS = ("munged", "slurmctld", "slurmd")
NODE_MEMORY_MIB = 4096


def missing_programs() -> list[str]:
    return [p for p in (*DAEMONS, "sbatch", "squeue", "scancel", "sinfo") if not shutil.which(p)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running cluster; :meth:`stop` ends its daemons."""

    root: Path
    host: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "SLURM_CONF": str(self.conf),
            "LANG": "C.UTF-8",
        }

    def command(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """A Slurm command, as root or (``user``) as that account."""
        prefix = []
        if user is not None:
            prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        return subprocess.run(
            [*prefix, *argv], env=self.env(), capture_output=True, text=True, cwd="/", check=False
        )

    def node_state(self) -> str:
        return self.command("sinfo", "--noheader", "--format=%T").stdout.strip()

    def cancel_all(self) -> None:
        """Cancel every job and wait until none is left running or queued."""
        left = self.command("squeue", "--noheader", "--format=%i").stdout.split()
        if left:
            self.command("scancel", *left)
            wait_until_sync(
                lambda: not self.command("squeue", "--noheader", "--format=%i").stdout.split(),
                30,
                what="the cluster's jobs to end",
            )

    def stop(self) -> None:
        """Cancel what is left, then end slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self.procs:
            self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_cluster() -> Cluster:
    """Write the configuration and start the three daemons; the node is idle on return."""
    root = Path(tempfile.mkdtemp(prefix="remo-slurm-", dir="/tmp"))
    root.chmod(0o755)
    cluster = Cluster(root, socket.gethostname())
    try:
        _configure(cluster)
        _start(cluster)
    except BaseException:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def _configure(cluster: Cluster) -> None:
    root = cluster.root
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o755)
    cluster.shared.mkdir(mode=0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (root / "slurm.conf").write_text(
        f"""ClusterName=remotest
SlurmctldHost={cluster.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
DefMemPerCPU=256
NodeName={cluster.host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={NODE_MEMORY_MIB} State=UNKNOWN
PartitionName=debug Nodes={cluster.host} Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes={cluster.host} MaxTime=INFINITE State=UP
"""
    )
    (root / "cgroup.conf").write_text(
        "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n"
        "ConstrainCores=yes\nConstrainRAMSpace=yes\nConstrainSwapSpace=no\n"
    )


def _start(cluster: Cluster) -> None:
    root = cluster.root
    with (root / "log" / "daemons.out").open("ab") as log:  # the daemons keep their copies
        _spawn(cluster, log)
    wait_until_sync(
        lambda: cluster.node_state() == "idle", 60, what=f"the node to be idle (logs: {root}/log)"
    )


def _spawn(cluster: Cluster, log: BinaryIO) -> None:
    root = cluster.root
    munge_dir = root / "munge"
    cluster.procs["munged"] = subprocess.Popen(
        [
            "munged",
            "--foreground",
            "--force",
            f"--socket={munge_dir / 'munge.socket'}",
            f"--key-file={munge_dir / 'munge.key'}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
            f"--log-file={munge_dir / 'munged.log'}",
        ],
        stdout=log,
        stderr=log,
    )
    wait_until_sync((munge_dir / "munge.socket").exists, 20, what="munged's socket")
    env = {**os.environ, **cluster.env()}
    cluster.procs["slurmctld"] = subprocess.Popen(
        ["slurmctld", "-D", "-i"], stdout=log, stderr=log, env=env
    )
    cluster.procs["slurmd"] = subprocess.Popen(
        ["slurmd", "-D", "-N", cluster.host], stdout=log, stderr=log, env=env
    )
    for name, proc in cluster.procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once: see {root}/log")

"""Suite-wide guarantees: the tests leave no process, cgroup, mount or socket behind."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.core.paths import StatePaths
from remo.server.tls import ensure_tls13_only_env
from remo.supervisor.service import instance_tag
from tests.support import wait_until_sync

# grpc fixes its TLS policy when first imported: set it before any test imports grpc.
ensure_tls13_only_env()

# A run started in the background by a shell without job control (`.ci/run &` in a
# script) has SIGINT ignored, and every process it starts inherits that: the CLI, which
# keeps an ignored SIGINT ignored (as nohup asks), could then not hear the Ctrl-C of the
# tests that send one. They, and Ctrl-C to pytest itself, get Python's handler back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def remo_cgroups() -> set[str]:
    """Every job cgroup under a ``remo`` group anywhere in the cgroup hierarchies."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        if os.path.basename(dirpath) == "remo":
            found.update(os.path.join(dirpath, d) for d in dirnames)
            dirnames.clear()
    return found


def job_cgroups(tag: str) -> set[str]:
    """Cgroups of the remo instance ``tag`` other than those of inits waiting for a job
    (each waits in ``<tag>-init-<pid>``; a dead one's group must be gone too)."""
    found = set()
    for path in remo_cgroups():
        name = path.rpartition("/")[2]
        if not name.startswith(f"{tag}-"):
            continue
        kind, _, pid = name[len(tag) + 1 :].partition("-")
        if kind == "init" and pid.isdigit() and _waits(int(pid)):
            continue
        found.add(path)
    return found


def _waits(pid: int) -> bool:
    """Whether ``pid`` lives and has no child (a job's init has its job)."""
    try:
        return not Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False


def remo_processes(base: Path) -> set[int]:
    """Supervisors started for state dirs under this test run's temporary directory."""
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"remo.supervisor" in cmdline and str(base).encode() in cmdline:
            pids.add(int(entry))
    return pids


def mounts() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI's credential cache goes to a temporary directory, not the tester's home."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before_cgroups, before_mounts = remo_cgroups(), mounts()
    yield
    base = tmp_path_factory.getbasetemp()
    # Only this run's state dirs: other remo servers on the machine are not ours to judge.
    # (os.walk, not rglob: supervisors still exiting remove directories meanwhile)
    tags = {
        instance_tag(StatePaths(Path(top)))
        for top, _, files in os.walk(base)
        if "supervisor.lock" in files
    }

    def ours() -> set[str]:
        return {p for p in remo_cgroups() - before_cgroups if p.rsplit("/", 1)[1][:8] in tags}

    # Supervisors exit on their own once idle, and take their jobs' cgroups with them.
    wait_until_sync(
        lambda: not remo_processes(base),
        15,
        what="the supervisors to exit: they outlived the tests",
        interval=0.1,
    )
    wait_until_sync(
        lambda: not ours(),
        15,
        what=lambda: f"job cgroups to go: {sorted(ours())} were left behind",
        interval=0.1,
    )
    left = {m for m in mounts() - before_mounts if m.startswith(str(base))}
    assert left == set(), "mounts were left behind"
    sockets = [p for p in base.rglob("*.sock") if p.is_socket()]
    assert not sockets, f"sockets were left behind: {sockets}"


TEST_USERS = ("remo-alice", "remo-bob", "remo-carol")


@pytest.fixture(scope="session")
def unix_users() -> Iterator[tuple[str, ...]]:
    """Accounts jobs can run as; created for the tests and removed after."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create accounts")
    created = []
    for name in TEST_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
            created.append(name)
    yield TEST_USERS
    for name in created:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)

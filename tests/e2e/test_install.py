"""scripts/install: a server install that every local account can use.

The issue: the quickstart's .venv/bin/remo is built from a Python in root's home (mode
0700), so no other account on the server could run `remo register`. Here scripts/install
puts remo into a temporary prefix and bin dir (never /opt or /usr/local), root starts the
installed server, and a second account, switched to with setpriv, registers and runs a job
with the installed `remo`; then scripts/uninstall removes exactly what the install made.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from remo.core.paths import StatePaths
from remo.pki.register import register_socket_path
from tests.support import wait_until_sync

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install"
UNINSTALL = REPO / "scripts" / "uninstall"

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="needs root: scripts/install installs as root, and the test switches accounts",
    ),
    pytest.mark.skipif(
        not os.access("/usr/bin/python3", os.X_OK),
        reason="no /usr/bin/python3: scripts/install builds on Debian's system Python",
    ),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv(1) to switch accounts"),
    # A fresh machine downloads the locked dependencies once.
    pytest.mark.timeout(900),
]

#: The real places a default install uses: the test must leave them as they were.
REAL_PLACES = (
    "/opt/remo",
    "/usr/local/bin/remo",
    "/etc/systemd/system/remo.service",
    "/etc/remo",
)


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory every account can traverse (pytest's tmp is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="remo-install-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def root_env() -> dict[str, str]:
    """This environment without what would make a Python use another installation."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True, text=True, check=False, timeout=800, env=root_env(),
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done


def as_account(
    account: pwd.struct_passwd, home: Path, *argv: str | Path
) -> subprocess.CompletedProcess[str]:
    """``argv`` run as ``account`` (its uid and gid, no other group), from ``home``."""
    switch = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["setpriv", *switch, *(str(a) for a in argv)],
        capture_output=True, text=True, check=False, timeout=120, env=env, cwd=home,
    )  # fmt: skip


def tree(top: Path) -> set[str]:
    """Every path under ``top`` (links not followed), relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), top))
    return found


def running_from(prefix: Path, *, agents: bool = True) -> list[int]:
    """Processes whose program is under ``prefix`` (the server, its supervisor, and the
    CLI agents of accounts that used it, unless ``agents`` is false)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv[0].startswith(f"{prefix}/".encode()):
            continue
        if agents or b"remo.cli.agent" not in argv:
            pids.append(int(entry))
    return pids


def test_every_account_can_use_a_server_install(
    public_tmp: Path, unix_users: tuple[str, ...]
) -> None:
    account = pwd.getpwnam(unix_users[1])
    real_before = {p: os.path.lexists(p) for p in REAL_PLACES}
    opt, bindir, units = public_tmp / "opt", public_tmp / "bin", public_tmp / "units"
    for directory in (opt, bindir, units):
        directory.mkdir(mode=0o755)
    # Neighbours that are not the install's: uninstalling must leave them.
    (bindir / "other-tool").write_text("#!/bin/sh\n")
    (units / "other.service").write_text("[Service]\nExecStart=/bin/true\n")
    # A copy of the script an ordinary account can reach (the checkout may be root's).
    (public_tmp / "scripts").mkdir(mode=0o755)
    reachable_install = Path(shutil.copy2(INSTALL, public_tmp / "scripts" / "install"))
    prefix, link, unit = opt / "remo", bindir / "remo", units / "remo.service"
    config = public_tmp / "etc" / "remo" / "server.toml"
    before = tree(public_tmp)
    where = ["--prefix", prefix, "--bin", bindir, "--unit-dir", units, "--config", config]

    first = script(INSTALL, *where)
    assert first.returncode == 0, first.stdout + first.stderr
    again = script(INSTALL, *where)  # idempotent: a second run updates in place
    assert again.returncode == 0, again.stdout + again.stderr

    assert os.readlink(link) == f"{prefix}/bin/remo"
    unit_text = unit.read_text()
    assert f"\nExecStart={prefix}/bin/remo server --config {config}\n" in unit_text
    assert config.is_file()
    # The jobs' compiled relay is built into the installed package (not the Python one's
    # ~1.5 MiB per running job), and every account can run it.
    relays = list(prefix.glob("lib/python3*/site-packages/remo/supervisor/remo-relay"))
    assert relays, "the install has no compiled relay (remo/supervisor/remo-relay)"
    assert relays[0].stat().st_mode & stat.S_IXOTH, oct(relays[0].stat().st_mode)
    pyvenv = (prefix / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in pyvenv, pyvenv  # Debian's python, not root's own
    for path in [prefix, *prefix.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        assert mode & stat.S_IROTH and not mode & stat.S_IWOTH, f"{path}: {oct(mode)}"
        if stat.S_ISDIR(mode):
            assert mode & stat.S_IXOTH, f"{path}: {oct(mode)}"

    home = public_tmp / "home"
    home.mkdir(mode=0o700)
    os.chown(home, account.pw_uid, account.pw_gid)
    # Not root: one line saying so, nothing done.
    refused = as_account(account, home, reachable_install, *where)
    assert refused.returncode == 1 and "run me as root" in refused.stderr, refused.stderr
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    version = as_account(account, home, link, "--version")
    assert version.returncode == 0 and "remo" in version.stdout, version.stderr

    state = public_tmp / "state"
    log_path = public_tmp / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [prefix / "bin" / "remo", "server", "--state-dir", state, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=root_env(),
        )  # fmt: skip
    try:
        wait_until_sync(
            lambda: "remo server listening" in log_path.read_text() or server.poll() is not None,
            60,
            what="the installed server to listen",
        )
        assert server.poll() is None, log_path.read_text()

        credential = home / "server.remo"
        register = as_account(
            account, home, link, "register", "--state-dir", state, "-o", credential
        )
        assert register.returncode == 0, register.stdout + register.stderr
        assert f"for {account.pw_name} (" in register.stdout
        run = as_account(account, home, link, "run", "--profile", credential, "--", "id", "-un")
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.split() == [account.pw_name], run.stdout
        supervisor_log = StatePaths(state).supervisor_log.read_text()
        assert "no compiled relay" not in supervisor_log, supervisor_log
        # Not while remo runs from the prefix: it would lose its code under it.
        busy = script(UNINSTALL, "--prefix", prefix)
        assert busy.returncode == 1 and "still runs from" in busy.stderr, busy.stderr
        assert all(os.path.lexists(p) for p in (prefix, link, unit, config))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert server.returncode == 0, log_path.read_text()
    # The account's command left its agent (it keeps the connection for the next one):
    # uninstalling stops it; the server's processes end on their own.
    assert running_from(prefix) != running_from(prefix, agents=False)
    wait_until_sync(
        lambda: not running_from(prefix, agents=False),
        60,
        what=lambda: f"remo's processes to end: {running_from(prefix)} still run from {prefix}",
        interval=0.1,
    )
    assert not register_socket_path(state).exists()

    removed = script(UNINSTALL, "--prefix", prefix)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not running_from(prefix), "an agent outlived the uninstall"
    assert "state dir" in removed.stdout
    for gone in (prefix, link, unit, config, config.parent.parent):
        assert not os.path.lexists(gone), f"{gone} is left"
    # Nothing else went: the neighbours are there, and the server's state dir is kept.
    ours = {"home", "state", "server.log"}
    after = {p for p in tree(public_tmp) if p.split(os.sep)[0] not in ours}
    assert after == before
    assert any(state.iterdir()), "the server's state dir was emptied"
    again_removed = script(UNINSTALL, "--prefix", prefix)
    assert again_removed.returncode == 0 and "nothing to uninstall" in again_removed.stdout
    assert {p: os.path.lexists(p) for p in REAL_PLACES} == real_before

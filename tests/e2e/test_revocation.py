"""Revocation that sticks: a banned account stays out until an admin allows it again.

Before bans, `remo admin revoke --user alice` revoked alice's credentials, and alice
ran `remo register` and had a working one again at once; her schedule kept firing.
Here alice asks the real register socket as herself (her uid, through setpriv), and the
admin commands run as a user would run them.
"""

from __future__ import annotations

import asyncio
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from remo.api.jobs import duration, seconds_of
from remo.schedule.store import Run, ScheduleStore
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, needs_root, reason_of, serve
from tests.support import wait_until

pytestmark = needs_root
ALICE = "remo-alice"

#: The register protocol by hand, so that it runs as another account with Debian's
#: python (that account cannot use this checkout's virtual environment).
ASK_FOR_A_CREDENTIAL = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(b'remo-register v1\\n')\n"
    "data = b''\n"
    "while chunk := s.recv(65536):\n"
    "    data += chunk\n"
    "print(data.split(b'\\n')[0].decode())\n"
)


def register_as(account: str, sock: str) -> str:
    """The first line of the register socket's answer to ``account``: ok N or error ...

    Blocking: call it in a thread (the server answering it runs on the test's loop)."""
    entry = pwd.getpwnam(account)
    switch = [f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    done = subprocess.run(
        ["setpriv", *switch, "/usr/bin/python3", "-c", ASK_FOR_A_CREDENTIAL, sock],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def admin(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remo", "admin", *args, "--state-dir", str(state_dir)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@pytest.fixture
def public_run_dir() -> Iterator[Path]:
    """A register socket directory other accounts can reach (pytest's tmp is root's)."""
    path = Path(tempfile.mkdtemp(prefix="remo-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def served(
    tmp_path: Path, public_run_dir: Path, unix_users: tuple[str, ...]
) -> AsyncIterator[Server]:
    async with serve(tmp_path, register_run_dir=public_run_dir) as server:
        yield server


async def test_a_banned_account_stays_out_until_allowed(served: Server) -> None:
    state, sock = served.state_dir, served.running.register_socket
    assert (await asyncio.to_thread(register_as, ALICE, sock)).startswith("ok ")
    schedules = ScheduleStore(state / "schedules.db")
    channel, alice = served.stub(served.credential(ALICE, "operator"))
    async with channel:
        job = (await alice.Start(pb.StartRequest(argv=["sleep", "600"]))).job
        every = pb.When(period=duration(1))
        schedule = (await alice.Start(pb.StartRequest(argv=["true"], when=every))).schedule

        seq = int(schedule.id.removeprefix("s"))

        def runs() -> list[Run]:
            """The newest few, newest first."""
            return schedules.recent_runs(ALICE, seq)

        async def fired() -> bool:
            return any(r.outcome == "started" for r in runs())

        await wait_until(fired, 30)

        banned = await asyncio.to_thread(admin, state, "revoke", "--user", ALICE, "--stop-jobs")
        assert banned.returncode == 0, banned.stderr
        assert f"banned {ALICE}" in banned.stdout and "stopped 1 running job" in banned.stdout
        ban_time = time.time()

        # Every credential refused, the old one included; no new one can be had.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await alice.GetJob(pb.GetJobRequest(id=job.id))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "is banned" in (refused.value.details() or "")
        assert reason_of(refused.value) == "ACCOUNT_BANNED"
        answer = await asyncio.to_thread(register_as, ALICE, sock)
        assert answer.startswith("error ") and "is banned" in answer and "\n" not in answer
        issued = await asyncio.to_thread(
            admin, state, "issue", "--user", ALICE, "-o", str(served.tmp / "x.remo")
        )
        assert issued.returncode != 0 and "is banned" in issued.stderr
        listed = await asyncio.to_thread(admin, state, "list")
        assert "BANNED ACCOUNT" in listed.stdout and ALICE in listed.stdout.split("BANNED")[1]

        # Its running job was stopped; its schedule skips its runs and says why.
        root_channel, root = served.stub(served.credential("root", "admin"))
        async with root_channel:
            stopped = (await root.GetJob(pb.GetJobRequest(id=f"{ALICE}/{job.id}"))).job
            assert stopped.state == pb.JOB_STATE_STOPPED

            async def skipped() -> bool:
                return any(r.outcome == "skipped" and "is banned" in r.detail for r in runs())

            await wait_until(skipped, 30)
            started_after = [
                j
                for j in (await root.ListJobs(pb.ListJobsRequest(all_users=True))).jobs
                if j.owner == ALICE and seconds_of(j.start_time) > ban_time
            ]
            assert started_after == []

        # Allowed again: it may register, and its schedule fires again.
        # (by due time: only the newest runs are kept, and a slow machine makes many)
        banned_until = runs()[0].due_at
        allowed = await asyncio.to_thread(admin, state, "allow", ALICE)
        assert allowed.returncode == 0, allowed.stderr
        assert (await asyncio.to_thread(register_as, ALICE, sock)).startswith("ok ")

        async def fires_again() -> bool:
            return any(r.outcome == "started" and r.due_at > banned_until for r in runs())

        await wait_until(fires_again, 30)
    schedules.close()


async def test_revoking_one_serial_lets_the_account_register_again(served: Server) -> None:
    credential = served.credential(ALICE, "operator")
    listed = (await asyncio.to_thread(admin, served.state_dir, "list")).stdout
    serial = next(line.split()[0] for line in listed.splitlines() if ALICE in line)
    revoked = await asyncio.to_thread(admin, served.state_dir, "revoke", "--serial", serial)
    assert revoked.returncode == 0, revoked.stderr
    channel, alice = served.stub(credential)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await alice.WhoAmI(pb.WhoAmIRequest())
    assert "revoked" in (refused.value.details() or "")
    assert reason_of(refused.value) == "CREDENTIAL_REVOKED"
    assert (await asyncio.to_thread(register_as, ALICE, served.running.register_socket)).startswith(
        "ok "
    )


def test_admin_usage_errors_are_one_line() -> None:
    for args, message in [
        (("revoke", "--serial", "ab", "--stop-jobs"), "--stop-jobs goes with --user"),
        (("revoke",), "exactly one of --user or --serial"),
    ]:
        done = admin(Path("/nonexistent"), *args)
        assert done.returncode == 2 and message in done.stderr
        assert "Traceback" not in done.stderr

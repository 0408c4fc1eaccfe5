"""The `remo` command for daily work and for scripts, against a real server.

Each test runs the real CLI in a separate process, as a shell would, with the exact
command a user types: what lands on stdout (for scripts), what on stderr (for people),
and the exit code.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from remo.pki import package
from remo.pki.ca import CertificateAuthority
from tests.e2e.conftest import Server, me, needs_root, run_cli, serve, start_cli
from tests.support import wait_until, wait_until_sync


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one line on stderr (an error is exactly one line, never a traceback)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


async def remo(env: dict[str, str], *args: str, timeout: float = 60) -> Done:
    code, out, err = await run_cli(env, *args, timeout=timeout)
    return Done(code, out.decode(), err)


async def ok(env: dict[str, str], *args: str) -> Done:
    done = await remo(env, *args)
    assert done.code == 0, (args, done)
    return done


async def started(env: dict[str, str], *argv: str) -> str:
    """The id of a job `remo run -d` started."""
    return (await ok(env, "run", "-d", "--", *argv)).stdout.strip()


def is_utc_time(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text.replace("Z", "+00:00")) is not None


# -- scripts: ids on stdout, JSON everywhere -------------------------------------------------


async def test_run_detached_prints_only_the_job_id_or_the_job(cli_env: dict[str, str]) -> None:
    done = await ok(cli_env, "run", "-d", "--", "sleep", "30")
    assert done.stdout.strip().isdigit() and done.stdout.count("\n") == 1
    assert done.stderr == ""
    as_json = json.loads((await ok(cli_env, "run", "-d", "--json", "--", "sleep", "30")).stdout)
    listed = json.loads((await ok(cli_env, "ps", "--json")).stdout)
    # One vocabulary: the same keys as ps --json, times in the same format.
    assert set(as_json) == set(listed[0])
    assert as_json["state"] == "JOB_STATE_RUNNING" and is_utc_time(as_json["start_time"])
    for job_id in (done.stdout.strip(), as_json["id"]):
        await ok(cli_env, "rm", "--stop", job_id)


async def test_run_detached_schedule_prints_only_its_id(cli_env: dict[str, str]) -> None:
    done = await ok(cli_env, "run", "-d", "--in", "1h", "--", "true")
    schedule_id = done.stdout.strip()
    assert schedule_id.startswith("s") and schedule_id[1:].isdigit(), done.stdout
    assert done.stderr.startswith(f"schedule {schedule_id}: next run at ")
    as_json = json.loads(
        (await ok(cli_env, "run", "-d", "--json", "--every", "1d", "--", "true")).stdout
    )
    listed = json.loads((await ok(cli_env, "ps", "--schedules", "--json")).stdout)
    assert set(as_json) == set(listed[0]) and as_json["period"] == "86400s"
    assert is_utc_time(as_json["next_run_time"])
    for sid in (schedule_id, as_json["id"]):
        await ok(cli_env, "rm", sid)


async def test_ps_quiet_prints_ids_newest_first(cli_env: dict[str, str]) -> None:
    first = await started(cli_env, "sleep", "30")
    second = await started(cli_env, "sleep", "30")
    done = await ok(cli_env, "ps", "-q")
    assert done.stdout.splitlines()[:2] == [second, first]
    listed = json.loads((await ok(cli_env, "ps", "--json")).stdout)
    assert done.stdout.splitlines() == [job["id"] for job in listed]
    running = await ok(cli_env, "ps", "-q", "--running")
    assert running.stdout.splitlines() == [second, first]
    for job_id in (first, second):
        await ok(cli_env, "rm", "--stop", job_id)


async def test_stop_wait_rm_and_whoami_speak_json(
    server: Server, cli_env: dict[str, str], credential: Path
) -> None:
    job_id = await started(cli_env, "sleep", "30")
    stopped = json.loads((await ok(cli_env, "stop", "--json", "--grace", "5s", job_id)).stdout)
    assert (stopped["id"], stopped["state"], stopped["signal"]) == (
        job_id,
        "JOB_STATE_STOPPED",
        15,
    )
    assert is_utc_time(stopped["end_time"])

    waited = await remo(cli_env, "wait", "--json", job_id)
    assert waited.code == 143  # still the job's code, as without --json
    assert json.loads(waited.stdout) == stopped

    removed = json.loads((await ok(cli_env, "rm", "--json", job_id)).stdout)
    assert removed == {"removed": [job_id]}

    who = json.loads((await ok(cli_env, "whoami", "--json")).stdout)
    mine = package.load(credential)
    user, role = me()
    assert (who["user"], who["role"]) == (user, f"ROLE_{role.upper()}")
    assert who["serial"] == mine.serial
    assert who["server"] == server.address and who["credential"] == str(credential)
    assert is_utc_time(who["expire_time"]) and isinstance(who["protections_off"], list)
    human = (await ok(cli_env, "whoami")).stdout
    assert f"user        {me()[0]}" in human and "expires" in human


@needs_root
async def test_admin_list_speaks_json(server: Server, credential: Path) -> None:
    done = await ok(
        dict(os.environ), "admin", "list", "--json", "--state-dir", str(server.state_dir)
    )
    listing = json.loads(done.stdout)
    serial = package.load(credential).serial
    (mine,) = [c for c in listing["credentials"] if c["serial"] == serial]
    assert (mine["user"], mine["role"], mine["revoked_at"]) == (*me(), None)
    assert is_utc_time(mine["issued_at"]) and is_utc_time(mine["expires_at"])
    assert listing["banned"] == []


async def test_rm_finished_removes_finished_jobs_in_bulk(cli_env: dict[str, str]) -> None:
    finished = []
    for code in (0, 1, 0):
        finished.append(await started(cli_env, "sh", "-c", f"exit {code}"))
    running = await started(cli_env, "sleep", "30")
    for job_id in finished:
        await remo(cli_env, "wait", job_id)

    none_old = await ok(cli_env, "rm", "--finished", "--older-than", "1d", "--json")
    assert json.loads(none_old.stdout) == {"removed": []}

    done = await ok(cli_env, "rm", "--finished")
    assert done.stdout == "removed 3 finished job(s)\n"
    assert (await ok(cli_env, "ps", "-q")).stdout.split() == [running]
    again = await ok(cli_env, "rm", "--finished", "--json")
    assert json.loads(again.stdout) == {"removed": []}
    await ok(cli_env, "rm", "--stop", running)


async def test_ps_shows_a_page_and_says_when_there_are_more(cli_env: dict[str, str]) -> None:
    jobs = [await started(cli_env, argv) for argv in ("true", "false", "true")]
    for job_id in jobs:
        await remo(cli_env, "wait", job_id)
    newest_first = jobs[::-1]
    note = (
        "remo: showing the newest 2 jobs; there are more "
        "(--limit N, --since DURATION or --all-pages to see them, --state to filter)\n"
    )

    page = await ok(cli_env, "ps", "--limit", "2")
    rows = page.stdout.splitlines()
    assert rows[0].split()[:2] == ["ID", "STATE"]
    assert [row.split()[0] for row in rows[1:]] == newest_first[:2]
    assert page.stderr == note
    quiet = await ok(cli_env, "ps", "-q", "-n", "2")
    assert (quiet.stdout.splitlines(), quiet.stderr) == (newest_first[:2], note)
    listed = json.loads((await ok(cli_env, "ps", "--json", "--limit", "2")).stdout)
    assert [job["id"] for job in listed] == newest_first[:2]

    every = await ok(cli_env, "ps", "-q", "--limit", "2", "--all-pages")
    assert (every.stdout.splitlines(), every.stderr) == (newest_first, "")
    exact = await ok(cli_env, "ps", "-q", "--limit", "3")  # no more than that: no note
    assert (exact.stdout.splitlines(), exact.stderr) == (newest_first, "")

    failed = await ok(cli_env, "ps", "-q", "--state", "failed", "--limit", "2")
    assert (failed.stdout.splitlines(), failed.stderr) == ([jobs[1]], "")
    shown = json.loads((await ok(cli_env, "ps", "--json", "--state", "failed")).stdout)
    assert [(job["id"], job["state"], job["exit_code"]) for job in shown] == [
        (jobs[1], "JOB_STATE_FAILED", 1)
    ]
    both = await ok(cli_env, "ps", "-q", "--state", "failed", "--state", "succeeded")
    assert both.stdout.splitlines() == newest_first


# -- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_to_remo_run_detaches_like_ctrl_c(
    cli_env: dict[str, str], signum: signal.Signals
) -> None:
    proc = await start_cli(cli_env, "run", "--", "sh", "-c", "echo started; exec sleep 60")
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"started\n"
    proc.send_signal(signum)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err
    (line,) = err.decode().splitlines()
    job_id = line.removeprefix("detached from job ").split()[0]
    assert line == (
        f'detached from job {job_id} (still running): follow with "remo logs -f {job_id}", '
        f'stop with "remo stop {job_id}"'
    )
    status = json.loads((await ok(cli_env, "status", "--json", job_id)).stdout)
    assert status["state"] == "JOB_STATE_RUNNING"
    await ok(cli_env, "rm", "--stop", job_id)


# -- rough edges ----------------------------------------------------------------------------------


async def test_a_multi_line_argument_keeps_the_tables_whole(cli_env: dict[str, str]) -> None:
    job_id = await started(cli_env, "sh", "-c", "echo a\necho b")
    await remo(cli_env, "wait", job_id)
    table = (await ok(cli_env, "ps")).stdout.splitlines()
    assert len(table) == 2, table  # the header and one line for the one job
    assert table[1].split()[0] == job_id
    assert table[1].endswith("sh -c $'echo a\\necho b'")
    status = (await ok(cli_env, "status", job_id)).stdout
    assert "command      sh -c $'echo a\\necho b'\n" in status
    assert json.loads((await ok(cli_env, "status", "--json", job_id)).stdout)["argv"] == [
        "sh",
        "-c",
        "echo a\necho b",
    ]


async def test_limit_errors_name_the_option_in_human_sizes(cli_env: dict[str, str]) -> None:
    done = await remo(cli_env, "run", "--memory", "0", "--", "true")
    assert done.code == 2
    assert done.error == "remo: --memory must be between 1 MiB and 4 EiB, got 0"
    done = await remo(cli_env, "run", "--io-write", "1k", "--", "true")
    assert done.error.startswith("remo: --io-write must be at least 64 KiB/s, got 1 KiB/s")
    # Checked by the server (it knows its CPUs), told in the option's terms.
    cpus = os.cpu_count() or 1
    done = await remo(cli_env, "run", "--cpu", str(cpus + 1), "--", "true")
    assert done.code == 2
    assert done.error == (
        f"remo: --cpu must be between 0.001 and {cpus} cores "
        f"(this server has {cpus} CPUs), got {cpus + 1}"
    )


async def test_rm_of_a_running_job_points_at_rm_stop(cli_env: dict[str, str]) -> None:
    job_id = await started(cli_env, "sleep", "30")
    done = await remo(cli_env, "rm", job_id)
    assert done.code == 6
    assert done.error == (
        f"remo: job {job_id} is still running: stop it first (remo stop {job_id}), "
        f"or stop and remove it at once with remo rm --stop {job_id}"
    )
    assert (await ok(cli_env, "rm", "--stop", job_id)).stdout == f"removed job {job_id}\n"


async def test_a_mistyped_verb_gets_a_suggestion(cli_env: dict[str, str]) -> None:
    done = await remo(cli_env, "stauts", "12")
    assert done.code == 2
    assert done.error == (
        "remo: No such command 'stauts'. Did you mean 'status'? (see 'remo --help')"
    )


async def test_a_missing_schedule_is_called_a_schedule(cli_env: dict[str, str]) -> None:
    for verb in ("rm", "status"):
        done = await remo(cli_env, verb, "s999")
        assert done.code == 5
        assert done.error == "remo: no schedule s999"
    assert (await remo(cli_env, "status", "999")).error == "remo: no job 999"


async def test_a_skipped_run_names_the_previous_run_as_typed(cli_env: dict[str, str]) -> None:
    schedule_id = (await ok(cli_env, "run", "-d", "--every", "1s", "--", "sleep", "600")).stdout
    schedule_id = schedule_id.strip()

    async def skipped() -> dict[str, object] | None:
        shown = json.loads((await ok(cli_env, "status", "--json", schedule_id)).stdout)
        runs = shown["recent_runs"]
        first = [r for r in runs if r["outcome"] == "SCHEDULE_RUN_OUTCOME_STARTED"]
        skips = [r for r in runs if r["outcome"] == "SCHEDULE_RUN_OUTCOME_SKIPPED"]
        return (
            {"job": first[-1]["job_id"], "detail": skips[0]["detail"]} if first and skips else None
        )

    seen = await wait_until(skipped, 30, what="a run skipped for a still running one")
    assert seen["detail"] == f"previous run {seen['job']} is still running"
    assert "/" not in str(seen["job"])
    await ok(cli_env, "rm", "--stop", schedule_id)


# -- shell completion -----------------------------------------------------------------------------


async def complete(env: dict[str, str], line: str) -> Done:
    words = line.split(" ")
    return await remo(
        {
            **env,
            "_REMO_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
    )


async def test_ids_complete_from_the_server(cli_env: dict[str, str], tmp_path: Path) -> None:
    done_id = await started(cli_env, "true")
    await remo(cli_env, "wait", done_id)
    running = await started(cli_env, "sleep", "30")
    schedule_id = (await ok(cli_env, "run", "-d", "--in", "1h", "--", "true")).stdout.strip()

    def offered(done: Done) -> set[str]:
        assert done.code == 0 and done.stderr == "", done
        return {line.partition(",")[2] for line in done.stdout.splitlines() if line}

    assert {done_id, running, schedule_id} <= offered(await complete(cli_env, "remo status "))
    stop = offered(await complete(cli_env, "remo stop "))
    assert running in stop and done_id not in stop and schedule_id not in stop
    rm = offered(await complete(cli_env, "remo rm "))
    assert {done_id, schedule_id} <= rm and running not in rm
    assert offered(await complete(cli_env, f"remo logs {running[:-1]}")) >= {running}

    # No server there: nothing is offered, nothing printed, at once.
    ca = CertificateAuthority.load_or_create(tmp_path / "closed-ca")
    issued = ca.issue_client(*me(), validity=timedelta(days=1))
    closed = tmp_path / "closed.remo"
    package.save(closed, ["127.0.0.1:9"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    assert (
        offered(await complete({**cli_env, "REMO_PROFILE": str(closed)}, "remo status ")) == set()
    )

    await ok(cli_env, "rm", "--stop", running)
    await ok(cli_env, "rm", schedule_id)


# -- remo register as an ordinary account ------------------------------------------------------


@pytest.fixture(scope="module")
def public_python() -> Iterator[str]:
    """A PYTHONPATH other accounts can read: remo and what `remo register` imports,
    copied (pytest's temporary directory and this checkout's interpreter are root's)."""
    top = Path(tempfile.mkdtemp(prefix="remo-py-"))
    top.chmod(0o755)
    for name in ("remo", "click", "cryptography", "_cffi_backend"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
            shutil.copytree(source, top / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif spec.origin:
            shutil.copy2(spec.origin, top / Path(spec.origin).name)
    for path in [top, *top.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield str(top)
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every account can reach (pytest's temporary directory is root's)."""
    path = Path(tempfile.mkdtemp(prefix="remo-pub-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def supervisors_of(state_dir: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"remo.supervisor" in cmdline and str(state_dir).encode() in cmdline:
            found.append(int(entry))
    return found


@needs_root
async def test_register_with_state_dir_works_for_an_ordinary_account(
    tmp_path: Path, public_dir: Path, public_python: str, unix_users: tuple[str, ...]
) -> None:
    """The server's start-up message says `remo register --state-dir DIR`: the state
    dir is root's (0700), and the account running that cannot read it."""
    alice = pwd.getpwnam(unix_users[0])
    state = public_dir / "state"
    runtime = public_dir / "runtime"  # alice's XDG_RUNTIME_DIR; the socket goes in it
    runtime.mkdir(mode=0o755)
    home = public_dir / "alice"
    home.mkdir()
    os.chown(home, alice.pw_uid, alice.pw_gid)
    out = home / "creds" / "build01.remo"
    out.parent.mkdir()
    os.chown(out.parent, alice.pw_uid, alice.pw_gid)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "PYTHONPATH": public_python,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        async with serve(tmp_path, state_dir=state, register_run_dir=runtime / "remo"):
            assert state.stat().st_mode & 0o777 == 0o700 and state.stat().st_uid == 0
            proc = await asyncio.create_subprocess_exec(
                "setpriv", f"--reuid={alice.pw_uid}", f"--regid={alice.pw_gid}",
                "--clear-groups", "/usr/bin/python3", "-m", "remo.cli.main",
                "register", "--state-dir", str(state), "-o", str(out),
                env=env, cwd=home,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        wait_until_sync(lambda: not supervisors_of(state), 15, what="the supervisor to exit")
    assert proc.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert lines == [
        f"wrote {out} for {alice.pw_name} (operator) (mode 0600)",
        f"on your machine, once the file is there: remo login {out}",
    ]
    assert out.stat().st_uid == alice.pw_uid and out.stat().st_mode & 0o777 == 0o600
    assert package.load(out).user == alice.pw_name

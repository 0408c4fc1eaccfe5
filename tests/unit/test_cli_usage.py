"""The CLI without a server: usage errors, one-line messages, exit codes, output shapes.

Commands that would connect get a fake client (``connect`` patched), so what is tested
here is the command line itself: parsing, validation before any network I/O, how
results are printed and which exit code comes out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from remo.cli.main import cli
from remo.client.calls import Resume
from remo.client.errors import ConnectionFailed
from remo.client.follow import Follow
from remo.client.types import JobPage, OutputChunk, Schedule, ScheduleRun, StartResult
from remo.core.spec import Limits
from remo.core.status import JobState, JobStatus
from remo.pki import package
from remo.pki.ca import CertificateAuthority

#: The keys of every job's JSON object: remo.v1's ``Job`` in protobuf's JSON mapping,
#: with the fields that have no presence always printed.
JOB_KEYS = {
    "id",
    "owner",
    "argv",
    "state",
    "pid",
    "start_time",
    "limits",
    "oom_killed",
    "oom_kills",
    "reason",
    "cwd",
    "isolation",
    "schedule_id",
    "output_dropped_bytes",
    "output_dropped_disk_full",
    "name",
    "labels",
}
#: ... and those a job has once it has ended (exit_code, or signal for a signalled one).
ENDED_KEYS = {"end_time", "cpu_time", "peak_memory_bytes"}
#: What the JSON of the old API had and the new one has not.
GONE_KEYS = {
    "started_at",
    "ended_at",
    "duration_seconds",
    "cpu_seconds",
    "output_truncated",
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private HOME and config dir, no REMO_PROFILE."""
    values = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("REMO_PROFILE", raising=False)
    return values


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, code: int, needle: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("remo: ")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command tries to connect."""

    def connect() -> None:
        raise AssertionError("the command connected before validating its input")

    for module in ("run", "ps", "status", "logs", "stop", "wait", "rm", "whoami"):
        monkeypatch.setattr(f"remo.cli.{module}.connect", connect)


# -- usage errors: exit 2, one line, nothing sent ----------------------------------------


@pytest.mark.usefixtures("env", "no_connect")
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--env", "FOO", "--", "true"], "--env 'FOO': expected NAME=VALUE"),
        (["run", "--env", "=x", "--", "true"], "invalid variable name"),
        (["run", "--memory", "2X", "--", "true"], "--memory: invalid size '2X'"),
        (
            ["run", "--memory", "1k", "--", "true"],
            "--memory must be between 1 MiB and 4 EiB, got 1 KiB",
        ),
        (["run", "--memory", "0", "--", "true"], "--memory must be between 1 MiB and 4 EiB, got 0"),
        (
            ["run", "--memory", "5E", "--", "true"],
            "--memory must be between 1 MiB and 4 EiB, got 5 EiB",
        ),
        (["run", "--memory", "1048575", "--", "true"], "got 1048575 B"),
        (["run", "--io-read", "0", "--", "true"], "--io-read: invalid rate"),
        (["run", "--io-write", "fast", "--", "true"], "--io-write: invalid rate"),
        (["run", "--io-read", "2", "--", "true"], "--io-read must be at least 64 KiB/s, got 2 B/s"),
        (["run", "--io-write", "63k", "--", "true"], "--io-write must be at least 64 KiB/s"),
        (
            ["run", "--io-write", "5E", "--", "true"],
            "--io-write must be between 64 KiB/s and 4 EiB/s",
        ),
        (
            ["run", "--cpu", "5000", "--", "true"],
            "--cpu must be between 0.001 and 4096 cores, got 5000",
        ),
        (["run", "--cpu", "lots", "--", "true"], "--cpu: invalid cpu amount"),
        (["run", "--cpu", "0", "--", "true"], "--cpu: invalid cpu amount"),
        (["run", "--pids", "0", "--", "true"], "--pids must be between 1 and 4194304, got 0"),
        (["run", "--pids", "lots", "--", "true"], "--pids: invalid number 'lots'"),
        (["run", "--json", "--", "true"], "--json goes with -d"),
        (["run", "--in", "20mims", "--", "true"], "--in: invalid duration '20mims'"),
        (["run", "--in", "5", "--", "true"], "has no unit"),
        (["run", "--every", "0s", "--", "true"], "--every: invalid duration"),
        (["run", "--every", "1mo", "--", "true"], "months and years vary"),
        (["run", "--at", "25:99", "--", "true"], "--at: invalid time"),
        (["run", "--at", "2001-01-01 00:00", "--", "true"], "in the past"),
        (["run", "--in", "5m", "--at", "02:00", "--", "true"], "give only one"),
        (["run", "--cwd", "relative/dir", "--", "true"], "absolute path"),
        (["run", "--network", "bridge", "--", "true"], "--network"),
        (["run"], "Missing argument"),
        (["run", "--bogus", "--", "true"], "No such option"),
        (["status"], "Missing argument"),
        (["status", "12twelve"], "invalid id '12twelve'"),
        (["status", "a b"], "invalid id 'a b'"),
        (["status", "Bad User/3"], "invalid id"),
        (["logs", "s3"], "s3 is a schedule"),
        (["logs", "--from", "-1", "3"], "--from"),
        (["stop", "--grace", "1x", "3"], "--grace: invalid duration"),
        (["stop", "--grace", "7200", "3"], "0 to 3600 seconds"),
        (["wait", "s1"], "is a schedule"),
        (["frobnicate"], "No such command 'frobnicate'."),
        (["stauts", "12"], "No such command 'stauts'. Did you mean 'status'?"),
        (["remove", "12"], "Did you mean 'rm'?"),
        (["ps", "-q", "--json"], "give only one"),
        (["rm"], "give the ID to remove (remo rm 12), or --finished"),
        (["rm", "--finished", "12"], "give no ID with it"),
        (["rm", "--finished", "--stop"], "--stop goes with an ID"),
        (["rm", "--older-than", "7d", "12"], "--older-than goes with --finished"),
        (["rm", "--finished", "--older-than", "7"], "--older-than: invalid duration '7'"),
    ],
)
def test_usage_errors(args: list[str], needle: str) -> None:
    assert_one_line_error(invoke(*args), 2, needle)


def test_usage_error_points_at_help(env: dict[str, str]) -> None:
    result = invoke("run", "--bogus")
    assert "(see 'remo run --help')" in result.stderr


# -- profiles and credentials -------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca") / "state")


def credential(ca: CertificateAuthority, path: Path, **kw: Any) -> Path:
    issued = ca.issue_client("alice", "operator", **kw)
    package.save(path, ["127.0.0.1:9"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return path


def test_missing_profile(env: dict[str, str]) -> None:
    assert_one_line_error(invoke("ps"), 2, "no remo profile: run `remo register` on the server")


def test_unknown_profile(env: dict[str, str]) -> None:
    assert_one_line_error(invoke("--profile", "ghost", "ps"), 2, "--profile ghost")
    assert_one_line_error(invoke("ps", "--profile", "ghost"), 2, "--profile ghost")


def test_several_profiles_without_default(
    env: dict[str, str], ca: CertificateAuthority, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        assert invoke("login", str(credential(ca, tmp_path / f"{name}.remo"))).exit_code == 0
    (Path(env["XDG_CONFIG_HOME"]) / "remo" / "default").unlink()
    assert_one_line_error(invoke("ps"), 2, "several profiles and no default: a, b")


def test_expired_credential_is_refused_before_connecting(
    env: dict[str, str], ca: CertificateAuthority, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    path = credential(
        ca, tmp_path / "old.remo", not_before=now - timedelta(days=3), validity=timedelta(days=1)
    )
    assert_one_line_error(invoke("--profile", str(path), "ps"), 4, "expired on")


def test_loose_credential_is_refused(
    env: dict[str, str], ca: CertificateAuthority, tmp_path: Path
) -> None:
    path = credential(ca, tmp_path / "loose.remo")
    os.chmod(path, 0o644)
    assert_one_line_error(invoke("ps", "--profile", str(path)), 4, "chmod 600")


def test_login_then_default_switch(
    env: dict[str, str], ca: CertificateAuthority, tmp_path: Path
) -> None:
    first = invoke("login", str(credential(ca, tmp_path / "build01.remo")))
    assert first.exit_code == 0
    assert "installed profile build01: alice (operator)" in first.stdout
    assert "it is the default" in first.stdout
    second = invoke("login", str(credential(ca, tmp_path / "gpu02.remo")))
    assert "--profile gpu02" in second.stdout
    switched = invoke("login", "--default", "gpu02")
    assert switched.exit_code == 0
    assert (Path(env["XDG_CONFIG_HOME"]) / "remo" / "default").read_text().strip() == "gpu02"


def test_login_of_a_missing_file(env: dict[str, str]) -> None:
    assert_one_line_error(invoke("login", "nowhere.remo"), 4, "cannot read credential file")


# -- help --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "verb", ["run", "ps", "status", "logs", "stop", "wait", "rm", "login", "whoami", "register"]
)
def test_each_command_has_help_with_examples(verb: str) -> None:
    result = invoke(verb, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"remo {verb}" in result.stdout


def test_bare_remo_shows_help() -> None:
    result = invoke()
    assert result.exit_code == 0
    assert "remo run -- make -j8 test" in result.stdout


def test_cli_help_imports_neither_grpc_nor_cryptography() -> None:
    code = (
        "import sys\n"
        "from remo.cli.main import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "for name in ('grpc', 'cryptography', 'rich', 'google.protobuf'):\n"
        "    assert name not in sys.modules, name\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# -- with a fake client ---------------------------------------------------------------------


def job(**kw: Any) -> JobStatus:
    values: dict[str, Any] = {
        "id": "12",
        "owner": "alice",
        "argv": ("make", "test"),
        "state": JobState.SUCCEEDED,
        "pid": 4242,
        "exit_code": 0,
        "signal": None,
        "started_at": time.time() - 90,
        "ended_at": time.time() - 30,
        "limits": Limits(memory=2 << 30, cpu=1.5),
        "cpu_seconds": 12.5,
        "peak_memory_bytes": 300 << 20,
        "isolation": ("pid", "mount"),
    }
    values.update(kw)
    return JobStatus(**values)


def running_job(**kw: Any) -> JobStatus:
    values: dict[str, Any] = {
        "id": "13",
        "state": JobState.RUNNING,
        "exit_code": None,
        "ended_at": None,
        "cpu_seconds": None,
        "peak_memory_bytes": None,
    }
    values.update(kw)
    return job(**values)


def schedule(**kw: Any) -> Schedule:
    values: dict[str, Any] = {
        "id": "s1",
        "owner": "alice",
        "argv": ("make", "nightly"),
        "every_seconds": 86400.0,
        "next_run_at": time.time() + 3600,
        "created_at": time.time() - 86400,
        "active": True,
        "recent_runs": (ScheduleRun(time.time() - 82800, "started", "11", ""),),
    }
    values.update(kw)
    return Schedule(**values)


@dataclass
class FakeClient:
    """Stands in for remo.client.Client: the same method names, arguments and returns.

    ``final`` is what status/stop/wait return and the newest job listed; ``older`` the
    jobs listed after it. ``list_page`` pages by position and filters by state as the
    server does; ``pages`` records each call's arguments.
    """

    final: JobStatus = field(default_factory=job)
    older: list[JobStatus] = field(default_factory=lambda: [running_job()])
    active: list[Schedule] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    interrupt: bool = False
    lose_connection: bool = False
    started: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, argv: list[str], **kw: Any) -> StartResult:
        self.started.append({"argv": argv, **kw})
        return StartResult(job=running_job(id="12"))

    def output(
        self,
        job_id: str,
        *,
        offset: int = 0,
        follow: bool = False,
        timeout: float | None = None,
        **window: Any,
    ) -> Iterator[OutputChunk]:
        position = offset
        for data in self.chunks:
            yield OutputChunk(position, data)
            position += len(data)
        if self.interrupt:
            raise KeyboardInterrupt
        if self.lose_connection:
            raise ConnectionFailed("lost the connection to 127.0.0.1:9")

    def follow(self, job_id: str, *, offset: int = 0, **window: Any) -> Follow:
        """output(follow=True), then the final status (as from a server that sent none)."""
        chunks = self.output(job_id, offset=offset, follow=True)
        return Follow(chunks, Resume(offset), lambda: self.final)

    def wait(self, job_id: str, *, timeout: float | None = None) -> JobStatus:
        return self.final

    def _jobs(self, states: Sequence[JobState | str]) -> list[JobStatus]:
        wanted = {JobState(s) for s in states}
        return [j for j in [self.final, *self.older] if not wanted or j.state in wanted]

    def list_page(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        all_users: bool = False,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
    ) -> JobPage:
        self.pages.append(
            {"page_size": page_size, "page_token": page_token, "all_users": all_users,
             "states": tuple(states), "labels": dict(labels or {})}
        )  # fmt: skip
        jobs = self._jobs(states)
        start = int(page_token or 0)
        end = start + (page_size or 100)
        return JobPage(jobs[start:end], str(end) if end < len(jobs) else "")

    def list(
        self,
        *,
        all_users: bool = False,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[JobStatus]:
        """As Client.list does: page after page (of at most 1000), up to ``limit``."""
        jobs: list[JobStatus] = []
        token = ""
        while limit is None or len(jobs) < limit:
            size = 1000 if limit is None else min(1000, limit - len(jobs))
            page = self.list_page(
                page_size=size, page_token=token, all_users=all_users, states=states,
                labels=labels,
            )  # fmt: skip
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                break
        return jobs

    def schedules(self, *, all_users: bool = False) -> list[Schedule]:
        return list(self.active)

    def schedule_status(self, schedule_id: str) -> Schedule:
        return self.active[0]

    def status(self, job_id: str) -> JobStatus:
        return self.final

    def stop(self, job_id: str, *, grace: float | None = None) -> JobStatus:
        return self.final

    def kill(self, job_id: str, signal: int | str = 9) -> JobStatus:
        return self.final

    def remove(self, job_id: str, *, stop_running: bool = False) -> None:
        self.removed.append(job_id)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    for module in ("run", "ps", "status", "logs", "wait", "stop", "rm"):
        monkeypatch.setattr(f"remo.cli.{module}.connect", lambda: client)
    return client


def test_run_streams_bytes_and_exits_with_the_job_code(fake: FakeClient) -> None:
    fake.chunks = [b"\x00\xffbinary\n", b"more"]
    fake.final = job(state=JobState.FAILED, exit_code=3)
    result = CliRunner().invoke(
        cli, ["run", "--memory", "2G", "--env", "A=1=2", "--", "make", "-j8"]
    )
    assert result.exit_code == 3
    assert result.stdout_bytes == b"\x00\xffbinary\nmore"
    started = fake.started[0]
    assert started["argv"] == ["make", "-j8"]
    assert started["env"] == {"A": "1=2"}
    assert started["limits"].memory == 2 << 30


def test_run_exit_code_after_a_signal_is_128_plus_n(fake: FakeClient) -> None:
    fake.final = job(state=JobState.KILLED, exit_code=None, signal=9)
    result = CliRunner().invoke(cli, ["run", "--", "sleep", "100"])
    assert result.exit_code == 137
    assert "SIGKILL" in result.stderr


def test_run_notes_oom_kills_of_a_child_without_calling_it_the_jobs_death(
    fake: FakeClient,
) -> None:
    fake.final = job(state=JobState.SUCCEEDED, exit_code=0, oom_kills=2)
    result = CliRunner().invoke(cli, ["run", "--", "make"])
    assert result.exit_code == 0
    expected = "2 process(es) of job 12 were killed by the out-of-memory killer; the job exited 0"
    assert expected in result.stderr
    status = CliRunner().invoke(cli, ["status", "12"])
    assert "oom killed   no" in status.stdout and "oom kills    2 process(es)" in status.stdout


def test_run_notes_the_oom_death_of_the_main_process(fake: FakeClient) -> None:
    fake.final = job(state=JobState.KILLED, exit_code=None, signal=9, oom_killed=True, oom_kills=1)
    result = CliRunner().invoke(cli, ["run", "--", "make"])
    assert result.exit_code == 137
    assert "job 12 was killed by the out-of-memory killer" in result.stderr


def test_run_ctrl_c_detaches(fake: FakeClient) -> None:
    fake.chunks = [b"partial"]
    fake.interrupt = True
    result = CliRunner().invoke(cli, ["run", "--", "sleep", "100"])
    assert result.exit_code == 130
    assert result.stderr.strip() == (
        'detached from job 12 (still running): follow with "remo logs -f 12", '
        'stop with "remo stop 12"'
    )


def test_run_lost_connection_says_how_to_resume(fake: FakeClient) -> None:
    fake.chunks = [b"12345"]
    fake.lose_connection = True
    result = CliRunner().invoke(cli, ["run", "--", "sleep", "100"])
    assert result.exit_code == 3
    assert 'remo logs -f --from 5 12"' in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_run_detached_prints_only_the_id(fake: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["run", "-d", "--", "sleep", "100"])
    assert (result.exit_code, result.stdout) == (0, "12\n")


def test_ps_json_is_a_list_of_documented_objects(fake: FakeClient) -> None:
    """remo.v1's Job in protobuf's JSON mapping: RFC 3339 times, enum names, int64 as
    strings, optional fields absent while unset."""
    result = CliRunner().invoke(cli, ["ps", "--json"])
    assert result.exit_code == 0
    jobs = json.loads(result.stdout)
    assert [j["id"] for j in jobs] == ["12", "13"]
    assert set(jobs[0]) == JOB_KEYS | ENDED_KEYS | {"exit_code"}
    assert set(jobs[1]) == JOB_KEYS  # running: no end_time, exit_code, cpu_time
    for item in jobs:
        assert not set(item) & GONE_KEYS
        assert item["start_time"].endswith("Z")
        datetime.fromisoformat(item["start_time"].replace("Z", "+00:00"))
    first = jobs[0]
    assert (first["state"], jobs[1]["state"]) == ("JOB_STATE_SUCCEEDED", "JOB_STATE_RUNNING")
    assert first["pid"] == "4242" and first["peak_memory_bytes"] == str(300 << 20)
    assert first["cpu_time"] == "12.500s" and first["exit_code"] == 0
    datetime.fromisoformat(first["end_time"].replace("Z", "+00:00"))
    assert first["limits"] == {"cpu_cores": 1.5, "memory_bytes": str(2 << 30)}
    assert first["isolation"] == ["pid", "mount"] and first["output_dropped_bytes"] == "0"


def test_ps_json_of_schedules(fake: FakeClient) -> None:
    fake.active = [schedule()]
    result = CliRunner().invoke(cli, ["ps", "--schedules", "--json"])
    assert result.exit_code == 0
    (item,) = json.loads(result.stdout)
    assert item["id"] == "s1" and item["period"] == "86400s"
    assert {"next_run_time", "create_time", "recent_runs"} <= set(item)
    assert item["recent_runs"][0]["outcome"] == "SCHEDULE_RUN_OUTCOME_STARTED"
    assert not {"every_seconds", "next_run_at", "created_at"} & set(item)


def test_ps_shows_the_newest_page_and_says_when_there_are_more(fake: FakeClient) -> None:
    fake.older = [running_job(id=str(n)) for n in range(11, 0, -1)]
    result = CliRunner().invoke(cli, ["ps", "-q", "-n", "5"])
    assert result.exit_code == 0
    assert result.stdout.split() == ["12", "11", "10", "9", "8"]
    assert "showing the newest 5 jobs; there are more" in result.stderr
    # Only about a page is asked for, not every job.
    assert sum(p["page_size"] for p in fake.pages) <= 6
    assert all(not p["all_users"] and p["states"] == () for p in fake.pages)
    fake.pages.clear()
    every = CliRunner().invoke(cli, ["ps", "-q", "--all-pages"])
    assert every.stdout.split() == [str(n) for n in range(12, 0, -1)]
    assert every.stderr == ""
    exactly = CliRunner().invoke(cli, ["ps", "-q", "-n", "12"])
    assert len(exactly.stdout.split()) == 12 and exactly.stderr == ""


def test_ps_since_reads_pages_until_an_older_job(fake: FakeClient) -> None:
    """--since 1h: every job started in the last hour, pages read newest first until
    one reaches an older job (not every job on record)."""
    now = time.time()
    # Job 12 (the fixture's) started 90 s ago; then one job a minute older each.
    fake.older = [
        running_job(id=str(n), started_at=now - 60 * (12 - n) - 120) for n in range(11, 0, -1)
    ]
    fake.older += [running_job(id=str(n), started_at=now - 7200 - n) for n in range(3000, 2000, -1)]
    recent = CliRunner().invoke(cli, ["ps", "-q", "--since", "1h"])
    assert recent.exit_code == 0, recent.output
    assert recent.stdout.split() == [str(n) for n in range(12, 0, -1)]
    assert len(fake.pages) == 1  # the first page already reached older jobs
    ten = CliRunner().invoke(cli, ["ps", "-q", "--since", "5m"])
    assert ten.stdout.split() == ["12", "11", "10"]  # 90, 180 and 240 s ago
    bad = CliRunner().invoke(cli, ["ps", "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_ps_shows_the_newest_100_by_default(fake: FakeClient) -> None:
    fake.older = [running_job(id=str(n)) for n in range(200, 0, -1)]
    result = CliRunner().invoke(cli, ["ps", "-q"])
    assert result.exit_code == 0
    assert result.stdout.split() == ["12", *(str(n) for n in range(200, 101, -1))]
    assert "showing the newest 100 jobs; there are more" in result.stderr


def test_ps_reads_past_a_page_of_1000_for_a_larger_limit(fake: FakeClient) -> None:
    fake.older = [running_job(id=str(n)) for n in range(3000, 0, -1)]
    result = CliRunner().invoke(cli, ["ps", "-q", "-n", "1500"])
    assert result.exit_code == 0
    assert len(result.stdout.split()) == 1500
    assert "showing the newest 1500 jobs" in result.stderr
    assert all(p["page_size"] <= 1000 for p in fake.pages)


@pytest.mark.parametrize(
    ("args", "states", "ids"),
    [
        (["--running"], ("running",), ["13"]),
        (["--state", "succeeded"], ("succeeded",), ["12"]),
        (["--state", "failed", "--state", "running"], ("failed", "running"), ["13"]),
    ],
)
def test_ps_filters_by_state_on_the_server(
    fake: FakeClient, args: list[str], states: tuple[str, ...], ids: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["ps", "-q", *args])
    assert result.exit_code == 0
    assert result.stdout.split() == ids
    assert fake.pages and {tuple(p["states"]) for p in fake.pages} == {states}


def test_ps_table(fake: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["ps"])
    assert result.exit_code == 0
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "AGE", "EXIT", "COMMAND"]
    assert first.split() == ["12", "succeeded", "1m30s", "0", "make", "test"]
    assert second.split()[:2] == ["13", "running"]


def test_ps_table_lists_schedules_after_the_jobs(fake: FakeClient) -> None:
    fake.active = [schedule()]
    lines = CliRunner().invoke(cli, ["ps"]).stdout.splitlines()
    assert len(lines) == 6 and lines[3] == ""
    assert lines[4].split() == ["SCHEDULE", "NEXT", "RUN", "EVERY", "COMMAND"]
    assert lines[5].split()[0] == "s1" and lines[5].endswith("make nightly")
    quiet = CliRunner().invoke(cli, ["ps", "-q"]).stdout.split()
    assert quiet == ["12", "13"]  # -q: jobs only, without --schedules
    assert CliRunner().invoke(cli, ["ps", "-q", "--schedules"]).stdout.split() == ["s1"]


def test_status_human_and_json(fake: FakeClient) -> None:
    fake.final = job(state=JobState.KILLED, exit_code=None, signal=9, oom_killed=True)
    human = CliRunner().invoke(cli, ["status", "12"])
    assert human.exit_code == 0
    assert "signal       9 (SIGKILL)" in human.stdout
    assert "peak memory  300 MiB" in human.stdout
    assert "limits       cpu 1.5 cores, memory 2 GiB" in human.stdout
    assert "oom killed   yes" in human.stdout
    as_json = json.loads(CliRunner().invoke(cli, ["status", "--json", "12"]).stdout)
    assert set(as_json) == JOB_KEYS | ENDED_KEYS | {"signal"}
    assert as_json["oom_killed"] is True and as_json["signal"] == 9
    assert as_json["state"] == "JOB_STATE_KILLED"


def test_status_of_a_schedule_human_and_json(fake: FakeClient) -> None:
    fake.active = [schedule()]
    human = CliRunner().invoke(cli, ["status", "s1"])
    assert human.exit_code == 0, human.output
    assert "make nightly" in human.stdout and "started" in human.stdout
    as_json = json.loads(CliRunner().invoke(cli, ["status", "--json", "s1"]).stdout)
    assert as_json["id"] == "s1" and as_json["argv"] == ["make", "nightly"]
    assert as_json["recent_runs"][0]["job_id"] == "11"


def test_wait_exits_with_the_job_code(fake: FakeClient) -> None:
    fake.final = job(state=JobState.FAILED, exit_code=42)
    result = CliRunner().invoke(cli, ["wait", "12"])
    assert (result.exit_code, result.stdout) == (42, "")


def test_lost_job_is_a_remote_failure(fake: FakeClient) -> None:
    fake.final = job(state=JobState.LOST, exit_code=None, reason="the supervisor died")
    result = CliRunner().invoke(cli, ["wait", "12"])
    assert_one_line_error(result, 6, "job 12 was lost: the supervisor died")


def test_logs_writes_raw_bytes(fake: FakeClient) -> None:
    fake.chunks = [b"a\r\n", b"\x1b[1mbold\x00"]
    result = CliRunner().invoke(cli, ["logs", "-f", "12"])
    assert (result.exit_code, result.stdout_bytes) == (0, b"a\r\n\x1b[1mbold\x00")


def test_ps_quiet_prints_ids_newest_first(fake: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["ps", "-q"])
    assert (result.exit_code, result.stdout) == (0, "12\n13\n")


def test_a_multi_line_argument_stays_on_its_line(fake: FakeClient) -> None:
    fake.final = job(argv=("sh", "-c", "echo a\necho b\x1b[2J"))
    table = CliRunner().invoke(cli, ["ps"]).stdout.splitlines()
    assert len(table) == 3
    assert table[1].endswith("sh -c $'echo a\\necho b\\e[2J'")
    human = CliRunner().invoke(cli, ["status", "12"]).stdout
    assert "command      sh -c $'echo a\\necho b\\e[2J'\n" in human
    assert "\x1b" not in human


def test_shown_commands_read_back_as_the_same_argv() -> None:
    import shlex

    from remo.cli.common import command_line

    plain = ["make", "-j8", "it's", "a b"]
    assert command_line(plain) == shlex.join(plain)
    tricky = ["printf", "a\nb", "tab\there", "\u202eevil", "back\\slash'quote\x01"]
    line = command_line(tricky)
    assert "\n" not in line and "\u202e" not in line
    done = subprocess.run(
        ["bash", "-c", "for a in " + line + '; do printf "%s\\0" "$a"; done'],
        capture_output=True,
        check=True,
        env={"LANG": "C.UTF-8", "PATH": os.environ["PATH"]},
    )
    assert done.stdout.split(b"\0")[:-1] == [a.encode() for a in tricky]


def test_run_detached_json_is_a_job_object(fake: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["run", "-d", "--json", "--", "sleep", "100"])
    assert result.exit_code == 0
    started = json.loads(result.stdout)
    assert set(started) == JOB_KEYS and started["state"] == "JOB_STATE_RUNNING"


def test_stop_and_wait_json_are_job_objects(fake: FakeClient) -> None:
    fake.final = job(state=JobState.STOPPED, exit_code=None, signal=15)
    stopped = CliRunner().invoke(cli, ["stop", "--json", "12"])
    assert stopped.exit_code == 0
    assert json.loads(stopped.stdout)["signal"] == 15
    assert json.loads(stopped.stdout)["state"] == "JOB_STATE_STOPPED"
    waited = CliRunner().invoke(cli, ["wait", "--json", "12"])
    assert waited.exit_code == 143
    assert set(json.loads(waited.stdout)) == JOB_KEYS | ENDED_KEYS | {"signal"}


def test_rm_finished_removes_only_ended_jobs(fake: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["rm", "--finished"])
    assert (result.exit_code, result.stdout) == (0, "removed 1 finished job(s)\n")
    assert fake.removed == ["12"]
    finished = {JobState(s) for s in fake.pages[0]["states"]}
    assert finished == {s for s in JobState if s.final}


def test_rm_finished_goes_through_every_page(fake: FakeClient) -> None:
    fake.older = [job(id=str(n)) for n in range(3000, 500, -1)]
    result = CliRunner().invoke(cli, ["rm", "--finished"])
    assert (result.exit_code, result.stdout) == (0, "removed 2501 finished job(s)\n")
    assert len(set(fake.removed)) == 2501
    assert [p["page_token"] for p in fake.pages] == ["", "1000", "2000"]


def test_rm_finished_older_than_keeps_recent_ones(fake: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["rm", "--finished", "--older-than", "1h", "--json"])
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"removed": []})
    assert fake.removed == []


def test_limit_messages_name_the_limit_in_human_units() -> None:
    from remo.core.errors import InvalidArgument

    with pytest.raises(
        InvalidArgument, match=r"^memory limit must be between 1 MiB and 4 EiB, got 0$"
    ):
        Limits(memory=0).validate()
    with pytest.raises(InvalidArgument, match=r"^output limit must be a whole number"):
        Limits(output_bytes=1.5).validate()  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^--pids must be between 1 and 4194304, got 0$"):
        Limits(pids=0).validate({"pids": "--pids"})


def test_server_limit_messages_are_put_in_option_terms() -> None:
    from remo.cli.run import in_option_terms

    server = "cpu limit must be between 0.001 and 2 cores (this server has 2 CPUs), got 8"
    assert in_option_terms(server) == (
        "--cpu must be between 0.001 and 2 cores (this server has 2 CPUs), got 8"
    )
    assert in_option_terms("argv is empty") == "argv is empty"


def test_completion_of_ids_is_silent_without_a_server(env: dict[str, str]) -> None:
    import click

    from remo.cli.common import complete_ids

    ctx = click.Context(cli)
    param = click.Argument(["job_id"])
    assert complete_ids()(ctx, param, "") == []  # no profile: nothing, no error


def test_ctrl_c_inside_an_import_is_an_interruption(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11 wraps a KeyboardInterrupt raised while a class is made (its fields'
    ``__set_name__``, as an import makes them) in a RuntimeError: still "interrupted",
    exit 130, not an internal error."""

    class Field:
        def __set_name__(self, owner: type, name: str) -> None:
            raise KeyboardInterrupt

    def connect() -> None:
        type("Imported", (), {"field": Field()})

    monkeypatch.setattr("remo.cli.status.connect", connect)
    result = CliRunner().invoke(cli, ["status", "12"])
    assert (result.exit_code, result.stderr) == (130, "remo: interrupted\n")

"""The worker library against real processes and, as root, real cgroups."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from remo.core.errors import InvalidArgument, JobNotFound, JobStillRunning, StartFailed
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState
from remo.supervisor import init
from remo.supervisor.service import instance_tag
from remo.worker import JobManager
from tests.conftest import job_cgroups, remo_cgroups
from tests.integration.conftest import needs_root
from tests.support import wait_until

PY = sys.executable


@pytest.fixture(params=["compiled", "python"])
async def manager(
    request: pytest.FixtureRequest, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[JobManager]:
    """Every test here runs with each of the two job relays (remo.supervisor.init): the
    compiled one, which setup.py builds with the package, and the Python fallback."""
    if request.param == "python":
        monkeypatch.setenv("REMO_RELAY", "python")
    else:
        assert init.RELAY_BINARY.exists(), "the compiled relay was not built (see setup.py)"
    async with JobManager.open(state_dir) as jobs:
        yield jobs


async def test_the_init_becomes_the_relay_asked_for(
    manager: JobManager, request: pytest.FixtureRequest
) -> None:
    job = await manager.start(JobSpec(["sleep", "1000"]))
    job_pid = (await manager.status(job)).pid
    assert job_pid is not None
    init_pid = int(Path(f"/proc/{job_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    program = Path(os.readlink(f"/proc/{init_pid}/exe")).resolve()
    if request.node.callspec.params["manager"] == "compiled":
        assert program == init.RELAY_BINARY.resolve()
    else:
        assert program == Path(os.readlink(f"/proc/{os.getpid()}/exe")).resolve()
    await manager.stop(job, grace=1)


async def collect(manager: JobManager, job_id: str, offset: int = 0, follow: bool = True) -> bytes:
    return b"".join([chunk async for chunk in manager.output(job_id, offset, follow)])


async def job_cgroup_dirs(manager: JobManager, job_id: str) -> list[str]:
    """The job's cgroup directories in every hierarchy (this manager's instance only)."""
    name = (await manager.status(job_id)).cgroup
    assert name.startswith(f"{instance_tag(manager.paths)}-"), name
    return [p for p in remo_cgroups() if p.endswith(f"/{name}")]


async def job_cgroups_removed(manager: JobManager, job_id: str) -> None:
    """Wait until the ended job's cgroups are gone: emptied before its end is recorded,
    they are removed right after (off the path of whoever waits for that end)."""
    name = (await manager.status(job_id)).cgroup
    assert name.startswith(f"{instance_tag(manager.paths)}-"), name
    await wait_until(
        lambda: not [p for p in remo_cgroups() if p.endswith(f"/{name}")],
        what=f"the cgroups of {job_id} to be removed",
    )


async def test_start_status_and_exit_code(manager: JobManager) -> None:
    job = await manager.start(JobSpec(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    status = await manager.wait(job)
    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    assert status.signal is None
    assert status.ended_at is not None and status.ended_at >= status.started_at
    assert await collect(manager, job) == b"out\nerr\n"


async def test_a_wait_does_not_read_the_row_for_every_line_the_job_prints(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line printed makes a record, not a row: a Wait looks at the table again only
    when a file comes or goes in the job's directory (its end: ``exit``)."""
    job = await manager.start(
        JobSpec(["sh", "-c", "for i in $(seq 100); do echo $i; sleep 0.01; done"])
    )
    reads = 0
    status_blocking = manager.status_blocking

    def counted(job_id: str) -> Any:
        nonlocal reads
        reads += 1
        return status_blocking(job_id)

    monkeypatch.setattr(manager, "status_blocking", counted)
    # (no backstop to fall back on: the end must be seen when it comes)
    monkeypatch.setattr("remo.worker.BACKSTOP_SECONDS", 3600.0)
    status = await asyncio.wait_for(manager.wait(job), 120)
    assert status.state is JobState.SUCCEEDED
    assert (await collect(manager, job)).split() == [str(i).encode() for i in range(1, 101)]
    # (its end: the files closed, the marker written and renamed; not one per line)
    assert reads <= 20, f"{reads} reads of the row for 100 lines"


async def test_a_start_answers_with_the_status_it_recorded(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor's reply carries the new row: the API server's Start answers with it
    instead of reading it back, and it is the row as the table has it."""
    spec = JobSpec(["sleep", "60"], name="napper", labels={"team": "a"}, limits=Limits(pids=50))

    async def no_read_back(job_id: str) -> None:
        raise AssertionError("the start's status was read back")

    monkeypatch.setattr(manager, "status", no_read_back)
    started = await manager.start_status(spec, request_id="req-1")
    monkeypatch.undo()
    try:
        assert started == await manager.status(started.id)
        assert started.state is JobState.RUNNING and started.pid
        assert (started.name, started.labels, started.limits.pids) == ("napper", {"team": "a"}, 50)
        # a repeat of the request gets the first start's job, with its row too
        monkeypatch.setattr(manager, "status", no_read_back)
        again = await manager.start_status(spec, request_id="req-1")
        monkeypatch.undo()
        assert again == await manager.status(started.id)
    finally:
        await manager.stop(started.id, grace=0)


async def test_a_start_reply_without_the_row_is_read_back(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor from before the row was sent (it outlives an upgraded server)."""
    real = manager._call

    async def as_before(op: str, _idempotent: bool = False, **args: Any) -> Any:
        reply = await real(op, _idempotent, **args)
        if op == "start":
            del reply["row"]
        return reply

    monkeypatch.setattr(manager, "_call", as_before)
    started = await manager.start_status(JobSpec(["sleep", "60"]))
    try:
        assert started == await manager.status(started.id)
        assert started.state is JobState.RUNNING
    finally:
        await manager.stop(started.id, grace=0)


async def test_ten_mib_binary_output_is_byte_exact(manager: JobManager, tmp_path: Path) -> None:
    data = os.urandom(10 << 20)
    source = tmp_path / "random.bin"
    source.write_bytes(data)
    job = await manager.start(JobSpec(["cat", str(source)]))
    followed = await collect(manager, job)
    assert hashlib.sha256(followed).digest() == hashlib.sha256(data).digest()
    middle = len(data) // 2 + 12345
    tail = await collect(manager, job, offset=middle, follow=False)
    assert hashlib.sha256(tail).digest() == hashlib.sha256(data[middle:]).digest()


async def test_fifty_followers_get_identical_output(manager: JobManager) -> None:
    script = (
        "import time\nfor i in range(200):\n    print('line', i, flush=True)\n    time.sleep(0.01)"
    )
    job = await manager.start(JobSpec([PY, "-c", script]))
    results = await asyncio.gather(*(collect(manager, job) for _ in range(50)))
    expected = "".join(f"line {i}\n" for i in range(200)).encode()
    assert all(result == expected for result in results)
    assert (await manager.status(job)).state is JobState.SUCCEEDED


def marked(marker: bytes) -> set[int]:
    """Host pids of the processes whose environment carries ``marker`` (zombies have none)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if marker in environ.split(b"\0"):
                found.add(int(entry))
    return found


@needs_root
async def test_stop_kills_setsid_grandchild_ignoring_sigterm(manager: JobManager) -> None:
    # The grandchild is found on the host by its environment: a pid it could print
    # itself is one of its PID namespace's, meaningless in the host's /proc.
    marker = f"REMO_TEST_GRANDCHILD={uuid.uuid4().hex}"
    script = textwrap.dedent(
        f"""
        setsid env {marker} sh -c 'trap "" TERM; echo ready; exec sleep 1000' &
        trap "" TERM
        sleep 1000
        """
    )
    job = await manager.start(JobSpec(["sh", "-c", script]))
    async for chunk in manager.output(job, follow=True):
        if b"ready" in chunk:
            break
    [grandchild] = await wait_until(lambda: marked(marker.encode()), what="the grandchild")
    job_pid = (await manager.status(job)).pid
    assert job_pid and os.getsid(grandchild) != os.getsid(job_pid)  # it left the session
    assert await job_cgroup_dirs(manager, job)
    status = await manager.stop(job, grace=0.3)
    assert status.state is JobState.STOPPED
    assert status.signal == signal.SIGKILL
    assert marked(marker.encode()) == set(), "the grandchild outlived the stop"
    assert not _is_alive(grandchild)
    await job_cgroups_removed(manager, job)
    # stop is idempotent
    assert (await manager.stop(job)).state is JobState.STOPPED


@needs_root
async def test_every_job_is_in_a_cpu_group_of_its_own_beneath_remos(manager: JobManager) -> None:
    """Limits or not, a job's processes (one that left its session too) are in the job's
    group of the cpu hierarchy, beneath remo's: all jobs together weigh what that group
    weighs (test_cgroups_real.py), each job as much as another whatever it forks. Left
    in the root group (cgroup v1, no cpu limit), every session is an autogroup of its
    own (sched(7)) that weighs as much as the server's: a thousand busy sessions would
    leave it a thousandth."""
    marker = f"REMO_TEST_SESSION={uuid.uuid4().hex}"
    job = await manager.start(
        JobSpec(["sh", "-c", f"setsid env {marker} sleep 1000 & echo ready; exec sleep 1000"])
    )
    try:
        async for chunk in manager.output(job, follow=True):
            if b"ready" in chunk:
                break
        [leader] = await wait_until(lambda: marked(marker.encode()), what="the session leader")
        status = await manager.status(job)
        assert status.pid is not None
        assert os.getsid(leader) != os.getsid(status.pid)
        for pid in (status.pid, leader):
            lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().split()]
            cpu = [path for _, names, path in lines if "cpu" in names.split(",")]
            if not cpu:  # cgroup v2: one hierarchy; remo's group hands the controller on
                [path] = [path for _, names, path in lines if not names]
                parent = Path("/sys/fs/cgroup" + path).parent
                assert "cpu" in (parent / "cgroup.subtree_control").read_text().split()
                cpu = [path]
            assert cpu[0].endswith(f"/remo/{status.cgroup}"), (pid, lines)
    finally:
        await manager.stop(job, grace=0.3)


def _is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_stop_reaches_sigterm_handler(manager: JobManager) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        def bye(*_):
            os.write(1, b"graceful\\n")  # not print: it may interrupt print("ready")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(1000)
        """
    )
    job = await manager.start(JobSpec([PY, "-c", script]))
    async for chunk in manager.output(job, follow=True):
        if b"ready" in chunk:
            break
    status = await manager.stop(job, grace=10)
    assert status.state is JobState.STOPPED
    assert status.exit_code == 0
    assert b"graceful" in await collect(manager, job)


@needs_root
async def test_memory_limit_oom_kills(manager: JobManager) -> None:
    limit = 64 << 20
    job = await manager.start(
        JobSpec(
            [PY, "-c", f"b = b'x' * {4 * limit}; print('survived')"], limits=Limits(memory=limit)
        )
    )
    status = await manager.wait(job)
    assert status.oom_killed
    assert status.state is JobState.KILLED
    assert status.signal == signal.SIGKILL
    assert b"survived" not in await collect(manager, job)
    assert status.peak_memory_bytes is not None and status.peak_memory_bytes <= limit + (1 << 20)


@needs_root
async def test_pids_limit_contains_fork_bomb(manager: JobManager) -> None:
    script = textwrap.dedent(
        """
        import os, time
        made, refused = 0, 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                made += 1
            except BlockingIOError:
                refused += 1
        print(made, refused, flush=True)
        """
    )
    job = await manager.start(JobSpec([PY, "-c", script], limits=Limits(pids=20)))
    status = await manager.wait(job)
    made, refused = map(int, (await collect(manager, job)).split())
    assert made < 20 and refused > 0
    assert status.state is JobState.SUCCEEDED
    # the host is unharmed: it can still fork, and no child of the bomb survived the job
    assert subprocess.run(["true"], check=False).returncode == 0
    await job_cgroups_removed(manager, job)


@needs_root
async def test_cpu_limit_throttles_busy_loop(manager: JobManager) -> None:
    job = await manager.start(JobSpec([PY, "-c", "while True: pass"], limits=Limits(cpu=0.2)))
    await asyncio.sleep(3)  # the measured interval itself, not a wait for a condition
    status = await manager.stop(job, grace=0)
    assert status.cpu_seconds is not None
    wall = (status.ended_at or 0) - status.started_at
    assert 0.05 <= status.cpu_seconds <= 0.25 * wall + 0.1


@needs_root
async def test_io_read_limit_throttles_direct_reads(manager: JobManager, tmp_path: Path) -> None:
    data = tmp_path / "blob"
    with data.open("wb") as f:
        f.write(os.urandom(24 << 20))
        os.fsync(f.fileno())
    rate = 8 << 20
    spec = JobSpec(
        ["dd", f"if={data}", "of=/dev/null", "bs=1M", "iflag=direct"],
        limits=Limits(io_read_bps=rate),
    )
    started = time.monotonic()
    job = await manager.start(spec)
    status = await manager.wait(job)
    elapsed = time.monotonic() - started
    assert status.state is JobState.SUCCEEDED, await collect(manager, job)
    observed = (24 << 20) / elapsed
    assert 0.5 * rate <= observed <= 1.5 * rate, (
        f"{observed / 1e6:.1f} MB/s for limit {rate / 1e6:.1f}"
    )


async def test_jobs_survive_kill_9_of_library_process(state_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from remo.worker import JobManager
        from remo.core.spec import JobSpec
        async def main():
            async with JobManager.open({str(state_dir)!r}) as jobs:
                script = "echo begin; sleep 1; echo end; exit 7"
                job = await jobs.start(JobSpec(["sh", "-c", script]))
                print(job, flush=True)
                await asyncio.sleep(1000)
        asyncio.run(main())
        """
    )
    with subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE) as user:
        assert user.stdout is not None
        job = user.stdout.readline().decode().strip()
        user.kill()
    async with JobManager.open(state_dir) as manager:
        status = await manager.wait(job)
        assert status.state is JobState.FAILED
        assert status.exit_code == 7
        assert await collect(manager, job) == b"begin\nend\n"


@pytest.mark.parametrize(
    ("spec", "stage", "err"),
    [
        (JobSpec(["/nonexistent/binary"]), "exec", errno.ENOENT),
        (JobSpec(["no-such-command-remo"]), "exec", errno.ENOENT),
        (JobSpec(["{noexec}"]), "exec", errno.EACCES),
        (JobSpec(["true"], cwd="/nonexistent/dir"), "chdir", errno.ENOENT),
    ],
)
async def test_start_failures_are_typed_and_leave_nothing(
    manager: JobManager, spec: JobSpec, stage: str, err: int, tmp_path: Path
) -> None:
    plain_file = tmp_path / "not-executable"
    plain_file.write_text("#!/bin/sh\necho hi\n")
    plain_file.chmod(0o644)
    spec = JobSpec([a.format(noexec=plain_file) for a in spec.argv], cwd=spec.cwd)
    with pytest.raises(StartFailed) as caught:
        await manager.start(spec)
    assert caught.value.stage == stage
    assert caught.value.errno == err
    assert await manager.list() == []
    assert job_cgroups(instance_tag(manager.paths)) == set()
    assert not any((manager.paths.jobs_dir).rglob("records"))


async def test_an_unattended_supervisor_exits_once_its_last_job_is_finished(
    state_dir: Path, tmp_path: Path
) -> None:
    """Nobody connected when the last job ends: the supervisor leaves (it lingers 0 s
    here) once that end is recorded and the job's cgroup removed, and not before."""
    go = tmp_path / "go"
    async with JobManager.open(state_dir) as manager:
        job = await manager.start(
            JobSpec(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done"])
        )
        supervisor = int(manager._info["pid"])
        tag = instance_tag(manager.paths)
    assert os.path.exists(f"/proc/{supervisor}")  # a job runs: it stays
    go.touch()
    await wait_until(
        lambda: not os.path.exists(f"/proc/{supervisor}"), what="the idle supervisor to exit"
    )
    assert job_cgroups(tag) == set()
    async with JobManager.open(state_dir) as manager:
        assert (await manager.status(job)).state is JobState.SUCCEEDED


@pytest.mark.parametrize(
    "spec",
    [
        JobSpec([]),
        JobSpec(["echo", "a\0b"]),
        JobSpec([""]),
        JobSpec(["true"], limits=Limits(memory=-1)),
        JobSpec(["true"], limits=Limits(cpu=-0.5)),
        JobSpec(["true"], limits=Limits(pids=0)),
        JobSpec(["true"], cwd="relative/dir"),
        JobSpec(["true"], env={"A=B": "c"}),
    ],
)
async def test_invalid_specs_are_rejected(manager: JobManager, spec: JobSpec) -> None:
    with pytest.raises(InvalidArgument):
        await manager.start(spec)
    assert await manager.list() == []


async def test_unknown_and_malformed_ids(manager: JobManager) -> None:
    with pytest.raises(JobNotFound):
        await manager.status("root/999")
    with pytest.raises(InvalidArgument):
        await manager.status("../../etc")
    with pytest.raises(JobNotFound):
        await manager.stop("root/999")


async def test_remove_finished_job_frees_output(manager: JobManager) -> None:
    running = await manager.start(JobSpec(["sleep", "30"]))
    with pytest.raises(JobStillRunning):
        await manager.remove(running)
    await manager.stop(running, grace=0)
    await manager.remove(running)
    with pytest.raises(JobNotFound):
        await manager.status(running)
    assert not any(manager.paths.jobs_dir.rglob("records"))


async def test_output_offsets(manager: JobManager) -> None:
    job = await manager.start(JobSpec(["printf", "0123456789"]))
    await manager.wait(job)
    assert await collect(manager, job, 4, follow=False) == b"456789"
    assert await collect(manager, job, 100, follow=False) == b""
    with pytest.raises(InvalidArgument):
        await collect(manager, job, -1)


@needs_root
async def test_supervisor_kill_9_jobs_readopted_and_new_supervisor_starts(
    manager: JobManager,
) -> None:
    """A supervisor killed mid-job is replaced at once; its jobs are re-adopted."""
    job = await manager.start(JobSpec(["sh", "-c", "sleep 1; echo done; exit 5"]))
    old_pid = manager._info["pid"]
    os.kill(old_pid, signal.SIGKILL)
    status = await asyncio.wait_for(manager.wait(job), 30)
    assert manager._info["pid"] != old_pid
    assert status.ended
    # With a PID namespace the job's init recorded its status: nothing is lost.
    if "pid" in status.isolation:
        assert status.state is JobState.FAILED and status.exit_code == 5
    else:
        assert status.state is JobState.LOST and "supervisor" in status.reason
    assert await collect(manager, job) == b"done\n"
    await job_cgroups_removed(manager, job)
    # and the new supervisor works
    again = await manager.start(JobSpec(["true"]))
    assert (await manager.wait(again)).state is JobState.SUCCEEDED


async def test_output_cap_drops_the_rest_without_harming_the_job(manager: JobManager) -> None:
    cap = 64 << 10
    script = (
        "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 16384)\n"
        "print('still alive', file=sys.stderr)"
    )
    job = await manager.start(JobSpec([PY, "-c", script], limits=Limits(output_bytes=cap)))
    status = await manager.wait(job)
    assert status.state is JobState.SUCCEEDED  # the job was not harmed
    assert status.output_truncated
    output = await collect(manager, job)
    kept, notice = output.split(b"\n[remo: ")
    # The cap holds the data and the 32-byte record of each piece of it.
    records = (manager.paths.jobs_dir / job / "records").stat().st_size
    assert kept == b"x" * len(kept)
    assert len(kept) + records - 32 <= cap < len(kept) + records + 16384
    assert "output truncated at 65536 bytes" in notice.decode()
    total = (1 << 20) + len("still alive") + 1
    assert f"; {total - len(kept)} bytes were dropped" in notice.decode()
    assert (manager.paths.jobs_dir / job / "stdout").stat().st_size == len(kept)


async def test_uncapped_output_is_not_truncated(manager: JobManager) -> None:
    job = await manager.start(JobSpec(["head", "-c", "300000", "/dev/zero"]))
    status = await manager.wait(job)
    assert not status.output_truncated
    assert await collect(manager, job) == bytes(300000)


async def test_retention_purges_old_finished_jobs_only(manager: JobManager) -> None:
    done = await manager.start(JobSpec(["echo", "old"]))
    await manager.wait(done)
    running = await manager.start(JobSpec(["sleep", "30"]))
    assert await manager.purge(older_than=3600) == 0
    assert await manager.purge(older_than=0) == 1
    with pytest.raises(JobNotFound):
        await manager.status(done)
    assert not (manager.paths.jobs_dir / done).exists()
    assert (await manager.status(running)).state is JobState.RUNNING
    await manager.stop(running, grace=0)


async def test_a_job_starts_with_the_descriptor_limit_the_server_had(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server raises its own soft RLIMIT_NOFILE (remo.server.output_budget) and hands
    the old one down: jobs start with it, not with the raised one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(soft, 777)
    monkeypatch.setenv("REMO_JOB_NOFILE", str(wanted))
    async with JobManager.open(state_dir) as jobs:
        job = await jobs.start(JobSpec(["sh", "-c", "ulimit -n"]))
        await jobs.wait(job)
        assert await collect(jobs, job) == f"{wanted}\n".encode()

"""PID, mount and network namespaces of jobs, on the real kernel."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

from remo.core.spec import JobSpec
from remo.core.status import JobState
from remo.worker import JobManager
from tests.integration.conftest import needs_root

pytestmark = needs_root
PY = sys.executable


async def run(manager: JobManager, spec: JobSpec) -> tuple[bytes, JobState, int | None]:
    job = await manager.start(spec)
    status = await manager.wait(job)
    output = b"".join([c async for c in manager.output(job)])
    return output, status.state, status.exit_code


async def test_job_sees_only_its_own_processes(manager: JobManager) -> None:
    script = "sleep 30 & sleep 30 & ps -e -o pid=,comm="
    output, state, _ = await run(manager, JobSpec(["sh", "-c", script]))
    assert state is JobState.SUCCEEDED
    rows = [line.split() for line in output.decode().splitlines()]
    pids = {int(pid): comm for pid, comm in rows}
    # The job's init: the compiled relay once it has taken over, Python before.
    assert pids[1] == "remo-relay" or pids[1].startswith("python")
    assert set(pids.values()) <= {pids[1], "sh", "sleep", "ps"}
    assert len(pids) <= 5


async def test_status_reports_isolation(manager: JobManager) -> None:
    job = await manager.start(JobSpec(["true"], network="none"))
    status = await manager.wait(job)
    assert {"pid", "mount", "network:none"} <= set(status.isolation)


async def test_orphaned_grandchildren_are_reaped(manager: JobManager) -> None:
    # Each `sh -c 'sleep 0 &'` exits at once, orphaning its sleep to PID 1 (the init).
    script = textwrap.dedent(
        """
        for i in 1 2 3 4 5; do sh -c 'sleep 0.1 &'; done
        sleep 0.5
        ps -e -o stat=,comm=
        """
    )
    output, state, _ = await run(manager, JobSpec(["sh", "-c", script]))
    assert state is JobState.SUCCEEDED
    assert not [line for line in output.decode().splitlines() if line.strip().startswith("Z")]


async def test_graceful_stop_reaches_handler_through_init(manager: JobManager) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        def bye(*_):
            os.write(1, b"handled\\n")  # not print: it may interrupt print("ready")
            sys.exit(3)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    job = await manager.start(JobSpec([PY, "-c", script]))
    async for chunk in manager.output(job, follow=True):
        if b"ready" in chunk:
            break
    status = await manager.stop(job, grace=20)
    assert status.state is JobState.STOPPED
    assert status.exit_code == 3
    assert b"handled" in b"".join([c async for c in manager.output(job)])


async def test_mounts_inside_do_not_reach_host(manager: JobManager, tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    script = (
        f"mount -t tmpfs remo-test-tmpfs {target} && grep -c remo-test-tmpfs /proc/self/mountinfo"
    )
    output, state, _ = await run(manager, JobSpec(["sh", "-c", script]))
    assert state is JobState.SUCCEEDED, output
    assert output.strip() == b"1"
    assert "remo-test-tmpfs" not in Path("/proc/self/mountinfo").read_text()


async def test_private_tmp(manager: JobManager, tmp_path: Path) -> None:
    marker = Path("/tmp") / f"remo-private-tmp-{tmp_path.name}"
    script = f"touch {marker} && ls /tmp"
    output, state, _ = await run(manager, JobSpec(["sh", "-c", script], private_tmp=True))
    assert state is JobState.SUCCEEDED, output
    assert output.split() == [marker.name.encode()]
    assert not marker.exists()


@pytest.fixture
async def host_listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock, sock.getsockname()[1]
    sock.close()


CONNECT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
        print("connected")
    except OSError as err:
        print("refused", err.errno)
    """
)


async def test_network_none_cannot_reach_host(
    manager: JobManager, host_listener: tuple[socket.socket, int]
) -> None:
    _, port = host_listener
    output, state, _ = await run(manager, JobSpec([PY, "-c", CONNECT, str(port)], network="none"))
    assert state is JobState.SUCCEEDED, output
    assert output.decode().startswith("refused")
    output, _, _ = await run(manager, JobSpec(["ip", "-o", "link"], network="none"))
    names = [line.split(":")[1].strip() for line in output.decode().splitlines()]
    assert names == ["lo"]


async def test_network_host_can_reach_host(
    manager: JobManager, host_listener: tuple[socket.socket, int]
) -> None:
    _, port = host_listener
    output, state, _ = await run(manager, JobSpec([PY, "-c", CONNECT, str(port)]))
    assert state is JobState.SUCCEEDED
    assert output.decode().splitlines()[0] == "connected"


async def test_namespaces_compose_with_limits(manager: JobManager) -> None:
    from remo.core.spec import Limits

    job = await manager.start(
        JobSpec(
            ["sh", "-c", "ps -e -o pid= | wc -l"],
            network="none",
            limits=Limits(pids=50, memory=64 << 20),
        )
    )
    status = await manager.wait(job)
    assert status.state is JobState.SUCCEEDED
    assert 1 <= int(b"".join([c async for c in manager.output(job)])) <= 5


async def test_namespaces_can_be_turned_off(tmp_path: Path) -> None:
    async with JobManager.open(tmp_path / "plain", namespaces=False) as manager:
        job = await manager.start(JobSpec(["sh", "-c", "echo $$"]))
        status = await manager.wait(job)
        assert "pid" not in status.isolation
        output = b"".join([c async for c in manager.output(job)])
        assert int(output) == status.pid  # no PID namespace: the job sees its host pid

"""The `remo` command and the client SDK against a real server over real mTLS.

The CLI runs as a separate process, as users run it, so exit codes, bytes on stdout and
one-line errors are what a shell would see. The server runs in the test's event loop,
so every CLI call is awaited as a subprocess (never run blocking in the loop).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from remo.client import Client
from remo.client.errors import NotFound, TlsHandshakeFailed
from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.server.app import running
from remo.server.config import ServerConfig
from tests.e2e.conftest import Server, me, run_cli
from tests.support import wait_until


@dataclass
class Done:
    code: int
    stdout: bytes
    stderr: str


async def remo(env: dict[str, str], *args: str, timeout: float = 60) -> Done:
    return Done(*await run_cli(env, *args, timeout=timeout))


def one_line(done: Done) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("remo: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


async def test_run_streams_bytes_and_exits_with_the_job_code(cli_env: dict[str, str]) -> None:
    script = r'printf "\000\377binary\n"; echo out; echo err >&2; exit 3'
    done = await remo(cli_env, "run", "--", "sh", "-c", script)
    assert done.code == 3, done.stderr
    assert done.stdout == b"\x00\xffbinary\nout\n"
    assert done.stderr == "err\n"  # the job's stderr to ours, as ssh does


async def test_detached_job_lifecycle(cli_env: dict[str, str]) -> None:
    started = await remo(cli_env, "run", "-d", "--", "sh", "-c", "echo hello; exec sleep 30")
    assert started.code == 0, started.stderr
    job_id = started.stdout.decode().strip()
    assert job_id.isdigit()

    listed = await remo(cli_env, "ps", "--json")
    jobs = {j["id"]: j for j in json.loads(listed.stdout)}
    assert jobs[job_id]["state"] == "JOB_STATE_RUNNING"
    assert jobs[job_id]["argv"] == ["sh", "-c", "echo hello; exec sleep 30"]

    table = await remo(cli_env, "ps")
    assert table.stdout.decode().splitlines()[0].split() == [
        "ID",
        "STATE",
        "AGE",
        "EXIT",
        "COMMAND",
    ]

    async def logged() -> bool:
        return (await remo(cli_env, "logs", job_id)).stdout == b"hello\n"

    await wait_until(logged, 10, interval=0.1)
    assert (await remo(cli_env, "logs", "--from", "2", job_id)).stdout == b"llo\n"

    stopped = await remo(cli_env, "stop", "--grace", "5s", job_id)
    assert stopped.code == 0 and b"stopped (SIGTERM)" in stopped.stdout
    waited = await remo(cli_env, "wait", job_id)
    assert (waited.code, waited.stdout) == (128 + 15, b"")

    status = json.loads((await remo(cli_env, "status", "--json", job_id)).stdout)
    assert status["state"] == "JOB_STATE_STOPPED" and status["signal"] == 15
    assert status["end_time"].endswith("Z")
    human = (await remo(cli_env, "status", job_id)).stdout.decode()
    assert "state        stopped" in human

    assert (await remo(cli_env, "rm", job_id)).code == 0
    gone = await remo(cli_env, "status", job_id)
    assert gone.code == 5
    assert one_line(gone) == f"remo: no job {job_id}"


async def test_start_errors_are_reported_at_start(cli_env: dict[str, str]) -> None:
    done = await remo(cli_env, "run", "--", "/no/such/binary")
    assert done.code == 6
    assert "/no/such/binary" in one_line(done)
    done = await remo(cli_env, "run", "--cwd", "/no/such/dir", "--", "true")
    assert done.code == 6
    assert "/no/such/dir" in one_line(done)


async def test_schedule_is_created_not_run(cli_env: dict[str, str]) -> None:
    done = await remo(cli_env, "run", "--in", "1h", "--", "true")
    assert done.code == 0, done.stderr
    line = done.stdout.decode().strip()
    assert line.startswith("schedule s") and ": next run at " in line
    schedule_id = line.split()[1].rstrip(":")
    shown = json.loads((await remo(cli_env, "status", "--json", schedule_id)).stdout)
    assert shown["id"] == schedule_id and shown["next_run_time"].endswith("Z")
    assert (await remo(cli_env, "rm", schedule_id)).code == 0


async def test_connection_refused_is_explained(
    server: Server, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    ca = CertificateAuthority.load(server.state_dir)
    issued = ca.issue_client(*me(), validity=timedelta(days=1))
    path = tmp_path / "closed.remo"
    package.save(path, ["127.0.0.1:9"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    done = await remo({**cli_env, "REMO_PROFILE": str(path)}, "ps")
    assert done.code == 3
    assert "cannot connect to 127.0.0.1:9: connection refused" in one_line(done)


async def test_credential_of_another_server(
    server: Server, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "other")
    issued = other.issue_client(*me(), validity=timedelta(days=1))
    path = tmp_path / "other.remo"
    package.save(path, [server.address], other.cert_pem, issued.cert_pem, issued.key_pem)
    done = await remo({**cli_env, "REMO_PROFILE": str(path)}, "ps")
    assert done.code == 3
    assert "is not the one the credential" in one_line(done)


async def test_server_refusing_the_handshake_is_explained(server: Server, tmp_path: Path) -> None:
    """A certificate the server does not trust (here: another CA) fails in the handshake."""
    mine = package.load(server.credential(*me()))
    other = CertificateAuthority.load_or_create(tmp_path / "other")
    stranger = other.issue_client(*me(), validity=timedelta(days=1))
    forged = replace(mine, cert_pem=stranger.cert_pem, key_pem=stranger.key_pem)

    def call() -> None:
        with Client(forged, timeout=10) as client:
            client.whoami()

    with pytest.raises(TlsHandshakeFailed, match="refused the TLS handshake") as caught:
        await asyncio.to_thread(call)
    assert caught.value.exit_code == 3


async def test_revoked_credential_is_an_auth_error(
    server: Server, cli_env: dict[str, str], credential: Path
) -> None:
    from remo.pki.registry import Registry

    ca = CertificateAuthority.load(server.state_dir)
    with Registry.open(server.state_dir, ca.certificate) as registry:
        registry.revoke(package.load(credential).serial)
    done = await remo(cli_env, "ps")
    assert done.code == 4
    assert "revoked" in one_line(done)


async def test_sdk_not_found(credential: Path) -> None:
    def call() -> None:
        with Client.from_file(credential) as client:
            client.status("424242")

    with pytest.raises(NotFound):
        await asyncio.to_thread(call)


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[tuple[ServerConfig, Path]]:
    """A server config on a fixed port (so that a restart keeps the address)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ServerConfig(
        state_dir=tmp_path / "state",
        listen=f"127.0.0.1:{port}",
        register_run_dir=tmp_path / "run",
    )
    config.state_dir.mkdir(mode=0o700)
    ca = CertificateAuthority.load_or_create(config.state_dir)
    issued = ca.issue_client(*me(), validity=timedelta(days=1))
    from remo.pki.registry import Registry

    with Registry.open(config.state_dir, ca.certificate) as registry:
        registry.record(issued.certificate)
    path = tmp_path / "restart.remo"
    package.save(path, [f"127.0.0.1:{port}"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    yield config, path


async def test_output_resumes_across_a_server_restart(
    restartable: tuple[ServerConfig, Path],
) -> None:
    """No byte lost or repeated while the server goes away and comes back."""
    config, path = restartable
    script = "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); sleep 0.05; done"
    received: list[bytes] = []
    first_bytes = threading.Event()

    def follow(job_id: str) -> int:
        with Client.from_file(path) as client:
            for chunk in client.output(job_id, follow=True):
                received.append(chunk.data)
                first_bytes.set()
            code = client.wait(job_id).exit_code
            assert code is not None
            return code

    async with running(config):
        with Client.from_file(path) as client:
            started = await asyncio.to_thread(client.start, ["sh", "-c", script])
        assert started.job is not None
        follower = asyncio.create_task(asyncio.to_thread(follow, started.job.id))
        assert await asyncio.to_thread(first_bytes.wait, 10)
    await asyncio.sleep(0.5)  # the server is gone; the job runs on
    async with running(config):
        code = await asyncio.wait_for(follower, 60)
    assert code == 0
    expected = b"".join(b"line %d\n" % i for i in range(60))
    assert b"".join(received) == expected

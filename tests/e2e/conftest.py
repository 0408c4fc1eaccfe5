"""A real remo server on loopback with real mTLS, and real unix accounts to call it as."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.pki.registry import Registry
from remo.server import tls
from remo.server.app import RunningServer, running
from remo.server.config import ServerConfig
from remo.v1 import jobs_pb2_grpc
from tests.support import wait_until_sync

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (run-as, cgroups, useradd)")


@dataclass
class Server:
    running: RunningServer
    state_dir: Path
    tmp: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def credential(self, user: str, role: str, **kw: object) -> Path:
        """Issue a credential file as `remo admin issue` would."""
        ca = CertificateAuthority.load(self.state_dir)
        issued = ca.issue_client(user, role, validity=timedelta(days=1), **kw)  # type: ignore[arg-type]
        with Registry.open(self.state_dir, ca.certificate) as registry:
            registry.record(issued.certificate)
        path = self.tmp / f"{user}-{role}-{issued.serial[:8]}.remo"
        package.save(path, [self.address], ca.cert_pem, issued.cert_pem, issued.key_pem)
        return path

    def stub(self, credential: Path) -> tuple[grpc.aio.Channel, jobs_pb2_grpc.JobServiceStub]:
        cred = package.load(credential)
        channel = grpc.aio.secure_channel(
            cred.addresses[0], tls.client_credentials(cred.ca_pem, cred.cert_pem, cred.key_pem)
        )
        return channel, jobs_pb2_grpc.JobServiceStub(channel)


def config_for(tmp_path: Path, **settings: Any) -> ServerConfig:
    """A server on a free loopback port, its state and register socket under ``tmp_path``
    (``settings`` override any of that)."""
    defaults: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "listen": "127.0.0.1:0",
        "register_run_dir": tmp_path / "run",
    }
    return ServerConfig(**{**defaults, **settings})


@asynccontextmanager
async def serve(tmp_path: Path, **settings: Any) -> AsyncIterator[Server]:
    """A running server made by :func:`config_for`, for tests that need their own."""
    config = config_for(tmp_path, **settings)
    async with running(config) as srv:
        yield Server(srv, config.state_dir, tmp_path)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with serve(tmp_path) as srv:
        yield srv


def me() -> tuple[str, str]:
    """The account jobs run as here, and a role that may do everything to its jobs."""
    if os.geteuid() == 0:
        return "root", "admin"
    return pwd.getpwuid(os.geteuid()).pw_name, "operator"


@pytest.fixture
def credential(server: Server) -> Path:
    return server.credential(*me())


#: ``REMO_TEST_AGENT=1``: the CLI tests run ``remo`` as installed, through the profile's
#: agent (:mod:`remo.cli.fast`); otherwise each command runs on its own.
THROUGH_AGENT = os.environ.get("REMO_TEST_AGENT") == "1"
CLI_MODULE = "remo.cli.fast" if THROUGH_AGENT else "remo.cli.main"


@pytest.fixture
def cli_env(tmp_path: Path, credential: Path) -> Iterator[dict[str, str]]:
    """The environment of a CLI run by a user whose only profile is ``credential``, with
    a runtime dir of its own (where its agents listen; stopped afterwards)."""
    # short: a unix socket's path must fit in 108 bytes
    runtime = Path(tempfile.mkdtemp(prefix="remo-rt-"))
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        REMO_PROFILE=str(credential),
        XDG_RUNTIME_DIR=str(runtime),
        REMO_AGENT_IDLE="120",
    )
    env.pop("REMO_NO_AGENT", None)
    yield env
    try:
        stop_agents(runtime)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def stop_agents(runtime: Path) -> None:
    """Stop every agent listening under ``runtime`` and wait for them to exit."""
    from remo.cli import agent_link

    pids = []
    for path in Path(agent_link.agent_dir({"XDG_RUNTIME_DIR": str(runtime)})).glob("*.sock"):
        try:
            with agent_link.connect(str(path), 5.0) as sock:
                agent_link.send(sock, {"op": "status"})
                answer, _ = agent_link.receive(sock)
            with agent_link.connect(str(path), 5.0) as sock:
                agent_link.send(sock, {"op": "stop"})
                agent_link.receive(sock)
        except (OSError, agent_link.LinkError):
            continue
        if answer and isinstance(answer.get("pid"), int):
            pids.append(answer["pid"])
    wait_until_sync(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30, what="agents to exit"
    )


async def start_cli(
    env: dict[str, str], *args: str, stdin: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """The real ``remo`` CLI, started: its stdout and stderr are pipes; its stdin is
    /dev/null (not the test runner's, which is a pipe in CI and would be sent) or
    ``asyncio.subprocess.PIPE``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        CLI_MODULE,
        *args,
        env=env,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, bytes, str]:
    """Run the real ``remo`` CLI; its exit code, stdout and stderr."""
    proc = await start_cli(env, *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


def reason_of(err: grpc.RpcError) -> str:
    """The ``ErrorInfo.reason`` a refused call carries ("" when it has none)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None or not status.details:
        return ""
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason

"""A real remo server on loopback with real mTLS, and real unix accounts to call it as."""

from __future__ import annotations

import asyncio
import os
import pwd
import sys
from collections.abc import AsyncIterator
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


@pytest.fixture
def cli_env(tmp_path: Path, credential: Path) -> dict[str, str]:
    """The environment of a CLI run by a user whose only profile is ``credential``."""
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        REMO_PROFILE=str(credential),
    )
    return env


async def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, bytes, str]:
    """Run the real ``remo`` CLI; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remo.cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
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

"""`remo server` as a process of its own, as an operator runs it: for tests that signal it
and start it again on the same port and state dir."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.pki.register import register_socket_path
from remo.pki.registry import Registry
from tests.e2e.conftest import me
from tests.support import wait_until_sync

LISTENING = "remo server listening"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``remo server --state-dir DIR --listen 127.0.0.1:PORT``, its output in ``log``."""

    def __init__(self, tmp: Path) -> None:
        self.state_dir = tmp / "state"
        self.port = free_port()
        self.log = tmp / "server.log"
        self.log.touch()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def credential(self, path: Path) -> Path:
        """A credential file for :func:`me`, as ``remo admin issue`` makes one."""
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        ca = CertificateAuthority.load_or_create(self.state_dir)
        issued = ca.issue_client(*me(), validity=timedelta(days=1))
        with Registry.open(self.state_dir, ca.certificate) as registry:
            registry.record(issued.certificate)
        package.save(path, [self.address], ca.cert_pem, issued.cert_pem, issued.key_pem)
        return path

    def start(self) -> None:
        """Start it and wait until it listens."""
        offset = self.log.stat().st_size
        argv = ["--state-dir", str(self.state_dir), "--listen", self.address]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "remo.cli.main", "server", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def up_or_gone() -> bool:
            return LISTENING in self.output(offset) or proc.poll() is not None

        wait_until_sync(up_or_gone, 60, what="the server to listen")
        assert proc.poll() is None, f"the server exited: {self.output(offset)}"

    def output(self, offset: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def sigterm(self, within: float) -> float:
        """SIGTERM it; the seconds until it exited, which must be fewer than ``within``."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server was still running {within} s after SIGTERM") from None
        return time.monotonic() - started

    def stop(self) -> None:
        """Make sure it is gone (SIGTERM, SIGKILL if it takes long) and leaves nothing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            register_socket_path(self.state_dir).unlink()

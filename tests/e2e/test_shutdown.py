"""SIGTERM to `remo server` with many follows open: it ends them with UNAVAILABLE rather
than wait for them, and exits; the followers resume against the next server and get
every byte once.

``REMO_TEST_FOLLOWS`` sets how many jobs the SDK follows (50; one more is followed with
plain grpc): ``REMO_TEST_FOLLOWS=300 .venv/bin/python -m pytest
tests/e2e/test_shutdown.py -s --timeout 600`` prints the figure for 301 follows
(docs/RELIABILITY.md, "Stopping in under 2 s with many follows open").
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from remo.client import Client
from remo.client.errors import ClientError, TlsHandshakeFailed, from_rpc_error
from remo.pki import package
from remo.server import tls
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc as pb_grpc
from tests.e2e.process import ServerProcess
from tests.support import wait_until_sync

FOLLOWS = int(os.environ.get("REMO_TEST_FOLLOWS", "50"))
#: Generous for a loaded CI machine; the measured time is printed and recorded.
EXIT_WITHIN = 10.0

#: Prints a line, waits for the file named by its argument, then prints 2,000 more.
JOB = 'echo first; while [ ! -e "$0" ]; do sleep 0.3; done; seq 1 2000'
EXPECTED = b"first\n" + b"".join(b"%d\n" % i for i in range(1, 2001))


def test_sigterm_with_many_follows_open_exits_promptly_and_they_resume(
    tmp_path: Path, record_property: Any
) -> None:
    server = ServerProcess(tmp_path)
    credential = server.credential(tmp_path / "me.remo")
    release = tmp_path / "release"
    server.start()
    pool = ThreadPoolExecutor(FOLLOWS)
    try:
        with Client.from_file(credential) as control:
            started = [control.start(["sh", "-c", JOB, str(release)]) for _ in range(FOLLOWS + 1)]
        ids = [s.job.id for s in started if s.job is not None]
        followed = _Followers(credential)
        results = [pool.submit(followed.follow, job_id) for job_id in ids[:-1]]
        raw = _RawFollower(credential, ids[-1])
        raw.start()
        wait_until_sync(
            lambda: followed.started == FOLLOWS and raw.first.is_set(),
            120,
            what=lambda: f"{followed.started} of {FOLLOWS} follows to get their first line",
        )
        prober = _FreshConnections(credential)
        prober.start()
        seconds = server.sigterm(within=EXIT_WITHIN)
        print(f"\nSIGTERM to exit with {FOLLOWS + 1} follows open: {seconds:.3f} s")
        record_property("sigterm_to_exit_seconds", round(seconds, 3))
        assert server.proc is not None and server.proc.returncode == 0, server.output()
        raw.join(EXIT_WITHIN)
        assert raw.ended == "UNAVAILABLE", raw.ended  # what clients resume on
        server.start()
        prober.finish()
        release.touch()
        outputs = [result.result(timeout=90) for result in results]
        assert all(out == EXPECTED for out in outputs), [len(out) for out in outputs]
        # Connections tried while the server was away are never blamed on the credential.
        print(f"fresh connections during the restart: {prober.attempts}, refused: {prober.said}")
        assert prober.attempts and not prober.handshake_refusals, prober.handshake_refusals
        with Client.from_file(credential) as control:
            ended = [control.wait(job_id) for job_id in ids]
        assert {(job.state.value, job.exit_code) for job in ended} == {("succeeded", 0)}
    finally:
        release.touch()
        pool.shutdown(wait=False, cancel_futures=True)
        server.stop()


class _Followers:
    """Follows through the SDK, each on a client (connection) of its own."""

    def __init__(self, credential: Path) -> None:
        self.credential = credential
        self.started = 0
        self._lock = threading.Lock()

    def follow(self, job_id: str) -> bytes:
        received = bytearray()
        with Client.from_file(self.credential) as client:
            for chunk in client.output(job_id, follow=True):
                if not received:
                    with self._lock:
                        self.started += 1
                received += chunk.data
        return bytes(received)


class _RawFollower(threading.Thread):
    """One follow with plain grpc: how does its stream end when the server stops?"""

    def __init__(self, credential: Path, job_id: str) -> None:
        super().__init__(daemon=True)
        self.credential = package.load(credential)
        self.job_id = job_id
        self.first = threading.Event()
        self.ended = ""

    def run(self) -> None:
        cred = self.credential
        creds = tls.client_credentials(cred.ca_pem, cred.cert_pem, cred.key_pem)
        with grpc.secure_channel(cred.addresses[0], creds) as channel:
            call = pb_grpc.JobServiceStub(channel).Output(
                pb.OutputRequest(id=self.job_id, follow=True)
            )
            try:
                for _ in call:
                    self.first.set()
                self.ended = "cleanly, while the job was running"
            except grpc.RpcError as err:
                self.ended = err.code().name


class _FreshConnections(threading.Thread):
    """New connections, one call each, without retries, until stopped: what would a
    client that has never reached the server be told while it restarts?"""

    def __init__(self, credential: Path) -> None:
        super().__init__(daemon=True)
        self.credential = package.load(credential)
        self.attempts = 0
        self.said: Counter[str] = Counter()
        self.handshake_refusals: list[str] = []
        self._done = threading.Event()

    def finish(self) -> None:
        self._done.set()
        self.join(10)

    def run(self) -> None:
        cred = self.credential
        creds = tls.client_credentials(cred.ca_pem, cred.cert_pem, cred.key_pem)
        while not self._done.wait(0.02):  # a few dozen connections a second
            self.attempts += 1
            with grpc.secure_channel(cred.addresses[0], creds) as channel:
                try:
                    pb_grpc.JobServiceStub(channel).WhoAmI(pb.WhoAmIRequest(), timeout=2)
                except grpc.RpcError as err:
                    said: ClientError = from_rpc_error(err, target=cred.addresses[0])
                    self.said[f"{type(said).__name__}: {said}"] += 1
                    if isinstance(said, TlsHandshakeFailed):
                        self.handshake_refusals.append(f"{err.details()} -> {said}")

"""Prometheus metrics: off by default, loopback when asked by port alone, and a scrape of a
real server after a real workload tells what happened, in a form promtool accepts.

The alert rules (packaging/prometheus/remo-alerts.yml) must pass ``promtool check
rules``, and every metric the rules and the Grafana dashboard
(packaging/grafana/remo-dashboard.json) name must be in a real scrape.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from remo.api.jobs import duration
from remo.pki import package
from remo.pki.ca import CertificateAuthority, serial_hex
from remo.pki.registry import Registry
from remo.server.config import ConfigError, load
from remo.server.metrics_http import MAX_HEAD
from remo.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server, me, reason_of, serve
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "packaging" / "prometheus" / "remo-alerts.yml"
DASHBOARD = ROOT / "packaging" / "grafana" / "remo-dashboard.json"
START = "/remo.v1.JobService/Start"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian package prometheus; scripts/test installs it "
            "when run as root): the exposition format is not linted here"
        )
    return found


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    """Status, content type and body of ``GET path`` (in a thread: the server runs on
    this test's event loop)."""

    def get() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
                return answer.status, answer.headers["Content-Type"], answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers["Content-Type"], err.read().decode()

    return await asyncio.to_thread(get)


def samples_of(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, frozenset(sample.labels.items())] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names_in(text: str) -> set[str]:
    """Every sample name of an exposition page (``x_bucket``, ``x_count`` included)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def metric_names(expression: str) -> set[str]:
    """The remo and process metric names a PromQL expression uses."""
    return set(re.findall(r"\b((?:remo|process)_[a-z0-9_]+)\b", expression))


def listening_on_loopback(port: int) -> bool:
    """A LISTEN socket on 127.0.0.1:port, per /proc/net/tcp (and none on another address)."""
    local = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, state = fields[1], fields[3]
        if state == "0A" and int(address.split(":")[1], 16) == port:
            local.add(address.split(":")[0])
    return local == {"0100007F"}


# -- configuration ----------------------------------------------------------------------


def test_metrics_are_off_by_default_and_a_bare_port_means_loopback(tmp_path: Path) -> None:
    assert load(None).metrics_listen is None
    assert load(None, metrics_listen="9464").metrics_listen == "127.0.0.1:9464"
    assert load(None, metrics_listen="[::1]:9464").metrics_listen == "[::1]:9464"
    path = tmp_path / "server.toml"
    path.write_text('metrics_listen = "9464"\n')
    assert load(str(path)).metrics_listen == "127.0.0.1:9464"
    path.write_text('metrics_listen = "0.0.0.0:9464"\n')
    assert load(str(path)).metrics_listen == "0.0.0.0:9464"
    path.write_text('metrics_listen = "nowhere"\n')
    with pytest.raises(ConfigError, match="metrics_listen: must be HOST:PORT"):
        load(str(path))
    with pytest.raises(ConfigError, match="--metrics-listen must be HOST:PORT"):
        load(None, metrics_listen="x:y")


async def test_no_metrics_port_unless_configured(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        assert server.running.metrics_port is None


async def test_a_bare_metrics_port_listens_on_loopback_only(tmp_path: Path) -> None:
    config = load(None, metrics_listen="0")
    async with serve(tmp_path, metrics_listen=config.metrics_listen) as server:
        port = server.running.metrics_port
        assert port is not None and listening_on_loopback(port)
        status, kind, body = await scrape(port)
        assert status == 200 and kind.startswith("text/plain") and "remo_server_info" in body
        assert (await scrape(port, "/"))[0] == 404


async def raw_http(port: int, request: bytes) -> bytes:
    """Whatever the metrics port answers to ``request`` before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


async def test_the_metrics_port_refuses_what_is_not_a_scrape(tmp_path: Path) -> None:
    """Nothing but GET /metrics: a bad request line, another verb, an oversized head
    and a connection that never finishes its request are refused or dropped, and the
    page is still served afterwards."""
    async with serve(tmp_path, metrics_listen="127.0.0.1:0") as server:
        port = server.running.metrics_port
        assert port is not None
        assert (await raw_http(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        post = await raw_http(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 ") and b"remo_" not in post
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD * 2) + b"\r\n\r\n"
        assert await raw_http(port, huge) == b""  # dropped unread, no page
        idle = await asyncio.open_connection("127.0.0.1", port)  # says nothing at all
        status, _, body = await scrape(port)
        assert status == 200 and "remo_server_info" in body
        idle[1].close()


# -- a real workload, scraped -----------------------------------------------------------


async def revoked_credential(server: Server) -> Path:
    """A credential of this account, revoked."""
    credential = server.credential(*me())
    serial = serial_hex(x509.load_pem_x509_certificate(package.load(credential).cert_pem))
    ca = CertificateAuthority.load(server.state_dir)
    with Registry.open(server.state_dir, ca.certificate) as registry:
        assert registry.revoke(serial) is not None
    return credential


async def test_a_scrape_counts_the_workload_and_passes_promtool(tmp_path: Path) -> None:
    started = 3
    user, role = me()
    async with serve(tmp_path, metrics_listen="127.0.0.1:0") as server:
        port = server.running.metrics_port
        assert port is not None
        channel, stub = server.stub(server.credential(user, role))
        revoked = await revoked_credential(server)
        async with channel:
            ids = [
                (await stub.Start(pb.StartRequest(argv=["sleep", "60"]))).job.id
                for _ in range(started)
            ]
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Start(pb.StartRequest(argv=["/nonexistent/remo-metrics-test"]))
            assert reason_of(failed.value) == "START_FAILED"
            await stub.Stop(pb.StopRequest(id=ids[0], grace=duration(0)))
            scheduled = await stub.Start(
                pb.StartRequest(argv=["true"], when=pb.When(delay=duration(0)))
            )
            assert scheduled.HasField("schedule")
            await stub.GetJob(pb.GetJobRequest(id=ids[1]))

            async def nothing_to_write() -> AsyncIterator[pb.WriteStdinRequest]:
                yield pb.WriteStdinRequest(id=ids[1], data=b"x")

            with pytest.raises(grpc.aio.AioRpcError) as closed:  # started without stdin
                await stub.WriteStdin(nothing_to_write())
            assert reason_of(closed.value) == "STDIN_NOT_OPEN"
            bad_channel, bad_stub = server.stub(revoked)
            async with bad_channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await bad_stub.ListJobs(pb.ListJobsRequest())
            assert reason_of(refused.value) == "CREDENTIAL_REVOKED"

            async def fired() -> Samples | None:
                page = samples_of((await scrape(port))[2])
                ran = value(page, "remo_schedule_runs_total", outcome="started")
                return page if ran else None

            samples = await wait_until(fired, 30, what="the schedule's run to be counted")
            status, kind, text = await scrape(port)
            for job_id in ids[1:]:
                await stub.Stop(pb.StopRequest(id=job_id, grace=duration(0)))

    assert status == 200 and kind.startswith("text/plain; version=")
    samples = samples_of(text)
    assert value(samples, "remo_jobs_started_total") == started
    assert value(samples, "remo_job_start_failures_total", stage="exec") == 1
    assert value(samples, "remo_jobs_stopped_total") == 1
    assert value(samples, "remo_calls_refused_total", reason="CREDENTIAL_REVOKED") == 1
    assert value(samples, "remo_schedule_runs_total", outcome="started") == 1
    assert value(samples, "remo_rpcs_total", method=START, code="OK") == started + 1
    assert value(samples, "remo_rpcs_total", method=START, code="FAILED_PRECONDITION") == 1
    assert (
        value(
            samples,
            "remo_rpcs_total",
            method="/remo.v1.JobService/ListJobs",
            code="UNAUTHENTICATED",
        )
        == 1
    )
    assert value(samples, "remo_rpc_duration_seconds_count", method=START) == started + 2
    # a client-streaming call is timed and counted as any other
    stdin_method = "/remo.v1.JobService/WriteStdin"
    assert value(samples, "remo_rpcs_total", method=stdin_method, code="FAILED_PRECONDITION") == 1
    assert value(samples, "remo_rpc_duration_seconds_count", method=stdin_method) == 1
    assert value(samples, "remo_jobs", user=user, state="running") == started - 1
    assert value(samples, "remo_output_dropped_bytes", user=user) == 0
    # Running jobs' usage, summed by user (read from their cgroups at scrape time).
    assert value(samples, "remo_running_jobs", user=user) == started - 1
    assert value(samples, "remo_running_jobs_processes", user=user) >= started - 1
    assert ("remo_running_jobs_memory_bytes", frozenset({("user", user)})) in samples
    assert value(samples, "remo_credentials_issued_total") == 2
    assert value(samples, "remo_credentials_revoked_total") == 1
    assert value(samples, "remo_credentials_valid") == 1
    assert value(samples, "remo_credential_next_expiry_timestamp_seconds") > 0
    assert value(samples, "remo_state_dir_free_bytes") > 0
    assert value(samples, "remo_supervisor_restarts_total") == 0
    assert ("remo_event_loop_lag_p99_seconds", frozenset()) in samples
    assert value(samples, "process_cpu_seconds_total") > 0

    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr

    # Every metric the dashboard and the alert rules name is in a real scrape.
    exposed = names_in(text)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert expressions
    for expression in expressions:
        assert metric_names(expression), expression
        assert metric_names(expression) <= exposed, expression
    rules = ALERTS.read_text()
    assert metric_names(rules) <= exposed, metric_names(rules) - exposed


def test_the_alert_rules_pass_promtool() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for alert in ("RemoServerDown", "RemoDiskNearlyFull", "RemoJobsFailingToStart"):
        assert f"alert: {alert}" in ALERTS.read_text()

"""Which calls the client repeats, and when: by status code, against a scripted server.

The server here is a plain grpc server with remo's TLS that fails each method a given
number of times with a given status before it answers, and counts the attempts.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from remo.client import Client
from remo.client.calls import RETRIED_METHODS, SERVICE, SERVICE_CONFIG
from remo.client.errors import ConnectionFailed, NotFound, RemoteError
from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.server import tls
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc as pb_grpc

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
#: gRPC's own attempts per call (the service config's maxAttempts).
GRPC_ATTEMPTS = SERVICE_CONFIG["methodConfig"][0]["retryPolicy"]["maxAttempts"]


class Scripted(pb_grpc.JobServiceServicer):
    """Fails each method ``failures[method]`` times (with ``code``), then answers."""

    def __init__(self) -> None:
        self.failures: dict[str, tuple[int, grpc.StatusCode, str]] = {}
        self.attempts: Counter[str] = Counter()
        self.requests: defaultdict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()

    def fail(
        self, method: str, times: int, code: grpc.StatusCode = UNAVAILABLE, text: str = ""
    ) -> None:
        self.failures[method] = (times, code, text or f"scripted {code.name}")

    def _attempt(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.attempts[method] += 1
            self.requests[method].append(request)
            times, code, text = self.failures.get(method, (0, UNAVAILABLE, ""))
            failing = self.attempts[method] <= times
        if failing:
            context.abort(code, text)

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.GetJobResponse:
        self._attempt("GetJob", request, context)
        return pb.GetJobResponse(job=pb.Job(id=request.id, state=pb.JOB_STATE_RUNNING))

    def Stop(self, request: pb.StopRequest, context: grpc.ServicerContext) -> pb.StopResponse:
        self._attempt("Stop", request, context)
        return pb.StopResponse(job=pb.Job(id=request.id, state=pb.JOB_STATE_STOPPED, exit_code=0))

    def Wait(self, request: pb.WaitRequest, context: grpc.ServicerContext) -> pb.WaitResponse:
        self._attempt("Wait", request, context)
        return pb.WaitResponse(job=pb.Job(id=request.id, state=pb.JOB_STATE_SUCCEEDED, exit_code=0))

    def Kill(self, request: pb.KillRequest, context: grpc.ServicerContext) -> pb.KillResponse:
        self._attempt("Kill", request, context)
        return pb.KillResponse(job=pb.Job(id=request.id, state=pb.JOB_STATE_RUNNING))

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        self._attempt("ListJobs", request, context)
        return pb.ListJobsResponse(jobs=[pb.Job(id="1", state=pb.JOB_STATE_RUNNING)])

    def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.ServicerContext
    ) -> pb.ListSchedulesResponse:
        self._attempt("ListSchedules", request, context)
        return pb.ListSchedulesResponse(schedules=[pb.Schedule(id="s1")])

    def GetSchedule(
        self, request: pb.GetScheduleRequest, context: grpc.ServicerContext
    ) -> pb.GetScheduleResponse:
        self._attempt("GetSchedule", request, context)
        return pb.GetScheduleResponse(schedule=pb.Schedule(id=request.id))

    def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.ServicerContext) -> pb.WhoAmIResponse:
        self._attempt("WhoAmI", request, context)
        return pb.WhoAmIResponse(user="me", role=pb.ROLE_ADMIN)

    def Remove(self, request: pb.RemoveRequest, context: grpc.ServicerContext) -> pb.RemoveResponse:
        self._attempt("Remove", request, context)
        return pb.RemoveResponse()

    def Start(self, request: pb.StartRequest, context: grpc.ServicerContext) -> pb.StartResponse:
        self._attempt("Start", request, context)
        if request.HasField("when"):
            return pb.StartResponse(schedule=pb.Schedule(id="s1"))
        return pb.StartResponse(job=pb.Job(id="7", state=pb.JOB_STATE_RUNNING))

    def Output(
        self, request: pb.OutputRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.OutputResponse]:
        """b"abcdef", three bytes per attempt: each but the last then fails as scripted."""
        with self._lock:
            self.attempts["Output"] += 1
            self.requests["Output"].append(request)
            times, code, text = self.failures.get("Output", (0, UNAVAILABLE, ""))
            failing = self.attempts["Output"] <= times
        data = b"abcdef"[request.offset : request.offset + 3]
        if data:
            yield pb.OutputResponse(offset=request.offset, data=data)
        if failing:
            context.abort(code, text)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Path]:
    state = tmp_path_factory.mktemp("ca")
    ca = CertificateAuthority.load_or_create(state)
    return ca, state


@pytest.fixture
def scripted(
    pki: tuple[CertificateAuthority, Path], tmp_path: Path
) -> Iterator[tuple[Scripted, Path]]:
    ca, _ = pki
    server_cert = ca.ensure_server_certificate(["127.0.0.1"])
    servicer = Scripted()
    server = grpc.server(ThreadPoolExecutor(8))
    pb_grpc.add_JobServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    credentials = tls.server_credentials(ca.cert_pem, server_cert.cert_pem, server_cert.key_pem)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    issued = ca.issue_client("root", "admin")
    path = tmp_path / "client.remo"
    package.save(path, [f"127.0.0.1:{port}"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    yield servicer, path
    server.stop(None)


CALLS: dict[str, Callable[[Client], object]] = {
    "GetJob": lambda c: c.status("7"),
    "Stop": lambda c: c.stop("7", grace=0),
    "Wait": lambda c: c.wait("7"),
    "ListJobs": lambda c: c.list(),
    "ListSchedules": lambda c: c.schedules(),
    "GetSchedule": lambda c: c.schedule_status("s1"),
    "WhoAmI": lambda c: c.whoami(),
}


def test_the_service_config_names_the_retried_methods() -> None:
    """Every method retried is one of the service's, named with its full service name."""
    assert SERVICE == "remo.v1.JobService"
    assert pb.DESCRIPTOR.services_by_name["JobService"].full_name == SERVICE
    names = SERVICE_CONFIG["methodConfig"][0]["name"]
    assert {n["service"] for n in names} == {SERVICE}
    methods = {n["method"] for n in names}
    assert methods == set(RETRIED_METHODS) == set(CALLS)
    assert methods <= set(pb.DESCRIPTOR.services_by_name["JobService"].methods_by_name)


@pytest.mark.parametrize("method", sorted(CALLS))
def test_reads_and_stop_are_retried(method: str, scripted: tuple[Scripted, Path]) -> None:
    servicer, path = scripted
    servicer.fail(method, 2)
    with Client.from_file(path) as client:
        CALLS[method](client)
    assert servicer.attempts[method] == 3


def test_grpc_itself_retries_what_is_safe_to_repeat(scripted: tuple[Scripted, Path]) -> None:
    """The channel's service config, seen without the client's own loop around it."""
    servicer, path = scripted
    servicer.fail("GetJob", 2)
    servicer.fail("Remove", 1)
    with Client.from_file(path) as client:
        stub = client._stub
        assert stub.GetJob(pb.GetJobRequest(id="7"), timeout=30).job.id == "7"
        with pytest.raises(grpc.RpcError) as refused:
            stub.Remove(pb.RemoveRequest(id="7"), timeout=30)
    assert refused.value.code() is UNAVAILABLE
    assert servicer.attempts["GetJob"] == 3 and servicer.attempts["Remove"] == 1


def test_an_outage_longer_than_grpcs_retries_is_waited_out(scripted: tuple[Scripted, Path]) -> None:
    """gRPC gives up after its attempts; a client that had reached the server tries again
    until its timeout (here: three more attempts)."""
    servicer, path = scripted
    servicer.fail("GetJob", GRPC_ATTEMPTS + 2)
    with Client.from_file(path) as client:
        assert client.status("7").id == "7"
        assert client.reached
    assert servicer.attempts["GetJob"] == GRPC_ATTEMPTS + 3


def test_a_job_start_is_retried_with_its_request_id(scripted: tuple[Scripted, Path]) -> None:
    servicer, path = scripted
    servicer.fail("Start", 2)
    with Client.from_file(path) as client:
        started = client.start(["true"])
    assert started.job is not None and started.job.id == "7"
    ids = {r.request_id for r in servicer.requests["Start"]}
    assert servicer.attempts["Start"] == 3 and len(ids) == 1 and ids != {""}


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("Remove", lambda c: c.remove("7")),  # a repeat would say NOT_FOUND
        ("Kill", lambda c: c.kill("7", "HUP")),  # a repeat would say JOB_NOT_RUNNING
        ("Start", lambda c: c.start(["true"], delay=60)),  # schedules carry no request id
    ],
)
def test_calls_unsafe_to_repeat_are_tried_once(
    method: str, call: Callable[[Client], object], scripted: tuple[Scripted, Path]
) -> None:
    servicer, path = scripted
    servicer.fail(method, 1)
    with Client.from_file(path) as client, pytest.raises(ConnectionFailed):
        call(client)
    assert servicer.attempts[method] == 1


@pytest.mark.parametrize(
    ("code", "text", "error"),
    [
        (grpc.StatusCode.NOT_FOUND, "no job 7", NotFound),
        # Text once matched to retry: the status code alone decides now.
        (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2", RemoteError),
        (grpc.StatusCode.UNKNOWN, "Stream removed", RemoteError),
    ],
)
def test_answers_are_not_retried(
    code: grpc.StatusCode, text: str, error: type[Exception], scripted: tuple[Scripted, Path]
) -> None:
    servicer, path = scripted
    servicer.fail("GetJob", 1, code, text)
    servicer.fail("Output", 1, code, text)
    with Client.from_file(path) as client:
        with pytest.raises(error):
            client.status("7")
        with pytest.raises(error):
            list(client.output("7", follow=True))
    assert servicer.attempts["GetJob"] == 1 and servicer.attempts["Output"] == 1


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
def test_output_resumes_at_its_offset_after_unavailable_or_cancelled(
    code: grpc.StatusCode, scripted: tuple[Scripted, Path]
) -> None:
    servicer, path = scripted
    servicer.fail("Output", 1, code)
    with Client.from_file(path) as client:
        chunks = list(client.output("7", follow=True))
    assert b"".join(c.data for c in chunks) == b"abcdef"
    assert [r.offset for r in servicer.requests["Output"]] == [0, 3]

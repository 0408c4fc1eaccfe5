"""How a follow learns the exit status from a server that does not send it at the end of
the stream (one from before ``final_status``): one GetJob, and a Wait only when the job
had not ended."""

from __future__ import annotations

from typing import Any

from remo.client.aio import AsyncClient
from remo.client.sync import Client
from tests.unit.test_cli_usage import job, running_job


class _Client:
    """Answers GetJob with ``seen`` and Wait with the ended job; records the calls."""

    def __init__(self, seen: Any) -> None:
        self.seen = seen
        self.calls: list[str] = []

    def status(self, job_id: str) -> Any:
        self.calls.append(f"status {job_id}")
        return self.seen

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        self.calls.append(f"wait {job_id}")
        return job(id=job_id, exit_code=3)


class _AsyncClient(_Client):
    async def status(self, job_id: str) -> Any:  # type: ignore[override]
        return _Client.status(self, job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:  # type: ignore[override]
        return _Client.wait(self, job_id, timeout)


def test_an_ended_job_is_one_getjob() -> None:
    client = _Client(job(id="7", exit_code=0))
    assert Client._ended(client, "7", None).exit_status == 0  # type: ignore[arg-type]
    assert client.calls == ["status 7"]


def test_a_job_not_ended_yet_is_waited_for() -> None:
    client = _Client(running_job(id="7"))
    assert Client._ended(client, "7", None).exit_status == 3  # type: ignore[arg-type]
    assert client.calls == ["status 7", "wait 7"]


async def test_the_async_client_alike() -> None:
    for seen, calls in (
        (job(id="7", exit_code=0), ["status 7"]),
        (running_job(id="7"), ["status 7", "wait 7"]),
    ):
        client = _AsyncClient(seen)
        await AsyncClient._ended(client, "7", None)  # type: ignore[arg-type]
        assert client.calls == calls

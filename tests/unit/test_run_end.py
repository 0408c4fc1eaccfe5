"""How ``remo run`` learns the exit status once the job's followed output has ended."""

from __future__ import annotations

from typing import Any

from remo.cli import run
from tests.unit.test_cli_usage import job, running_job


class _Client:
    """Answers GetJob with ``seen`` and Wait with the ended job; records the calls."""

    def __init__(self, seen: Any) -> None:
        self.seen = seen
        self.calls: list[str] = []

    def status(self, job_id: str) -> Any:
        self.calls.append(f"status {job_id}")
        return self.seen

    def wait(self, job_id: str) -> Any:
        self.calls.append(f"wait {job_id}")
        return job(id=job_id, exit_code=3)


def test_an_ended_job_is_one_getjob() -> None:
    client = _Client(job(id="7", exit_code=0))
    assert run._ended(client, "7").exit_status == 0  # type: ignore[arg-type]
    assert client.calls == ["status 7"]


def test_a_job_not_ended_yet_is_waited_for() -> None:
    client = _Client(running_job(id="7"))
    assert run._ended(client, "7").exit_status == 3  # type: ignore[arg-type]
    assert client.calls == ["status 7", "wait 7"]

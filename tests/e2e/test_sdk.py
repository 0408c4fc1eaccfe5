"""The Python SDK against a real server: Client and AsyncClient, their typed errors with
the server's ErrorInfo reasons, pagination, kill, run, lines, and 200 jobs at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from remo.client import (
    AsyncClient,
    Client,
    CredentialRevoked,
    InvalidRequest,
    JobNotRunning,
    JobStillRunning,
    LimitOutOfRange,
    NameTaken,
    NotFound,
    PermissionDenied,
    StartFailed,
    WaitTimeout,
)
from remo.client.errors import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_REMOTE, EXIT_USAGE
from remo.core.spec import Limits
from tests.e2e.conftest import Server, me
from tests.support import wait_until

pytestmark = pytest.mark.root


async def test_run_collects_output_and_the_exit_status(credential: Path) -> None:
    def work() -> tuple[int | None, bytes]:
        with Client.from_file(credential) as remo:
            result = remo.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
            return result.exit_status, result.output

    status, output = await asyncio.to_thread(work)
    assert status == 3
    assert sorted(output.splitlines()) == [b"err", b"out"]


async def test_run_with_a_timeout_stops_the_job(credential: Path) -> None:
    async with AsyncClient.from_file(credential) as remo:
        with pytest.raises(WaitTimeout):
            await remo.run(["sleep", "60"], timeout=0.5)
        (job,) = await remo.list(limit=1)
        assert job.state.value == "stopped"


async def test_kill_sends_one_signal_and_refuses_an_ended_job(credential: Path) -> None:
    script = 'trap "echo got HUP" HUP; echo ready; while :; do sleep 0.05; done'
    async with AsyncClient.from_file(credential) as remo:
        job = (await remo.start(["sh", "-c", script])).job
        assert job is not None
        lines = remo.lines(job.id, follow=True)
        assert await anext(lines) == "ready"
        after = await remo.kill(job.id, "HUP")
        assert after.state.value == "running"  # no escalation
        # Every process hears it: the shell's trap, and its sleep (which dies of it,
        # and the shell may say "Hangup").
        assert [line async for line in _until(lines, "got HUP")][-1] == "got HUP"
        await remo.kill(job.id)  # SIGKILL by default
        ended = await remo.wait(job.id)
        assert (ended.state.value, ended.signal, ended.exit_status) == ("stopped", 9, 137), ended
        with pytest.raises(JobNotRunning) as refused:
            await remo.kill(job.id, 15)
        assert refused.value.reason == "JOB_NOT_RUNNING"


async def _until(lines: AsyncIterator[str], last: str) -> AsyncIterator[str]:
    async for line in lines:
        yield line
        if line == last:
            return


async def test_every_refusal_arrives_typed_with_its_reason(
    server: Server, credential: Path
) -> None:
    """The errors the CLI tells apart, each with its ErrorInfo reason, the fields at
    fault for bad input, and the exit code the CLI uses."""
    async with AsyncClient.from_file(credential) as remo:
        with pytest.raises(NotFound) as caught:
            await remo.status("999999")
        assert (caught.value.reason, caught.value.exit_code) == ("JOB_NOT_FOUND", EXIT_NOT_FOUND)
        with pytest.raises(NotFound) as caught:
            await remo.schedule_status("s999")
        assert caught.value.reason == "SCHEDULE_NOT_FOUND"
        with pytest.raises(InvalidRequest) as bad:
            await remo.start(["ok", "nul\0inside"])
        assert (bad.value.reason, bad.value.fields) == ("BAD_REQUEST", ("argv",))
        assert bad.value.exit_code == EXIT_USAGE
        with pytest.raises(LimitOutOfRange) as limit:
            await remo.start(["true"], limits=Limits(memory=1))
        assert limit.value.fields == ("limits.memory_bytes",)
        with pytest.raises(StartFailed) as failed:
            await remo.start(["/no/such/program"])
        assert failed.value.reason == "START_FAILED"
        assert failed.value.metadata()["errno"] == "ENOENT"
        assert failed.value.exit_code == EXIT_REMOTE
        running = (await remo.start(["sleep", "30"])).job
        assert running is not None
        with pytest.raises(JobStillRunning) as busy:
            await remo.remove(running.id)
        assert busy.value.reason == "JOB_STILL_RUNNING"
        with pytest.raises(InvalidRequest) as token:
            await remo.list_page(page_token="not-a-token")
        assert token.value.reason == "INVALID_PAGE_TOKEN"
        await remo.stop(running.id, grace=0)
    viewer = server.credential("viewer1", "viewer")
    async with AsyncClient.from_file(viewer) as remo:
        with pytest.raises(PermissionDenied) as denied:
            await remo.start(["true"])
        assert denied.value.reason == "ROLE_NOT_ALLOWED"
        assert denied.value.metadata()["role"] == "viewer"
        assert denied.value.exit_code == EXIT_AUTH


async def test_a_revoked_credential_is_told_apart(server: Server) -> None:
    credential = server.credential("carol", "operator")
    async with AsyncClient.from_file(credential) as remo:
        me_now = await remo.whoami()
    revoke = [sys.executable, "-m", "remo", "admin", "revoke", "--serial", me_now.serial]
    done = await asyncio.to_thread(
        subprocess.run,
        [*revoke, "--state-dir", str(server.state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    async with AsyncClient.from_file(credential) as remo:
        with pytest.raises(CredentialRevoked) as refused:
            await remo.whoami()
    assert refused.value.reason == "CREDENTIAL_REVOKED"
    assert refused.value.exit_code == EXIT_AUTH


async def test_pages_cover_every_job_once_newest_first(credential: Path) -> None:
    async with AsyncClient.from_file(credential) as remo:
        started = [(await remo.start(["true"])).job for _ in range(5)]
        ids = [job.id for job in started if job is not None]
        seen: list[str] = []
        token = ""
        while True:
            page = await remo.list_page(page_size=2, page_token=token)
            assert len(page.jobs) <= 2
            seen += [job.id for job in page.jobs]
            token = page.next_page_token
            if not token:
                break
        assert seen == ids[::-1]
        for job_id in ids:
            await remo.wait(job_id)
        assert [j.id for j in await remo.list(states=["succeeded"], limit=3)] == ids[:1:-1]


async def test_a_client_from_credential_bytes_and_its_whoami(credential: Path) -> None:
    async with AsyncClient.from_credential(credential.read_bytes()) as remo:
        who = await remo.whoami()
    assert (who.user, who.role) == me()
    assert who.not_after > time.time()


async def test_two_hundred_jobs_from_one_async_client(credential: Path) -> None:
    """One AsyncClient shared by 200 tasks: each starts a job, collects its output and
    waits for its exit status (bench/sdk_bench.py times the same against Client)."""
    count = 200

    async def one(remo: AsyncClient, i: int) -> tuple[int | None, bytes]:
        result = await remo.run(["sh", "-c", f"echo job {i}; exit {i % 7}"])
        return result.exit_status, result.output

    async with AsyncClient.from_file(credential) as remo:
        began = time.monotonic()
        results = await asyncio.gather(*(one(remo, i) for i in range(count)))
        took = time.monotonic() - began
    assert [code for code, _ in results] == [i % 7 for i in range(count)]
    assert [out for _, out in results] == [f"job {i}\n".encode() for i in range(count)]
    print(f"\n200 jobs (start, output, wait) from one AsyncClient: {took:.2f} s")


async def test_one_client_shared_by_threads(credential: Path) -> None:
    """Client is thread-safe: 8 threads share one, 5 runs each, every result its own."""

    def work() -> list[tuple[int | None, bytes]]:
        with Client.from_file(credential) as remo, ThreadPoolExecutor(8) as pool:
            runs = pool.map(lambda i: remo.run(["sh", "-c", f"echo {i}; exit {i % 5}"]), range(40))
            return [(r.exit_status, r.output) for r in runs]

    results = await asyncio.to_thread(work)
    assert results == [(i % 5, f"{i}\n".encode()) for i in range(40)]


async def test_concurrent_starts_of_one_name_start_one_job(credential: Path) -> None:
    async with AsyncClient.from_file(credential) as remo:
        outcomes = await asyncio.gather(
            *(remo.start(["sleep", "30"], name="solo") for _ in range(8)), return_exceptions=True
        )
        started = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, NameTaken)]
        assert (len(started), len(refused)) == (1, 7), outcomes
        assert refused[0].reason == "NAME_TAKEN" and refused[0].metadata() == {"name": "solo"}
        assert [j.name for j in await remo.list(labels={})] == ["solo"]
        await remo.stop("solo", grace=0)


async def test_more_follows_than_a_connection_carries(credential: Path) -> None:
    """40 jobs followed from one AsyncClient, then all stopped: the follows do not fill
    the connection the Stops need (the server allows 32 streams a connection)."""
    async with AsyncClient.from_file(credential) as remo:
        jobs = [(await remo.start(["sh", "-c", "echo up; sleep 60"])).job for _ in range(40)]
        ids = [job.id for job in jobs if job is not None]

        async def follow(job_id: str) -> bytes:
            return b"".join([chunk.data async for chunk in remo.output(job_id, follow=True)])

        follows = [asyncio.create_task(follow(job_id)) for job_id in ids]
        ended = await asyncio.wait_for(
            asyncio.gather(*(remo.stop(job_id, grace=1) for job_id in ids)), 60
        )
        assert {job.state.value for job in ended} == {"stopped"}
        assert await asyncio.wait_for(asyncio.gather(*follows), 30) == [b"up\n"] * 40


async def test_stops_in_flight_leave_room_for_other_calls(credential: Path) -> None:
    """40 Stops waiting out their grace period at once (the jobs trap SIGTERM and go on):
    each reaches the server, and other calls of the same client are answered meanwhile —
    Stops beyond a few go on connections of their own instead of filling the 32 streams
    of the short calls' connection."""
    script = "trap 'echo term' TERM; echo up; while :; do sleep 60 & wait; done"
    async with AsyncClient.from_file(credential) as remo:
        ids = []
        for _ in range(40):
            job = (await remo.start(["sh", "-c", script])).job
            assert job is not None
            ids.append(job.id)

        async def output(job_id: str) -> bytes:
            return b"".join([chunk.data async for chunk in remo.output(job_id)])

        async def all_say(text: bytes) -> bool:
            return all(text in out for out in await asyncio.gather(*map(output, ids)))

        await wait_until(lambda: all_say(b"up\n"), timeout=30, what="40 jobs up")
        stops = asyncio.gather(*(remo.stop(job_id, grace=60) for job_id in ids))
        await wait_until(lambda: all_say(b"term\n"), timeout=30, what="40 stops at the server")
        status = await asyncio.wait_for(remo.status(ids[0]), 10)
        assert status.state.value == "running"
        await asyncio.gather(*(remo.kill(job_id, "KILL") for job_id in ids))
        assert {job.state.value for job in await stops} == {"stopped"}


async def test_a_burst_of_calls_is_not_refused(credential: Path) -> None:
    """80 Kills at once from one AsyncClient: none is refused by the server's limit of 32
    streams a connection (a Kill is not retried, so a refused one would fail)."""
    async with AsyncClient.from_file(credential) as remo:
        ids = [(await remo.start(["sleep", "60"])).job.id for _ in range(80)]  # type: ignore[union-attr]
        ended = await asyncio.gather(*(remo.kill(job_id, "KILL") for job_id in ids))
        assert {job.state.value for job in ended} == {"stopped"}


async def test_a_burst_of_calls_from_threads_is_not_refused(credential: Path) -> None:
    """The same from 80 threads sharing one Client."""

    def work() -> set[str]:
        with Client.from_file(credential) as remo, ThreadPoolExecutor(80) as pool:
            ids = [remo.start(["sleep", "60"]).job.id for _ in range(80)]  # type: ignore[union-attr]
            return {job.state.value for job in pool.map(lambda i: remo.kill(i, "KILL"), ids)}

    assert await asyncio.to_thread(work) == {"stopped"}

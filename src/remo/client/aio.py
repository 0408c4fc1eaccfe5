""":class:`AsyncClient`: the SDK for asyncio, with the methods and types of
:class:`~remo.client.sync.Client` (each a coroutine; ``output`` and ``lines`` are async
iterators). One client is safe to share among tasks: its gRPC channel multiplexes their
calls over one connection.

::

    import asyncio
    from remo.client import AsyncClient

    async def main() -> None:
        async with AsyncClient.from_profile() as remo:
            results = await asyncio.gather(*(remo.run(["./shard", str(i)]) for i in range(100)))
            print(sum(r.exit_status == 0 for r in results), "shards passed")

    asyncio.run(main())

Retries and reconnections follow the same rules as the blocking client (the decisions
live in :mod:`remo.client.calls`); only the waiting differs.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import signal as signals
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from remo.api.jobs import job_from_pb
from remo.client import calls, many
from remo.client.base import ClientBase
from remo.client.errors import ClientError, ConnectionFailed, WaitTimeout
from remo.client.follow import AsyncFollow
from remo.client.types import (
    JobOutput,
    JobPage,
    JobState,
    JobStatus,
    OutputChunk,
    RunResult,
    Schedule,
    StartResult,
    WhoAmI,
)
from remo.pki.credfile import Credential
from remo.v1 import jobs_pb2 as pb

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(ClientBase):
    """asyncio client of one remo server: ``async with``, or ``await close()``.

    Every method raises a :class:`~remo.client.errors.ClientError` subclass on failure.
    Create it inside the event loop that uses it.
    """

    make_channel = staticmethod(
        lambda address, creds, options: grpc.aio.secure_channel(address, creds, options=options)
    )

    def __init__(self, credential: Credential, **kwargs: Any) -> None:
        super().__init__(credential, **kwargs)
        #: Set once a call was answered: from then on a lost connection is worth
        #: waiting out (see :func:`remo.client.calls.reached_server`).
        self._replied = False
        #: Bounds the short calls in flight (see calls.SHORT_CALLS_IN_FLIGHT).
        self._short_calls = asyncio.Semaphore(calls.SHORT_CALLS_IN_FLIGHT)

    @property
    def reached(self) -> bool:
        return self._replied

    async def close(self) -> None:
        for channel in self._lanes.channels():
            await channel.close()
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- helpers -------------------------------------------------------------------------

    async def _call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        what: str = "",
        timeout: float | None = None,
        retried: bool = False,
        lane: bool = False,
    ) -> T:
        """One unary call (see :meth:`remo.client.sync.Client._call`)."""
        attempts = calls.Attempts(self.timeout if timeout is None else timeout)
        while True:
            try:
                if lane:
                    reply = await method(
                        request,
                        timeout=attempts.left(),
                        wait_for_ready=True if attempts.again else None,
                    )
                else:
                    async with self._short_calls:
                        reply = await method(
                            request,
                            timeout=attempts.left(),
                            wait_for_ready=True if attempts.again else None,
                        )
            except grpc.RpcError as err:
                pause = attempts.pause(err, retried, self.reached)
                if pause is None:
                    raise self._error(err, what, attempts.limit) from err
                await asyncio.sleep(pause)
                continue
            self._replied = True
            return reply

    async def _recover(
        self, outage: calls.Outage, err: grpc.RpcError, what: str, doing: str
    ) -> None:
        """(See :meth:`remo.client.sync.Client._recover`.)"""
        if not (calls.retryable(err) and calls.reached_server(self.reached, err)):
            raise self._error(err, what) from err
        left = outage.failed()
        if left > 0:
            await asyncio.sleep(min(outage.backoff(), left))
            left = outage.left()
        if left > 0:
            try:
                await self._call(self._stub.WhoAmI, pb.WhoAmIRequest(), timeout=left, retried=True)
            except ConnectionFailed:
                pass
            else:
                return
        raise ConnectionFailed(
            f"lost the connection to {self.address} while {doing} and could not get it "
            f"back within {self.reconnect_timeout:g}s: {self._error(err)}",
            code="UNAVAILABLE",
        ) from err

    # -- the API (documented on remo.client.sync.Client) ---------------------------------

    async def start(self, argv: Sequence[str], **options: Any) -> StartResult:
        request = calls.start_request(argv, **options)
        reply = await self._call(
            self._stub.Start,
            request,
            timeout=max(self.timeout, 60.0),
            retried=bool(request.request_id),
        )
        if reply.HasField("schedule"):
            return StartResult(schedule=Schedule.from_pb(reply.schedule))
        return StartResult(job=job_from_pb(reply.job))

    async def run(
        self,
        argv: Sequence[str],
        *,
        on_output: Callable[[bytes], object] | None = None,
        timeout: float | None = None,
        stdin: bytes | AsyncIterable[bytes] | Iterable[bytes] | None = None,
        **options: Any,
    ) -> RunResult:
        job = (await self.start(argv, stdin=stdin is not None, **options)).job
        assert job is not None  # (no schedule options: a job)
        collected: list[bytes] = []
        sink = on_output or collected.append
        writer = None
        if stdin is not None:
            writer = asyncio.create_task(self._feed(job.id, stdin))
        try:
            followed = self.follow(job.id, timeout=timeout)
            async for chunk in followed:
                sink(chunk.data)
            final = followed.status
            assert final is not None
        except WaitTimeout:
            await self.stop(job.id, grace=2.0)
            raise
        finally:
            if writer is not None and not writer.done():
                writer.cancel()
        return RunResult(final, b"".join(collected))

    async def write_stdin(
        self, job_id: str, source: bytes | AsyncIterable[bytes] | Iterable[bytes]
    ) -> int:
        """Write ``source`` (bytes, or a sync or async iterable of bytes) to the stdin
        of ``job_id``, started with ``stdin=True``, then close it; the bytes the job's
        stdin took. See :meth:`remo.client.sync.Client.write_stdin`."""
        if isinstance(source, bytes | bytearray | memoryview):
            source = calls.read_chunks(bytes(source))
        lane = self._lanes.take()
        try:
            reply = await lane.stub.WriteStdin(_stdin_requests(job_id, source))
        except grpc.RpcError as err:
            raise self._error(err, f"job {job_id}") from err
        finally:
            self._lanes.give(lane)
        self._replied = True
        return int(reply.written_bytes)

    async def _feed(
        self, job_id: str, source: bytes | AsyncIterable[bytes] | Iterable[bytes]
    ) -> None:
        with contextlib.suppress(ClientError):
            await self.write_stdin(job_id, source)

    async def stop(self, job_id: str, *, grace: float | None = None) -> JobStatus:
        timeout = self.timeout + (grace if grace is not None else 30.0)
        stub, lane = self._stop_route()
        try:
            reply = await self._call(
                stub.Stop,
                calls.stop_request(job_id, grace),
                what=f"job {job_id}",
                timeout=timeout,
                retried=True,
                lane=lane is not None,
            )
        finally:
            self._stop_done(lane)
        return job_from_pb(reply.job)

    async def kill(self, job_id: str, signal: int | str = signals.SIGKILL) -> JobStatus:
        request = pb.KillRequest(id=job_id, signal=calls.signal_number(signal))
        reply = await self._call(self._stub.Kill, request, what=f"job {job_id}")
        return job_from_pb(reply.job)

    async def status(self, job_id: str) -> JobStatus:
        reply = await self._call(
            self._stub.GetJob, pb.GetJobRequest(id=job_id), what=f"job {job_id}", retried=True
        )
        return job_from_pb(reply.job)

    async def list_page(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        all_users: bool = False,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
        live_usage: bool = False,
    ) -> JobPage:
        request = calls.list_request(
            all_users=all_users,
            states=states,
            page_size=page_size,
            page_token=page_token,
            labels=labels,
            live_usage=live_usage,
        )
        reply = await self._call(self._stub.ListJobs, request, retried=True)
        return JobPage([job_from_pb(j) for j in reply.jobs], reply.next_page_token)

    async def list(
        self,
        *,
        all_users: bool = False,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> builtins.list[JobStatus]:
        jobs: builtins.list[JobStatus] = []
        token = ""
        while limit is None or len(jobs) < limit:
            size = 1000 if limit is None else min(1000, limit - len(jobs))
            page = await self.list_page(
                page_size=size,
                page_token=token,
                all_users=all_users,
                states=states,
                labels=labels,
            )
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                break
        return jobs

    async def schedules(self, *, all_users: bool = False) -> builtins.list[Schedule]:
        found: builtins.list[Schedule] = []
        token = ""
        while True:
            request = pb.ListSchedulesRequest(all_users=all_users, page_token=token)
            reply = await self._call(self._stub.ListSchedules, request, retried=True)
            found.extend(Schedule.from_pb(s) for s in reply.schedules)
            token = reply.next_page_token
            if not token:
                return found

    async def schedule_status(self, schedule_id: str) -> Schedule:
        request = pb.GetScheduleRequest(id=schedule_id)
        reply = await self._call(
            self._stub.GetSchedule, request, what=f"schedule {schedule_id}", retried=True
        )
        return Schedule.from_pb(reply.schedule)

    async def remove(self, job_id: str, *, stop_running: bool = False) -> None:
        request = pb.RemoveRequest(id=job_id, stop_running=stop_running)
        await self._call(self._stub.Remove, request, what=f"job {job_id}")

    async def whoami(self) -> WhoAmI:
        reply = await self._call(self._stub.WhoAmI, pb.WhoAmIRequest(), retried=True)
        return WhoAmI.from_pb(reply)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> JobStatus:
        outage = calls.Outage(self.reconnect_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outage.opened()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            lane = self._lanes.take()
            try:
                reply = await lane.stub.Wait(pb.WaitRequest(id=job_id), timeout=left)
            except grpc.RpcError as err:
                if deadline is not None and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"job {job_id} still running after {timeout:g}s") from None
                await self._recover(outage, err, f"job {job_id}", f"waiting for job {job_id}")
                continue
            finally:
                self._lanes.give(lane)
            self._replied = True
            return job_from_pb(reply.job)

    def output(
        self,
        job_id: str,
        *,
        offset: int = 0,
        follow: bool = False,
        timeout: float | None = None,
        stdout: bool = True,
        stderr: bool = True,
        tail_lines: int | None = None,
        since: float | datetime | None = None,
        end_offset: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[OutputChunk]:
        calls.check_offset(offset)
        window = calls.OutputWindow(stdout, stderr, tail_lines, since, end_offset, timestamps)
        window.check()
        return self._output(job_id, window, calls.Resume(offset), follow, timeout)

    def follow(
        self,
        job_id: str,
        *,
        offset: int = 0,
        timeout: float | None = None,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
    ) -> AsyncFollow:
        calls.check_offset(offset)
        window = calls.OutputWindow(stdout, stderr, None, None, None, timestamps)
        resume = calls.Resume(offset, final_status=True)
        chunks = self._output(job_id, window, resume, True, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        return AsyncFollow(chunks, resume, lambda: self._ended(job_id, deadline))

    async def _ended(self, job_id: str, deadline: float | None) -> JobStatus:
        """The status of a job whose followed output has ended, from a server that did
        not send it: one GetJob says it (the follow ends once the end is recorded)."""
        status = await self.status(job_id)
        if status.ended:
            return status
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await self.wait(job_id, timeout=left)

    async def _output(
        self,
        job_id: str,
        window: calls.OutputWindow,
        resume: calls.Resume,
        follow: bool,
        timeout: float | None,
    ) -> AsyncIterator[OutputChunk]:
        outage = calls.Outage(self.reconnect_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outage.opened()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            request = window.request(
                job_id, resume.position, follow, not resume.started, resume.final_status
            )
            lane = self._lanes.take()
            call = lane.output(request, timeout=left)
            try:
                async for msg in call:
                    self._replied = True
                    chunk = resume.take(msg)
                    if chunk is not None:
                        outage.progressed()
                        yield chunk
                return
            except grpc.RpcError as err:
                if deadline is not None and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"job {job_id} still running after {timeout:g}s") from None
                doing = f"reading the output of job {job_id} (at byte {resume.position})"
                await self._recover(outage, err, f"job {job_id}", doing)
            finally:
                call.cancel()
                self._lanes.give(lane)

    async def output_many(
        self,
        job_ids: Sequence[str],
        *,
        follow: bool = False,
        timeout: float | None = None,
        stdout: bool = True,
        stderr: bool = True,
        tail_lines: int | None = None,
        since: float | datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[JobOutput]:
        window = calls.OutputWindow(stdout, stderr, tail_lines, since, None, timestamps)
        state = many.ManyOutputs(job_ids, window, follow)
        outage = calls.Outage(self.reconnect_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not state.done:
            outage.opened()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            lane = self._lanes.take()
            call = lane.stub.OutputMany(state.request(), timeout=left)
            try:
                async for msg in call:
                    self._replied = True
                    outage.progressed()
                    for item in state.take(msg):
                        yield item
                return
            except grpc.RpcError as err:
                if deadline is not None and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"jobs still running after {timeout:g}s") from None
                await self._recover(outage, err, "", f"reading the output of {len(job_ids)} jobs")
            finally:
                call.cancel()
                self._lanes.give(lane)

    async def lines(self, job_id: str, *, follow: bool = False) -> AsyncIterator[str]:
        pending = b""
        async for chunk in self.output(job_id, follow=follow):
            complete, pending = calls.split_lines(pending, chunk.data)
            for line in complete:
                yield line
        if pending:
            yield pending.decode("utf-8", "replace")


async def _stdin_requests(
    job_id: str, source: AsyncIterable[bytes] | Iterable[bytes]
) -> AsyncIterator[pb.WriteStdinRequest]:
    """WriteStdin's messages from a sync or async source (see calls.stdin_requests)."""
    yield pb.WriteStdinRequest(id=job_id)
    if isinstance(source, AsyncIterable):
        async for chunk in source:
            if chunk:
                yield pb.WriteStdinRequest(data=chunk)
    else:
        for chunk in source:
            if chunk:
                yield pb.WriteStdinRequest(data=chunk)

""":class:`Client`: the blocking SDK. :class:`~remo.client.aio.AsyncClient` has the same
methods for asyncio; docs/SDK.md is the guide.

::

    from remo.client import Client

    with Client.from_profile() as remo:              # or Client.from_file("build01.remo")
        result = remo.run(["make", "-j8", "test"])
        print(result.exit_status, result.output.decode())

Job ids are what users type: ``"12"`` is the caller's job 12, ``"alice/12"`` is alice's
(admins only); schedules are ``"s3"`` / ``"alice/s3"``.

The channel is gRPC over mutual TLS: the client presents the certificate of its
credential and trusts only the CA in it. The credential is loaded and checked (readable,
private, complete, valid now) before anything is sent. One client is safe to share among
threads (a gRPC channel is).

:meth:`Client.output` and :meth:`Client.wait` survive server restarts and network
hiccups: on ``UNAVAILABLE`` or ``CANCELLED`` they reconnect with backoff and carry on
(``output`` resumes at the byte after the last one it yielded, so no byte is lost or
repeated), and give up with :class:`~remo.client.errors.ConnectionFailed` after
``reconnect_timeout`` seconds (60 by default) without a working connection. The calls
that are safe to repeat (reads, ``stop``, and ``start`` of a job, which carries a request
id) are retried within their timeout (:class:`~remo.client.calls.Attempts`). A client
waits out an outage only once it has reached the server: before that, a failure to
connect is reported at once.
"""

from __future__ import annotations

import builtins
import contextlib
import signal as signals
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import grpc

from remo.api.jobs import job_from_pb
from remo.client import calls, many
from remo.client.base import ClientBase
from remo.client.errors import ClientError, ConnectionFailed, WaitTimeout
from remo.client.follow import Follow
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

__all__ = ["Client"]

T = TypeVar("T")
C = TypeVar("C")


class Client(ClientBase):
    """Blocking client of one remo server. Use as a context manager, or call close().

    Every method raises a :class:`~remo.client.errors.ClientError` subclass on failure
    (never a raw ``grpc.RpcError``); its ``reason`` is the server's, its ``exit_code``
    what the CLI exits with.
    """

    make_channel = staticmethod(
        lambda address, creds, options: grpc.secure_channel(address, creds, options=options)
    )

    def __init__(self, credential: Credential, **kwargs: Any) -> None:
        super().__init__(credential, **kwargs)
        # Set once a call was answered: from then on a lost connection is the server
        # restarting or the network failing, worth waiting out (calls.reached_server).
        self._replied = threading.Event()
        #: Bounds the short calls in flight (see calls.SHORT_CALLS_IN_FLIGHT).
        self._short_calls = threading.BoundedSemaphore(calls.SHORT_CALLS_IN_FLIGHT)

    @property
    def reached(self) -> bool:
        """Whether this client has had an answer from the server."""
        return self._replied.is_set()

    def close(self) -> None:
        for channel in self._lanes.channels():
            channel.close()
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------

    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        what: str = "",
        timeout: float | None = None,
        retried: bool = False,
        lane: bool = False,
    ) -> T:
        """One unary call with ``timeout`` seconds (the client's by default) in all;
        ``retried`` calls are tried again after an outage (:class:`calls.Attempts`);
        ``lane``: ``method`` is a lane's (else the short calls' channel, whose calls in
        flight are bounded)."""
        attempts = calls.Attempts(self.timeout if timeout is None else timeout)
        while True:
            try:
                # Again after an outage, the attempt waits for the connection to be back
                # (wait_for_ready), up to the deadline, rather than fail at once.
                with contextlib.nullcontext() if lane else self._short_calls:
                    reply = _unary(
                        method,
                        request,
                        timeout=attempts.left(),
                        wait_for_ready=True if attempts.again else None,
                    )
            except grpc.RpcError as err:
                pause = attempts.pause(err, retried, self.reached)
                if pause is None:
                    raise self._error(err, what, attempts.limit) from err
                time.sleep(pause)
                continue
            self._replied.set()
            return reply

    def _server_back(self, within: float) -> bool:
        """Whether the server answers again within ``within`` seconds: a WhoAmI, retried
        as the reads are. Raises what the server answers instead (a revoked credential).
        (Not grpc.channel_ready_future: its connectivity polling thread can outlive a
        channel closed soon after, and then dies with a traceback.)"""
        try:
            self._call(self._stub.WhoAmI, pb.WhoAmIRequest(), timeout=within, retried=True)
        except ConnectionFailed:
            return False
        return True

    def _recover(self, outage: calls.Outage, err: grpc.RpcError, what: str, doing: str) -> None:
        """After a failed call of :meth:`output` or :meth:`wait`: return when it is worth
        trying again, or raise the translated error (an answer of the server, or a
        client that never reached it) or :class:`ConnectionFailed` (no working
        connection came back within the budget)."""
        if not (calls.retryable(err) and calls.reached_server(self.reached, err)):
            raise self._error(err, what) from err
        left = outage.failed()
        if left > 0:
            time.sleep(min(outage.backoff(), left))
            left = outage.left()
        if left > 0 and self._server_back(left):
            return
        cause = self._error(err)
        try:
            # A fresh call says best why the server cannot be reached right now.
            self._stub.WhoAmI(pb.WhoAmIRequest(), timeout=5.0)
        except grpc.RpcError as probe:
            cause = self._error(probe, timeout=5.0)
        raise ConnectionFailed(
            f"lost the connection to {self.address} while {doing} and could not get it "
            f"back within {self.reconnect_timeout:g}s: {cause}",
            code=cause.code,
        ) from err

    # -- the API -------------------------------------------------------------------------

    def start(self, argv: Sequence[str], **options: Any) -> StartResult:
        """Start ``argv`` (no shell) now, or create a schedule.

        Options: ``env`` (a mapping: the job's whole environment), ``cwd``, ``limits``
        (:class:`~remo.core.spec.Limits`), ``network`` (``"host"`` or ``"none"``),
        ``private_tmp``, ``name`` (unique among your jobs: then it works wherever an id
        does), ``labels`` (a mapping of tags ``list`` can filter by); a schedule is
        created when any of ``delay`` (seconds from now), ``at`` (unix time or aware
        datetime of the first run) or ``every`` (period in seconds) is given. The command
        is checked at start: a missing executable or cwd raises
        :class:`~remo.client.errors.StartFailed` at once. ``stdin=True`` gives the job
        a stdin pipe for one :meth:`write_stdin` (else it reads /dev/null).
        """
        request = calls.start_request(argv, **options)
        reply = self._call(
            self._stub.Start,
            request,
            timeout=max(self.timeout, 60.0),
            retried=bool(request.request_id),
        )
        if reply.HasField("schedule"):
            return StartResult(schedule=Schedule.from_pb(reply.schedule))
        return StartResult(job=job_from_pb(reply.job))

    def run(
        self,
        argv: Sequence[str],
        *,
        on_output: Callable[[bytes], object] | None = None,
        timeout: float | None = None,
        stdin: bytes | BinaryIO | Iterable[bytes] | None = None,
        **options: Any,
    ) -> RunResult:
        """Start ``argv``, follow its output and wait for its end, like a local
        ``subprocess.run``. The output (stdout and stderr as written) is collected into
        the result, or passed to ``on_output`` as it comes (then the result's ``output``
        is empty). ``stdin`` (bytes, a binary file or an iterable of bytes) is written
        to the job's stdin meanwhile, then closed. With ``timeout`` (seconds),
        :class:`~remo.client.errors.WaitTimeout` is raised when the job has not ended
        by then; the job is stopped first."""
        job = self.start(argv, stdin=stdin is not None, **options).job
        assert job is not None  # (no schedule options: a job)
        collected: list[bytes] = []
        sink = on_output or collected.append
        writer = None
        if stdin is not None:
            writer = threading.Thread(
                target=self._feed, args=(job.id, stdin), name="remo-stdin", daemon=True
            )
            writer.start()
        try:
            followed = self.follow(job.id, timeout=timeout)
            for chunk in followed:
                sink(chunk.data)
            final = followed.status
            assert final is not None
        except WaitTimeout:
            self.stop(job.id, grace=2.0)
            raise
        return RunResult(final, b"".join(collected))

    def stop(self, job_id: str, *, grace: float | None = None) -> JobStatus:
        """SIGTERM the job's processes, SIGKILL after ``grace`` seconds (10 by default);
        the final status. Stopping a job that has already ended returns it unchanged."""
        timeout = self.timeout + (grace if grace is not None else 30.0)
        stub, lane = self._stop_route()
        try:
            reply = self._call(
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

    def kill(self, job_id: str, signal: int | str = signals.SIGKILL) -> JobStatus:
        """Send ``signal`` (a number or a name: ``"HUP"``, ``"SIGUSR1"``) to every process
        of the running job, once; its status. Raises
        :class:`~remo.client.errors.JobNotRunning` when the job has ended."""
        request = pb.KillRequest(id=job_id, signal=calls.signal_number(signal))
        reply = self._call(self._stub.Kill, request, what=f"job {job_id}")
        return job_from_pb(reply.job)

    def status(self, job_id: str) -> JobStatus:
        """The job; a running one with what it uses now (``live``)."""
        reply = self._call(
            self._stub.GetJob, pb.GetJobRequest(id=job_id), what=f"job {job_id}", retried=True
        )
        return job_from_pb(reply.job)

    def list_page(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        all_users: bool = False,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
        live_usage: bool = False,
    ) -> JobPage:
        """One page of the caller's jobs, newest first (every user's with ``all_users``,
        admins only; only those in ``states`` and with all ``labels`` when given).
        ``page_size`` 0: 100. ``live_usage``: running jobs come with what they use now
        (``JobStatus.live``)."""
        request = calls.list_request(
            all_users=all_users,
            states=states,
            page_size=page_size,
            page_token=page_token,
            labels=labels,
            live_usage=live_usage,
        )
        reply = self._call(self._stub.ListJobs, request, retried=True)
        return JobPage([job_from_pb(j) for j in reply.jobs], reply.next_page_token)

    def list(
        self,
        *,
        all_users: bool = False,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> builtins.list[JobStatus]:
        """The caller's jobs, newest first, page after page: all of them, or the newest
        ``limit``. (For very many jobs, :meth:`list_page` reads a page at a time.)"""
        jobs: builtins.list[JobStatus] = []
        token = ""
        while limit is None or len(jobs) < limit:
            size = 1000 if limit is None else min(1000, limit - len(jobs))
            page = self.list_page(
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

    def schedules(self, *, all_users: bool = False) -> builtins.list[Schedule]:
        """The caller's active schedules, newest first (every user's with ``all_users``)."""
        found: builtins.list[Schedule] = []
        token = ""
        while True:
            request = pb.ListSchedulesRequest(all_users=all_users, page_token=token)
            reply = self._call(self._stub.ListSchedules, request, retried=True)
            found.extend(Schedule.from_pb(s) for s in reply.schedules)
            token = reply.next_page_token
            if not token:
                return found

    def schedule_status(self, schedule_id: str) -> Schedule:
        request = pb.GetScheduleRequest(id=schedule_id)
        reply = self._call(
            self._stub.GetSchedule, request, what=f"schedule {schedule_id}", retried=True
        )
        return Schedule.from_pb(reply.schedule)

    def remove(self, job_id: str, *, stop_running: bool = False) -> None:
        """Remove a finished job's record and output, or cancel a schedule.

        For a schedule, ``stop_running`` also stops its runs that are still running.
        """
        request = pb.RemoveRequest(id=job_id, stop_running=stop_running)
        self._call(self._stub.Remove, request, what=f"job {job_id}")

    def whoami(self) -> WhoAmI:
        return WhoAmI.from_pb(self._call(self._stub.WhoAmI, pb.WhoAmIRequest(), retried=True))

    def wait(self, job_id: str, *, timeout: float | None = None) -> JobStatus:
        """Block until the job has ended; its final status. Survives reconnections.
        With ``timeout`` (seconds), raises :class:`~remo.client.errors.WaitTimeout`
        when the job is still running by then."""
        outage = calls.Outage(self.reconnect_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outage.opened()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            lane = self._lanes.take()
            try:
                reply = _unary(lane.stub.Wait, pb.WaitRequest(id=job_id), timeout=left)
            except grpc.RpcError as err:
                if deadline is not None and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"job {job_id} still running after {timeout:g}s") from None
                self._recover(outage, err, f"job {job_id}", f"waiting for job {job_id}")
                continue
            finally:
                self._lanes.give(lane)
            self._replied.set()
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
    ) -> Iterator[OutputChunk]:
        """The job's output from byte ``offset``, in chunks of one stream each
        (:class:`~remo.client.types.OutputChunk`: ``stream``, ``time``, ``offset``).

        Without ``follow`` it ends at the current end of the output; with ``follow`` it
        goes on live until the job has ended and every byte was sent (or ``timeout``
        seconds have passed: :class:`~remo.client.errors.WaitTimeout`). A broken
        connection is re-established transparently and the stream resumes exactly where
        it stopped: every byte is yielded once, in order.

        ``stdout=False`` or ``stderr=False`` leaves that stream out (offsets still count
        its bytes); ``tail_lines=N`` starts N lines before the end (or before
        ``end_offset``); ``since`` (unix time or aware datetime) starts at the first
        byte that arrived then; ``end_offset`` stops there; ``timestamps=True`` gives
        one chunk per piece the server received, so every ``time`` is exact.
        """
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
    ) -> Follow:
        """The job's output followed to its end, as ``output(follow=True)`` gives it;
        once the iteration is over, the result's ``status`` is the job's final status,
        sent by the server at the end of the same stream (no call after the last byte)::

            followed = remo.follow(job_id)
            for chunk in followed:
                sys.stdout.buffer.write(chunk.data)
            print(followed.status.exit_code)
        """
        calls.check_offset(offset)
        window = calls.OutputWindow(stdout, stderr, None, None, None, timestamps)
        resume = calls.Resume(offset, final_status=True)
        chunks = self._output(job_id, window, resume, True, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        return Follow(chunks, resume, lambda: self._ended(job_id, deadline))

    def _ended(self, job_id: str, deadline: float | None) -> JobStatus:
        """The status of a job whose followed output has ended, from a server that did
        not send it: one GetJob says it (the follow ends once the end is recorded)."""
        status = self.status(job_id)
        if status.ended:
            return status
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.wait(job_id, timeout=left)

    def _output(
        self,
        job_id: str,
        window: calls.OutputWindow,
        resume: calls.Resume,
        follow: bool,
        timeout: float | None,
    ) -> Iterator[OutputChunk]:
        outage = calls.Outage(self.reconnect_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outage.opened()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            request = window.request(
                job_id, resume.position, follow, not resume.started, resume.final_status
            )
            lane = self._lanes.take()
            try:
                with _tracked(lane.output, request, timeout=left) as call:
                    while (msg := _next(call)) is not None:
                        self._replied.set()
                        chunk = resume.take(msg)
                        if chunk is not None:
                            outage.progressed()
                            yield chunk
                return
            except grpc.RpcError as err:
                if deadline is not None and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"job {job_id} still running after {timeout:g}s") from None
                doing = f"reading the output of job {job_id} (at byte {resume.position})"
                self._recover(outage, err, f"job {job_id}", doing)
            finally:
                self._lanes.give(lane)

    def output_many(
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
    ) -> Iterator[JobOutput]:
        """The output of several jobs (up to 1,000) in one stream: what ``output`` gives
        for each, as :class:`~remo.client.types.JobOutput` items (``job_id``, ``chunk``),
        each job's in order, and one item with ``chunk`` None when a job's output has
        ended. Far cheaper than one ``output`` per job when following many: what is ready
        together comes in one message. Every job is checked first (one that does not
        exist or is not yours raises before anything is yielded). Resumed after a broken
        connection like ``output``; ``timeout`` bounds the whole stream."""
        window = calls.OutputWindow(stdout, stderr, tail_lines, since, None, timestamps)
        state = many.ManyOutputs(job_ids, window, follow)
        outage = calls.Outage(self.reconnect_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not state.done:
            outage.opened()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            lane = self._lanes.take()
            request = state.request()
            try:
                with _tracked(lane.stub.OutputMany, request, timeout=left) as call:
                    while (msg := _next(call)) is not None:
                        self._replied.set()
                        outage.progressed()
                        yield from state.take(msg)
                return
            except grpc.RpcError as err:
                if deadline is not None and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"jobs still running after {timeout:g}s") from None
                self._recover(outage, err, "", f"reading the output of {len(job_ids)} jobs")
            finally:
                self._lanes.give(lane)

    def write_stdin(self, job_id: str, source: bytes | BinaryIO | Iterable[bytes]) -> int:
        """Write ``source`` (bytes, a binary file read as the job reads, or an iterable
        of bytes) to the stdin of ``job_id``, started with ``stdin=True``, then close it:
        the job reads end of file. Returns how many bytes the job's stdin took (fewer
        when the job closed it first). Once per job
        (:class:`~remo.client.errors.StdinNotOpen` otherwise). Not resumed after a
        broken connection: the job's stdin is closed then, as ssh's would be."""
        chunks = calls.read_chunks(source) if _readable(source) else source  # type: ignore[arg-type]
        lane = self._lanes.take()
        try:
            reply = _unary(lane.stub.WriteStdin, calls.stdin_requests(job_id, chunks))  # type: ignore[arg-type]
        except grpc.RpcError as err:
            raise self._error(err, f"job {job_id}") from err
        finally:
            self._lanes.give(lane)
        self._replied.set()
        return int(reply.written_bytes)

    def _feed(self, job_id: str, source: bytes | BinaryIO | Iterable[bytes]) -> None:
        """:meth:`write_stdin` on a thread of :meth:`run`: its failure shows in the
        job's output (a job that reads no end of file) rather than here."""
        with contextlib.suppress(ClientError):
            self.write_stdin(job_id, source)

    def lines(self, job_id: str, *, follow: bool = False) -> Iterator[str]:
        """The job's output as text lines (UTF-8, undecodable bytes replaced, without
        the newline); a last line without a newline comes at the end."""
        pending = b""
        for chunk in self.output(job_id, follow=follow):
            complete, pending = calls.split_lines(pending, chunk.data)
            yield from complete
        if pending:
            yield pending.decode("utf-8", "replace")


def _unary(method: Callable[..., T], request: Any, **options: Any) -> T:
    """One unary call. A tracked thread's (the CLI's, see calls.interrupt) is a future,
    which an interrupt can cancel, and its wait is shielded; any other thread's blocks,
    ~0.1 ms faster (the future's reply comes through the channel's spin thread)."""
    if not calls.tracked():
        return method(request, **options)
    future = method.future  # type: ignore[attr-defined]
    with _tracked(future, request, **options) as pending, calls.shielded():
        reply: T = pending.result()
    return reply


@contextlib.contextmanager
def _tracked(make: Callable[..., C], *args: Any, **options: Any) -> Iterator[C]:
    """A call, ``make(*args, **options)``, noted (an interrupt cancels it), then, once
    done with, forgotten and cancelled; making and cancelling it are steps inside grpc,
    shielded as waits are (see calls.interrupt)."""
    call: C | None = None
    try:
        with calls.shielded():
            call = make(*args, **options)
            calls.note_call(call)
        yield call
    finally:
        if call is not None:
            calls.forget_call(call)
            with calls.shielded():
                call.cancel()  # type: ignore[attr-defined]


def _next(call: Any) -> Any:
    """The next message of a streaming call, or None at its end: a wait inside grpc,
    which an interrupt leaves only once grpc's wait returned (see calls.interrupt)."""
    with calls.shielded():
        return next(call, None)


def _readable(source: object) -> bool:
    """Bytes or a file: read in chunks; anything else is already an iterable of chunks."""
    return isinstance(source, bytes | bytearray | memoryview) or hasattr(source, "read")

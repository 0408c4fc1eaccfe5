"""remo.v1.JobService: authenticate, authorize, translate, call the JobManager.

Every RPC goes through :meth:`JobsServicer._admit`, which identifies the caller from the
client certificate (on every call, so a revocation takes effect at once), checks the
role against :mod:`remo.server.authz`, and turns remo errors into statuses (code,
message, ``ErrorInfo``) through :mod:`remo.server.errors`.

The event loop never blocks: what may (SQLite reads, account lookups) runs in a thread.
Calls that only read (GetJob, ListJobs, GetSchedule, ListSchedules, WhoAmI) are :func:`read_rpc`
handlers: the certificate check and the handler run together on one of the JobManager's
reader threads (ListJobs on its list thread), one hop per call (~0.13 ms on the reference
machine, against a Status round trip of ~1.1 ms). The others check the certificate in a
thread of the loop's default executor (:mod:`remo.server.authn`), where no ListJobs holds
them up, and read through the JobManager's async methods. The schedule writes of Start
and Remove stay on the loop: ``schedules.db`` has one writer, the scheduler, and no other
process writes it, so reader threads may share its connection (SQLite serializes calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc

from remo import __version__
from remo.api.jobs import STATE_FROM_PB, job_to_pb, timestamp, usage_to_pb
from remo.backend import JobBackend
from remo.core.errors import (
    InvalidArgument,
    JobNotFound,
    NameTaken,
    PermissionDenied,
    RemoError,
)
from remo.core.spec import check_labels
from remo.core.status import JobState
from remo.schedule.timer import Scheduler
from remo.server import authz, ids, output_many, paging, streams
from remo.server.authn import Authenticator, Caller, Unauthenticated
from remo.server.convert import (
    NetworkPolicy,
    check_offset,
    checked_seconds,
    due_times,
    schedule_to_pb,
    spec_from_pb,
)
from remo.server.errors import abort, refusal, status_of, unauthenticated
from remo.server.output_budget import OutputBudget, fd_limit
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc as pb_grpc
from remo.worker import list_key

log = logging.getLogger("remo.server")

#: Upper bound of a Stop's grace period, so a request cannot park a stop for days.
MAX_GRACE = 3600.0
DEFAULT_GRACE = 10.0
#: Signals are 1 to 64 on Linux (0 in a Kill means SIGKILL).
MAX_SIGNAL = 65

ROLES_TO_PB: dict[str, pb.Role] = {
    "viewer": pb.ROLE_VIEWER,
    "operator": pb.ROLE_OPERATOR,
    "admin": pb.ROLE_ADMIN,
}

__all__ = ["Caller", "JobsServicer", "Unauthenticated"]

#: The status a call is refused with.
Refusal: TypeAlias = grpc.Status

Unary = Callable[[Any, Any, Any, Caller], Awaitable[Any]]
#: A handler that only reads: ``(servicer, request, caller)`` -> response or refusal.
Reading = Callable[[Any, Any, Caller], Any]


def rpc(name: str) -> Callable[[Unary], Callable[[Any, Any, Any], Awaitable[Any]]]:
    """Wrap a unary handler: admit the caller, map remo errors to statuses."""
    full = authz.method(name)

    def decorate(handler: Unary) -> Callable[[Any, Any, Any], Awaitable[Any]]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Any) -> Any:
            caller = await self._admit(context, full)
            if not isinstance(caller, Caller):
                # Refused before the request is looked at, and without it: the abort's
                # exception keeps this frame alive until the next garbage collection,
                # and a refused caller's megabytes must not live that long.
                del request
                await abort(context, caller)
            try:
                return await handler(self, request, context, caller)
            except RemoError as err:
                await abort(context, status_of(err, getattr(request, "id", None)))

        return wrapper

    return decorate


#: A last step of a read on the event loop: ``(servicer, request, response)``.
Then = Callable[[Any, Any, Any], Awaitable[None]]


def read_rpc(
    name: str, *, lists: bool = False, then: Then | None = None
) -> Callable[[Reading], Callable[[Any, Any, Any], Awaitable[Any]]]:
    """Wrap a synchronous handler that only reads (it may block: SQLite): it runs on a
    JobManager reader thread (``lists``: the one that lists jobs) right after the
    certificate check, one thread hop a call. It returns the response, or a
    :data:`Refusal`; remo errors map to statuses. ``then`` completes the response on
    the loop (live usage, asked of the supervisor)."""
    full = authz.method(name)

    def decorate(handler: Reading) -> Callable[[Any, Any, Any], Awaitable[Any]]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Any) -> Any:
            try:
                der = self._authenticate.certificate(context)
            except Unauthenticated as err:
                del request  # (see rpc)
                await abort(context, unauthenticated(err, err.reason))
            run = self.jobs.listing if lists else self.jobs.reading
            outcome = await run(self._answer, full, handler, der, request)
            if isinstance(outcome, grpc.Status):
                del request
                await abort(context, outcome)
            if then is not None:
                try:
                    await then(self, request, outcome)
                except RemoError as err:
                    await abort(context, status_of(err, getattr(request, "id", None)))
            return outcome

        return wrapper

    return decorate


class JobsServicer(pb_grpc.JobServiceServicer):
    def __init__(
        self,
        jobs: JobBackend,
        authenticate: Authenticator,
        scheduler: Scheduler,
        network_policy: NetworkPolicy | None = None,
        outputs: OutputBudget | None = None,
    ) -> None:
        self.jobs = jobs
        self.scheduler = scheduler
        self._authenticate = authenticate
        self._network = network_policy or NetworkPolicy()
        self._outputs = outputs or OutputBudget.for_fd_limit(fd_limit())

    async def _admit(self, context: grpc.aio.ServicerContext, method: str) -> Caller | Refusal:
        """The caller, if its certificate passes and its role may call ``method``; else
        the status to refuse it with."""
        try:
            caller = await self._authenticate(context)
        except Unauthenticated as err:
            return unauthenticated(err, err.reason)
        return _role_check(caller, method)

    def _answer(self, method: str, handler: Reading, der: bytes, request: Any) -> Any:
        """In a worker thread: :meth:`_admit` for a certificate, then ``handler``."""
        try:
            caller = self._authenticate.check(der)
        except Unauthenticated as err:
            return unauthenticated(err, err.reason)
        admitted = _role_check(caller, method)
        if not isinstance(admitted, Caller):
            return admitted
        try:
            return handler(self, request, admitted)
        except RemoError as err:
            return status_of(err, getattr(request, "id", None))

    def _job_id(self, caller: Caller, raw: str) -> str:
        """The canonical id of the job ``raw`` names (a number or a name); may block
        (a name is looked up in SQLite): in reader threads."""
        canonical = self._resolve(caller, raw)
        return self._named(canonical, raw) if ids.is_name(canonical) else canonical

    async def _job_id_async(
        self, caller: Caller, raw: str, check: Callable[[], object] | None = None
    ) -> str:
        """:meth:`_job_id` for the event loop: a name is looked up on a reader thread.
        ``check`` validates the rest of the request after the id's form and owner and
        before the lookup, so a request is refused the same way whatever names the job."""
        canonical = self._resolve(caller, raw)
        if check is not None:
            check()
        if not ids.is_name(canonical):
            return canonical
        return await self.jobs.reading(self._named, canonical, raw)

    def _resolve(self, caller: Caller, raw: str) -> str:
        if not raw:
            raise InvalidArgument("job id is empty", field="id")
        return ids.resolve(caller.user, caller.admin, raw)

    def _named(self, canonical: str, raw: str) -> str:
        """The job named in ``owner/NAME``: the job of that name, or the latest run of
        the schedule of that name. Blocks (SQLite)."""
        owner, _, name = canonical.partition("/")
        found = self.jobs.by_name_blocking(owner, name)
        if found is None and "#" not in name:
            schedule = self.scheduler.by_name(owner, name)
            found = self.scheduler.latest_run(schedule) if schedule is not None else None
        if found is None:
            raise JobNotFound(raw)
        return found

    def _job(self, caller: Caller, status: Any) -> pb.Job:
        """The job as the caller names things: its id and its schedule's id."""
        msg = job_to_pb(status, ids.shown(caller.user, status.id))
        if status.schedule_id:
            msg.schedule_id = ids.shown(caller.user, status.schedule_id)
        return msg

    @rpc("Start")
    async def Start(
        self, request: pb.StartRequest, context: Any, caller: Caller
    ) -> pb.StartResponse:
        spec = spec_from_pb(
            request, owner=caller.user, network=self._network.choose(request.network)
        )
        if request.HasField("when"):
            if request.stdin:
                raise InvalidArgument(
                    "stdin goes with a job started now, not with a schedule", field="stdin"
                )
            # An unknown account fails now, not at 2 a.m. (a lookup that may ask the network).
            await asyncio.to_thread(self.jobs.check_account, caller.user)
            first_due, every = due_times(request.when)
            schedule = self.scheduler.create(spec, caller.user, first_due, every)
            return pb.StartResponse(schedule=schedule_to_pb(schedule, caller.user))
        # (a schedules.db read: on a reader thread, like every read of a call)
        if spec.name:
            namesake = await self.jobs.reading(self.scheduler.by_name, caller.user, spec.name)
            if namesake is not None:
                raise NameTaken(spec.name)
        status = await self.jobs.start_status(
            spec, request_id=request.request_id, stdin=request.stdin
        )
        return pb.StartResponse(job=self._job(caller, status))

    @rpc("Stop")
    async def Stop(self, request: pb.StopRequest, context: Any, caller: Caller) -> pb.StopResponse:
        grace = DEFAULT_GRACE

        def check_grace() -> None:
            nonlocal grace
            if request.HasField("grace"):
                grace = checked_seconds(request.grace, "grace")
            if not 0 <= grace <= MAX_GRACE:
                raise InvalidArgument(
                    f"grace must be between 0 and {MAX_GRACE:.0f} seconds", field="grace"
                )

        job_id = await self._job_id_async(caller, request.id, check_grace)
        return pb.StopResponse(job=self._job(caller, await self.jobs.stop(job_id, grace)))

    @rpc("Kill")
    async def Kill(self, request: pb.KillRequest, context: Any, caller: Caller) -> pb.KillResponse:
        def check_signal() -> None:
            if not 0 <= request.signal < MAX_SIGNAL:
                raise InvalidArgument(f"no signal {request.signal}", field="signal")

        job_id = await self._job_id_async(caller, request.id, check_signal)
        status = await self.jobs.kill(job_id, request.signal or 9)
        return pb.KillResponse(job=self._job(caller, status))

    async def _add_usage(self, jobs: Sequence[pb.Job]) -> None:
        """Fill in what the running ones among ``jobs`` use now (one supervisor call)."""
        running = {
            f"{job.owner}/{job.id.rpartition('/')[2]}": job
            for job in jobs
            if job.state == pb.JOB_STATE_RUNNING
        }
        if not running:
            return
        for job_id, usage in (await self.jobs.live_usage(list(running))).items():
            running[job_id].live_usage.CopyFrom(usage_to_pb(usage))

    async def _usage_of_job(self, request: pb.GetJobRequest, response: Any) -> None:
        await self._add_usage([response.job])

    async def _usage_of_page(self, request: pb.ListJobsRequest, response: Any) -> None:
        if request.live_usage:
            await self._add_usage(response.jobs)

    @read_rpc("GetJob", then=_usage_of_job)
    def GetJob(self, request: pb.GetJobRequest, caller: Caller) -> pb.GetJobResponse:
        job_id = self._job_id(caller, request.id)
        return pb.GetJobResponse(job=self._job(caller, self.jobs.status_blocking(job_id)))

    @rpc("Wait")
    async def Wait(self, request: pb.WaitRequest, context: Any, caller: Caller) -> pb.WaitResponse:
        job_id = await self._job_id_async(caller, request.id)
        return pb.WaitResponse(job=self._job(caller, await self.jobs.wait(job_id)))

    @read_rpc("ListJobs", lists=True, then=_usage_of_page)
    def ListJobs(self, request: pb.ListJobsRequest, caller: Caller) -> pb.ListJobsResponse:
        _check_all_users(request.all_users, caller, "jobs")
        owner = None if request.all_users else caller.user
        states = sorted({_state(s) for s in request.states})
        size = paging.page_size(request.page_size)
        labels = dict(request.labels)
        check_labels(labels)
        filters = paging.fingerprint(owner, [s.value for s in states], labels)
        after = paging.position(request.page_token, filters)
        jobs = self.jobs.list_blocking(
            owner, limit=size + 1, states=states, after=after, labels=labels
        )
        more = len(jobs) > size
        jobs = jobs[:size]
        token = paging.encode(list(list_key(jobs[-1])), filters) if more else ""
        return pb.ListJobsResponse(jobs=[self._job(caller, j) for j in jobs], next_page_token=token)

    async def Output(self, request: pb.OutputRequest, context: Any) -> AsyncIterator[bytes]:
        """Encoded OutputResponses (streams.piece_to_wire; sent as they are by
        streams.OutputCodec)."""
        caller = await self._admit(context, authz.method("Output"))
        if not isinstance(caller, Caller):
            await abort(context, caller)
            return  # (abort raises)
        try:
            window = streams.window_from_pb(request)
            job_id = await self._job_id_async(
                caller, request.id, lambda: check_offset(request.offset)
            )
            # (a missing job raises NOT_FOUND before the first message)
            with self._outputs.hold(caller.user, 1):
                pieces = self.jobs.pieces(job_id, request.offset, request.follow, window)
                async with contextlib.aclosing(pieces):  # files closed, then the place
                    async for piece in pieces:
                        yield streams.piece_to_wire(piece)
            if request.follow and request.final_status and not request.HasField("end_offset"):
                # A follow ends once the job's end is recorded, every byte sent (one that
                # stops at end_offset may not have sent them all: it gets no status).
                status = await self.jobs.reading(self.jobs.status_blocking, job_id)
                if status.ended:
                    yield pb.OutputResponse(job=self._job(caller, status)).SerializeToString()
        except RemoError as err:
            await abort(context, status_of(err, request.id))

    async def OutputMany(
        self, request: pb.OutputManyRequest, context: Any
    ) -> AsyncIterator[pb.OutputManyResponse]:
        """Several jobs' output in one stream (see :mod:`remo.server.output_many`)."""
        caller = await self._admit(context, authz.method("OutputMany"))
        if not isinstance(caller, Caller):
            await abort(context, caller)
            return  # (abort raises)
        try:
            output_many.check(request.jobs)
            # Every job exists and is the caller's before the first message (one trip to
            # a reader thread for all of them).
            job_ids = await self.jobs.reading(self._existing_jobs, caller, request.jobs)
        except output_many.JobRefused as refused:
            await abort(context, status_of(refused.err, refused.raw))
            return
        except RemoError as err:
            await abort(context, status_of(err))
            return
        try:
            with self._outputs.hold(caller.user, len(job_ids)):
                batches = self.jobs.pieces_many(output_many.reads_of(request.jobs, job_ids))
                async with contextlib.aclosing(batches):
                    async for message in output_many.messages(batches):
                        yield message
        except RemoError as err:
            await abort(context, status_of(err))

    def _existing_jobs(self, caller: Caller, requests: Sequence[pb.OutputRequest]) -> list[str]:
        """The canonical id of each job ``requests`` name, each checked to exist and be
        the caller's; raises :class:`~remo.server.output_many.JobRefused`. In a reader
        thread."""
        found = []
        for one in requests:
            try:
                job_id = self._job_id(caller, one.id)
                self.jobs.status_blocking(job_id)
            except RemoError as err:
                raise output_many.JobRefused(err, one.id) from None
            found.append(job_id)
        return found

    async def WriteStdin(
        self, requests: AsyncIterator[pb.WriteStdinRequest], context: Any
    ) -> pb.WriteStdinResponse:
        caller = await self._admit(context, authz.method("WriteStdin"))
        if not isinstance(caller, Caller):
            await abort(context, caller)
            return pb.WriteStdinResponse()  # (abort raises)
        stream = streams.StdinStream(requests)
        raw = ""
        try:
            raw = await stream.open()
            job_id = await self._job_id_async(caller, raw)
            written, stopped = await self.jobs.write_stdin(job_id, stream.chunks())
        except RemoError as err:
            await abort(context, status_of(err, raw))
        return pb.WriteStdinResponse(written_bytes=written, job_stopped_reading=stopped)

    @rpc("Remove")
    async def Remove(
        self, request: pb.RemoveRequest, context: Any, caller: Caller
    ) -> pb.RemoveResponse:
        if ids.is_schedule_id(request.id):
            schedule_id = ids.resolve(caller.user, caller.admin, request.id, schedule=True)
            await self.scheduler.cancel(schedule_id, request.stop_running)
            return pb.RemoveResponse()
        job_id = await self._job_id_async(caller, request.id)
        await self.jobs.remove(job_id)
        return pb.RemoveResponse()

    @read_rpc("GetSchedule")
    def GetSchedule(self, request: pb.GetScheduleRequest, caller: Caller) -> pb.GetScheduleResponse:
        schedule_id = ids.resolve(caller.user, caller.admin, request.id, schedule=True)
        schedule = schedule_to_pb(self.scheduler.get(schedule_id), caller.user)
        return pb.GetScheduleResponse(schedule=schedule)

    @read_rpc("ListSchedules")
    def ListSchedules(
        self, request: pb.ListSchedulesRequest, caller: Caller
    ) -> pb.ListSchedulesResponse:
        # A user's active schedules are few (each is a row the scheduler keeps in
        # memory): the page is cut from them, newest first, by (owner, seq).
        _check_all_users(request.all_users, caller, "schedules")
        owner = None if request.all_users else caller.user
        size = paging.page_size(request.page_size)
        filters = paging.fingerprint(owner)
        after = paging.position(request.page_token, filters)
        schedules = sorted(
            self.scheduler.active(owner), key=lambda s: (s.created_at, s.owner, s.seq), reverse=True
        )
        if after is not None:
            schedules = [s for s in schedules if (s.created_at, s.owner, s.seq) < after]
        page = schedules[:size]
        token = ""
        if len(schedules) > size:
            last = page[-1]
            token = paging.encode([last.created_at, last.owner, last.seq], filters)
        return pb.ListSchedulesResponse(
            schedules=[schedule_to_pb(s, caller.user) for s in page], next_page_token=token
        )

    @read_rpc("WhoAmI")
    def WhoAmI(self, request: pb.WhoAmIRequest, caller: Caller) -> pb.WhoAmIResponse:
        return pb.WhoAmIResponse(
            user=caller.user,
            role=ROLES_TO_PB.get(caller.role, pb.ROLE_UNSPECIFIED),
            serial=caller.serial,
            expire_time=timestamp(caller.not_after),
            server_version=__version__,
            protections_off=self.jobs.protections_off,
        )


def _role_check(caller: Caller, method: str) -> Caller | Refusal:
    if not authz.allowed(caller.role, method):
        name = method.rpartition("/")[2]
        return refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"role {caller.role!r} may not call {name}; ask an admin for an operator credential",
            "ROLE_NOT_ALLOWED",
            metadata={"role": caller.role, "method": name},
        )
    return caller


def _check_all_users(all_users: bool, caller: Caller, what: str) -> None:
    if all_users and not caller.admin:
        raise PermissionDenied(f"only admins can list every user's {what} (--all)")


def _state(value: int) -> JobState:
    state = STATE_FROM_PB.get(value)
    if state is None:
        raise InvalidArgument(f"unknown job state {value} in states", field="states")
    return state

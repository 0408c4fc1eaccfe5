"""remo.v1.Jobs: authenticate, authorize, translate, call the JobManager.

Every RPC goes through :meth:`JobsServicer._admit`, which identifies the caller from the
client certificate (on every call, so a revocation takes effect at once), checks the
role against :mod:`remo.server.authz`, and turns remo errors into status codes through
the one table in :mod:`remo.server.errors`.

The event loop never blocks: what may (SQLite reads, account lookups) runs in a thread.
Calls that only read (Status, List, ScheduleStatus, WhoAmI) are :func:`read_rpc`
handlers: the certificate check and the handler run together on one of the JobManager's
reader threads (List on its list thread), one hop per call (~0.13 ms on the reference
machine, against a Status round trip of ~1.1 ms). The others check the certificate in a
thread of the loop's default executor (:mod:`remo.server.authn`), where no List holds
them up, and read through the JobManager's async methods. The schedule writes of Start
and Remove stay on the loop: ``schedules.db`` has one writer, the scheduler, and no other
process writes it, so reader threads may share its connection (SQLite serializes calls).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from remo import __version__
from remo.api.v1 import jobs_pb2 as pb
from remo.api.v1 import jobs_pb2_grpc as pb_grpc
from remo.core.errors import InvalidArgument, RemoError
from remo.schedule.timer import Scheduler
from remo.server import authz, ids
from remo.server.authn import Authenticator, Caller, Unauthenticated
from remo.server.convert import (
    NetworkPolicy,
    check_offset,
    due_times,
    schedule_to_pb,
    spec_from_pb,
    status_to_pb,
)
from remo.server.errors import public_message, status_code
from remo.worker import JobManager

log = logging.getLogger("remo.server")

#: Upper bound of a Stop's grace period, so a request cannot park a stop for days.
MAX_GRACE = 3600.0


__all__ = ["Caller", "JobsServicer", "Unauthenticated"]

#: The status and message a call is refused with.
Refusal = tuple[grpc.StatusCode, str]

Unary = Callable[[Any, Any, Any, Caller], Awaitable[Any]]
#: A handler that only reads: ``(servicer, request, caller)`` -> response or refusal.
Reading = Callable[[Any, Any, Caller], Any]


def rpc(name: str) -> Callable[[Unary], Callable[[Any, Any, Any], Awaitable[Any]]]:
    """Wrap a unary handler: admit the caller, map remo errors to status codes."""

    def decorate(handler: Unary) -> Callable[[Any, Any, Any], Awaitable[Any]]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Any) -> Any:
            caller = await self._admit(context, name)
            if not isinstance(caller, Caller):
                # Refused before the request is looked at, and without it: the abort's
                # exception keeps this frame alive until the next garbage collection,
                # and a refused caller's megabytes must not live that long.
                del request
                await context.abort(*caller)
            try:
                return await handler(self, request, context, caller)
            except RemoError as err:
                await context.abort(
                    status_code(err), public_message(err, getattr(request, "id", None))
                )

        return wrapper

    return decorate


def read_rpc(
    name: str, *, lists: bool = False
) -> Callable[[Reading], Callable[[Any, Any, Any], Awaitable[Any]]]:
    """Wrap a synchronous handler that only reads (it may block: SQLite): it runs on a
    JobManager reader thread (``lists``: the one that lists jobs) right after the
    certificate check, one thread hop a call. It returns the response, or a
    :data:`Refusal`; remo errors map to status codes."""

    def decorate(handler: Reading) -> Callable[[Any, Any, Any], Awaitable[Any]]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Any) -> Any:
            try:
                der = self._authenticate.certificate(context)
            except Unauthenticated as err:
                del request  # (see rpc)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
            run = self.jobs.listing if lists else self.jobs.reading
            outcome = await run(self._answer, name, handler, der, request)
            if isinstance(outcome, tuple):
                del request
                await context.abort(*outcome)
            return outcome

        return wrapper

    return decorate


class JobsServicer(pb_grpc.JobsServicer):
    def __init__(
        self,
        jobs: JobManager,
        authenticate: Authenticator,
        scheduler: Scheduler,
        network_policy: NetworkPolicy | None = None,
    ) -> None:
        self.jobs = jobs
        self.scheduler = scheduler
        self._authenticate = authenticate
        self._network = network_policy or NetworkPolicy()

    async def _admit(self, context: grpc.aio.ServicerContext, rpc: str) -> Caller | Refusal:
        """The caller, if its certificate passes and its role may call ``rpc``; else the
        status and message to refuse it with."""
        try:
            caller = await self._authenticate(context)
        except Unauthenticated as err:
            return grpc.StatusCode.UNAUTHENTICATED, str(err)
        return _role_check(caller, rpc)

    def _answer(self, rpc: str, handler: Reading, der: bytes, request: Any) -> Any:
        """In a worker thread: :meth:`_admit` for a certificate, then ``handler``."""
        try:
            caller = self._authenticate.check(der)
        except Unauthenticated as err:
            return grpc.StatusCode.UNAUTHENTICATED, str(err)
        admitted = _role_check(caller, rpc)
        if not isinstance(admitted, Caller):
            return admitted
        try:
            return handler(self, request, admitted)
        except RemoError as err:
            return status_code(err), public_message(err, getattr(request, "id", None))

    def _job_id(self, caller: Caller, raw: str) -> str:
        if not raw:
            raise InvalidArgument("job id is empty")
        return ids.resolve(caller.user, caller.admin, raw)

    @rpc("Start")
    async def Start(
        self, request: pb.StartRequest, context: Any, caller: Caller
    ) -> pb.StartResponse:
        spec = spec_from_pb(
            request, owner=caller.user, network=self._network.choose(request.network)
        )
        if request.HasField("when"):
            # An unknown account fails now, not at 2 a.m. (a lookup that may ask the network).
            await asyncio.to_thread(self.jobs.check_account, caller.user)
            first_due, every = due_times(request.when)
            schedule = self.scheduler.create(spec, caller.user, first_due, every)
            return pb.StartResponse(schedule=schedule_to_pb(schedule, caller.user))
        job_id = await self.jobs.start(spec, request_id=request.request_id)
        status = await self.jobs.status(job_id)
        return pb.StartResponse(job=status_to_pb(status, ids.shown(caller.user, job_id)))

    @rpc("Stop")
    async def Stop(self, request: pb.StopRequest, context: Any, caller: Caller) -> pb.JobStatus:
        job_id = self._job_id(caller, request.id)
        grace = request.grace_seconds if request.HasField("grace_seconds") else 10.0
        if not 0 <= grace <= MAX_GRACE:
            raise InvalidArgument(f"grace must be between 0 and {MAX_GRACE:.0f} seconds")
        status = await self.jobs.stop(job_id, grace)
        return status_to_pb(status, ids.shown(caller.user, job_id))

    @read_rpc("Status")
    def Status(self, request: pb.JobRef, caller: Caller) -> pb.JobStatus:
        job_id = self._job_id(caller, request.id)
        status = self.jobs.status_blocking(job_id)
        return status_to_pb(status, ids.shown(caller.user, job_id))

    @rpc("Wait")
    async def Wait(self, request: pb.JobRef, context: Any, caller: Caller) -> pb.JobStatus:
        job_id = self._job_id(caller, request.id)
        status = await self.jobs.wait(job_id)
        return status_to_pb(status, ids.shown(caller.user, job_id))

    @read_rpc("List", lists=True)
    def List(self, request: pb.ListRequest, caller: Caller) -> pb.ListResponse | Refusal:
        if request.all_users and not caller.admin:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                "only admins can list every user's jobs (--all)",
            )
        owner = None if request.all_users else caller.user
        limit = min(request.limit or 1000, 10000)
        jobs = self.jobs.list_blocking(owner, running_only=request.running_only, limit=limit)
        return pb.ListResponse(
            jobs=[status_to_pb(j, ids.shown(caller.user, j.id)) for j in jobs],
            schedules=[schedule_to_pb(s, caller.user) for s in self.scheduler.active(owner)],
        )

    async def Output(
        self, request: pb.OutputRequest, context: Any
    ) -> AsyncIterator[pb.OutputChunk]:
        caller = await self._admit(context, "Output")
        if not isinstance(caller, Caller):
            await context.abort(*caller)
            return  # (abort raises)
        try:
            job_id = self._job_id(caller, request.id)
            offset = check_offset(request.offset)
            # (a missing job raises NOT_FOUND before the first message)
            async for data in self.jobs.output(job_id, offset, request.follow):
                yield pb.OutputChunk(offset=offset, data=data)
                offset += len(data)
        except RemoError as err:
            await context.abort(status_code(err), public_message(err, request.id))

    @rpc("Remove")
    async def Remove(
        self, request: pb.RemoveRequest, context: Any, caller: Caller
    ) -> pb.RemoveResponse:
        if ids.is_schedule_id(request.id):
            schedule_id = ids.resolve(caller.user, caller.admin, request.id, schedule=True)
            await self.scheduler.cancel(schedule_id, request.stop_running)
            return pb.RemoveResponse()
        job_id = self._job_id(caller, request.id)
        await self.jobs.remove(job_id)
        return pb.RemoveResponse()

    @read_rpc("ScheduleStatus")
    def ScheduleStatus(self, request: pb.JobRef, caller: Caller) -> pb.Schedule:
        schedule_id = ids.resolve(caller.user, caller.admin, request.id, schedule=True)
        return schedule_to_pb(self.scheduler.get(schedule_id), caller.user)

    @read_rpc("WhoAmI")
    def WhoAmI(self, request: pb.WhoAmIRequest, caller: Caller) -> pb.WhoAmIResponse:
        return pb.WhoAmIResponse(
            user=caller.user,
            role=caller.role,
            serial=caller.serial,
            not_after=caller.not_after,
            server_version=__version__,
            protections_off=self.jobs.protections_off,
        )


def _role_check(caller: Caller, rpc: str) -> Caller | Refusal:
    if not authz.allowed(caller.role, rpc):
        return (
            grpc.StatusCode.PERMISSION_DENIED,
            f"role {caller.role!r} may not call {rpc}; ask an admin for an operator credential",
        )
    return caller

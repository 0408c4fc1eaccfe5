"""The dashboard's HTTP API: reads on GET, actions on POST (checked by
:mod:`remo.ui.guard`), a job's live output as server-sent events.

Every call goes to a remo server through the user's own client, so it may do exactly
what ``remo`` on the command line may. Errors come back as ``{"error": TEXT}`` with
TEXT worded as the CLI words it (:func:`remo.client.errors.message_of`), and an HTTP
status that follows the CLI's exit code (usage 400, connection 502, credential or
permission 403, not found 404, other server-side failure 409).
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from remo.cli.common import is_schedule
from remo.cli.run_options import (
    in_option_terms,
    parse_env,
    parse_labels,
    parse_limits,
    parse_when,
)
from remo.client.errors import (
    EXIT_AUTH,
    EXIT_CONNECTION,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    ClientError,
    InvalidRequest,
    UsageError,
    exit_code_of,
    message_of,
)
from remo.core.errors import RemoError
from remo.ui import logs
from remo.ui.servers import Servers
from remo.ui.views import job_detail, job_row, schedule_row

#: The most jobs one server's table holds (one ListJobs page); the page says when
#: there are more.
PAGE = 1000

HTTP_STATUS = {EXIT_USAGE: 400, EXIT_CONNECTION: 502, EXIT_AUTH: 403, EXIT_NOT_FOUND: 404}


def failure(err: BaseException) -> JSONResponse:
    """An error as the CLI words it, with a status that follows its exit code."""
    return JSONResponse(
        {"error": message_of(err)}, status_code=HTTP_STATUS.get(exit_code_of(err), 409)
    )


Handler = Callable[[Request], Awaitable[Response]]


def answered(handler: Handler) -> Handler:
    """``handler`` with remo's errors turned into :func:`failure` answers."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except RemoError as err:
            return failure(err)

    return run


def servers_of(request: Request) -> Servers:
    servers: Servers = request.app.state.servers
    return servers


def param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value:
        raise UsageError(f"missing {name}")
    return value


async def body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise UsageError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise UsageError("the request body must be a JSON object")
    return data


def text(data: dict[str, Any], name: str) -> str:
    """A string field of a form, stripped ("" when absent)."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError(f"{name} must be text")
    return value.strip()


# -- reads ---------------------------------------------------------------------------


async def _one_server(servers: Servers, name: str, limit: int, all_users: bool) -> dict[str, Any]:
    """One server's newest ``limit`` jobs and its schedules (every user's with
    ``all_users``: admins), or the error that kept them from the page."""
    try:
        client = await servers.client(name)
        page, schedules = await asyncio.gather(
            client.list_page(page_size=limit, live_usage=True, all_users=all_users),
            client.schedules(all_users=all_users),
        )
    except RemoError as err:
        return {"name": name, "error": message_of(err), "jobs": [], "schedules": []}
    return {
        "name": name,
        "error": "",
        "jobs": [job_row(job, name) for job in page.jobs],
        "more": bool(page.next_page_token),
        "schedules": [schedule_row(s, name) for s in schedules],
    }


@answered
async def jobs(request: Request) -> Response:
    """Every server's newest jobs (with what running ones use now) and schedules; with
    ``all=1``, every user's (an admin's view; other roles get the server's refusal).

    ``limit`` (1 to 1000, the default) asks for fewer: the page asks for the newest 100
    first, shows them, then asks for the rest, so that it can be used before the
    largest listings arrive (a page of 1000 jobs takes the server tens of
    milliseconds)."""
    servers = servers_of(request)
    limit = _count(request, "limit", PAGE, PAGE) or PAGE
    every = request.query_params.get("all") == "1"
    found = await asyncio.gather(*(_one_server(servers, n, limit, every) for n in servers.names()))
    return JSONResponse({"servers": found, "limit": limit})


async def _who(servers: Servers, name: str) -> dict[str, Any]:
    try:
        me = await (await servers.client(name)).whoami()
    except RemoError as err:
        return {"name": name, "error": message_of(err)}
    return {
        "name": name,
        "error": "",
        "user": me.user,
        "role": me.role,
        "version": me.server_version,
        "expires_at": me.not_after,
    }


async def servers(request: Request) -> Response:
    """Each server: who it takes the user for, or why it cannot be reached."""
    group = servers_of(request)
    return JSONResponse({"servers": await asyncio.gather(*(_who(group, n) for n in group.names()))})


@answered
async def job(request: Request) -> Response:
    server = param(request, "server")
    client = await servers_of(request).client(server)
    return JSONResponse(job_detail(await client.status(param(request, "id")), server))


def _count(request: Request, name: str, default: int | None, top: int) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 18:
        raise UsageError(f"{name} must be a whole number, got {value[:20]!r}")
    return min(int(value), top)


@answered
async def output(request: Request) -> Response:
    """A window of the output: the last lines before ``before`` (the end when absent)."""
    client = await servers_of(request).client(param(request, "server"))
    lines = _count(request, "lines", logs.TAIL_LINES, 5000) or logs.TAIL_LINES
    before = _count(request, "before", None, (1 << 63) - 1)
    found = await logs.window(client, param(request, "id"), lines=lines, end=before)
    return JSONResponse(found.as_json())


def _event(name: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"


@answered
async def follow(request: Request) -> Response:
    """The output from ``offset`` as it is written (server-sent events): ``output``
    events, then ``end`` with the job's final status, or ``failure`` with the error.
    A reconnecting browser resumes from the last event's id (the byte it reached)."""
    server, job_id = param(request, "server"), param(request, "id")
    client = await servers_of(request).client(server)
    resume = request.headers.get("last-event-id", "")
    offset = _count(request, "offset", 0, (1 << 63) - 1) or 0
    if resume.isdigit() and len(resume) <= 18:
        offset = int(resume)

    async def events() -> AsyncIterator[str]:
        yield ": following\n\n"  # headers and a first byte at once: the page knows it is on
        try:
            async for piece in logs.follow(client, job_id, offset):
                yield _event("output", piece, piece["end"])
            yield _event("end", job_detail(await client.status(job_id), server))
        except RemoError as err:
            yield _event("failure", {"error": message_of(err)})

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
    )


# -- actions -------------------------------------------------------------------------


@answered
async def start(request: Request) -> Response:
    """Start a job, or a schedule with ``in``/``at``/``every``: the fields of the form
    are the options of ``remo run`` and are checked the same way."""
    data = await body(request)
    server = text(data, "server")
    command = text(data, "command")
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise UsageError(f"command: {err} (quote it as a shell would)") from None
    if not argv:
        raise UsageError("give the command to run, e.g. make test")
    labels = parse_labels(text(data, "labels").replace(",", " ").split())
    env = parse_env(tuple(line for line in text(data, "env").splitlines() if line.strip()))
    limits = parse_limits(
        text(data, "cpu") or None,
        text(data, "memory") or None,
        text(data, "io_read") or None,
        text(data, "io_write") or None,
        text(data, "pids") or None,
    )
    delay, at, every = parse_when(
        text(data, "in") or None, text(data, "at") or None, text(data, "every") or None
    )
    cwd = text(data, "cwd") or None
    if cwd is not None and not cwd.startswith("/"):
        raise UsageError(f"--cwd {cwd!r}: give an absolute path on the server")
    client = await servers_of(request).client(server)
    try:
        result = await client.start(
            argv,
            env=env,
            cwd=cwd,
            limits=limits,
            network=text(data, "network") or None,
            private_tmp=bool(data.get("private_tmp")),
            name=text(data, "name"),
            labels=labels,
            delay=delay,
            at=at,
            every=every,
        )
    except InvalidRequest as err:
        raise InvalidRequest(in_option_terms(str(err)), code=err.code, reason=err.reason) from None
    if result.schedule is not None:
        return JSONResponse({"schedule": schedule_row(result.schedule, server)})
    if result.job is None:
        raise ClientError("the server answered without a job or a schedule")
    return JSONResponse({"job": job_row(result.job, server)})


def _grace(data: dict[str, Any]) -> float | None:
    """The grace period of a stop, read as ``remo stop --grace`` reads it."""
    from remo.cli.stop import parse_grace

    value = data.get("grace")
    if value is None or value == "":
        return None
    return parse_grace(str(value))


@answered
async def stop(request: Request) -> Response:
    data = await body(request)
    server = text(data, "server")
    client = await servers_of(request).client(server)
    ended = await client.stop(text(data, "id"), grace=_grace(data))
    return JSONResponse({"job": job_detail(ended, server)})


@answered
async def kill(request: Request) -> Response:
    data = await body(request)
    server = text(data, "server")
    client = await servers_of(request).client(server)
    signal = text(data, "signal") or "KILL"
    job_now = await client.kill(text(data, "id"), signal)
    return JSONResponse({"job": job_detail(job_now, server)})


@answered
async def remove(request: Request) -> Response:
    """Remove a job (with ``stop``: stop it first, as ``remo rm --stop`` does) or
    cancel a schedule (with ``stop``: and stop its running runs)."""
    data = await body(request)
    client = await servers_of(request).client(text(data, "server"))
    target, stop_first = text(data, "id"), bool(data.get("stop"))
    schedule = is_schedule(target)
    if stop_first and not schedule:
        await client.stop(target)
    await client.remove(target, stop_running=stop_first and schedule)
    return JSONResponse({"removed": target})


ROUTES = [
    Route("/api/servers", servers),
    Route("/api/jobs", jobs),
    Route("/api/job", job),
    Route("/api/output", output),
    Route("/api/follow", follow),
    Route("/api/start", start, methods=["POST"]),
    Route("/api/stop", stop, methods=["POST"]),
    Route("/api/kill", kill, methods=["POST"]),
    Route("/api/remove", remove, methods=["POST"]),
]

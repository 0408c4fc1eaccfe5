"""OutputMany's wire side: its requests checked, the backend's batches as messages.

Why the method exists: a follow per job costs a gRPC message per line on each side
(measured: ~180 µs of the server's CPU and ~130 µs of the client's per line at 300
followed jobs), so a thousand jobs printing ten lines a second needed more than this
two-core machine had. The backend reads all the jobs of a call in rounds
(:mod:`remo.output.many`), and what one round read goes out as one message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from remo.api.jobs import MAX_OUTPUT_MANY_JOBS as MAX_JOBS
from remo.backend import Item, JobRead
from remo.core.errors import InvalidArgument, RemoError
from remo.server.convert import check_offset
from remo.server.streams import window_from_pb
from remo.v1 import jobs_pb2 as pb


class JobRefused(Exception):
    """One of the jobs may not be read: ``err``, with the id as the caller named it."""

    def __init__(self, err: RemoError, raw: str) -> None:
        super().__init__(str(err))
        self.err = err
        self.raw = raw


def reads_of(requests: Sequence[pb.OutputRequest], job_ids: Sequence[str]) -> list[JobRead]:
    """What to read of each job (``job_ids``: their canonical ids, in order)."""
    return [
        JobRead(job_id, one.offset, one.follow, window_from_pb(one))
        for job_id, one in zip(job_ids, requests, strict=True)
    ]


def check(requests: Sequence[pb.OutputRequest]) -> None:
    """Raise InvalidArgument (its message names the job) unless every request is sound."""
    if not 0 < len(requests) <= MAX_JOBS:
        raise InvalidArgument(f"jobs: name 1 to {MAX_JOBS} jobs, not {len(requests)}", field="jobs")
    for index, one in enumerate(requests):
        try:
            window_from_pb(one).check()
            check_offset(one.offset)
        except InvalidArgument as err:
            raise InvalidArgument(
                f"jobs[{index}] ({one.id}): {err}", field=f"jobs[{index}].{err.field}"
            ) from None


async def messages(batches: AsyncIterator[list[Item]]) -> AsyncIterator[pb.OutputManyResponse]:
    """One message per batch."""
    async for batch in batches:
        message = pb.OutputManyResponse()
        out = message.pieces
        for index, piece, error in batch:
            if piece is None:
                out.add(job=index, end=True, error=error)
                continue
            added = out.add(job=index, offset=piece.offset, data=piece.data, stream=piece.stream)
            if piece.time_ns:
                added.time.seconds, added.time.nanos = divmod(piece.time_ns, 1_000_000_000)
        yield message

"""Follow / AsyncFollow: the chunks, then the final status from the stream, or from one
more call when the server sent none (a server from before final_status)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

from remo.api.jobs import job_from_pb
from remo.api.output_wire import OutputMessage
from remo.client.calls import Resume
from remo.client.follow import AsyncFollow, Follow
from remo.client.types import OutputChunk
from remo.core.status import JobStatus
from remo.v1 import jobs_pb2 as pb

ENDED = pb.Job(id="7", state=pb.JOB_STATE_SUCCEEDED, exit_code=0)


def chunks(resume: Resume, final: bool) -> Iterator[OutputChunk]:
    """What the client's read loop does with a stream of two pieces (and the status)."""
    messages = [OutputMessage(0, b"a", 1, None), OutputMessage(1, b"b", 2, None)]
    if final:
        messages.append(OutputMessage(0, b"", 0, None, ENDED.SerializeToString()))
    for msg in messages:
        chunk = resume.take(msg)
        if chunk is not None:
            yield chunk


def test_the_status_comes_from_the_stream_when_the_server_sends_it() -> None:
    def never() -> JobStatus:
        raise AssertionError("a call after the followed output")

    resume = Resume(0, final_status=True)
    followed = Follow(chunks(resume, True), resume, never)
    assert [c.data for c in followed] == [b"a", b"b"]
    assert followed.status == job_from_pb(ENDED)


def test_without_it_one_more_call_says_it() -> None:
    resume = Resume(0, final_status=True)
    fallback = job_from_pb(ENDED)
    followed = Follow(chunks(resume, False), resume, lambda: fallback)
    assert [c.data for c in followed] == [b"a", b"b"]
    assert followed.status is fallback


async def test_the_async_follow_alike() -> None:
    async def from_sync(resume: Resume, final: bool) -> AsyncIterator[OutputChunk]:
        for chunk in chunks(resume, final):
            yield chunk

    fallback = job_from_pb(ENDED)

    async def ended() -> JobStatus:
        return fallback

    for final in (True, False):
        resume = Resume(0, final_status=True)
        followed = AsyncFollow(from_sync(resume, final), resume, ended)
        assert [c.data async for c in followed] == [b"a", b"b"]
        assert followed.status == fallback
        assert (followed.status is fallback) is not final


def test_a_follow_closed_early_closes_its_stream() -> None:
    closed: list[str] = []

    def stream() -> Iterator[OutputChunk]:
        try:
            yield OutputChunk(0, b"a")
            yield OutputChunk(1, b"b")
        finally:
            closed.append("call cancelled")

    resume = Resume(0, final_status=True)
    followed = Follow(stream(), resume, lambda: job_from_pb(ENDED))
    for _ in followed:
        break
    followed.close()
    assert closed == ["call cancelled"] and followed.status is None


async def test_an_async_follow_closed_early_closes_its_stream() -> None:
    closed: list[str] = []

    async def stream() -> AsyncIterator[OutputChunk]:
        try:
            yield OutputChunk(0, b"a")
            yield OutputChunk(1, b"b")
        finally:
            closed.append("call cancelled")

    async def ended() -> JobStatus:
        return job_from_pb(ENDED)

    followed = AsyncFollow(stream(), Resume(0, final_status=True), ended)
    async with aclosing(followed):
        async for _ in followed:
            break
    assert closed == ["call cancelled"] and followed.status is None

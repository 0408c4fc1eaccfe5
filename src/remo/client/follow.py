"""A job's output followed to its end, and its final status from the same stream.

Why: running a job to its end used to take the followed output, then a GetJob for the
exit status: a second round trip after the last byte. The server now sends the ended
job's status as the follow's last message when asked (``OutputRequest.final_status``);
a server from before that answers without it, and then one GetJob (a Wait if the job
had not ended) says it, as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from remo.client.calls import Resume
from remo.client.types import OutputChunk
from remo.core.status import JobStatus


class Follow:
    """What :meth:`remo.client.Client.follow` returns: iterate it for the chunks, as
    ``output(follow=True)`` gives them; once it is exhausted, :attr:`status` is the
    job's final status."""

    def __init__(
        self, chunks: Iterator[OutputChunk], resume: Resume, ended: Callable[[], JobStatus]
    ) -> None:
        self._chunks = chunks
        self._resume = resume
        self._ended = ended
        #: The job's final status, once every chunk was taken (None before).
        self.status: JobStatus | None = None

    def __iter__(self) -> Iterator[OutputChunk]:
        yield from self._chunks
        self.status = self._resume.final or self._ended()

    def close(self) -> None:
        """End the follow early (its call with it); :attr:`status` stays None."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class AsyncFollow:
    """What :meth:`remo.client.AsyncClient.follow` returns: ``async for`` the chunks;
    then :attr:`status` is the job's final status."""

    def __init__(
        self,
        chunks: AsyncIterator[OutputChunk],
        resume: Resume,
        ended: Callable[[], Awaitable[JobStatus]],
    ) -> None:
        self._chunks = chunks
        self._resume = resume
        self._ended = ended
        #: The job's final status, once every chunk was taken (None before).
        self.status: JobStatus | None = None

    async def __aiter__(self) -> AsyncIterator[OutputChunk]:
        async for chunk in self._chunks:
            yield chunk
        self.status = self._resume.final or await self._ended()

    async def aclose(self) -> None:
        """End the follow early (its call with it), e.g. through ``contextlib.aclosing``;
        :attr:`status` stays None."""
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()

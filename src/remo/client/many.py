"""Where an ``output_many`` stands, shared by the sync and asyncio clients: each job's
position, which jobs have ended, and the request that resumes the rest after a broken
connection (each job at the byte it stopped at, as ``output`` resumes one job)."""

from __future__ import annotations

from collections.abc import Sequence

from remo.api.jobs import MAX_OUTPUT_MANY_JOBS as MAX_JOBS
from remo.api.output_wire import OutputMessage
from remo.client.calls import OutputWindow, Resume
from remo.client.errors import UsageError
from remo.client.types import JobOutput
from remo.v1 import jobs_pb2 as pb


def check_job_ids(job_ids: Sequence[str]) -> None:
    """UsageError unless ``job_ids`` is a list of 1 to :data:`MAX_JOBS` different ids."""
    if isinstance(job_ids, str):
        raise UsageError("output_many takes a list of job ids, not one string")
    if not job_ids:
        raise UsageError("name at least one job")
    if len(job_ids) > MAX_JOBS:
        raise UsageError(f"at most {MAX_JOBS:,} jobs at once, not {len(job_ids):,}")
    seen: set[str] = set()
    for job_id in job_ids:
        if job_id in seen:
            raise UsageError(f"job {job_id} is named twice")
        seen.add(job_id)


class ManyOutputs:
    """The jobs of one ``output_many`` and how far each has been read."""

    def __init__(self, job_ids: Sequence[str], window: OutputWindow, follow: bool) -> None:
        check_job_ids(job_ids)
        window.check()
        self.job_ids = list(job_ids)
        self._window = window
        self._follow = follow
        self._resumes = [Resume(0) for _ in self.job_ids]
        #: Indexes (into job_ids) of the jobs the current call reads, in its order.
        self._in_call: list[int] = []
        self._ended: set[int] = set()

    @property
    def done(self) -> bool:
        """True once every job's output has ended."""
        return len(self._ended) == len(self.job_ids)

    def request(self) -> pb.OutputManyRequest:
        """The call for every job that has not ended, each from where it stands."""
        self._in_call = [i for i in range(len(self.job_ids)) if i not in self._ended]
        request = pb.OutputManyRequest()
        for i in self._in_call:
            resume = self._resumes[i]
            one = self._window.request(
                self.job_ids[i], resume.position, self._follow, not resume.started
            )
            request.jobs.append(one)
        return request

    def take(self, message: pb.OutputManyResponse) -> list[JobOutput]:
        """The new chunks and ends ``message`` brings, in its order."""
        found = []
        for piece in message.pieces:
            if not 0 <= piece.job < len(self._in_call):
                continue  # (not a job of this call: a confused server; nothing to show)
            index = self._in_call[piece.job]
            job_id = self.job_ids[index]
            if piece.end:
                self._ended.add(index)
                found.append(JobOutput(job_id, None, piece.error))
                continue
            time_ns = (
                piece.time.seconds * 1_000_000_000 + piece.time.nanos
                if piece.HasField("time")
                else None
            )
            chunk = self._resumes[index].take(
                OutputMessage(piece.offset, piece.data, piece.stream, time_ns)
            )
            if chunk is not None:
                found.append(JobOutput(job_id, chunk))
        return found

"""What one round of ``remo.output.many.read_many`` costs per job, in a process of its own.

Run::

    .venv/bin/python bench/many_round_bench.py [--jobs 1000]

It writes ``--jobs`` job directories here as a job's init writes them (a line of output
and its record each), opens a ``Cursor`` on each, appends one more line to every job and
times one ``_round`` reading all of them: once as woken jobs are read (the exit and
unlink checks skipped while the watch saw only writes) and once as the safety-net sweep
reads them (``full``: both checks). The same round inside a busy server takes longer:
``bench/many_jobs_bench.py`` measures that end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remo.core import output_format
from remo.core.output_format import STDOUT, Record
from remo.output.many import READ_CHUNK, _round
from remo.output.reader import Cursor, Window
from remo.output.watcher import OutputWatcher

LINE = b"1 1765050000.123456\n"


def append_line(job: Path, merged: int) -> None:
    """One read of the job's pipe as the init records it: the data, then its record."""
    with open(job / output_format.STREAM_FILES[STDOUT], "ab") as data:
        at = data.tell()
        data.write(LINE)
    with open(job / "records", "ab") as records:
        records.write(output_format.pack(Record(merged, at, time.time_ns(), len(LINE), STDOUT)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-round-") as tmp:
        jobs = [Path(tmp) / f"job{n}" for n in range(args.jobs)]
        for job in jobs:
            job.mkdir()
            append_line(job, 0)
        watcher = OutputWatcher()
        cursors = {
            n: cursor
            for n, job in enumerate(jobs)
            if (cursor := Cursor.open(watcher, str(job), 0, True, Window())) is not None
        }
        _round(cursors, dict.fromkeys(cursors), set(), READ_CHUNK, 1 << 20)  # the backlog
        for lines, full in ((1, False), (2, True)):
            for job in jobs:
                append_line(job, lines * len(LINE))
            began = time.perf_counter()
            batch = _round(
                cursors,
                dict.fromkeys(cursors),
                set(cursors) if full else set(),
                READ_CHUNK,
                1 << 20,
            )
            took = time.perf_counter() - began
            assert len(batch) == len(jobs), len(batch)
            kind = "jobs as the sweep reads them" if full else "woken jobs"
            print(
                f"one round of {len(jobs)} {kind}: {took * 1e3:.1f} ms, "
                f"{took / len(jobs) * 1e6:.1f} µs a job"
            )
        for cursor in cursors.values():
            cursor.close()
        watcher.close()


if __name__ == "__main__":
    asyncio.run(main())

"""What writing a job's exit marker costs on the state dir's filesystem, two ways.

Run::

    .venv/bin/python bench/marker_cost.py [--dir /var/lib/remo] [--n 300]

``new``: create the file, write the record, rename it into place (what a job's end did
before the marker's file was made ahead); ``made ahead``: the file exists (made with the
job's other files), write the record into it and rename it (what
:func:`remo.supervisor.jobfiles.write_exit_marker` does now). Medians in microseconds;
each sample in a directory of its own, made ``--pause`` seconds before, as each job has
one made before it runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

RECORD = b'{"state": "succeeded", "exit_code": 0, "signal": null, "reason": ""}'
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where (default: the temp dir)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between the two")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remo-marker-", dir=args.dir) as top:
        took: dict[str, list[float]] = {"new": [], "made ahead": []}
        # The directories (and the files made ahead) first, as a job's are made before
        # it runs; the markers a moment later, as its end writes one.
        for i in range(args.n):
            for way in took:
                os.mkdir(os.path.join(top, f"{way[0]}{i}"))
                if way == "made ahead":
                    os.close(os.open(os.path.join(top, f"m{i}", ".exit.tmp"), FLAGS, 0o600))
        time.sleep(args.pause)
        for i in range(args.n):
            for way, samples in took.items():
                job_dir = os.path.join(top, f"{way[0]}{i}")
                tmp = os.path.join(job_dir, ".exit.tmp")
                began = time.perf_counter()
                fd = os.open(tmp, FLAGS, 0o600)
                os.write(fd, RECORD)
                os.close(fd)
                os.rename(tmp, os.path.join(job_dir, "exit"))
                samples.append((time.perf_counter() - began) * 1e6)
    print(", ".join(f"{way}: {statistics.median(v):.0f} µs" for way, v in took.items()))


if __name__ == "__main__":
    main()

"""Job output: the per-job output file and the asyncio followers that stream it.

The supervisor writes; the API server reads through :func:`read_output`, with one
:class:`OutputWatcher` per process waking every follower when a job's files change.
"""

from remo.output.reader import read_output
from remo.output.watcher import DirWatch, OutputWatcher

__all__ = ["DirWatch", "OutputWatcher", "read_output"]

"""remo: run processes on remote Linux servers, safely.

The public library surface lives in :mod:`remo.worker` (jobs on this machine) and
:mod:`remo.client` (jobs on a remote remo server).
"""

__version__ = "0.6.0"

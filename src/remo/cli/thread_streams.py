"""``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` that are different for each thread.

The agent (:mod:`remo.cli.agent`) runs several commands at once, each on a thread, each
with the descriptors of the command that asked. The verbs write with ``click.echo`` and
``sys.stdout.buffer`` as they would in a process of their own; these proxies send that
to the current thread's streams (or, in threads that have none, to the process's own).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


class _Proxy:
    """Forwards every attribute to the current thread's stream of one kind."""

    def __init__(self, local: threading.local, name: str, fallback: TextIO) -> None:
        object.__setattr__(self, "_local", local)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fallback", fallback)

    def _target(self) -> TextIO:
        stream: TextIO | None = getattr(self._local, self._name, None)
        return stream if stream is not None else self._fallback

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._target(), attr, value)

    def __iter__(self) -> Any:
        return iter(self._target())


class ThreadStreams:
    """Per-thread standard streams: :meth:`install` once, then :meth:`bind` per thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def install(self) -> None:
        """Put the proxies in place of ``sys.stdin``, ``sys.stdout`` and ``sys.stderr``."""
        for name in ("stdin", "stdout", "stderr"):
            setattr(sys, name, _Proxy(self._local, name, getattr(sys, name)))

    def bind(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        """The current thread's streams, until :meth:`unbind`."""
        self._local.stdin, self._local.stdout, self._local.stderr = stdin, stdout, stderr

    def unbind(self) -> None:
        self._local.stdin = self._local.stdout = self._local.stderr = None

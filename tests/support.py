"""Waiting in tests: for a condition, bounded, never for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Polls start this often and back off to ``interval``: a condition that holds at once
#: costs no sleep, one that takes a while is not asked hundreds of times a second.
_FIRST_PAUSE = 0.001


#: What is waited for, for the failure message: text, or a function that says it then.
What = str | Callable[[], str] | None


def _describe(condition: Callable[..., object], what: What) -> str:
    if callable(what):
        return what()
    return what or getattr(condition, "__qualname__", repr(condition))


async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    *,
    what: What = None,
    interval: float = 0.05,
) -> T:
    """Ask ``condition`` (a function or a coroutine function) until its answer is true,
    and return that answer; after ``timeout`` seconds fail the test, naming ``what`` it
    waited for."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        answer = condition()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout} s in vain for {_describe(condition, what)}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, interval)


def wait_until_sync(
    condition: Callable[[], T],
    timeout: float = 10.0,
    *,
    what: What = None,
    interval: float = 0.05,
) -> T:
    """:func:`wait_until` for code that is not on an event loop (it blocks)."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout} s in vain for {_describe(condition, what)}")
        time.sleep(pause)
        pause = min(pause * 2, interval)

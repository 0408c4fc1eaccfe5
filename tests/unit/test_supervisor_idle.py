"""When the supervisor leaves: once nobody is connected and nothing runs, after its
linger time, but never before its launcher had the time to connect."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from remo.supervisor.main import Server


def idle_server(linger: float) -> Server:
    supervisor: Any = SimpleNamespace(busy=False)
    return Server(supervisor, linger)


async def test_a_new_supervisor_waits_for_its_first_client_whatever_ends_meanwhile() -> None:
    """A job recovered dead, whose end is finished after "ready", asks for an idle check:
    with a linger of 0 that must not end the wait for the launcher's connection."""
    server = idle_server(linger=0)
    server.await_first_client(60)
    server.check_idle()
    await asyncio.sleep(0.05)
    assert not server.done.is_set()


async def test_after_the_first_clients_grace_the_linger_time_applies() -> None:
    server = idle_server(linger=0)
    server.await_first_client(0.01)
    await asyncio.sleep(0.02)
    server.check_idle()
    await asyncio.wait_for(server.done.wait(), 30)

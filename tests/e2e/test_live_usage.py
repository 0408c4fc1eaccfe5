"""What a running job uses, live, through the real CLI against a real server with real
cgroups: CPU over the last interval against a CPU limit, memory held, processes."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_cli_daily import ok
from tests.support import wait_until

pytestmark = [pytest.mark.root, pytest.mark.cgroups]


def figure(status: str, key: str) -> str:
    """The value of ``key`` in `remo status`'s key/value lines."""
    for line in status.splitlines():
        name, _, value = line.partition("  ")
        if name.strip() == key:
            return value.strip()
    raise AssertionError(f"no {key!r} in:\n{status}")


async def test_a_cpu_limited_busy_loop_shows_its_share(cli_env: dict[str, str]) -> None:
    job = await ok(cli_env, "run", "-d", "--cpu", "0.5", "--", "sh", "-c", "while :; do :; done")
    job_id = job.stdout.strip()

    async def near_half() -> float | None:
        done = await ok(cli_env, "status", "--json", job_id)
        cores = json.loads(done.stdout)["live_usage"].get("cpu_cores")
        return cores if cores is not None and 0.35 <= cores <= 0.65 else None

    # Usually within 3 s of its start (the first readings are over the time since the
    # start); the bound is a timeout for a loaded machine, not a measure.
    began = time.monotonic()
    try:
        cores = await wait_until(near_half, 30.0, what="CPU near 0.5 cores")
        took = time.monotonic() - began
        human = (await ok(cli_env, "status", job_id)).stdout
        assert "cores" in figure(human, "cpu now") and "of 0.5" in figure(human, "cpu now")
        assert figure(human, "processes") in {"1", "2"}
    finally:
        await ok(cli_env, "stop", "--grace", "0", job_id)
    ended = json.loads((await ok(cli_env, "status", "--json", job_id)).stdout)
    assert "live_usage" not in ended  # only while running
    print(f"\ncpu of a --cpu 0.5 busy loop: {cores:.2f} cores, seen {took:.1f} s after start")


async def test_memory_held_is_shown_within_ten_percent(cli_env: dict[str, str]) -> None:
    hold = (
        "import time; b = bytearray(100 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    )
    job_id = (await ok(cli_env, "run", "-d", "--", "/usr/bin/python3", "-c", hold)).stdout.strip()

    async def held() -> int | None:
        done = json.loads((await ok(cli_env, "status", "--json", job_id)).stdout)
        memory = int(done.get("live_usage", {}).get("memory_bytes", 0))
        return memory if memory >= 100 << 20 else None

    try:
        memory = await wait_until(held, 30.0, what="100 MiB held")
        # The interpreter itself adds a few MiB to the 100 MiB it holds.
        assert 100 << 20 <= memory <= 110 << 20, memory
    finally:
        await ok(cli_env, "stop", "--grace", "0", job_id)

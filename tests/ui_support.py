"""What the dashboard's tests and benchmark share: `remo ui` as a real process on a
real port, the profiles it reads, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Debian's chromium (scripts/test installs it); Playwright never downloads a browser here.
CHROMIUM = os.environ.get("REMO_TEST_CHROMIUM", "/usr/bin/chromium")


def chromium_missing() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    if not os.path.exists(CHROMIUM):
        return f"needs Debian's chromium at {CHROMIUM} (scripts/test installs it with apt)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "needs playwright (uv sync --extra dev)"
    return ""


def profile_env(home: Path, credentials: Mapping[str, Path]) -> dict[str, str]:
    """The environment of a user who installed each credential as a profile of that name."""
    from remo.client import profiles

    env = {k: v for k, v in os.environ.items() if k != profiles.ENV_PROFILE}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"))
    for name, path in credentials.items():
        profiles.install(path, name=name, env=env)
    return env


@dataclass
class Dashboard:
    """A running `remo ui`: its URL with the token, and the lines it printed."""

    url: str
    process: asyncio.subprocess.Process
    stdout: list[str]

    @property
    def base(self) -> str:
        return self.url.split("?", 1)[0].rstrip("/")

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]


@asynccontextmanager
async def dashboard(env: Mapping[str, str], *args: str) -> AsyncIterator[Dashboard]:
    """`remo ui --no-browser --port 0` until the block ends (then Ctrl-C, as a user would)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remo.cli.main",
        "ui",
        "--no-browser",
        "--port",
        "0",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            if not raw:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"remo ui exited: {err.decode()}")
            lines.append(raw.decode())
            found = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", lines[-1])
            if found:
                break
        yield Dashboard(found.group(0), proc, lines)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    """A headless chromium (Debian's) with one fresh context: a browser profile of its
    own, so no cookie is shared between tests."""
    from playwright.async_api import async_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # as root chromium has no sandbox
    async with async_playwright() as pw:
        chrome = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            context = await chrome.new_context(viewport={"width": 1400, "height": 900})
            yield context
            await context.close()
        finally:
            await chrome.close()

"""How fast the dashboard's pages are ready, measured in a real browser.

Run as root (Debian's chromium installed, as scripts/test does)::

    .venv/bin/python bench/ui_bench.py               # 1,000 jobs, a 1 GiB log, 10 loads each
    .venv/bin/python bench/ui_bench.py --jobs 200 --log-mib 64 --rounds 5   # quicker

A ``remo server`` subprocess gets ``--jobs`` finished jobs and one job that wrote
``--log-mib`` MiB of lines; ``remo ui`` serves its profile; headless chromium (driven by
Playwright) loads each page ``--rounds`` times in one tab, as a user moving between
them would. "Ready" is the
page's own mark (``performance.mark("remo-ready")``), set once the jobs table shows the
newest 100 jobs (it asks for those first, then for all) or once the job page shows the
output's last lines and follows it: the time from the start of navigation until the
page can be used. The jobs page's ``remo-complete`` mark, when every job is loaded
(searchable; the table shows the first 200 rows of what matches), is timed too. Also
timed: one scroll back on the job page (the 500 lines before those shown). The goal
is 300 ms for each page; this prints figures and asserts nothing
(docs/BENCHMARKS.md, "The dashboard").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import ServerProcess, free_port, issue_admin
from tests.ui_support import browser, chromium_missing, dashboard, profile_env

LINE = "remo ui bench: one line of a long log, about eighty bytes in all, for scrolling"


def fill(credential: Path, jobs: int, log_mib: int) -> str:
    """``jobs`` finished jobs and one that wrote ``log_mib`` MiB; the big one's id."""
    from remo.client import Client

    with Client.from_file(credential) as client:
        for i in range(jobs):
            client.start(["true"], labels={"bench": "ui", "n": str(i % 10)})
        big = client.run(
            ["sh", "-c", f"yes '{LINE}' | head -c {log_mib << 20}"], name="big-log"
        ).job
        deadline = time.monotonic() + 120
        while any(not j.ended for j in client.list(limit=jobs + 1)):
            if time.monotonic() > deadline:
                raise TimeoutError("the jobs did not all end within 120 s")
            time.sleep(0.2)
    return big.id


async def ready_ms(page: Any, url: str, mark: str = "remo-ready") -> float:
    """Milliseconds from the start of navigation to the page's ``mark``."""
    await page.goto(url)
    flag = "complete" if mark == "remo-complete" else "ready"
    await page.wait_for_selector(f"body[data-{flag}]", timeout=60000)
    found = await page.evaluate(f"() => performance.getEntriesByName('{mark}')[0].startTime")
    return float(found)


async def scroll_back_ms(page: Any, url: str) -> float:
    """Milliseconds from a click on "Load earlier lines" to those lines on the page."""
    await page.goto(url)
    await page.wait_for_selector("body[data-ready]", timeout=60000)
    lines = page.locator("#log .line")
    shown = await lines.count()
    started = time.perf_counter()
    await page.click("#earlier")
    await lines.nth(shown).wait_for(state="attached", timeout=60000)
    return (time.perf_counter() - started) * 1000


def summary(name: str, values: list[float]) -> None:
    print(
        f"{name}: median {statistics.median(values):.0f} ms, "
        f"min {min(values):.0f}, max {max(values):.0f} ({len(values)} loads)"
    )


async def measure(env: dict[str, str], big: str, rounds: int) -> None:
    async with dashboard(env) as ui, browser() as context:
        page = await context.new_page()
        await page.goto(ui.url)  # the token becomes the cookie
        await page.wait_for_selector("body[data-complete]", timeout=60000)
        counted = await page.locator("#count").inner_text()
        job_url = f"{ui.base}/job?server=bench&id={big}"
        await ready_ms(page, job_url)  # a first load of each warms the caches
        table = [await ready_ms(page, f"{ui.base}/") for _ in range(rounds)]
        whole = [await ready_ms(page, f"{ui.base}/", "remo-complete") for _ in range(rounds)]
        job_page = [await ready_ms(page, job_url) for _ in range(rounds)]
        back = [await scroll_back_ms(page, job_url) for _ in range(rounds)]
    print("jobs page:", end=" ")
    summary("ready (the newest 100 jobs shown)", table)
    print(f"jobs page ({counted}):", end=" ")
    summary("every job loaded", whole)
    print("job page (the big log):", end=" ")
    summary("ready", job_page)
    summary("scroll back 500 lines", back)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--log-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    missing = chromium_missing()
    if missing:
        sys.exit(f"ui_bench: {missing}")
    tmp = Path(tempfile.mkdtemp(prefix="remo-ui-bench-"))
    server = ServerProcess(tmp / "state", free_port(), tmp / "server.log")
    try:
        server.start()
        credential = issue_admin(server.state_dir, server.address, tmp / "bench.remo")
        os.chmod(credential, 0o600)
        started = time.monotonic()
        big = fill(credential, args.jobs, args.log_mib)
        print(
            f"{args.jobs} jobs and a {args.log_mib} MiB log written in "
            f"{time.monotonic() - started:.1f} s"
        )
        env = profile_env(tmp / "home", {"bench": credential})
        asyncio.run(measure(env, big, args.rounds))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

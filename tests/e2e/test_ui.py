"""`remo ui` in a real browser (Debian's chromium, driven by Playwright) against two
real servers: the jobs of both on one page, a job's output live, stop and start from
the page, and the token, Host and CSRF checks that keep everyone else out."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from remo.client import AsyncClient
from tests.e2e.conftest import Server, me, serve
from tests.ui_support import Dashboard, browser, chromium_missing, dashboard, profile_env

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(bool(chromium_missing()), reason=chromium_missing() or "-"),
]


@asynccontextmanager
async def two_servers(tmp_path: Path) -> AsyncIterator[tuple[Server, Server, dict[str, str]]]:
    """Servers ``alpha`` and ``beta``, and the environment of a user with a profile
    for each."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with serve(tmp_path / "a") as alpha, serve(tmp_path / "b") as beta:
        env = profile_env(
            tmp_path / "home",
            {"alpha": alpha.credential(*me()), "beta": beta.credential(*me())},
        )
        yield alpha, beta, env


async def stop_all(*clients: AsyncClient) -> None:
    for client in clients:
        for job in await client.list(states=["running"]):
            await client.stop(job.id, grace=0)


def request(
    ui: Dashboard,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    limit: int | None = 4096,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request to the dashboard (blocking: run it in a thread)."""
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(
            method, path, body=data, headers={"Host": f"127.0.0.1:{ui.port}", **(headers or {})}
        )
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read(limit)
    finally:
        conn.close()


async def test_lists_the_jobs_of_two_servers_and_filters_them(tmp_path: Path) -> None:
    async with two_servers(tmp_path) as (alpha, beta, env):
        a = AsyncClient.from_file(alpha.credential(*me()))
        b = AsyncClient.from_file(beta.credential(*me()))
        try:
            on_a = (await a.start(["sleep", "300"], name="on-alpha", labels={"team": "ml"})).job
            on_b = (await b.start(["echo", "<b>not bold</b>"], name="on-beta")).job
            assert on_a is not None and on_b is not None
            hourly = (await b.start(["true"], name="hourly", every=3600, delay=3600)).schedule
            assert hourly is not None
            async with dashboard(env) as ui, browser() as context:
                page = await context.new_page()
                await page.goto(ui.url)
                rows = page.locator("#jobs-table tbody tr")
                await rows.filter(has_text="on-alpha").wait_for()
                await rows.filter(has_text="on-beta").wait_for()
                assert "alpha" in await rows.filter(has_text="on-alpha").inner_text()
                # What users typed is shown as text, never as HTML.
                assert "<b>not bold</b>" in await rows.filter(has_text="on-beta").inner_text()
                assert await page.locator("#jobs-table b").count() == 0
                assert "team=ml" in await rows.filter(has_text="on-alpha").inner_text()
                # Schedules: the period and the next run.
                schedule = page.locator("#schedules-table tbody tr", has_text="hourly")
                cells = await schedule.locator("td").all_inner_texts()
                assert cells[:5] == ["beta", hourly.id, "hourly", "true", "1h00m"]
                assert cells[5] not in ("-", "inactive")
                # One server's table, then a search.
                await page.select_option("#f-server", "beta")
                await rows.filter(has_text="on-alpha").wait_for(state="detached")
                assert await rows.count() == 1
                await page.select_option("#f-server", "")
                await page.fill("#f-search", "team=ml")
                await rows.filter(has_text="on-beta").wait_for(state="detached")
                assert await rows.count() == 1
                # The URL holds no token any more: it went into the cookie.
                assert "token" not in page.url
        finally:
            await stop_all(a, b)
            await a.close()
            await b.close()


async def test_live_output_appears_and_stop_from_the_page_stops_the_job(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = (
        "printf '\\033[31mred words\\033[0m\\n'; echo to-stderr >&2; "
        f"while [ ! -e {go} ]; do sleep 0.02; done; echo written-now; sleep 300"
    )
    async with two_servers(tmp_path) as (alpha, _beta, env):
        a = AsyncClient.from_file(alpha.credential(*me()))
        try:
            job = (await a.start(["sh", "-c", script])).job
            assert job is not None
            async with dashboard(env) as ui, browser() as context:
                page = await context.new_page()
                await page.goto(ui.url)
                await page.goto(f"{ui.base}/job?server=alpha&id={job.id}")
                log = page.locator("#log")
                await log.get_by_text("to-stderr").wait_for()
                await page.get_by_text("following").wait_for()
                # ANSI colours become a span with the colour's class; stderr is marked.
                assert await log.locator("span.f1", has_text="red words").count() == 1
                err_line = log.locator(".line", has_text="to-stderr")
                assert "err" in (await err_line.get_attribute("class") or "")
                # Written now: on the page within a second.
                go.touch()
                await log.get_by_text("written-now").wait_for(timeout=1000)
                # Timestamps on demand.
                stamp = log.locator(".line", has_text="written-now").locator(".ts")
                assert not await stamp.is_visible()
                await page.check("#show-ts")
                assert await stamp.is_visible()
                # Limits against usage: sampled while the page is open, drawn as it goes.
                await page.locator("#cap-mem", has_text="2 samples").wait_for()
                assert await page.locator("#chart-mem polyline").count() == 1
                memory = page.locator("#usage tbody tr", has_text="Memory").locator("td")
                assert (await memory.all_inner_texts())[0].endswith(("B", "KiB", "MiB"))
                # Stop, from the page.
                await page.click("#stop")
                await page.locator("#state", has_text="stopped").wait_for(timeout=20000)
            assert (await a.status(job.id)).state.value == "stopped"
        finally:
            await stop_all(a)
            await a.close()


async def test_start_form_starts_a_job_and_reports_errors_as_the_cli(tmp_path: Path) -> None:
    async with two_servers(tmp_path) as (_alpha, beta, env):
        b = AsyncClient.from_file(beta.credential(*me()))
        try:
            async with dashboard(env) as ui, browser() as context:
                page = await context.new_page()
                await page.goto(ui.url)
                await page.click("#start summary")
                await page.locator("#s-server option[value=beta]").wait_for(state="attached")
                await page.select_option("#s-server", "beta")
                await page.fill("#s-command", "sh -c 'echo from the page; sleep 300'")
                await page.fill("input[name=name]", "from-page")
                await page.fill("input[name=labels]", "via=ui")
                await page.fill("input[name=memory]", "0")
                await page.click("#start-form button[type=submit]")
                alert = page.locator("#start-error")
                await alert.get_by_text(
                    "--memory must be between 1 MiB and 4 EiB, got 0"
                ).wait_for()
                assert await b.list() == []
                await page.fill("input[name=memory]", "64M")
                await page.click("#start-form button[type=submit]")
                await page.locator("#start-status", has_text="Started job").wait_for()
            jobs = await b.list()
            assert [(j.name, j.labels, j.limits.memory) for j in jobs] == [
                ("from-page", {"via": "ui"}, 64 << 20)
            ]
            text = b""
            async for chunk in b.output(jobs[0].id, follow=False):
                text += chunk.data
            assert b"from the page" in text or jobs[0].state.value == "running"
        finally:
            await stop_all(b)
            await b.close()


async def test_scrolls_back_from_the_tail(tmp_path: Path) -> None:
    async with two_servers(tmp_path) as (alpha, _beta, env):
        a = AsyncClient.from_file(alpha.credential(*me()))
        try:
            script = "for i in $(seq 1 1500); do echo number-$i.; done"
            job = (await a.run(["sh", "-c", script])).job
            async with dashboard(env) as ui, browser() as context:
                page = await context.new_page()
                await page.goto(ui.url)
                await page.goto(f"{ui.base}/job?server=alpha&id={job.id}")
                log = page.locator("#log")
                await log.get_by_text("number-1500.").wait_for()
                # The tail only (a line ends with a dot so that "number-1." is one line):
                # not the first line...
                assert await log.get_by_text("number-1.").count() == 0
                # ...until scrolled back to it.
                button = page.locator("#earlier")
                while await button.is_enabled():
                    shown = await log.locator(".line").count()
                    await button.click()
                    await log.locator(".line").nth(shown).wait_for(state="attached")
                await log.get_by_text("number-1.").wait_for()
                assert await log.locator(".line").count() == 1500
        finally:
            await a.close()


@asynccontextmanager
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Dashboard, AsyncClient, str]]:
    """A dashboard of two servers, a client of ``alpha``, and a running job there."""
    async with two_servers(tmp_path) as (alpha, _beta, env):
        client = AsyncClient.from_file(alpha.credential(*me()))
        try:
            job = (await client.start(["sleep", "300"])).job
            assert job is not None
            async with dashboard(env) as ui:
                yield ui, client, job.id
        finally:
            await stop_all(client)
            await client.close()


async def call(
    ui: Dashboard, method: str, path: str, **kw: Any
) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(request, ui, method, path, **kw)


async def enter(ui: Dashboard) -> dict[str, str]:
    """The cookie header the right token gets."""
    status, headers, _ = await call(ui, "GET", f"/?token={ui.token}")
    assert status == 303
    return {"Cookie": headers["set-cookie"].split(";")[0]}


async def csrf_of(ui: Dashboard, cookie: dict[str, str]) -> str:
    page = (await call(ui, "GET", "/", headers=cookie))[2].decode()
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


async def test_a_wrong_token_gets_nothing(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (ui, _client, job_id):
        wrong = "x" * len(ui.token)
        follow = f"/api/follow?server=alpha&id={job_id}"
        output = f"/api/output?server=alpha&id={job_id}"
        for path in (
            "/",
            f"/job?server=alpha&id={job_id}",
            "/api/jobs",
            output,
            follow,
            "/static/jobs.js",
        ):
            joiner = "&" if "?" in path else "?"
            for headers in ({}, {"Cookie": f"remo-ui-{ui.port}={wrong}"}):
                for suffix in ("", f"{joiner}token={wrong}"):
                    status, _, body = await call(ui, "GET", path + suffix, headers=headers)
                    assert status == 403, (path, suffix, headers)
                    assert b"alpha" not in body and b"sleep" not in body
        # The right one opens them.
        cookie = await enter(ui)
        for path in ("/", "/api/jobs", output):
            status, _, body = await call(ui, "GET", path, headers=cookie)
            assert status == 200, path


async def test_the_token_becomes_an_httponly_samesite_strict_cookie(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (ui, _client, job_id):
        status, headers, _ = await call(
            ui, "GET", f"/job?server=alpha&id={job_id}&token={ui.token}"
        )
        # The address without the token (out of the address bar and the history).
        assert status == 303 and headers["location"] == f"/job?server=alpha&id={job_id}"
        cookie = headers["set-cookie"]
        assert cookie.startswith(f"remo-ui-{ui.port}={ui.token};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


async def test_another_host_name_is_refused(tmp_path: Path) -> None:
    """DNS rebinding: a site that points its own name at 127.0.0.1 sends that name."""
    async with guarded(tmp_path) as (ui, _client, _job_id):
        cookie = await enter(ui)
        for host in (f"attacker.example:{ui.port}", f"127.0.0.1.nip.io:{ui.port}", "127.0.0.1"):
            for path in ("/", "/api/jobs", f"/?token={ui.token}"):
                status, _, body = await call(ui, "GET", path, headers={**cookie, "Host": host})
                assert status == 403, (host, path)
                assert b"alpha" not in body
        status, _, _ = await call(
            ui, "GET", "/api/jobs", headers={**cookie, "Host": f"localhost:{ui.port}"}
        )
        assert status == 200


async def test_an_action_needs_post_and_the_pages_csrf_value(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (ui, client, job_id):
        cookie = await enter(ui)
        stop = {"server": "alpha", "id": job_id, "grace": "0"}
        json_type = {"Content-Type": "application/json"}
        # Not by GET...
        status, _, _ = await call(ui, "GET", f"/api/stop?server=alpha&id={job_id}", headers=cookie)
        assert status == 405
        # ...nor by POST without the page's CSRF value, or with a wrong one...
        for extra in ({}, {"X-Remo-CSRF": "x" * 43}):
            status, _, _ = await call(
                ui, "POST", "/api/stop", headers={**cookie, **json_type, **extra}, body=stop
            )
            assert status == 403
        csrf = {"X-Remo-CSRF": await csrf_of(ui, cookie)}
        # ...nor from another origin, another site, or as a form.
        for extra in (
            {"Origin": "http://attacker.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Content-Type": "application/x-www-form-urlencoded"},
        ):
            headers = {**cookie, **json_type, **csrf, **extra}
            status, _, _ = await call(ui, "POST", "/api/stop", headers=headers, body=stop)
            assert status == 403, extra
        # The token alone (in the URL) does not do it either.
        headers = {**json_type, **csrf}
        status, _, _ = await call(
            ui, "POST", f"/api/stop?token={ui.token}", headers=headers, body=stop
        )
        assert status == 403
        assert (await client.status(job_id)).state.value == "running"
        headers = {**cookie, **json_type, **csrf, "Origin": f"http://127.0.0.1:{ui.port}"}
        status, _, _ = await call(ui, "POST", "/api/stop", headers=headers, body=stop)
        assert status == 200
        assert (await client.status(job_id)).state.value == "stopped"


async def test_no_cors(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (ui, _client, _job_id):
        cookie = await enter(ui)
        origin = {"Origin": "http://attacker.example"}
        status, headers, _ = await call(ui, "GET", "/api/jobs", headers={**cookie, **origin})
        assert status == 200  # (a read: the browser keeps the answer from that page)
        assert not any(name.startswith("access-control-") for name in headers)
        preflight = {**origin, "Access-Control-Request-Method": "POST"}
        status, headers, _ = await call(ui, "OPTIONS", "/api/stop", headers={**cookie, **preflight})
        assert status in (403, 405)
        assert not any(name.startswith("access-control-") for name in headers)


async def test_the_token_is_printed_once_and_never_logged(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (ui, _client, job_id):
        cookie = await enter(ui)
        await call(ui, "GET", f"/?token={ui.token}")
        await call(ui, "GET", "/api/jobs", headers=cookie)
        await call(ui, "GET", f"/api/output?server=alpha&id={job_id}", headers=cookie)
        await call(ui, "GET", "/?token=wrong")
    assert ui.process.stdout is not None and ui.process.stderr is not None
    out = "".join(ui.stdout) + (await ui.process.stdout.read()).decode()
    err = (await ui.process.stderr.read()).decode()
    assert out.count(ui.token) == 1
    assert ui.token not in err


async def test_listens_on_loopback_only(tmp_path: Path) -> None:
    async with two_servers(tmp_path) as (_alpha, _beta, env), dashboard(env) as ui:
        listening = await asyncio.to_thread(Path(f"/proc/{ui.process.pid}/net/tcp").read_text)
        local = {
            int(fields[1].split(":")[1], 16): fields[1].split(":")[0]
            for fields in (line.split() for line in listening.splitlines()[1:])
            if fields[3] == "0A"  # LISTEN
        }
        assert local.get(ui.port) == "0100007F"  # 127.0.0.1
        assert not Path(f"/proc/{ui.process.pid}/net/tcp6").read_text().count(f":{ui.port:04X} ")


async def test_a_window_of_output_stays_small_however_long_its_lines(tmp_path: Path) -> None:
    """A log with no newline at all (progress bars): the page still gets its end only."""
    async with guarded(tmp_path) as (ui, client, _job_id):
        job = (await client.run(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x"])).job
        cookie = await enter(ui)
        status, _, body = await call(
            ui, "GET", f"/api/output?server=alpha&id={job.id}", headers=cookie, limit=None
        )
        assert status == 200
        found = json.loads(body)
        assert found["end"] == 5_000_000
        assert 0 < found["end"] - found["start"] <= 2 << 20
        assert sum(len(p["text"]) for p in found["pieces"]) == found["end"] - found["start"]


async def test_a_signal_and_a_removal_from_the_page(tmp_path: Path) -> None:
    script = "trap 'echo got-hup' HUP; echo waiting; while :; do sleep 0.05; done"
    async with two_servers(tmp_path) as (alpha, _beta, env):
        a = AsyncClient.from_file(alpha.credential(*me()))
        try:
            job = (await a.start(["sh", "-c", script])).job
            assert job is not None
            async with dashboard(env) as ui, browser() as context:
                page = await context.new_page()
                await page.goto(ui.url)
                await page.goto(f"{ui.base}/job?server=alpha&id={job.id}")
                log = page.locator("#log")
                await log.get_by_text("waiting").wait_for()
                await page.select_option("#signal", "HUP")
                await page.click("#kill")
                await log.get_by_text("got-hup").wait_for()
                assert (await a.status(job.id)).state.value == "running"
                # A removal asks first; a running job is stopped, then removed.
                page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await page.click("#remove")
                await page.wait_for_url(f"{ui.base}/")
            assert await a.list() == []
        finally:
            await stop_all(a)
            await a.close()


async def test_an_admin_sees_every_users_jobs_when_asked(
    tmp_path: Path, unix_users: tuple[str, ...]
) -> None:
    user = unix_users[0]
    async with two_servers(tmp_path) as (alpha, _beta, env):
        mine = AsyncClient.from_file(alpha.credential(*me()))
        theirs = AsyncClient.from_file(alpha.credential(user, "operator"))
        try:
            await mine.start(["sleep", "300"], name="admins-own")
            await theirs.start(["sleep", "300"], name="someone-elses")
            async with dashboard(env) as ui, browser() as context:
                page = await context.new_page()
                await page.goto(ui.url)
                rows = page.locator("#jobs-table tbody tr")
                await rows.filter(has_text="admins-own").wait_for()
                assert await rows.filter(has_text="someone-elses").count() == 0
                await page.check("#f-all")  # shown: this profile is an admin's
                await rows.filter(has_text="someone-elses").wait_for()
                assert f"{user}/1" in await rows.filter(has_text="someone-elses").inner_text()
                assert "all=1" in page.url
        finally:
            await stop_all(mine, theirs)
            await mine.close()
            await theirs.close()

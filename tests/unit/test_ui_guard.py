"""The dashboard's guard on its own: what reaches the application and what is refused
before (the same rules run against a real `remo ui` in tests/e2e/test_ui.py)."""

from __future__ import annotations

from typing import Any

from remo.ui.guard import Guard, Secrets

PORT = 41231


async def ask(
    keys: Secrets,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    kind: str = "http",
) -> tuple[int, dict[str, str], bool]:
    """One request through the guard: the status, the headers, whether the app ran."""
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    given = {"host": f"127.0.0.1:{PORT}", **(headers or {})}
    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in given.items()],
    }
    await Guard(app, keys)(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return 0, {}, bool(reached)
    found = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], found, bool(reached)


def keys() -> Secrets:
    return Secrets(token="t" * 43, csrf="c" * 43, port=PORT)


def cookie(k: Secrets) -> dict[str, str]:
    return {"cookie": f"other=1; {k.cookie}={k.token}"}


async def test_no_token_no_cookie_reaches_nothing() -> None:
    k = keys()
    for path in ("/", "/api/jobs", "/api/follow", "/static/app.css"):
        status, _, reached = await ask(k, "GET", path)
        assert (status, reached) == (403, False)
        status, _, reached = await ask(k, "GET", path, f"token={'x' * 43}")
        assert (status, reached) == (403, False)
        status, _, reached = await ask(k, "GET", path, headers={"cookie": f"{k.cookie}=x"})
        assert (status, reached) == (403, False)


async def test_the_token_sets_the_cookie_and_leaves_the_address() -> None:
    k = keys()
    status, headers, reached = await ask(k, "GET", "/job", f"server=a&id=3&token={k.token}")
    assert (status, reached) == (303, False)
    assert headers["location"] == "/job?server=a&id=3"
    assert headers["set-cookie"] == f"{k.cookie}={k.token}; Path=/; HttpOnly; SameSite=Strict"
    # "//host" would be another site: the redirect stays here.
    _, headers, _ = await ask(k, "GET", "//attacker.example/x", f"token={k.token}")
    assert headers["location"] == "/attacker.example/x"
    # Another port's dashboard has its own cookie.
    assert Secrets(port=PORT + 1).cookie != k.cookie


async def test_only_this_address_by_name() -> None:
    k = keys()
    for host in (f"localhost:{PORT}", f"127.0.0.1:{PORT}"):
        status, _, reached = await ask(k, "GET", "/", headers={**cookie(k), "host": host})
        assert (status, reached) == (200, True)
    for host in ("attacker.example", f"attacker.example:{PORT}", "127.0.0.1", f"[::1]:{PORT}"):
        status, _, reached = await ask(k, "GET", "/", headers={**cookie(k), "host": host})
        assert (status, reached) == (403, False), host


async def test_actions_need_post_csrf_json_and_this_origin() -> None:
    k = keys()
    good = {**cookie(k), "x-remo-csrf": k.csrf, "content-type": "application/json"}
    status, _, reached = await ask(k, "POST", "/api/stop", headers=good)
    assert (status, reached) == (200, True)
    status, _, reached = await ask(
        k, "POST", "/api/stop", headers={**good, "origin": f"http://localhost:{PORT}"}
    )
    assert (status, reached) == (200, True)
    refused = [
        {**good, "x-remo-csrf": "c" * 42 + "d"},
        {k: v for k, v in good.items() if k != "x-remo-csrf"},
        {**good, "content-type": "text/plain"},
        {**good, "origin": "http://attacker.example"},
        {**good, "origin": f"http://127.0.0.1:{PORT + 1}"},
        {**good, "sec-fetch-site": "same-site"},
    ]
    for headers in refused:
        status, answer, reached = await ask(k, "POST", "/api/stop", headers=headers)
        assert (status, reached) == (403, False), headers
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        status, answer, reached = await ask(k, method, "/api/stop", headers=good)
        assert (status, reached) == (403, False), method
        assert not any(h.startswith("access-control-") for h in answer)


async def test_every_answer_forbids_framing_and_a_websocket_is_closed() -> None:
    k = keys()
    for args in (("GET", "/"), ("GET", "/", f"token={k.token}")):
        _, headers, _ = await ask(k, *args, headers=cookie(k))
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
    status, _, reached = await ask(k, "GET", "/", headers=cookie(k), kind="websocket")
    assert (status, reached) == (0, False)

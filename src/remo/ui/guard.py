"""Who may use the dashboard: the one who holds the token printed to their terminal.

The dashboard acts with the user's credentials, so anything that can send it a request
can act as the user. Other accounts on the machine can connect to 127.0.0.1 too, and a
web page in the user's own browser can make it send requests, so every request passes
these checks, in this order, before any route runs:

1. **Host.** The ``Host`` header must be ``127.0.0.1:PORT`` or ``localhost:PORT``. A
   page on another site that re-points its own name at 127.0.0.1 (DNS rebinding) sends
   its own name here, and is refused.
2. **Token.** A random token (32 bytes) is made at start and printed once, in the URL,
   to the user's terminal. A request carrying ``?token=`` is compared in constant time
   (:func:`hmac.compare_digest`); a match sets an ``HttpOnly``, ``SameSite=Strict``
   cookie holding it and redirects to the same address without it (so it leaves the
   address bar and the history). Later requests carry the cookie. Anything else: 403,
   for pages, assets, the API and streams alike.
3. **CSRF.** Only GET (and HEAD) read; only POST changes anything, and a POST must carry
   ``X-Remo-CSRF`` with a second random value that only the dashboard's own pages hold
   (a page of another origin cannot read them: there is no CORS), a JSON body, and, when
   the browser sends them, an ``Origin`` of this address and ``Sec-Fetch-Site:
   same-origin``. The cookie's SameSite=Strict already keeps it off cross-site requests;
   this holds even where it would not.

No response has a CORS header; every response forbids framing and sniffing and sends
no referrer. The token is never logged: uvicorn's access log is off.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Hosts a browser on this machine names the dashboard by.
LOCAL_HOSTS = ("127.0.0.1", "localhost")
CSRF_HEADER = "x-remo-csrf"

#: Sent with every response: no framing, no sniffing, no referrer, only our own assets.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Secrets:
    """The token (in the URL and the cookie) and the CSRF value (in the pages)."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: The port the dashboard listens on (set once it is bound).
    port: int = 0

    @property
    def cookie(self) -> str:
        """The cookie's name: cookies are not kept apart by port, so two dashboards
        on one machine each need their own."""
        return f"remo-ui-{self.port}"

    def url(self, path: str = "/") -> str:
        """The address to open: the only place the token is ever shown."""
        return f"http://127.0.0.1:{self.port}{path}?{urlencode({'token': self.token})}"

    def token_ok(self, value: str) -> bool:
        return hmac.compare_digest(value.encode(), self.token.encode())

    def csrf_ok(self, value: str) -> bool:
        return hmac.compare_digest(value.encode(), self.csrf.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found.setdefault(name, value)
    return found


async def _refuse(send: Send, status: int, text: str) -> None:
    """A plain refusal: a JSON body saying why, nothing else."""
    body = json.dumps({"error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: the checks above around ``app`` (a plain ASGI class rather than
    Starlette's BaseHTTPMiddleware, which would buffer the streams)."""

    def __init__(self, app: ASGIApp, keys: Secrets) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: the dashboard has none
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = _headers(scope)
        own = [f"{host}:{self.keys.port}" for host in LOCAL_HOSTS]
        if headers.get("host", "") not in own:
            await _refuse(send, 403, "this dashboard answers only to 127.0.0.1 and localhost")
            return
        method = scope["method"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if "token" in query:
            if method not in ("GET", "HEAD") or not self.keys.token_ok(query["token"]):
                await _refuse(send, 403, "wrong or expired token: use the URL remo ui printed")
                return
            await self._enter(scope, query, send)
            return
        cookie = _cookies(headers.get("cookie", "")).get(self.keys.cookie, "")
        if not self.keys.token_ok(cookie):
            await _refuse(send, 403, "no valid token: open the URL remo ui printed")
            return
        if method not in ("GET", "HEAD"):
            problem = self._csrf_problem(method, headers, own)
            if problem:
                await _refuse(send, 403, problem)
                return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                cached = any(name.lower() == b"cache-control" for name, _ in headers)
                extra = [h for h in SECURITY_HEADERS if not (cached and h[0] == b"cache-control")]
                message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, send_secured)

    def _csrf_problem(self, method: str, headers: dict[str, str], own: list[str]) -> str:
        """Why a state-changing request is refused ("" when it is not)."""
        if method != "POST":
            return f"{method} is not allowed"
        if not self.keys.csrf_ok(headers.get(CSRF_HEADER, "")):
            return "missing or wrong CSRF token: reload the page"
        origin = headers.get("origin")
        if origin is not None and origin not in [f"http://{host}" for host in own]:
            return "cross-origin request refused"
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request refused"
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return "expected a JSON body"
        return ""

    async def _enter(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        """The token was right: set the cookie, and go to the same address without it."""
        rest = {k: v for k, v in query.items() if k != "token"}
        # One leading slash: "//host/..." would send the browser to another site.
        location = "/" + scope["path"].lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
        cookie = (
            f"{self.keys.cookie}={self.keys.token}; Path=/; HttpOnly; SameSite=Strict"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode()),
                    (b"set-cookie", cookie),
                    (b"content-length", b"0"),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

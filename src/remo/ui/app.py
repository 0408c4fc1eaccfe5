"""The dashboard assembled: pages, assets and the API behind :class:`~remo.ui.guard.Guard`,
served by uvicorn on 127.0.0.1.

The pages are two HTML files read from the package once, with the CSRF value and the
assets' versions written in; the assets (CSS, JavaScript) are read from the package
once too and served from memory. Nothing is fetched
from anywhere else, so the dashboard works offline and a page cannot be changed on the
way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from html import escape
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from remo.ui.api import ROUTES
from remo.ui.guard import Guard, Secrets
from remo.ui.servers import Servers

PAGES = ("index.html", "job.html")
#: The assets' types, by suffix.
TYPES = {".css": "text/css", ".js": "text/javascript"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    #: A digest of the content, in the URL the pages use: a browser may keep the asset
    #: for a day, and a new version of remo has new URLs.
    version: str


def _assets() -> dict[str, Asset]:
    """Every file of ``static/``, read once: serving them is a dictionary lookup."""
    found: dict[str, Asset] = {}
    for entry in resources.files("remo.ui").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in TYPES:
            body = entry.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            found[entry.name] = Asset(body, TYPES[suffix], version)
    return found


def _page(name: str, keys: Secrets, assets: dict[str, Asset]) -> str:
    template = resources.files("remo.ui").joinpath("templates", name).read_text("utf-8")
    for asset_name, asset in assets.items():
        template = template.replace(
            f'"/static/{asset_name}"', f'"/static/{asset_name}?v={asset.version}"'
        )
    return template.replace("{{csrf}}", escape(keys.csrf, quote=True))


def _page_route(html: str) -> Callable[[Request], Any]:
    async def show(_request: Request) -> Response:
        return HTMLResponse(html)

    return show


def _asset_route(assets: dict[str, Asset]) -> Callable[[Request], Any]:
    async def show(request: Request) -> Response:
        asset = assets.get(request.path_params["name"])
        if asset is None:
            return Response("not found", status_code=404, media_type="text/plain")
        headers = {"cache-control": "private, max-age=86400, immutable"}
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    return show


def build(servers: Servers, keys: Secrets) -> Guard:
    """The ASGI application: every route behind the guard."""
    assets = _assets()
    index, job = (_page(name, keys, assets) for name in PAGES)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await servers.close()

    app = Starlette(
        routes=[
            Route("/", _page_route(index)),
            Route("/job", _page_route(job)),
            *ROUTES,
            Route("/static/{name}", _asset_route(assets)),
        ],
        lifespan=lifespan,
    )
    app.state.servers = servers
    return Guard(app, keys)


def listen(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: any free port). Never another address:
    the dashboard is for this machine's browser only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve(
    servers: Servers,
    sock: socket.socket,
    keys: Secrets,
    on_ready: Callable[[str], None],
) -> None:
    """Serve the dashboard on ``sock`` until cancelled (Ctrl-C); ``on_ready`` gets the
    URL with the token once, when the server accepts connections."""
    import uvicorn

    keys.port = sock.getsockname()[1]
    config = uvicorn.Config(
        build(servers, keys),
        log_level="warning",
        access_log=False,  # the access log would hold the token's URL
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        on_ready(keys.url())
    await task

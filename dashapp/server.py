"""The serving layer: one ASGI app on one port for the Dash pages and the /ws push socket.

Starlette routes `/ws` to the push hub and mounts the Dash (Flask) app at `/` through
a2wsgi's WSGI adapter. docs/architecture.md explains the choice and how to run it behind a
reverse proxy.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable
from urllib.parse import urlsplit

import uvicorn
from a2wsgi import WSGIMiddleware
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket

from dashapp.push import PushHub, RateLimitedWarning

log = logging.getLogger(__name__)

# WebSocket close code for a policy violation (RFC 6455 section 7.4.1). Before the handshake
# completes, uvicorn (0.55, websockets-sansio) answers a close with an HTTP 403 response.
CLOSE_POLICY_VIOLATION = 1008

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

# Flask's worker threads in the WSGI adapter: the number of Dash callbacks served at once.
WSGI_WORKERS = 10


class OriginPolicy:
    """Decide which browser pages may open the push socket.

    A page from the same origin is accepted: its Origin header names the host and port of the
    Host header. Any origin in `allowed_origins` is accepted too, and "*" accepts every origin.
    A request without an Origin header does not come from a browser page, so it is accepted.
    """

    def __init__(self, allowed_origins: list[str] | None = None):
        self.allow_any = False
        self.allowed: set[tuple[str, str, int]] = set()
        for origin in allowed_origins or []:
            if origin.strip() == "*":
                self.allow_any = True
                continue
            parsed = _parse_origin(origin)
            if parsed is None:
                raise ValueError(
                    f"allowed origin {origin!r} is invalid: write it as scheme://host[:port], "
                    f"for example \"https://noc.example\", or \"*\" to accept every origin")
            self.allowed.add(parsed)

    def accepts(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True
        if self.allow_any:
            return True
        parsed = _parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self.allowed:
            return True
        return host is not None and _same_host(parsed, host)


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    """Split "scheme://host[:port]" into (scheme, host, port); None if it is not such an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _same_host(origin: tuple[str, str, int], host_header: str) -> bool:
    """Compare an origin with a Host header, which has no scheme: the origin's scheme sets the default port."""
    scheme, origin_host, origin_port = origin
    try:
        parts = urlsplit("//" + host_header.strip())
        port = parts.port
    except ValueError:
        return False
    if not parts.hostname:
        return False
    return (parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]) == (origin_host, origin_port)


def create_asgi_app(dash_app, hub: PushHub, *, allowed_origins: list[str] | None = None,
                    on_startup: Callable[[], None] | None = None,
                    on_shutdown: Callable[[], None] | None = None) -> Starlette:
    """Build the app: `/ws` for the push hub and the Dash app at `/`.

    `on_startup` runs after the hub starts and `on_shutdown` before it stops, both on the event
    loop's thread, so they must not block for long. Raise ValueError if an allowed origin is
    invalid.
    """
    policy = OriginPolicy(allowed_origins)
    rejected_warning = RateLimitedWarning(log, interval=300.0)

    async def push_endpoint(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not policy.accepts(origin, websocket.headers.get("host")):
            # The origin is whatever the client sent: %r escapes it, and the slice bounds it.
            rejected_warning.warning(
                origin, "rejected a WebSocket from origin %r (host %r): add it to allowed_origins "
                "if pages on that site should receive pushes", origin[:200],
                (websocket.headers.get("host") or "")[:200])
            await websocket.close(code=CLOSE_POLICY_VIOLATION)
            return
        await hub.handle(websocket)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await hub.start()
        if on_startup is not None:
            try:
                on_startup()
            except BaseException:
                await hub.stop()
                raise

        try:
            yield
        finally:
            try:
                if on_shutdown is not None:
                    on_shutdown()
            finally:
                await hub.stop()

    routes = [
        WebSocketRoute("/ws", push_endpoint),
        Mount("/", app=WSGIMiddleware(dash_app.server, workers=WSGI_WORKERS)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def run(app, host: str, port: int, root_path: str = "") -> None:
    """Serve `app` with uvicorn in this process until it is stopped (Ctrl+C or SIGTERM).

    One process only: the scheduler and the in-memory store live in it. `root_path` is the URL
    prefix a reverse proxy strips before forwarding, for example "/monitor".
    """
    uvicorn.run(
        app,
        host=host,
        port=port,
        root_path=root_path,
        # Trust X-Forwarded-For/-Proto only from the addresses in FORWARDED_ALLOW_IPS, which
        # uvicorn defaults to "127.0.0.1,::1", that is a reverse proxy on this machine.
        proxy_headers=True,
        # The caller configures logging (dashapp.logsetup), so uvicorn's lines share its format.
        log_config=None,
        lifespan="on",
        ws="websockets-sansio",
        # Pages only send pings, so a small limit costs nothing and bounds a hostile frame.
        ws_max_size=64 * 1024,
        # Each page would compress every message on its own, which costs CPU per page and a
        # zlib context per socket; the messages are small JSON.
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        # Pages whose socket does not drain must not hold up a restart for long.
        timeout_graceful_shutdown=5,
        server_header=False,
    )

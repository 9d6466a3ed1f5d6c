"""A real uvicorn server in a thread on a free loopback port, and small WebSocket client helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import dash
import uvicorn
from dash import html
from websockets.asyncio.client import connect

START_TIMEOUT = 10.0
RECEIVE_TIMEOUT = 10.0


def make_dash_app(**kwargs) -> dash.Dash:
    app = dash.Dash(__name__, **kwargs)
    app.layout = html.Div("monitor test page", id="test-page")
    return app


def wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    """Wait until uvicorn in `thread` accepts connections; raise if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start within {START_TIMEOUT} s")
        time.sleep(0.01)


class LiveServer:
    """Run an ASGI app under uvicorn in a thread; the port is bound before the thread starts."""

    def __init__(self, app, root_path: str = ""):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan="on", ws="websockets-sansio", ws_per_message_deflate=False,
                                log_config=None, root_path=root_path, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]},
                                        name="live-uvicorn", daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        wait_started(self.server, self._thread)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(START_TIMEOUT)
        self._socket.close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http_url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def open_socket(server: LiveServer, **kwargs):
    """Connect to /ws like a page of the same origin; `proxy=None` keeps the client off any proxy."""
    kwargs.setdefault("origin", server.origin)
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("compression", None)
    return connect(server.ws_url(), **kwargs)


async def receive_message(websocket, timeout: float = RECEIVE_TIMEOUT) -> dict:
    return json.loads(await asyncio.wait_for(websocket.recv(), timeout))


async def receive_until(websocket, predicate, timeout: float = RECEIVE_TIMEOUT) -> list[dict]:
    """Receive messages until one satisfies `predicate`; return all of them, that one last."""
    received = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"no matching message within {timeout} s; got {[m.get('type') for m in received]}")
        message = await receive_message(websocket, remaining)
        received.append(message)
        if predicate(message):
            return received


def wait_for(condition, timeout: float = RECEIVE_TIMEOUT, interval: float = 0.01) -> None:
    """Poll `condition` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)

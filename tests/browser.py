"""Helpers for browser tests: the real serving stack in a thread, restartable on the same port,
and a headless Chromium from the system packages."""

from __future__ import annotations

import socket
import threading

import uvicorn

from dashapp.model import ProbeResult
from dashapp.push import PushHub
from dashapp.server import create_asgi_app
from live_server import wait_started

START_TIMEOUT = 10.0

# Playwright's own browser download is not available here: use Debian's chromium.
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServingThread:
    """Serve a Dash app and a push hub for `store` under uvicorn, stoppable and restartable.

    Each start builds a new hub and ASGI app around the same Dash app and binds the same port,
    as a restarted monitor process would.
    """

    def __init__(self, dash_app, store, port: int | None = None, heartbeat_interval: float = 5.0):
        self.dash_app = dash_app
        self.store = store
        self.port = port or free_port()
        self.heartbeat_interval = heartbeat_interval
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "ServingThread":
        hub = PushHub(self.store, metrics_interval=self.heartbeat_interval)
        app = create_asgi_app(self.dash_app, hub)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(app, lifespan="on", ws="websockets-sansio", log_config=None,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="browser-test-uvicorn", daemon=True)
        self._thread.start()

        wait_started(self._server, self._thread)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT)
        self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None


def fail(store, name: str, failure, reason: str) -> None:
    store.record(name, ProbeResult.failed(failure, reason, latency_ms=3.0))


def succeed(store, name: str, latency_ms: float = 1.5, details: dict | None = None) -> None:
    store.record(name, ProbeResult.success(latency_ms, details or {}))

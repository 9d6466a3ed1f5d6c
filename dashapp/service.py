"""Wiring of the running service: configuration, store, scheduler, pages and push hub.

`app.py` only parses arguments and calls `run`; tests and benchmarks build the same Service
in-process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

from dashapp.config import Config, ConfigError, load_config
from dashapp.scheduler import Monitor
from dashapp.store.base import StateStore
from dashapp.store.memory import MemoryStateStore

log = logging.getLogger(__name__)

DEFAULT_PORT = 5001
DEFAULT_HOST = "127.0.0.1"
RELOAD_CHECK_S = 2.0


@dataclass
class Settings:
    """How to serve: from command-line options, else DBMON_* environment variables, else defaults."""

    config_path: str = "instances.toml"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path_prefix: str = "/"
    allowed_origins: tuple[str, ...] = ()
    reload: bool = True

    @classmethod
    def from_environment(cls, environ=os.environ) -> "Settings":
        origins = environ.get("DBMON_ALLOWED_ORIGINS", "")
        return cls(
            config_path=environ.get("DBMON_CONFIG", "instances.toml"),
            host=environ.get("DBMON_HOST", DEFAULT_HOST),
            port=int(environ.get("DBMON_PORT", DEFAULT_PORT)),
            path_prefix=normalize_prefix(environ.get("DBMON_PATH_PREFIX", "/")),
            allowed_origins=tuple(origin.strip() for origin in origins.split(",") if origin.strip()),
        )


def normalize_prefix(prefix: str) -> str:
    """Turn "monitor", "/monitor" or "/monitor/" into "/monitor/", the form Dash expects."""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}/" if stripped else "/"


class ConfigWatcher:
    """Reload the configuration when its file changes; keep the last good one when an edit is invalid."""

    def __init__(self, path: str, monitor: Monitor, current: Config, period: float = RELOAD_CHECK_S):
        self._path = path
        self._monitor = monitor
        self._current = current
        self._period = period
        self._stamp = self._read_stamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="config-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check_once(self) -> bool:
        """Reload if the file changed since the last check; return whether a new configuration applies."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            config = load_config(self._path)
        except ConfigError as error:
            log.warning("configuration %s is invalid; keeping the previous one (%d instances) until "
                        "it is fixed:\n%s", self._path, len(self._current.instances), "\n".join(error.problems))
            return False
        self._current = config
        self._monitor.reload(config.instances)
        log.info("configuration %s reloaded: %d instances", self._path, len(config.instances))
        return True

    def _read_stamp(self) -> tuple[float, int] | None:
        try:
            status = os.stat(self._path)
        except OSError:
            return None
        return (status.st_mtime, status.st_size)

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.check_once()
            except Exception:
                log.exception("configuration watcher failed; it keeps running")


class Service:
    """One monitor process: the scheduler probing into the store, and the pages reading from it."""

    def __init__(self, config: Config, settings: Settings, store: StateStore | None = None,
                 monitor: Monitor | None = None):
        self.config = config
        self.settings = settings
        self.store = store or MemoryStateStore()
        self.monitor = monitor or Monitor(self.store)
        self.watcher = ConfigWatcher(config.path, self.monitor, config) if settings.reload else None

    def start(self) -> None:
        self.monitor.start(self.config.instances)
        if self.watcher:
            self.watcher.start()

    def stop(self) -> None:
        if self.watcher:
            self.watcher.stop()
        self.monitor.stop()

    def build_asgi_app(self):
        """Build the one ASGI app that serves the pages and the WebSocket, and runs the scheduler."""
        from dashapp.push import PushHub
        from dashapp.server import create_asgi_app
        from dashapp.ui import create_dash_app

        dash_app = create_dash_app(self.store, requests_pathname_prefix=self.settings.path_prefix)
        hub = PushHub(self.store)
        return create_asgi_app(dash_app, hub, allowed_origins=list(self.settings.allowed_origins) or None,
                               on_startup=self.start, on_shutdown=self.stop)


def run(settings: Settings) -> int:
    """Load the configuration and serve until interrupted; return the process exit code."""
    from dashapp.server import run as serve

    try:
        config = load_config(settings.config_path)
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return 2
    problem = _check_port(settings.host, settings.port)
    if problem:
        log.error("cannot start: %s", problem)
        return 2
    service = Service(config, settings)
    log.info("serving on http://%s:%d%s (configuration %s, %d instances)", settings.host, settings.port,
             settings.path_prefix, config.path, len(config.instances))
    # A reverse proxy strips the path prefix; Dash alone needs it, to build the URLs the browser requests.
    serve(service.build_asgi_app(), settings.host, settings.port)
    return 0


def _check_port(host: str, port: int) -> str | None:
    """Return why the server could not listen on host:port, or None if it can.

    uvicorn reports a taken port only after the scheduler has started probing, with an exit code
    that explains nothing, so checking first gives the operator the fix.
    """
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as error:
        return (f"cannot listen on {host}:{port} ({error.strerror}); "
                f"stop the program that uses it, or choose another port with --port or DBMON_PORT")

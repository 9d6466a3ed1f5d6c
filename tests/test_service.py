"""The running service: configuration reloads keep the last good file when an edit is invalid."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dashapp.config import load_config
from dashapp.model import Status
from dashapp.service import Service, Settings, normalize_prefix
from tests import servers

GOOD = """
[defaults]
interval = 1
timeout = 2

[[instances]]
name = "缓存·会话"
type = "redis"
host = "127.0.0.1"
port = 6379
"""

ADDED = GOOD + """
[[instances]]
name = "报表库 🐘"
type = "postgresql"
host = "127.0.0.1"
port = 5432
user = "postgres"
"""

INVALID = GOOD + """
[[instances]]
name = "坏的"
type = "redis"
host = "127.0.0.1"
port = 99999
"""


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    # A new mtime even when two writes fall in the same clock tick.
    stamp = path.stat().st_mtime + 1 + len(text) % 7
    os.utime(path, (stamp, stamp))


@pytest.fixture
def service(tmp_path):
    path = tmp_path / "instances.toml"
    write(path, GOOD)
    running = Service(load_config(str(path)), Settings(config_path=str(path), reload=False))
    running.start()
    yield running, path
    running.stop()


def names(store):
    return [state.name for state in store.snapshot()]


def test_invalid_edit_keeps_last_good_config(service, caplog):
    running, path = service
    servers.wait_until(lambda: running.store.get("缓存·会话").status == Status.RUNNING, 10, "first probe")
    watcher = _watcher(running)

    write(path, INVALID)
    with caplog.at_level(logging.WARNING, logger="dashapp.service"):
        assert watcher.check_once() is False
    assert names(running.store) == ["缓存·会话"]
    assert running.store.get("缓存·会话").status == Status.RUNNING
    assert "port = 99999" in caplog.text
    assert "keeping the previous one" in caplog.text


def test_valid_edit_adds_instance(service):
    running, path = service
    watcher = _watcher(running)
    write(path, ADDED)
    assert watcher.check_once() is True
    assert names(running.store) == ["缓存·会话", "报表库 🐘"]
    servers.wait_until(lambda: running.store.get("报表库 🐘").status == Status.RUNNING, 10, "added probe")


def test_unchanged_file_is_not_reloaded(service):
    running, _ = service
    assert _watcher(running).check_once() is False


def _watcher(running):
    from dashapp.service import ConfigWatcher
    return ConfigWatcher(running.config.path, running.monitor, running.config)


@pytest.mark.parametrize("raw, expected", [("", "/"), ("/", "/"), ("monitor", "/monitor/"),
                                           ("/monitor/", "/monitor/"), ("/a/b", "/a/b/")])
def test_path_prefix_is_normalized(raw, expected):
    assert normalize_prefix(raw) == expected


def test_taken_port_is_reported_before_start(tmp_path, caplog):
    import socket

    from dashapp.service import run

    path = tmp_path / "instances.toml"
    write(path, GOOD)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="dashapp.service"):
            code = run(Settings(config_path=str(path), port=port))
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    assert "--port" in caplog.text

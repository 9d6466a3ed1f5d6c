"""ExitWatch: idle kept sockets that turn readable are reported once, by one thread."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from dashapp.exitwatch import ExitWatch
from dashapp.probes import create_probe

import servers

WAIT_S = 10.0


class Recorder:
    """Collects on_readable calls from the watch thread."""

    def __init__(self, fail_for: str | None = None):
        self.names: list[str] = []
        self._lock = threading.Lock()
        self._fail_for = fail_for

    def __call__(self, name: str) -> None:
        with self._lock:
            self.names.append(name)
        if name == self._fail_for:
            raise RuntimeError(f"callback failed for {name}")

    def seen(self, name: str) -> bool:
        with self._lock:
            return name in self.names


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def exit_watch(recorder):
    watch = ExitWatch(recorder)
    watch.start()
    yield watch
    watch.stop()


@pytest.fixture
def socket_pairs():
    pairs = []

    def make():
        pair = socket.socketpair()
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        for end in pair:
            end.close()


def test_killed_redis_fires_on_readable(make_instance, redis_server, exit_watch, recorder):
    probe = create_probe(make_instance("redis", port=redis_server.port))
    assert probe.check().ok
    exit_watch.watch("cache", probe.idle_fileno())
    redis_server.kill()
    servers.wait_until(lambda: recorder.seen("cache"), WAIT_S, "on_readable for the killed redis")
    probe.close()
    assert exit_watch.watched() == []


def test_killed_mariadb_fires_on_readable(make_instance, mariadb_server, exit_watch, recorder):
    probe = create_probe(make_instance("mysql", port=mariadb_server.port, user="root"))
    assert probe.check().ok
    exit_watch.watch("orders", probe.idle_fileno())
    mariadb_server.kill()
    servers.wait_until(lambda: recorder.seen("orders"), WAIT_S, "on_readable for the killed mariadbd")
    probe.close()
    assert exit_watch.watched() == []


def test_closed_peer_fires_once(exit_watch, recorder, socket_pairs):
    kept, peer = socket_pairs()
    exit_watch.watch("a", kept.fileno())
    peer.close()
    servers.wait_until(lambda: recorder.seen("a"), WAIT_S, "on_readable for a")
    # A second readable socket, reported after the first, shows the loop went on past it.
    later, later_peer = socket_pairs()
    exit_watch.watch("b", later.fileno())
    later_peer.close()
    servers.wait_until(lambda: recorder.seen("b"), WAIT_S, "on_readable for b")
    assert recorder.names.count("a") == 1


def test_unwatched_socket_does_not_fire(exit_watch, recorder, socket_pairs):
    kept, peer = socket_pairs()
    exit_watch.watch("a", kept.fileno())
    exit_watch.unwatch("a")
    peer.close()
    # Commands are applied in order, so once b fires the unwatch of a was applied before it.
    later, later_peer = socket_pairs()
    exit_watch.watch("b", later.fileno())
    later_peer.close()
    servers.wait_until(lambda: recorder.seen("b"), WAIT_S, "on_readable for b")
    assert not recorder.seen("a")


def test_watch_replaces_previous_socket(exit_watch, recorder, socket_pairs):
    old, old_peer = socket_pairs()
    new, new_peer = socket_pairs()
    exit_watch.watch("a", old.fileno())
    exit_watch.watch("a", new.fileno())
    old_peer.close()
    other, other_peer = socket_pairs()
    exit_watch.watch("b", other.fileno())
    other_peer.close()
    servers.wait_until(lambda: recorder.seen("b"), WAIT_S, "on_readable for b")
    assert not recorder.seen("a")
    new_peer.close()
    servers.wait_until(lambda: recorder.seen("a"), WAIT_S, "on_readable for the new socket of a")


def test_callback_error_keeps_loop_running(socket_pairs, caplog):
    recorder = Recorder(fail_for="a")
    watch = ExitWatch(recorder)
    watch.start()
    try:
        first, first_peer = socket_pairs()
        watch.watch("a", first.fileno())
        first_peer.close()
        servers.wait_until(lambda: recorder.seen("a"), WAIT_S, "on_readable for a")
        second, second_peer = socket_pairs()
        watch.watch("b", second.fileno())
        second_peer.close()
        servers.wait_until(lambda: recorder.seen("b"), WAIT_S, "on_readable for b")
    finally:
        watch.stop()
    errors = [record for record in caplog.records
              if record.name == "dashapp.exitwatch" and record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_one_thread_watches_many_sockets(exit_watch, socket_pairs):
    for number in range(20):
        kept, _peer = socket_pairs()
        exit_watch.watch(f"instance-{number}", kept.fileno())
    threads = [thread for thread in threading.enumerate() if thread.name == "exit-watch"]
    assert len(threads) == 1
    assert len(exit_watch.watched()) == 20


def test_watch_before_start_is_applied(recorder, socket_pairs):
    watch = ExitWatch(recorder)
    kept, peer = socket_pairs()
    watch.watch("a", kept.fileno())
    peer.close()
    watch.start()
    try:
        servers.wait_until(lambda: recorder.seen("a"), WAIT_S, "on_readable for a")
    finally:
        watch.stop()


def test_stop_ends_the_thread(recorder):
    watch = ExitWatch(recorder)
    watch.start()
    watch.stop()
    assert not any(thread.name == "exit-watch" for thread in threading.enumerate())

"""ProbeLoop: quick checks on kept connections of real servers, and the exit watch, on one thread."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import pytest
import redis

from dashapp.model import FailureKind
from dashapp.probeloop import ProbeLoop
from dashapp.probes import create_probe

import servers
from conftest import THROWAWAY_POSTGRES_PASSWORD

WAIT_S = 10.0
DATABASE_TYPES = ("mysql", "redis", "postgresql")


class Owner:
    """What the monitor hands the loop for one instance: a name and a probe."""

    def __init__(self, name: str, probe):
        self.name = name
        self.probe = probe


class SocketProbe:
    """A probe stand-in whose kept connection is one end of a socket pair; it has no quick check."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def idle_fileno(self):
        return self.sock.fileno()


class Recorder:
    """Collects on_done and on_exit calls from the loop thread."""

    def __init__(self, fail_for: str | None = None):
        self.results: dict[str, list] = {}
        self.exits: list[str] = []
        self._lock = threading.Lock()
        self._fail_for = fail_for

    def on_done(self, owner, result) -> None:
        with self._lock:
            self.results.setdefault(owner.name, []).append(result)

    def on_exit(self, owner) -> None:
        with self._lock:
            self.exits.append(owner.name)
        if owner.name == self._fail_for:
            raise RuntimeError(f"callback failed for {owner.name}")

    def exited(self, name: str) -> bool:
        with self._lock:
            return name in self.exits

    def result(self, name: str):
        """Wait for the first outcome reported for `name` and return it (None: full check needed)."""
        servers.wait_until(lambda: name in self.results, WAIT_S, f"the quick check of {name}")
        with self._lock:
            return self.results[name][0]


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def loop(recorder):
    running = ProbeLoop(recorder.on_done, recorder.on_exit)
    running.start()
    yield running
    running.stop()


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


def checked_probe(instance):
    """Return a probe after one full check, so that it keeps a connection with fresh details."""
    probe = create_probe(instance)
    assert probe.check().ok
    return probe


def run_quick_checks(loop, recorder, owner, count: int) -> None:
    """Run `count` quick checks of `owner` one after another; each must succeed on the loop."""
    started = loop.quick_checks
    for _ in range(count):
        recorder.results.clear()
        loop.check(owner)
        assert recorder.result(owner.name).ok
    assert loop.quick_checks == started + count


# Quick checks on the shared servers

@pytest.mark.parametrize("probe_type", DATABASE_TYPES)
def test_quick_check_of_a_kept_connection(make_instance, loop, recorder, probe_type):
    probe = checked_probe(make_instance(probe_type, name=f"订单-{probe_type}"))
    try:
        owner = Owner(probe.instance.name, probe)
        loop.check(owner)
        result = recorder.result(owner.name)
        assert result is not None and result.ok, result
        assert result.details["version"], result.details
        assert loop.quick_checks == 1
        assert loop.handed_off == 0
        # The connection is idle again and watched for the server's exit.
        servers.wait_until(lambda: owner.name in loop.watched(), WAIT_S, "the socket to be watched")
        # The driver still works on the connection after the loop's command.
        assert probe.check().ok
    finally:
        probe.close()


def test_quick_redis_ping_over_tls(make_instance, loop, recorder, tls_redis, tls_files):
    probe = checked_probe(make_instance("redis", port=tls_redis.port, tls=True, ca_file=str(tls_files["ca"])))
    try:
        owner = Owner(probe.instance.name, probe)
        run_quick_checks(loop, recorder, owner, 3)
        assert probe.check().ok
    finally:
        probe.close()


@pytest.mark.parametrize("ssl_mode", ["verify-full", "prefer"])
def test_quick_mysql_ping_over_tls(mariadb_datadir, make_instance, loop, recorder, tls_files, ssl_mode):
    with servers.MariaDBServer(mariadb_datadir, f"--ssl-cert={tls_files['cert']}",
                               f"--ssl-key={tls_files['key']}", f"--ssl-ca={tls_files['ca']}") as server:
        probe = checked_probe(make_instance("mysql", port=server.port, user="root", database=None,
                                            ssl_mode=ssl_mode, ca_file=str(tls_files["ca"])))
        try:
            assert isinstance(probe._connection._sock, ssl.SSLSocket)
            owner = Owner(probe.instance.name, probe)
            run_quick_checks(loop, recorder, owner, 3)
            # PyMySQL still reads the connection correctly after the loop's pings over TLS.
            with probe._connection.cursor() as cursor:
                cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                assert cursor.fetchone()[1]
            assert server.aborted_clients() == 0
        finally:
            probe.close()


def test_quick_postgresql_query_over_tls(postgres_datadir, make_instance, loop, recorder, tls_files):
    with servers.PostgresServer(postgres_datadir, tls_files=tls_files) as server:
        probe = checked_probe(make_instance("postgresql", port=server.port, user="postgres",
                                            password=THROWAWAY_POSTGRES_PASSWORD, database="postgres",
                                            ssl_mode="verify-full", ca_file=str(tls_files["ca"])))
        try:
            assert probe._pgconn.ssl_in_use
            owner = Owner(probe.instance.name, probe)
            run_quick_checks(loop, recorder, owner, 3)
            assert probe.check().ok
        finally:
            probe.close()


def test_stale_details_need_a_full_check(make_instance, loop, recorder, monkeypatch):
    probe = checked_probe(make_instance("mysql"))
    try:
        # Details older than their refresh period need a full check, which the loop hands back.
        monkeypatch.setattr(probe, "_details_at", probe._details_at - 3600)
        owner = Owner(probe.instance.name, probe)
        loop.check(owner)
        assert recorder.result(owner.name) is None
        assert loop.handed_off == 1
        assert owner.name not in loop.watched()
    finally:
        probe.close()


def test_probe_without_connection_is_handed_back(make_instance, loop, recorder):
    probe = create_probe(make_instance("redis"))
    owner = Owner(probe.instance.name, probe)
    loop.check(owner)
    assert recorder.result(owner.name) is None
    probe.close()


def test_tcp_quick_check_opens_and_closes(make_instance, loop, recorder, refusing_port):
    up = Owner("tcp-up", create_probe(make_instance("tcp", port=6379)))
    down = Owner("tcp-down", create_probe(make_instance("tcp", port=refusing_port.port)))
    loop.check(up)
    loop.check(down)
    assert recorder.result("tcp-up").ok
    refused = recorder.result("tcp-down")
    # A TCP check is one connect, so its failure is the result, not a hand-back.
    assert refused is not None and not refused.ok
    assert refused.failure == FailureKind.REFUSED
    assert loop.watched() == []


def test_tcp_with_a_host_name_is_handed_back(make_instance, loop, recorder):
    owner = Owner("tcp-name", create_probe(make_instance("tcp", port=6379, host="localhost")))
    loop.check(owner)
    assert recorder.result("tcp-name") is None


# Failures of a kept connection

def test_killed_connection_hands_back_for_a_reconnect(make_instance, loop, recorder):
    probe = checked_probe(make_instance("redis", name="缓存-被踢"))
    try:
        admin = redis.Redis(host=servers.LOOPBACK, port=6379)
        killed = admin.client_kill_filter(laddr=None, _id=None, user=None, skipme=True,
                                          _type=None, addr=_local_address(probe))
        admin.close()
        assert killed == 1
        owner = Owner(probe.instance.name, probe)
        loop.check(owner)
        assert recorder.result(owner.name) is None
        # The broken connection is dropped, so the full check connects anew and succeeds.
        assert not probe._connected()
        assert probe.check().ok
    finally:
        probe.close()


def _local_address(probe) -> str:
    host, port = probe._connection._sock.getsockname()[:2]
    return f"{host}:{port}"


@pytest.mark.parametrize("server_fixture, probe_type", [("redis_server", "redis"),
                                                        ("mariadb_server", "mysql")])
def test_paused_server_times_out_in_the_loop(request, make_instance, loop, recorder, server_fixture, probe_type):
    server = request.getfixturevalue(server_fixture)
    probe = checked_probe(make_instance(probe_type, port=server.port, user="root" if probe_type == "mysql" else None,
                                        database=None, timeout=1.0))
    owner = Owner(probe.instance.name, probe)
    server.pause()
    try:
        started = time.monotonic()
        loop.check(owner)
        result = recorder.result(owner.name)
        elapsed = time.monotonic() - started
        assert result is not None and result.failure == FailureKind.TIMEOUT, result
        assert 0.9 <= elapsed < 3.0, elapsed
        assert not probe._connected()
    finally:
        server.resume()
        probe.close()


def test_forget_aborts_a_check_in_flight(redis_server, make_instance, loop, recorder):
    probe = checked_probe(make_instance("redis", port=redis_server.port, timeout=30))
    owner = Owner(probe.instance.name, probe)
    redis_server.pause()
    try:
        loop.check(owner)
        servers.wait_until(lambda: loop.quick_checks == 1, WAIT_S, "the quick check to start")
        loop.forget(owner)
        started = time.monotonic()
        # close() waits for the probe's lock, which the aborted check released.
        probe.close()
        assert time.monotonic() - started < 5
        assert owner.name not in recorder.results
    finally:
        redis_server.resume()


def test_quick_mysql_ping_does_not_abort_clients(mariadb_server, make_instance, loop, recorder):
    before = mariadb_server.aborted_clients()
    probe = checked_probe(make_instance("mysql", port=mariadb_server.port, user="root", database=None))
    owner = Owner(probe.instance.name, probe)
    run_quick_checks(loop, recorder, owner, 3)
    probe.close()
    assert mariadb_server.aborted_clients() == before


# The exit watch

def test_killed_redis_is_reported(make_instance, redis_server, loop, recorder):
    probe = checked_probe(make_instance("redis", port=redis_server.port))
    loop.watch(Owner("cache", probe))
    servers.wait_until(lambda: "cache" in loop.watched(), WAIT_S, "the watch")
    redis_server.kill()
    servers.wait_until(lambda: recorder.exited("cache"), WAIT_S, "on_exit for the killed redis")
    probe.close()
    assert loop.watched() == []


def test_killed_mariadb_is_reported(make_instance, mariadb_server, loop, recorder):
    probe = checked_probe(make_instance("mysql", port=mariadb_server.port, user="root", database=None))
    owner = Owner("orders", probe)
    # After a quick check the same registration watches the idle socket again.
    loop.check(owner)
    assert recorder.result("orders").ok
    mariadb_server.kill()
    servers.wait_until(lambda: recorder.exited("orders"), WAIT_S, "on_exit for the killed mariadbd")
    probe.close()


def test_closed_peer_is_reported_once(loop, recorder, socket_pairs):
    kept, peer = socket_pairs()
    loop.watch(Owner("a", SocketProbe(kept)))
    peer.close()
    servers.wait_until(lambda: recorder.exited("a"), WAIT_S, "on_exit for a")
    # A second readable socket, reported after the first, shows the loop went on past it.
    later, later_peer = socket_pairs()
    loop.watch(Owner("b", SocketProbe(later)))
    later_peer.close()
    servers.wait_until(lambda: recorder.exited("b"), WAIT_S, "on_exit for b")
    assert recorder.exits.count("a") == 1


def test_forgotten_socket_is_not_reported(loop, recorder, socket_pairs):
    kept, peer = socket_pairs()
    owner = Owner("a", SocketProbe(kept))
    loop.watch(owner)
    loop.forget(owner)
    peer.close()
    # Commands are applied in order, so once b is reported the forget of a was applied before it.
    later, later_peer = socket_pairs()
    loop.watch(Owner("b", SocketProbe(later)))
    later_peer.close()
    servers.wait_until(lambda: recorder.exited("b"), WAIT_S, "on_exit for b")
    assert not recorder.exited("a")


def test_new_owner_of_a_name_replaces_the_old(loop, recorder, socket_pairs):
    old, old_peer = socket_pairs()
    new, new_peer = socket_pairs()
    loop.watch(Owner("a", SocketProbe(old)))
    loop.watch(Owner("a", SocketProbe(new)))
    old_peer.close()
    other, other_peer = socket_pairs()
    loop.watch(Owner("b", SocketProbe(other)))
    other_peer.close()
    servers.wait_until(lambda: recorder.exited("b"), WAIT_S, "on_exit for b")
    assert not recorder.exited("a")
    new_peer.close()
    servers.wait_until(lambda: recorder.exited("a"), WAIT_S, "on_exit for the new socket of a")


def test_callback_error_keeps_loop_running(socket_pairs, caplog):
    recorder = Recorder(fail_for="a")
    loop = ProbeLoop(recorder.on_done, recorder.on_exit)
    loop.start()
    try:
        first, first_peer = socket_pairs()
        loop.watch(Owner("a", SocketProbe(first)))
        first_peer.close()
        servers.wait_until(lambda: recorder.exited("a"), WAIT_S, "on_exit for a")
        second, second_peer = socket_pairs()
        loop.watch(Owner("b", SocketProbe(second)))
        second_peer.close()
        servers.wait_until(lambda: recorder.exited("b"), WAIT_S, "on_exit for b")
    finally:
        loop.stop()
    errors = [record for record in caplog.records
              if record.name == "dashapp.probeloop" and record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_one_thread_serves_many_sockets(loop, socket_pairs):
    for number in range(20):
        kept, _peer = socket_pairs()
        loop.watch(Owner(f"instance-{number}", SocketProbe(kept)))
    servers.wait_until(lambda: len(loop.watched()) == 20, WAIT_S, "20 watched sockets")
    assert len([thread for thread in threading.enumerate() if thread.name == "probe-loop"]) == 1


def test_commands_before_start_are_applied(recorder, socket_pairs):
    loop = ProbeLoop(recorder.on_done, recorder.on_exit)
    kept, peer = socket_pairs()
    loop.watch(Owner("a", SocketProbe(kept)))
    peer.close()
    loop.start()
    try:
        servers.wait_until(lambda: recorder.exited("a"), WAIT_S, "on_exit for a")
    finally:
        loop.stop()


def test_stop_ends_the_thread(recorder):
    loop = ProbeLoop(recorder.on_done, recorder.on_exit)
    loop.start()
    loop.stop()
    assert not any(thread.name == "probe-loop" for thread in threading.enumerate())

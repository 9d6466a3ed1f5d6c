"""Probes against real servers: the shared ones, throwaway ones, and silent or refusing ports."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis

from dashapp.model import FailureKind
from dashapp.probes import create_probe
from dashapp.probes.base import Deadline, resolve
from dashapp.probes.errors import ResolveError

import servers
from conftest import THROWAWAY_POSTGRES_PASSWORD

TYPES = ["mysql", "redis", "postgresql", "tcp"]
DATABASE_TYPES = ["mysql", "redis", "postgresql"]
DETAIL_KEYS = {
    "mysql": {"version", "uptime_s", "threads_connected", "read_only", "replica"},
    "redis": {"version", "uptime_s", "role", "connected_clients", "used_memory"},
    "postgresql": {"version", "uptime_s", "in_recovery", "connections"},
    "tcp": set(),
}
# A "did not hang" bound: the probe's timeout plus scheduling slack on a busy 2-core machine.
HANG_SLACK_S = 1.5


def timed_check(probe):
    started = time.monotonic()
    result = probe.check()
    return result, time.monotonic() - started


@pytest.fixture
def shared_redis_acl_user(unique_name):
    """Create an ACL user on the shared Redis with the given rules; delete it afterwards."""
    created = []
    admin = redis.Redis(host=servers.LOOPBACK, port=6379)

    def create(*rules: str) -> str:
        name = unique_name("dashapp_test")
        admin.acl_setuser(name, reset=True)  # start from nothing, then apply the raw rules
        admin.execute_command("ACL", "SETUSER", name, *rules)
        created.append(name)
        return name

    yield create
    for name in created:
        admin.acl_deluser(name)
    admin.close()


@pytest.mark.parametrize("probe_type", TYPES)
def test_probe_of_shared_server_runs(make_instance, probe_type):
    probe = create_probe(make_instance(probe_type))
    try:
        result = probe.check()
    finally:
        probe.close()
    assert result.ok, result.reason
    assert set(result.details) == DETAIL_KEYS[probe_type]
    assert result.latency_ms is not None


@pytest.mark.parametrize("probe_type", DATABASE_TYPES)
def test_probe_details_are_read(make_instance, probe_type):
    probe = create_probe(make_instance(probe_type))
    try:
        details = probe.check().details
    finally:
        probe.close()
    assert details["version"]
    assert isinstance(details["uptime_s"], int)


@pytest.mark.parametrize("probe_type", DATABASE_TYPES)
def test_kept_connection_is_reused(make_instance, probe_type):
    probe = create_probe(make_instance(probe_type))
    try:
        probe.check()
        first = probe.idle_fileno()
        second_result = probe.check()
        second = probe.idle_fileno()
    finally:
        probe.close()
    assert second_result.ok, second_result.reason
    assert first is not None
    assert second == first


def test_tcp_probe_keeps_no_connection(make_instance):
    probe = create_probe(make_instance("tcp"))
    probe.check()
    assert probe.idle_fileno() is None


@pytest.mark.parametrize("probe_type", DATABASE_TYPES)
def test_closed_probe_reconnects_on_next_check(make_instance, probe_type):
    probe = create_probe(make_instance(probe_type))
    probe.check()
    probe.close()
    probe.close()  # idempotent
    assert probe.idle_fileno() is None
    result = probe.check()
    probe.close()
    assert result.ok, result.reason


@pytest.mark.parametrize("probe_type", TYPES)
def test_refused_port_is_refused(make_instance, refusing_port, probe_type):
    result = create_probe(make_instance(probe_type, port=refusing_port.port)).check()
    assert not result.ok
    assert result.failure == FailureKind.REFUSED


@pytest.mark.parametrize("probe_type", TYPES)
def test_unresolvable_host_is_dns(make_instance, probe_type):
    instance = make_instance(probe_type, port=1, host="no-such-host.invalid")
    result = create_probe(instance).check()
    assert result.failure == FailureKind.DNS
    assert "no-such-host.invalid" in result.reason


@pytest.mark.parametrize("probe_type", DATABASE_TYPES)
def test_silent_listener_times_out(make_instance, silent_listener, probe_type):
    probe = create_probe(make_instance(probe_type, port=silent_listener.port, timeout=2.0))
    result, elapsed = timed_check(probe)
    assert result.failure == FailureKind.TIMEOUT
    assert elapsed < 2.0 + HANG_SLACK_S


def test_unanswered_tcp_connect_times_out(make_instance, full_backlog_listener):
    probe = create_probe(make_instance("tcp", port=full_backlog_listener.port, timeout=2.0))
    result, elapsed = timed_check(probe)
    assert result.failure == FailureKind.TIMEOUT
    assert elapsed < 2.0 + HANG_SLACK_S


def test_slow_dns_lookup_is_bounded(monkeypatch):
    # Only the resolver is replaced: no DNS server here can be made slow on demand.
    release = threading.Event()

    def hanging_getaddrinfo(*args, **kwargs):
        release.wait(30)
        raise OSError("released")

    monkeypatch.setattr("dashapp.probes.base.socket.getaddrinfo", hanging_getaddrinfo)
    started = time.monotonic()
    try:
        with pytest.raises(ResolveError):
            resolve("slow.example.invalid", 5432, Deadline(0.5))
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert elapsed < 0.5 + HANG_SLACK_S


def test_mysql_wrong_password_is_authentication(make_instance, shared_mysql_user):
    user = shared_mysql_user("right-Password-1")
    result = create_probe(make_instance("mysql", user=user, password="wrong-Password-1")).check()
    assert result.failure == FailureKind.AUTHENTICATION
    assert user in result.reason


def test_redis_wrong_password_is_authentication(make_instance, shared_redis_acl_user):
    user = shared_redis_acl_user("on", ">right-Password-1", "+ping")
    result = create_probe(make_instance("redis", user=user, password="wrong-Password-1")).check()
    assert result.failure == FailureKind.AUTHENTICATION


def test_postgresql_wrong_password_is_authentication(make_instance, postgres_server):
    instance = make_instance("postgresql", port=postgres_server.port, user="postgres",
                             password="wrong-Password-1", database="postgres")
    result = create_probe(instance).check()
    assert result.failure == FailureKind.AUTHENTICATION
    assert "postgres" in result.reason


def test_postgresql_password_login_runs(make_instance, postgres_server):
    instance = make_instance("postgresql", port=postgres_server.port, user="postgres",
                             password=THROWAWAY_POSTGRES_PASSWORD, database="postgres")
    probe = create_probe(instance)
    result = probe.check()
    probe.close()
    assert result.ok, result.reason


def test_redis_requirepass_with_url_characters_runs(make_instance):
    password = "req@pass:/#1"
    with servers.RedisServer("--requirepass", password) as server:
        probe = create_probe(make_instance("redis", port=server.port, password=password))
        result = probe.check()
        probe.close()
    assert result.ok, result.reason


def test_redis_requirepass_without_password_is_authentication(make_instance):
    with servers.RedisServer("--requirepass", "req@pass:/#1") as server:
        result = create_probe(make_instance("redis", port=server.port)).check()
    assert result.failure == FailureKind.AUTHENTICATION


def test_redis_acl_user_with_url_characters_runs(make_instance, shared_redis_acl_user):
    password = "acl@user:/#pass"
    user = shared_redis_acl_user("on", f">{password}", "+ping", "+info")
    probe = create_probe(make_instance("redis", user=user, password=password))
    result = probe.check()
    probe.close()
    assert result.ok, result.reason
    assert result.details["version"]


@pytest.mark.parametrize("probe_type,database", [
    ("mysql", "no_such_db"),
    ("postgresql", "no_such_db"),
    ("redis", "99999"),
])
def test_unknown_database_is_authentication(make_instance, probe_type, database):
    result = create_probe(make_instance(probe_type, database=database)).check()
    assert result.failure == FailureKind.AUTHENTICATION
    assert database in result.reason


def test_mysql_required_tls_without_server_tls_is_tls(make_instance):
    # The shared MariaDB has TLS disabled (have_ssl = DISABLED).
    result = create_probe(make_instance("mysql", ssl_mode="require")).check()
    assert result.failure == FailureKind.TLS


def test_postgresql_required_tls_without_server_tls_is_tls(make_instance):
    # The shared PostgreSQL runs with ssl = off.
    result = create_probe(make_instance("postgresql", ssl_mode="require")).check()
    assert result.failure == FailureKind.TLS


def test_killed_redis_turns_abnormal(make_instance, redis_server):
    probe = create_probe(make_instance("redis", port=redis_server.port))
    assert probe.check().ok
    redis_server.kill()
    result = probe.check()
    assert not result.ok
    assert result.failure == FailureKind.REFUSED
    redis_server.start()
    recovered = probe.check()
    probe.close()
    assert recovered.ok, recovered.reason


def test_restarted_redis_runs_on_next_check(make_instance, redis_server):
    # The kept connection died with the old process; the check reconnects within its deadline.
    probe = create_probe(make_instance("redis", port=redis_server.port))
    assert probe.check().ok
    redis_server.kill()
    redis_server.start()
    result = probe.check()
    probe.close()
    assert result.ok, result.reason


def test_stopped_mariadb_turns_abnormal(make_instance, mariadb_server):
    probe = create_probe(make_instance("mysql", port=mariadb_server.port, user="root"))
    assert probe.check().ok
    mariadb_server.stop()
    result = probe.check()
    assert not result.ok
    assert result.failure == FailureKind.REFUSED
    mariadb_server.start()
    recovered = probe.check()
    probe.close()
    assert recovered.ok, recovered.reason


def test_paused_mariadb_times_out(make_instance, mariadb_server):
    # A kept connection to a frozen server: COM_PING must give up at the deadline.
    probe = create_probe(make_instance("mysql", port=mariadb_server.port, user="root", timeout=2.0))
    assert probe.check().ok
    mariadb_server.pause()
    try:
        result, elapsed = timed_check(probe)
    finally:
        mariadb_server.resume()
    probe.close()
    assert result.failure == FailureKind.TIMEOUT
    assert elapsed < 2.0 + HANG_SLACK_S


def test_paused_postgresql_times_out(make_instance, postgres_datadir):
    with servers.PostgresServer(postgres_datadir) as server:
        instance = make_instance("postgresql", port=server.port, user="postgres",
                                 password=THROWAWAY_POSTGRES_PASSWORD, database="postgres", timeout=2.0)
        probe = create_probe(instance)
        assert probe.check().ok
        server.pause()
        try:
            result, elapsed = timed_check(probe)
        finally:
            server.resume()
        probe.close()
    assert result.failure == FailureKind.TIMEOUT
    assert elapsed < 2.0 + HANG_SLACK_S


def test_repeated_redis_probes_keep_one_connection(make_instance, redis_server):
    probe = create_probe(make_instance("redis", port=redis_server.port))
    for _ in range(5):
        assert probe.check().ok
    assert redis_server.connection_count() == 1
    probe.close()
    servers.wait_until(lambda: redis_server.connection_count() == 0, 5, "the closed connection to go")


def test_repeated_mysql_probes_keep_one_connection(make_instance, mariadb_server):
    probe = create_probe(make_instance("mysql", port=mariadb_server.port, user="root"))
    for _ in range(5):
        assert probe.check().ok
    assert mariadb_server.connection_count() == 1
    probe.close()
    servers.wait_until(lambda: mariadb_server.connection_count() == 0, 5, "the closed connection to go")


def test_repeated_postgresql_probes_keep_one_connection(make_instance, postgres_server):
    instance = make_instance("postgresql", port=postgres_server.port, user="postgres",
                             password=THROWAWAY_POSTGRES_PASSWORD, database="postgres")
    probe = create_probe(instance)
    for _ in range(5):
        assert probe.check().ok
    assert postgres_server.connection_count() == 1
    probe.close()
    servers.wait_until(lambda: postgres_server.connection_count() == 0, 5, "the closed connection to go")


def test_closed_mysql_probe_is_no_aborted_client(make_instance, mariadb_server):
    before = mariadb_server.aborted_clients()
    probe = create_probe(make_instance("mysql", port=mariadb_server.port, user="root"))
    probe.check()
    probe.close()
    assert mariadb_server.aborted_clients() == before


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("probe_type", DATABASE_TYPES)
def test_failed_probes_leak_no_descriptors(make_instance, silent_listener, refusing_port, probe_type):
    probes = [
        create_probe(make_instance(probe_type, port=silent_listener.port, timeout=0.5)),
        create_probe(make_instance(probe_type, port=refusing_port.port, timeout=0.5)),
        create_probe(make_instance(probe_type, database="no_such_db" if probe_type != "redis" else "99999")),
    ]
    for probe in probes:
        probe.check()  # first failures may open lazily created resources (TLS contexts, threads)
    # The silent listener runs in this process and keeps every connection it accepted open.
    before = open_descriptors() - len(silent_listener.accepted)
    for _ in range(3):
        for probe in probes:
            assert not probe.check().ok
    assert open_descriptors() - len(silent_listener.accepted) == before


def test_unknown_type_is_rejected(make_instance):
    instance = make_instance("tcp")
    with pytest.raises(ValueError):
        create_probe(type(instance)(name="x", type="mongodb", host=servers.LOOPBACK, port=27017))

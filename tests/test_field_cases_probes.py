"""Field cases for the probes: faults that database monitors have shipped with, kept as tests.

C1 silent Redis, C2 stalled MySQL handshake, C7 passwords with URL characters, C9 a Redis
user that may only PING, C11 Redis over TLS with its own CA.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
import redis

from dashapp.model import FailureKind
from dashapp.probes import create_probe

import servers

HANG_SLACK_S = 1.5
C7_REDIS_PASSWORD = "p@ss:/#w?rd%"
C7_MYSQL_PASSWORD = "a%sb@c:/d"


def timed_check(probe):
    started = time.monotonic()
    result = probe.check()
    return result, time.monotonic() - started


@pytest.fixture
def redis_acl_user(unique_name):
    """Create ACL users on the shared Redis; delete them afterwards.

    The cases name the user `mon`; a unique name keeps parallel runs on the shared server apart.
    """
    created = []
    admin = redis.Redis(host=servers.LOOPBACK, port=6379)

    def create(*rules: str) -> str:
        name = unique_name("mon")
        admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
        created.append(name)
        return name

    yield create
    for name in created:
        admin.acl_deluser(name)
    admin.close()


def test_c1_paused_redis_times_out_then_recovers(make_instance, redis_server):
    probe = create_probe(make_instance("redis", port=redis_server.port, timeout=3.0))
    assert probe.check().ok
    assert probe.check().ok

    redis_server.pause()
    try:
        result, elapsed = timed_check(probe)
    finally:
        redis_server.resume()
    assert result.failure == FailureKind.TIMEOUT
    assert elapsed < 3.0 + HANG_SLACK_S

    recovered = probe.check()
    probe.close()
    assert recovered.ok, recovered.reason


def test_c2_stalled_mysql_handshake_times_out(make_instance, silent_listener):
    probe = create_probe(make_instance("mysql", port=silent_listener.port, user="root", timeout=3.0))
    result, elapsed = timed_check(probe)
    assert result.failure == FailureKind.TIMEOUT
    assert "handshake" in result.reason
    assert elapsed < 3.0 + HANG_SLACK_S


def assert_password_hidden(password: str, result, caplog) -> None:
    """Assert that `password` is in no field of the result and in no captured log record."""
    for field in dataclasses.fields(result):
        assert password not in repr(getattr(result, field.name)), field.name
    for record in caplog.records:
        assert password not in record.getMessage(), record.name


def test_c7_redis_acl_password_with_url_characters(make_instance, redis_acl_user, caplog):
    caplog.set_level(logging.DEBUG)
    user = redis_acl_user("on", f">{C7_REDIS_PASSWORD}", "+@all")
    probe = create_probe(make_instance("redis", user=user, password=C7_REDIS_PASSWORD))
    result = probe.check()
    probe.close()
    assert result.ok, result.reason
    assert_password_hidden(C7_REDIS_PASSWORD, result, caplog)


def test_c7_redis_wrong_password_stays_hidden(make_instance, redis_acl_user, caplog):
    caplog.set_level(logging.DEBUG)
    user = redis_acl_user("on", ">another-Password-1", "+@all")
    result = create_probe(make_instance("redis", user=user, password=C7_REDIS_PASSWORD)).check()
    assert result.failure == FailureKind.AUTHENTICATION
    assert_password_hidden(C7_REDIS_PASSWORD, result, caplog)


def test_c7_mysql_password_with_url_characters(make_instance, shared_mysql_user, caplog):
    caplog.set_level(logging.DEBUG)
    user = shared_mysql_user(C7_MYSQL_PASSWORD)
    probe = create_probe(make_instance("mysql", user=user, password=C7_MYSQL_PASSWORD))
    result = probe.check()
    probe.close()
    assert result.ok, result.reason
    assert_password_hidden(C7_MYSQL_PASSWORD, result, caplog)


def test_c7_mysql_wrong_password_stays_hidden(make_instance, shared_mysql_user, caplog):
    caplog.set_level(logging.DEBUG)
    user = shared_mysql_user("another-Password-1")
    result = create_probe(make_instance("mysql", user=user, password=C7_MYSQL_PASSWORD)).check()
    assert result.failure == FailureKind.AUTHENTICATION
    assert_password_hidden(C7_MYSQL_PASSWORD, result, caplog)


def test_c9_ping_only_redis_user_runs(make_instance, redis_acl_user):
    user = redis_acl_user("on", ">MonPass1", "-@all", "+ping")
    probe = create_probe(make_instance("redis", user=user, password="MonPass1"))
    first = probe.check()
    second = probe.check()
    probe.close()
    assert first.ok, first.reason
    assert second.ok, second.reason
    assert set(first.details.values()) == {None}
    assert set(second.details.values()) == {None}


def test_c11_tls_redis_with_ca_file_runs(make_instance, tls_redis, tls_files):
    probe = create_probe(make_instance("redis", port=tls_redis.port, tls=True, ca_file=str(tls_files["ca"])))
    result = probe.check()
    probe.close()
    assert result.ok, result.reason


def test_c11_tls_redis_without_ca_file_is_tls(make_instance, tls_redis):
    result = create_probe(make_instance("redis", port=tls_redis.port, tls=True)).check()
    assert result.failure == FailureKind.TLS
    assert "certificate" in result.reason


def test_c11_plain_probe_of_tls_port_fails_fast(make_instance, tls_redis):
    probe = create_probe(make_instance("redis", port=tls_redis.port, timeout=3.0))
    result, elapsed = timed_check(probe)
    assert not result.ok
    assert result.failure == FailureKind.PROTOCOL
    # Well under the timeout: the server hangs up at once on a plain-text client.
    assert elapsed < 1.5

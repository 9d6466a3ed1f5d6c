"""Shared pytest fixtures. The servers themselves live in tests/servers.py."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path
import uuid

import pymysql
import pytest

from dashapp.config import InstanceConfig
import servers

# The shared development servers (never stopped or reconfigured by tests).
SHARED_PORTS = {"mysql": 3306, "redis": 6379, "postgresql": 5432, "tcp": 6379}
SHARED_USERS = {"mysql": "root", "redis": None, "postgresql": "postgres", "tcp": None}
SHARED_DATABASES = {"mysql": None, "redis": None, "postgresql": "postgres", "tcp": None}

THROWAWAY_POSTGRES_PASSWORD = "throwaway-Pg-1"

_instance_numbers = itertools.count(1)


@pytest.fixture
def make_instance():
    """Return a builder of InstanceConfig on 127.0.0.1 with a unique name and a 3 s timeout."""

    def build(type: str, port: int | None = None, **fields) -> InstanceConfig:
        fields.setdefault("name", f"{type}-{next(_instance_numbers)}")
        fields.setdefault("host", servers.LOOPBACK)
        fields.setdefault("timeout", 3.0)
        if port is None:
            port = SHARED_PORTS[type]
            fields.setdefault("user", SHARED_USERS[type])
            fields.setdefault("database", SHARED_DATABASES[type])
        return InstanceConfig(type=type, port=port, **fields)

    return build


@pytest.fixture
def unique_name():
    """Return a builder of names unique to this test run, for users on the shared servers."""
    return lambda prefix: f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_server():
    with servers.RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_datadir(tmp_path_factory):
    return servers.make_mariadb_datadir(tmp_path_factory.mktemp("mariadb-template"))


@pytest.fixture
def mariadb_server(mariadb_datadir):
    with servers.MariaDBServer(mariadb_datadir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_datadir():
    datadir = servers.make_postgres_datadir(THROWAWAY_POSTGRES_PASSWORD)
    yield datadir
    shutil.rmtree(datadir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server(postgres_datadir):
    """A throwaway PostgreSQL with password logins (the shared one trusts every local login)."""
    with servers.PostgresServer(postgres_datadir) as server:
        yield server


@pytest.fixture
def silent_listener():
    with servers.SilentListener() as listener:
        yield listener


@pytest.fixture
def full_backlog_listener():
    with servers.FullBacklogListener() as listener:
        yield listener


@pytest.fixture
def refusing_port():
    with servers.RefusingPort() as port:
        yield port


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    return servers.make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_redis(tls_files):
    """A throwaway redis-server that listens only for TLS, with the test CA's certificate."""
    with servers.RedisServer("--tls-cert-file", str(tls_files["cert"]), "--tls-key-file", str(tls_files["key"]),
                             "--tls-ca-cert-file", str(tls_files["ca"]), "--tls-auth-clients", "no",
                             tls_port=True) as server:
        yield server


@pytest.fixture
def shared_mysql_user(unique_name):
    """Create a user on the shared MariaDB with a given password; drop it afterwards."""
    created = []
    admin = pymysql.connect(host=servers.LOOPBACK, port=3306, user="root", autocommit=True)

    def create(password: str) -> str:
        name = unique_name("dashapp_test")
        with admin.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        created.append(name)
        return name

    yield create
    with admin.cursor() as cursor:
        for name in created:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (name,))
    admin.close()


@pytest.fixture
def shipped_config(tmp_path) -> Path:
    """Copy the instances.toml that the repository ships into tmp_path and return its path.

    The committed version is used when git has one, so a user who edits the working copy to
    watch their own servers, as the README suggests, does not make these tests fail.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        text = subprocess.run(["git", "show", "HEAD:instances.toml"], cwd=root, capture_output=True,
                              check=True, text=True, encoding="utf-8").stdout
    except (OSError, subprocess.CalledProcessError):
        text = (root / "instances.toml").read_text(encoding="utf-8")
    path = tmp_path / "instances.toml"
    path.write_text(text, encoding="utf-8")
    return path

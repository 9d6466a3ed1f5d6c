"""MySQL and MariaDB probe (PyMySQL): COM_PING decides the status, three light queries add details."""

from __future__ import annotations

import logging

import pymysql
import pymysql.connections

from dashapp.config import InstanceConfig
from dashapp.probes.base import Deadline, Probe, SocketQuickCheck, open_socket, tls_context

log = logging.getLogger(__name__)

# Server error codes are below 2000; PyMySQL's own client errors (connection lost, timed out)
# start at 2000 and mean the connection is unusable.
CLIENT_ERROR_MIN = 2000
SYNTAX_ERROR = 1064
# MariaDB before 10.11 sends "5.5.5-" before its version so that old clients accept it.
MARIADB_VERSION_PREFIX = "5.5.5-"
# SHOW REPLICA STATUS needs MySQL 8.0.22 or MariaDB 10.5.1, and MySQL 8.4 removed SHOW SLAVE STATUS.
REPLICA_STATUS_QUERIES = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
# COM_PING as a packet: payload length 1 (3 bytes, little-endian), sequence id 0, command 0x0e.
COM_PING_PACKET = b"\x01\x00\x00\x00\x0e"
OK_PACKET = 0x00
ERROR_PACKET = 0xFF


class MySQLProbe(Probe):
    def __init__(self, instance: InstanceConfig):
        super().__init__(instance)
        self._connection: pymysql.connections.Connection | None = None
        self._socket_fd: int | None = None
        self._replica_queries = REPLICA_STATUS_QUERIES

    def _connected(self) -> bool:
        return self._connection is not None

    def _fileno(self) -> int | None:
        return self._socket_fd

    def _open(self, deadline: Deadline) -> None:
        instance = self.instance
        sock = open_socket(instance.host, instance.port, deadline)
        deadline.step = "handshake"
        try:
            remaining = deadline.remaining()
            connection = pymysql.connections.Connection(
                host=instance.host,
                port=instance.port,
                user=instance.user,
                password=instance.password or "",
                database=instance.database,
                charset="utf8mb4",
                # connect_timeout covers only the TCP connect, which open_socket did. A silent
                # server kept PyMySQL waiting for its greeting past 12 s until read_timeout was set.
                read_timeout=remaining,
                write_timeout=remaining,
                defer_connect=True,
                **_tls_arguments(instance),
            )
            if _tls_preferred(instance):
                # PyMySQL 1.2 prefers TLS by default but builds a new context per connection
                # (about 16 ms of CPU). These two attributes give its PREFERRED mode the shared one.
                connection.ssl = True
                connection.ctx = tls_context(False, False, None)
            fd = sock.fileno()
            # PyMySQL closes the socket itself when the handshake fails.
            connection.connect(sock)
        except BaseException:
            sock.close()
            raise
        self._connection = connection
        self._socket_fd = fd
        self._replica_queries = REPLICA_STATUS_QUERIES

    def _send_ping(self, deadline_at: float) -> "_QuickPing | None":
        sock = self._connection._sock
        return _QuickPing(sock, deadline_at) if sock is not None else None

    def _ping(self, deadline: Deadline) -> None:
        _bound(self._connection, deadline)
        self._connection.ping(reconnect=False)

    def _query(self, deadline: Deadline) -> dict:
        connection = self._connection
        self._ping(deadline)

        status = self._optional(deadline, "SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime', 'Threads_connected')")
        status = {name.lower(): value for name, value in status or ()}
        read_only = self._optional(deadline, "SELECT @@global.read_only")
        return {
            "version": _version(connection.get_server_info()),
            "uptime_s": _integer(status.get("uptime")),
            "threads_connected": _integer(status.get("threads_connected")),
            "read_only": bool(read_only[0][0]) if read_only else None,
            "replica": self._replica(deadline),
        }

    def _replica(self, deadline: Deadline) -> bool | None:
        """Tell whether replication is configured; None if this user may not see it."""
        while self._replica_queries:
            try:
                rows = self._run(deadline, self._replica_queries[0])
            except pymysql.err.MySQLError as exc:
                if _is_client_error(exc):
                    raise
                if exc.args[0] == SYNTAX_ERROR and len(self._replica_queries) > 1:
                    self._replica_queries = self._replica_queries[1:]
                    continue
                log.debug("probe name=%s replica status unavailable: %s", self.instance.name,
                          exc.args[0])
                return None
            return len(rows) > 0
        return None

    def _optional(self, deadline: Deadline, sql: str) -> tuple | None:
        """Run a details query; return None if the server rejects it (privileges, version)."""
        try:
            return self._run(deadline, sql)
        except pymysql.err.MySQLError as exc:
            if _is_client_error(exc):
                raise
            log.debug("probe name=%s detail query rejected: %s", self.instance.name, exc.args[0])
            return None

    def _run(self, deadline: Deadline, sql: str) -> tuple:
        _bound(self._connection, deadline)
        with self._connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._socket_fd = None
        if connection is None or not connection.open:
            return
        try:
            # close() sends COM_QUIT first, so the server does not count an aborted client.
            connection.close()
        except pymysql.err.Error:
            pass


class _QuickPing(SocketQuickCheck):
    """COM_PING on the kept connection, written and read here rather than through PyMySQL.

    PyMySQL can only wait for a reply by blocking its thread. Between commands it keeps no
    state that a COM_PING would disturb: it resets the sequence id for every command, and a
    whole reply leaves nothing in its read buffer.
    """

    def __init__(self, sock, deadline_at: float):
        super().__init__(sock, COM_PING_PACKET, deadline_at)

    def complete(self) -> bool:
        reply = self.reply
        if len(reply) < 5:
            return False
        length = int.from_bytes(reply[:3], "little")
        if len(reply) < 4 + length:
            return False
        if reply[4] == OK_PACKET:
            return True
        if reply[4] == ERROR_PACKET and len(reply) >= 7:
            code = int.from_bytes(reply[5:7], "little")
            # With CLIENT_PROTOCOL_41 the message follows "#" and a five-character SQL state.
            start = 13 if reply[7:8] == b"#" else 7
            message = bytes(reply[start:4 + length]).decode("utf-8", "replace")
            raise pymysql.err.OperationalError(code, message)
        raise pymysql.err.OperationalError(2027, "malformed reply to COM_PING")


def _bound(connection: pymysql.connections.Connection, deadline: Deadline) -> None:
    """Give the next command the time left before the deadline.

    PyMySQL has no per-call timeout; it applies these two attributes before every packet it
    reads or writes (checked in PyMySQL 1.2.4).
    """
    remaining = deadline.remaining()
    connection._read_timeout = remaining
    connection._write_timeout = remaining


def _tls_arguments(instance: InstanceConfig) -> dict:
    """Return PyMySQL's TLS arguments for the instance's `ssl_mode` (default: prefer).

    `require` encrypts without checking the certificate, unless `ca_file` is set: then the
    chain is checked as with `verify-ca`, which is what libpq does with a root certificate.
    """
    mode = instance.ssl_mode or "prefer"
    if mode in ("disable", "prefer"):
        return {"ssl_disabled": True}
    if mode == "require":
        context = tls_context(instance.ca_file is not None, False, instance.ca_file)
    else:
        context = tls_context(True, mode == "verify-full", instance.ca_file)
    return {"ssl": context}


def _tls_preferred(instance: InstanceConfig) -> bool:
    return (instance.ssl_mode or "prefer") == "prefer"


def _is_client_error(exc: pymysql.err.MySQLError) -> bool:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else CLIENT_ERROR_MIN
    return code >= CLIENT_ERROR_MIN or not isinstance(exc, pymysql.err.DatabaseError)


def _version(server_info: str | None) -> str | None:
    if server_info and server_info.startswith(MARIADB_VERSION_PREFIX):
        return server_info[len(MARIADB_VERSION_PREFIX):]
    return server_info


def _integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

"""Redis probe (redis-py): PING decides the status, INFO supplies the details."""

from __future__ import annotations

import logging

import redis.connection
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from dashapp.config import InstanceConfig
from dashapp.probes.base import Deadline, Probe, SocketQuickCheck, open_socket, tls_context, wrap_tls

log = logging.getLogger(__name__)

# Multiple INFO sections in one call need Redis 7.0; older servers get a plain INFO instead.
INFO_SECTIONS = ("server", "clients", "memory", "replication")
DETAIL_FIELDS = {
    "version": "redis_version",
    "uptime_s": "uptime_in_seconds",
    "role": "role",
    "connected_clients": "connected_clients",
    "used_memory": "used_memory",
}
INTEGER_DETAILS = {"uptime_s", "connected_clients", "used_memory"}
PING_COMMAND = b"*1\r\n$4\r\nPING\r\n"
PONG_REPLY = b"+PONG\r\n"


class RedisProbe(Probe):
    def __init__(self, instance: InstanceConfig):
        super().__init__(instance)
        self._connection: _BoundedConnection | None = None
        self._info_args: tuple[str, ...] = INFO_SECTIONS
        self._info_allowed = True

    def _connected(self) -> bool:
        return self._connection is not None

    def _fileno(self) -> int | None:
        return self._connection.socket_fd if self._connection is not None else None

    def _open(self, deadline: Deadline) -> None:
        instance = self.instance
        connection = _BoundedConnection(
            host=instance.host,
            port=instance.port,
            username=instance.user,
            password=instance.password,
            db=_database_index(instance.database),
            # RESP2 keeps the login to a single AUTH and INFO to one bulk string.
            protocol=2,
            # redis.Redis retries a timed-out command three times with backoff by default, which
            # turned a 2 s timeout into 17 to 26 s. A probe reports the first failure instead.
            retry=Retry(NoBackoff(), 0),
            socket_timeout=deadline.remaining(),
            tls_context=tls_context(True, True, instance.ca_file) if instance.tls else None,
        )
        connection.deadline = deadline
        try:
            connection.connect()
        except BaseException:
            connection.disconnect()
            raise
        self._connection = connection
        self._info_args = INFO_SECTIONS
        self._info_allowed = True

    def _query(self, deadline: Deadline) -> dict:
        self._ping(deadline)
        return self._read_details(self._connection, deadline)

    def _send_ping(self, deadline_at: float) -> "_QuickPing | None":
        sock = self._connection._sock
        return _QuickPing(sock, deadline_at) if sock is not None else None

    def _ping(self, deadline: Deadline) -> None:
        connection = self._connection
        # A command is a few bytes and the connection is dropped after any failed read, so the
        # socket buffer never fills and only the reads need the deadline.
        connection.send_command("PING", check_health=False)
        reply = connection.read_response(timeout=deadline.remaining())
        if reply not in (b"PONG", "PONG"):
            raise redis.exceptions.InvalidResponse(f"unexpected reply to PING: {reply!r}")

    def _read_details(self, connection: "_BoundedConnection", deadline: Deadline) -> dict:
        """Read INFO; return every detail as None if this user may not run INFO."""
        if not self._info_allowed:
            return dict.fromkeys(DETAIL_FIELDS)
        try:
            text = self._info(connection, deadline)
        except redis.exceptions.NoPermissionError:
            # Remembered until the next connection, so later checks skip the rejected INFO.
            log.debug("probe name=%s user may not run INFO, details unavailable", self.instance.name)
            self._info_allowed = False
            return dict.fromkeys(DETAIL_FIELDS)
        return parse_info(text)

    def _info(self, connection: "_BoundedConnection", deadline: Deadline) -> str:
        connection.send_command("INFO", *self._info_args, check_health=False)
        try:
            reply = connection.read_response(timeout=deadline.remaining())
        except redis.exceptions.NoPermissionError:
            raise
        except redis.exceptions.ResponseError:
            if not self._info_args:
                raise
            # A server older than 7.0 rejects several sections; its plain INFO includes them.
            self._info_args = ()
            return self._info(connection, deadline)
        return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()


class _QuickPing(SocketQuickCheck):
    """PING on the kept connection, written and read here rather than through redis-py.

    redis-py can only wait for a reply by blocking its thread. A whole reply leaves nothing
    in its parser's buffer, so the connection stays usable for redis-py afterwards.
    """

    def __init__(self, sock, deadline_at: float):
        super().__init__(sock, PING_COMMAND, deadline_at)

    def complete(self) -> bool:
        if not self.reply.endswith(b"\r\n"):
            return False
        if self.reply == PONG_REPLY:
            return True
        text = bytes(self.reply).decode("utf-8", "replace").strip()
        if text.startswith("-"):
            raise redis.exceptions.ResponseError(text[1:])
        raise redis.exceptions.InvalidResponse(f"unexpected reply to PING: {text!r}")


class _BoundedConnection(redis.connection.Connection):
    """A redis-py connection whose socket is opened by the probe's deadline-bounded steps.

    redis-py would call getaddrinfo without a timeout and build a new TLS context per
    connection. Here the socket comes from `open_socket` and the shared `tls_context`, and the
    host name is kept for the certificate check.
    """

    def __init__(self, *, tls_context=None, **kwargs):
        super().__init__(**kwargs)
        self.tls_context = tls_context
        self.deadline: Deadline | None = None
        self.socket_fd: int | None = None

    def _connect(self):
        sock = open_socket(self.host, self.port, self.deadline)
        if self.tls_context is not None:
            sock = wrap_tls(sock, self.tls_context, self.host, self.deadline)
        self.deadline.step = "handshake"
        try:
            # AUTH and SELECT run on this timeout; later reads pass their own.
            sock.settimeout(self.deadline.remaining())
        except BaseException:
            sock.close()
            raise
        self.socket_fd = sock.fileno()
        return sock

    def disconnect(self, *args, **kwargs):
        self.socket_fd = None
        super().disconnect(*args, **kwargs)


def parse_info(text: str) -> dict:
    """Return the details this probe reports from the text of an INFO reply."""
    fields = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()

    details = {}
    for name, field in DETAIL_FIELDS.items():
        value = fields.get(field)
        if value is not None and name in INTEGER_DETAILS:
            value = int(value) if value.isdigit() else None
        details[name] = value
    return details


def _database_index(database: str | None) -> int:
    if not database:
        return 0
    if not str(database).isdigit():
        raise ValueError(f"a Redis database is a number, not {database!r}")
    return int(database)

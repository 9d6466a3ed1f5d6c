"""PostgreSQL probe: `SELECT 1` decides the status, one more query adds details.

The probe drives libpq through psycopg's `pq` module, in non-blocking mode, and waits on the
socket itself. psycopg's Connection cannot keep the deadline: psycopg 3.3 rounds connect_timeout
down to whole seconds with a 2 s minimum, as libpq does, and has no client-side timeout for a
query, so a stopped server would hold a check forever.
"""

from __future__ import annotations

import functools
import logging
import math
import select

import psycopg.errors
from psycopg import pq
from psycopg.conninfo import make_conninfo

from dashapp.config import InstanceConfig
from dashapp.probes.base import Deadline, Probe, QuickCheck, resolve

log = logging.getLogger(__name__)

APPLICATION_NAME = "dashapp-monitor"
PING_SQL = b"SELECT 1"
DETAILS_SQL = b"""
SELECT pg_is_in_recovery(),
       extract(epoch FROM now() - pg_postmaster_start_time())::bigint,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
"""


class PostgreSQLProbe(Probe):
    def __init__(self, instance: InstanceConfig):
        super().__init__(instance)
        self._pgconn: pq.PGconn | None = None

    def _connected(self) -> bool:
        return self._pgconn is not None

    def _fileno(self) -> int | None:
        if self._pgconn is None:
            return None
        try:
            return self._pgconn.socket
        except psycopg.OperationalError:
            return None

    def _open(self, deadline: Deadline) -> None:
        instance = self.instance
        addresses = resolve(instance.host, instance.port, deadline)
        deadline.step = "connect"
        # libpq tries each hostaddr in turn, and checks certificates against the host name.
        conninfo = make_conninfo(
            host=",".join(instance.host for _ in addresses),
            hostaddr=",".join(sockaddr[0] for _family, sockaddr in addresses),
            port=str(instance.port),
            user=instance.user,
            password=instance.password,
            dbname=instance.database,
            sslmode=instance.ssl_mode or "prefer",
            sslrootcert=instance.ca_file,
            # The binary psycopg build has GSSAPI, which would try Kerberos before TLS.
            gssencmode="disable",
            application_name=APPLICATION_NAME,
        )
        pgconn = pq.PGconn.connect_start(conninfo.encode())
        try:
            _finish_connect(pgconn, deadline)
        except BaseException:
            pgconn.finish()
            raise
        # A function of the name, not a bound method: a connection that refers back to its probe
        # would make a reference cycle, which only a full collection frees.
        pgconn.notice_handler = functools.partial(_log_notice, instance.name)
        self._pgconn = pgconn

    def _send_ping(self, deadline_at: float) -> "_QuickQuery":
        return _QuickQuery(self._pgconn, deadline_at)

    def _ping(self, deadline: Deadline) -> None:
        _execute(self._pgconn, PING_SQL, deadline)

    def _query(self, deadline: Deadline) -> dict:
        self._ping(deadline)
        details = {
            "version": _parameter(self._pgconn, b"server_version"),
            "uptime_s": None,
            "in_recovery": None,
            "connections": None,
        }
        try:
            result = _execute(self._pgconn, DETAILS_SQL, deadline)
        except psycopg.errors.DatabaseError as exc:
            if isinstance(exc, psycopg.errors.OperationalError):
                raise
            log.debug("probe name=%s detail query rejected: %s", self.instance.name, exc.sqlstate)
            return details

        in_recovery, uptime, connections = (result.get_value(0, column) for column in range(3))
        details["in_recovery"] = in_recovery == b"t" if in_recovery is not None else None
        details["uptime_s"] = int(uptime) if uptime is not None else None
        details["connections"] = int(connections) if connections is not None else None
        return details

    def _drop(self) -> None:
        pgconn, self._pgconn = self._pgconn, None
        if pgconn is not None:
            # Sends Terminate without waiting (the connection is non-blocking) and closes.
            pgconn.finish()


class _QuickQuery(QuickCheck):
    """`SELECT 1` through libpq's non-blocking calls; the probe loop waits on its socket."""

    def __init__(self, pgconn: pq.PGconn, deadline_at: float):
        super().__init__(pgconn.socket, deadline_at)
        self._pgconn = pgconn
        self._result: pq.PGresult | None = None
        pgconn.send_query(PING_SQL)
        self.wants_write = pgconn.flush() != 0

    def advance(self) -> bool:
        pgconn = self._pgconn
        if self.wants_write:
            self.wants_write = pgconn.flush() != 0
            return False
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                return self._outcome()
            self._result = result
        return False

    def _outcome(self) -> bool:
        if self._result is None:
            raise psycopg.OperationalError(_error_text(self._pgconn))
        if self._result.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(self._result)
        return True


def _log_notice(name: str, result: pq.PGresult) -> None:
    # Without a handler libpq prints server notices on stderr.
    log.debug("probe name=%s server notice: %s", name,
              result.error_message.decode("utf-8", "replace").strip())


def _finish_connect(pgconn: pq.PGconn, deadline: Deadline) -> None:
    """Poll a connection started with connect_start until it is ready, or raise.

    This is libpq's asynchronous connect loop (PQconnectPoll); the socket can change while
    libpq moves to the next address or retries without TLS.
    """
    polling = pq.PollingStatus.WRITING
    while True:
        if pgconn.status == pq.ConnStatus.BAD:
            raise psycopg.OperationalError(_error_text(pgconn))
        if polling == pq.PollingStatus.OK:
            break
        if polling == pq.PollingStatus.FAILED:
            raise psycopg.OperationalError(_error_text(pgconn))

        deadline.step = "connect" if pgconn.status == pq.ConnStatus.STARTED else "handshake"
        _wait(pgconn.socket, polling == pq.PollingStatus.WRITING, deadline)
        polling = pgconn.connect_poll()
    pgconn.nonblocking = 1


def _execute(pgconn: pq.PGconn, sql: bytes, deadline: Deadline) -> pq.PGresult:
    """Run one statement without blocking past the deadline; raise its error, if any."""
    pgconn.send_query(sql)
    while pgconn.flush() != 0:
        _wait(pgconn.socket, True, deadline)

    result = None
    while True:
        while pgconn.is_busy():
            _wait(pgconn.socket, False, deadline)
            pgconn.consume_input()
        next_result = pgconn.get_result()
        if next_result is None:
            break
        result = next_result

    if result is None:
        raise psycopg.OperationalError(_error_text(pgconn))
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result)
    return result


def _wait(fd: int, writing: bool, deadline: Deadline) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT if writing else select.POLLIN)
    if not poller.poll(math.ceil(deadline.remaining() * 1000)):
        deadline.remaining()  # raises ProbeTimeout once the deadline has passed


def _parameter(pgconn: pq.PGconn, name: bytes) -> str | None:
    value = pgconn.parameter_status(name)
    return value.decode("utf-8", "replace") if value is not None else None


def _error_text(pgconn: pq.PGconn) -> str:
    return pgconn.error_message.decode("utf-8", "replace").strip() or "connection failed"

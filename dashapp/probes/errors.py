"""Translate whatever a probe raised into a FailureKind and a short reason.

This is the only module that matches the exception types and messages of PyMySQL, redis-py and
psycopg. The reason is a short English sentence for the DBA; the page translates the kind, and the
reason is the detail beside it. A reason never contains the instance's password: every driver
message passes through `scrub` first.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import psycopg
import pymysql
import redis.exceptions

from dashapp.config import InstanceConfig
from dashapp.model import FailureKind

# Steps of one probe, as a timeout reason names them.
STEP_WORDS = {
    "resolve": "the DNS lookup",
    "connect": "the TCP connect",
    "handshake": "the handshake",
    "query": "a query",
}

MAX_DETAIL_CHARS = 200

# MySQL and MariaDB server error codes that mean "these credentials may not log in here".
# 1044 access denied to a database, 1045 wrong user or password, 1130 host not allowed,
# 1698 no password accepted for this user (unix_socket plugin), 1251 auth plugin unsupported.
_MYSQL_AUTH_CODES = {1044, 1045, 1130, 1698, 1251}
_MYSQL_UNKNOWN_DATABASE = 1049
# Client error codes from PyMySQL: 2026 TLS setup failed, 2006 server gone away,
# 2013 connection lost during a query, 2014 commands out of sync.
_MYSQL_TLS_CODES = {2026}
_MYSQL_PROTOCOL_CODES = {2006, 2013, 2014}

# Redis replies (upper case) to a bad login and to SELECT of a database index it does not have.
_REDIS_AUTH_TEXT = ("WRONGPASS", "NOAUTH", "INVALID PASSWORD", "INVALID USERNAME")
_REDIS_DATABASE_TEXT = ("DB INDEX IS OUT OF RANGE", "INVALID DATABASE")

# PostgreSQL SQLSTATEs: invalid password, invalid authorization, unknown database.
_PG_AUTH_STATES = {"28P01", "28000"}
_PG_UNKNOWN_DATABASE = "3D000"
# libpq reports connection failures as text only, so these fragments are matched (lower case).
_PG_AUTH_TEXT = ("password authentication failed", "no password supplied", "pg_hba.conf",
                 "authentication failed", "role \"")
_PG_TLS_TEXT = ("ssl", "certificate", "tls")
_PG_REFUSED_TEXT = ("connection refused",)
_PG_PROTOCOL_TEXT = ("server closed the connection unexpectedly", "invalid response",
                     "expected authentication request", "unexpected message", "lost synchronization",
                     "insufficient data")


class ProbeTimeout(Exception):
    """The probe's deadline passed during `step` (a key of STEP_WORDS)."""

    def __init__(self, step: str):
        super().__init__(f"deadline passed during {STEP_WORDS.get(step, step)}")
        self.step = step


class ResolveError(Exception):
    """The host name did not resolve, or its lookup did not finish before the deadline."""

    def __init__(self, host: str, detail: str):
        super().__init__(f"cannot resolve host name '{host}': {detail}")
        self.host = host
        self.detail = detail


class NotSupportedByServer(Exception):
    """The server lacks a feature the configuration requires, such as TLS for `ssl_mode = require`."""


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str


def classify(exc: BaseException, instance: InstanceConfig, step: str) -> Failure:
    """Return the failure kind and reason for `exc`, raised during `step` of a probe of `instance`.

    The whole chain of causes is examined, because drivers wrap the socket error that shows the
    cause (redis-py raises ConnectionError from an OSError, PyMySQL chains the socket timeout).
    """
    chain = _exception_chain(exc)
    failure = (_dns_failure(chain) or _tls_failure(chain) or _auth_failure(chain, instance)
               or _timeout_failure(chain, instance, step) or _refused_failure(chain)
               or _protocol_failure(chain) or _other_failure(chain))
    return Failure(failure.kind, scrub(failure.reason, instance.password))


def scrub(text: str, password: str | None) -> str:
    """Replace the password, raw or URL-encoded, with `***` wherever it occurs in `text`.

    No driver is known to put the password in a message; this is a defence in case one does.
    """
    if not password:
        return text
    for form in {password, quote(password, safe=""), quote_plus(password), repr(password)[1:-1]}:
        text = text.replace(form, "***")
    return text


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _detail(exc: BaseException) -> str:
    """Return the first line of an exception's message, without PyMySQL's (code, text) tuple."""
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        text = str(exc.args[1])
    elif isinstance(exc, psycopg.Error):
        text = _last_libpq_line(str(exc))
    else:
        text = str(exc) or type(exc).__name__
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return text[:MAX_DETAIL_CHARS]


def _last_libpq_line(text: str) -> str:
    """Keep the part of a libpq message after the last "FATAL:" or "failed:" prefix.

    libpq prefixes each message with where it tried ('connection to server at "127.0.0.1", port
    5432 failed: FATAL:  password authentication failed ...'), which the page already shows.
    """
    line = text.strip().splitlines()[0] if text.strip() else text
    for marker in ("FATAL:", "ERROR:", "failed:"):
        if marker in line:
            line = line.rsplit(marker, 1)[1]
            break
    return line.strip() or text.strip()


def _mysql_code(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _pg_text(exc: BaseException) -> str | None:
    return str(exc).lower() if isinstance(exc, psycopg.Error) else None


def _dns_failure(chain: list[BaseException]) -> Failure | None:
    for exc in chain:
        if isinstance(exc, ResolveError):
            return Failure(FailureKind.DNS, str(exc))
        if isinstance(exc, socket.gaierror):
            return Failure(FailureKind.DNS, f"cannot resolve host name: {exc.strerror or exc}")
    return None


def _tls_failure(chain: list[BaseException]) -> Failure | None:
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Failure(FailureKind.TLS, f"certificate verification failed: {exc.verify_message}")
        if isinstance(exc, ssl.SSLError):
            return Failure(FailureKind.TLS, f"TLS failed: {exc.reason or _detail(exc)}")
        if isinstance(exc, NotSupportedByServer):
            return Failure(FailureKind.TLS, str(exc))
        if _mysql_code(exc) in _MYSQL_TLS_CODES:
            return Failure(FailureKind.TLS, f"TLS failed: {_detail(exc)}")
        text = _pg_text(exc)
        # libpq names SSL in the pg_hba.conf rejection of an encrypted session too, so
        # authentication texts are excluded here and classified by _auth_failure.
        if text and any(word in text for word in _PG_TLS_TEXT) and not any(
                word in text for word in _PG_AUTH_TEXT):
            return Failure(FailureKind.TLS, f"TLS failed: {_detail(exc)}")
    return None


def _auth_failure(chain: list[BaseException], instance: InstanceConfig) -> Failure | None:
    for exc in chain:
        unknown_database = False
        denied = False
        code = _mysql_code(exc)
        text = _pg_text(exc)
        if code is not None:
            unknown_database = code == _MYSQL_UNKNOWN_DATABASE
            denied = code in _MYSQL_AUTH_CODES
        elif text is not None:
            sqlstate = getattr(exc, "sqlstate", None)
            unknown_database = sqlstate == _PG_UNKNOWN_DATABASE or (
                "database \"" in text and "does not exist" in text)
            denied = sqlstate in _PG_AUTH_STATES or any(word in text for word in _PG_AUTH_TEXT)
        elif isinstance(exc, redis.exceptions.AuthenticationError):
            denied = True
        elif isinstance(exc, (redis.exceptions.ResponseError, redis.exceptions.ConnectionError)):
            message = str(exc).upper()
            unknown_database = message.startswith(_REDIS_DATABASE_TEXT)
            denied = message.startswith(_REDIS_AUTH_TEXT)

        if unknown_database:
            return Failure(FailureKind.AUTHENTICATION, f"unknown database '{instance.database}'")
        if denied:
            user = instance.user or "default"
            return Failure(FailureKind.AUTHENTICATION,
                           f"authentication failed for user '{user}': {_detail(exc)}")
    return None


def _timeout_failure(chain: list[BaseException], instance: InstanceConfig, step: str) -> Failure | None:
    for exc in chain:
        if isinstance(exc, ProbeTimeout):
            step = exc.step
        elif not isinstance(exc, (TimeoutError, redis.exceptions.TimeoutError)):
            text = _pg_text(exc)
            if not (text and "timeout expired" in text):
                continue
        return Failure(FailureKind.TIMEOUT,
                       f"timed out after {instance.timeout:g} s during {STEP_WORDS.get(step, step)}")
    return None


def _refused_failure(chain: list[BaseException]) -> Failure | None:
    for exc in chain:
        text = _pg_text(exc)
        if isinstance(exc, ConnectionRefusedError) or (
                text and any(word in text for word in _PG_REFUSED_TEXT)):
            return Failure(FailureKind.REFUSED, "connection refused")
    return None


def _protocol_failure(chain: list[BaseException]) -> Failure | None:
    """Classify an answer that is not the expected protocol, or a connection closed mid-way.

    A plain-text client on a TLS port, for example, sees the server hang up.
    """
    for exc in chain:
        text = _pg_text(exc)
        if (isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError,
                             pymysql.err.InternalError, redis.exceptions.InvalidResponse))
                or _mysql_code(exc) in _MYSQL_PROTOCOL_CODES
                or (text and any(word in text for word in _PG_PROTOCOL_TEXT))):
            return Failure(FailureKind.PROTOCOL, f"unexpected reply or connection closed: {_detail(exc)}")
    # redis-py raises its ConnectionError without an OSError cause when the server hangs up.
    first = chain[0]
    if isinstance(first, (redis.exceptions.ConnectionError, redis.exceptions.ResponseError)) and not any(
            isinstance(exc, OSError) for exc in chain):
        return Failure(FailureKind.PROTOCOL, f"unexpected reply or connection closed: {_detail(first)}")
    return None


def _other_failure(chain: list[BaseException]) -> Failure:
    # The innermost OSError (no route to host, network unreachable) is more precise than its wrapper.
    for exc in reversed(chain):
        if isinstance(exc, OSError):
            return Failure(FailureKind.OTHER, f"network error: {exc.strerror or _detail(exc)}")
    return Failure(FailureKind.OTHER, f"{type(chain[0]).__name__}: {_detail(chain[0])}")

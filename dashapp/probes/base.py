"""The probe interface, and the deadline-bounded steps that every probe type shares.

A probe keeps one connection to its instance and re-validates it on each check. The whole check
(DNS lookup, TCP connect, TLS and login handshake, queries) shares one deadline: each step gets
the time that is left, so no driver default or retry can stretch a check past `timeout`.
"""

from __future__ import annotations

import abc
import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time

from dashapp.config import InstanceConfig
from dashapp.model import ProbeResult
from dashapp.probes.errors import ProbeTimeout, ResolveError, classify

log = logging.getLogger(__name__)


# How often a kept connection's details are read again; the liveness command runs on every check.
DETAILS_REFRESH_S = 30.0


class Deadline:
    """The moment a check must end, and the step it is in (for the timeout reason)."""

    def __init__(self, timeout: float, clock=time.monotonic):
        self._clock = clock
        self.at = clock() + timeout
        self.step = "resolve"

    def remaining(self) -> float:
        """Return the seconds left; raise ProbeTimeout once none are left."""
        left = self.at - self._clock()
        if left <= 0:
            raise ProbeTimeout(self.step)
        return left

    def expired(self) -> bool:
        return self.at - self._clock() <= 0


class Probe(abc.ABC):
    """Checks one instance and keeps one connection to it between checks.

    `check` never raises and returns within the instance's timeout, plus the time to close a
    broken connection, which does not wait on the network. Calls are serialized by a lock, so
    the scheduler, a reload and the exit watch may call from different threads.

    NOTE: PyMySQL and redis-py take one timeout per command and apply it to each read, so a
    server that sends a reply in slow pieces can stretch a MySQL or Redis check past its
    deadline. A silent or stopped server cannot.
    """

    def __init__(self, instance: InstanceConfig):
        self.instance = instance
        self._lock = threading.Lock()
        self._details: dict | None = None
        self._details_at = 0.0

    def check(self) -> ProbeResult:
        started = time.monotonic()
        deadline = Deadline(self.instance.timeout)
        with self._lock:
            try:
                details = self._check_with_reconnect(deadline)
            except Exception as exc:
                self._drop()
                failure = classify(exc, self.instance, deadline.step)
                latency_ms = (time.monotonic() - started) * 1000
                log.debug("probe name=%s type=%s ok=False failure=%s reason=%s latency_ms=%.1f",
                          self.instance.name, self.instance.type, failure.kind.value,
                          failure.reason, latency_ms)
                return ProbeResult.failed(failure.kind, failure.reason, latency_ms=latency_ms)

        latency_ms = (time.monotonic() - started) * 1000
        log.debug("probe name=%s type=%s ok=True latency_ms=%.1f", self.instance.name,
                  self.instance.type, latency_ms)
        return ProbeResult.success(latency_ms, details)

    def idle_fileno(self) -> int | None:
        """Return the file descriptor of the kept connection, or None while a check runs."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._fileno()
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _check_with_reconnect(self, deadline: Deadline) -> dict:
        """Validate the kept connection; on any error open a new one, once, within the deadline."""
        if self._connected():
            try:
                deadline.step = "query"
                return self._validate(deadline)
            except Exception as exc:
                log.debug("probe name=%s kept connection failed (%s), reconnecting",
                          self.instance.name, type(exc).__name__)
                self._drop()
                if deadline.expired():
                    raise

        deadline.step = "resolve"
        self._details = None
        self._open(deadline)
        deadline.step = "query"
        return self._validate(deadline)

    def _validate(self, deadline: Deadline) -> dict:
        """Run the liveness command; read the details too when they are older than DETAILS_REFRESH_S.

        Details cost several round trips (MySQL: three queries; Redis: INFO), most of a probe's
        CPU, and change slowly. A cached uptime is advanced by the time since it was read.
        """
        now = time.monotonic()
        if self._details is None or now - self._details_at >= DETAILS_REFRESH_S:
            self._details = self._query(deadline)
            self._details_at = now
            return dict(self._details)

        self._ping(deadline)
        details = dict(self._details)
        if isinstance(details.get("uptime_s"), int):
            details["uptime_s"] += int(now - self._details_at)
        return details

    @abc.abstractmethod
    def _connected(self) -> bool:
        """Tell whether a kept connection exists (it may still be broken)."""

    @abc.abstractmethod
    def _open(self, deadline: Deadline) -> None:
        """Connect and log in; keep the connection. Close everything opened if this raises."""

    @abc.abstractmethod
    def _query(self, deadline: Deadline) -> dict:
        """Run the liveness command and read the details on the kept connection."""

    def _ping(self, deadline: Deadline) -> None:
        """Run only the liveness command on the kept connection; raise if it fails."""
        self._query(deadline)

    @abc.abstractmethod
    def _drop(self) -> None:
        """Close the kept connection, if any, without raising and without waiting on the peer."""

    @abc.abstractmethod
    def _fileno(self) -> int | None:
        """Return the socket descriptor of the kept connection, if any."""


def resolve(host: str, port: int, deadline: Deadline) -> list[tuple]:
    """Return getaddrinfo's (family, sockaddr) pairs for a TCP connection to host:port.

    getaddrinfo has no timeout of its own, so a name is resolved in a daemon thread that the
    check stops waiting for at the deadline. The lookup itself cannot be cancelled: it runs to
    the resolver's own timeout and its result is dropped.
    """
    deadline.step = "resolve"
    if _is_ip_address(host):
        return _getaddrinfo(host, port, socket.AI_NUMERICHOST)

    outcome: dict = {}
    finished = threading.Event()

    def lookup() -> None:
        try:
            outcome["addresses"] = _getaddrinfo(host, port, 0)
        except OSError as exc:
            outcome["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not finished.wait(deadline.remaining()):
        raise ResolveError(host, "the lookup timed out")
    if "error" in outcome:
        error = outcome["error"]
        raise ResolveError(host, getattr(error, "strerror", None) or str(error)) from error
    return outcome["addresses"]


def open_socket(host: str, port: int, deadline: Deadline) -> socket.socket:
    """Resolve host and connect to each of its addresses in turn until one accepts.

    The caller keeps `host` for TLS checks; the address only decides where to connect.
    """
    addresses = resolve(host, port, deadline)
    deadline.step = "connect"
    last_error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.settimeout(deadline.remaining())
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
        except BaseException:
            sock.close()
            raise
    assert last_error is not None  # getaddrinfo returns at least one address or raises
    raise last_error


def wrap_tls(sock: socket.socket, context: ssl.SSLContext, server_hostname: str,
             deadline: Deadline) -> ssl.SSLSocket:
    """Run the TLS handshake on a connected socket; close the socket if the handshake fails."""
    deadline.step = "handshake"
    try:
        sock.settimeout(deadline.remaining())
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


@functools.lru_cache(maxsize=None)
def tls_context(verify_certificate: bool, check_hostname: bool, ca_file: str | None) -> ssl.SSLContext:
    """Return a client TLS context shared by every connection with the same settings.

    Creating a context that loads CA certificates costs about 16 ms of CPU, which PyMySQL 1.2
    and redis-py would otherwise spend on every new connection. A changed `ca_file` on disk is
    read again only after a restart, because the context is cached by path.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    # Python 3.13 sets VERIFY_X509_STRICT by default, which rejects the certificates that
    # MySQL generates for itself; PyMySQL clears it for the same reason.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def _getaddrinfo(host: str, port: int, flags: int) -> list[tuple]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

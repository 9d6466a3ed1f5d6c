"""The probe interface, and the deadline-bounded steps that every probe type shares.

A probe keeps one connection to its instance and re-validates it on each check. The whole check
(DNS lookup, TCP connect, TLS and login handshake, queries) shares one deadline: each step gets
the time that is left, so no driver default or retry can stretch a check past `timeout`.

Most checks only send the liveness command on a kept connection whose details are fresh. Such a
check can run as a QuickCheck: the probe sends the command without blocking and the probe loop
(dashapp.probeloop) waits for the reply together with every other one, so a check in flight
costs no thread. Everything else (connecting, logging in, reading details) is a full `check`,
which blocks a worker thread.
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


class QuickCheck:
    """A liveness check in flight that waits on one socket without a thread.

    The probe loop waits until `fileno` is readable, or writable while `wants_write`, then
    calls `advance`, which returns True once the check is complete and raises if it failed.
    `done` is set when the check completed as it started (a TCP connect that was refused or
    accepted at once).
    `owns_socket` means `fileno` belongs to this check alone and closes with it, unlike a kept
    connection, which stays open for the exit watch.
    """

    step = "query"
    owns_socket = False

    def __init__(self, fileno: int, deadline_at: float):
        self.fileno = fileno
        self.deadline_at = deadline_at
        self.started = time.monotonic()
        self.wants_write = False
        self.done = False
        self.error: BaseException | None = None

    def advance(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the check holds beyond the kept connection."""


class SocketQuickCheck(QuickCheck):
    """Send one command on a kept socket and read until `complete` accepts the reply.

    The command is written with a short timeout: it is a few bytes, and a kept connection has
    nothing else in flight, so the socket buffer has room. Then the socket is switched to
    non-blocking mode for the reads, and its driver's timeout put back at the end, so neither
    side waits inside the other's calls. On a TLS socket a read may return nothing new while
    OpenSSL still buffers decrypted bytes, so `advance` drains `pending()` as well.
    """

    MAX_REPLY = 4096
    MAX_SEND_WAIT_S = 1.0

    def __init__(self, sock: socket.socket, command: bytes, deadline_at: float):
        super().__init__(sock.fileno(), deadline_at)
        self._sock = sock
        self._timeout = sock.gettimeout()
        self.reply = bytearray()
        try:
            sock.settimeout(self.MAX_SEND_WAIT_S)
            sock.sendall(command)
            sock.setblocking(False)
        except BaseException:
            sock.settimeout(self._timeout)
            raise

    def advance(self) -> bool:
        while True:
            try:
                chunk = self._sock.recv(self.MAX_REPLY)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return False
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self.reply += chunk
            if len(self.reply) > self.MAX_REPLY:
                raise ConnectionError("the reply is longer than a liveness reply can be")
            if self.complete():
                return True
            if not isinstance(self._sock, ssl.SSLSocket) or not self._sock.pending():
                return False

    def complete(self) -> bool:
        """Return True once `reply` contains the whole reply; raise if it reports a failure."""
        raise NotImplementedError

    def close(self) -> None:
        try:
            self._sock.settimeout(self._timeout)
        except OSError:
            pass  # the socket was closed with the connection


class Probe(abc.ABC):
    """Checks one instance and keeps one connection to it between checks.

    `check` never raises and returns within the instance's timeout, plus the time to close a
    broken connection, which does not wait on the network. Calls are serialized by a lock, so
    the scheduler, a reload and the exit watch may call from different threads.

    NOTE: PyMySQL and redis-py take one timeout per command and apply it to each read, so a
    server that sends a reply in slow pieces can stretch a MySQL or Redis check past its
    deadline. A silent or stopped server cannot.
    """

    # A failed quick check means the kept connection is broken, and a full check reconnects.
    # Where the quick check is the whole check (TCP), its failure is the result.
    QUICK_FAILURE_IS_FINAL = False

    def __init__(self, instance: InstanceConfig):
        self.instance = instance
        self._lock = threading.Lock()
        self._details: dict | None = None
        self._details_at = 0.0
        # Where this instance's refreshes fall within DETAILS_REFRESH_S, stable per name (see _details_fresh).
        self._refresh_offset = int(instance.key[1:], 16) % 997 / 997 * DETAILS_REFRESH_S

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

    def start_quick(self) -> QuickCheck | None:
        """Start the check without blocking if it needs no more than one command; else None.

        On success the probe stays locked until `finish_quick`, like during `check`.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            quick = self._start_quick(time.monotonic() + self.instance.timeout)
        except Exception as exc:
            # The command could not even be sent: the connection is broken, a full check reconnects.
            log.debug("probe name=%s quick check not started (%s)", self.instance.name, type(exc).__name__)
            self._drop()
            quick = None
        if quick is None:
            self._lock.release()
        return quick

    def finish_quick(self, quick: QuickCheck) -> ProbeResult | None:
        """End a quick check and unlock the probe; return its result, or None for a full check.

        A reply means running, with the details read earlier. No reply before the deadline means
        a timeout, as in `check`. Any other failure drops the connection and returns None, so that
        the caller runs a full check, which reconnects within a new deadline.
        """
        try:
            quick.close()
            now = time.monotonic()
            latency_ms = (now - quick.started) * 1000
            if quick.error is None:
                return ProbeResult.success(latency_ms, self._cached_details(now))
            self._drop()
            if not self.QUICK_FAILURE_IS_FINAL and not isinstance(quick.error, ProbeTimeout):
                log.debug("probe name=%s kept connection failed (%s), reconnecting",
                          self.instance.name, type(quick.error).__name__)
                return None
            failure = classify(quick.error, self.instance, quick.step)
            log.debug("probe name=%s type=%s ok=False failure=%s reason=%s latency_ms=%.1f",
                      self.instance.name, self.instance.type, failure.kind.value, failure.reason,
                      latency_ms)
            return ProbeResult.failed(failure.kind, failure.reason, latency_ms=latency_ms)
        finally:
            self._lock.release()

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
        if not self._details_fresh(now):
            self._details = self._query(deadline)
            self._details_at = now
            return dict(self._details)

        self._ping(deadline)
        return self._cached_details(now)

    def _details_fresh(self, now: float) -> bool:
        """Tell whether the details were read in the current refresh period of this instance.

        Periods are DETAILS_REFRESH_S long and start at an offset of the instance's own, so that
        instances whose details were first read together, on start-up, do not all read them
        again on the same tick. Details are never older than DETAILS_REFRESH_S plus an interval.
        """
        if self._details is None:
            return False
        offset = self._refresh_offset
        return (now + offset) // DETAILS_REFRESH_S == (self._details_at + offset) // DETAILS_REFRESH_S

    def _cached_details(self, now: float) -> dict:
        details = dict(self._details or {})
        if isinstance(details.get("uptime_s"), int):
            details["uptime_s"] += int(now - self._details_at)
        return details

    def _start_quick(self, deadline_at: float) -> QuickCheck | None:
        """Send the liveness command on the kept connection, if its details are fresh."""
        if not self._connected() or not self._details_fresh(time.monotonic()):
            return None
        return self._send_ping(deadline_at)

    def _send_ping(self, deadline_at: float) -> QuickCheck | None:
        """Send the liveness command without blocking; None if this connection cannot."""
        return None

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
    if is_ip_address(host):
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


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

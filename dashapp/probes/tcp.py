"""Plain TCP probe: the instance is running if a TCP connection to host:port opens."""

from __future__ import annotations

import errno
import os
import socket

from dashapp.probes.base import Deadline, Probe, QuickCheck, is_ip_address, open_socket


class TCPProbe(Probe):
    """Opens and closes a connection on every check; nothing is kept between checks.

    A kept socket would tell nothing about a service whose protocol the probe does not speak.
    For an IP address the connect runs as a quick check. A host name needs a lookup first,
    which blocks, so it takes a full check.
    """

    QUICK_FAILURE_IS_FINAL = True

    def _connected(self) -> bool:
        return False

    def _fileno(self) -> int | None:
        return None

    def _start_quick(self, deadline_at: float) -> "_QuickConnect | None":
        if not is_ip_address(self.instance.host):
            return None
        return _QuickConnect(self.instance.host, self.instance.port, deadline_at)

    def _open(self, deadline: Deadline) -> None:
        open_socket(self.instance.host, self.instance.port, deadline).close()

    def _query(self, deadline: Deadline) -> dict:
        return {}

    def _cached_details(self, now: float) -> dict:
        return {}

    def _drop(self) -> None:
        pass


class _QuickConnect(QuickCheck):
    """A non-blocking connect; the probe loop waits until the socket is writable."""

    step = "connect"
    owns_socket = True

    def __init__(self, host: str, port: int, deadline_at: float):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        super().__init__(self._sock.fileno(), deadline_at)
        try:
            self._sock.setblocking(False)
            code = self._sock.connect_ex((host, port))
        except BaseException:
            self._sock.close()
            raise
        if code == 0:
            self.done = True
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            self.wants_write = True
        else:
            self.done = True
            self.error = OSError(code, os.strerror(code))

    def advance(self) -> bool:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
        return True

    def close(self) -> None:
        self._sock.close()

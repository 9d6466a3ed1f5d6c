"""Plain TCP probe: the instance is running if a TCP connection to host:port opens."""

from __future__ import annotations

from dashapp.probes.base import Deadline, Probe, open_socket


class TCPProbe(Probe):
    """Opens and closes a connection on every check; nothing is kept between checks.

    A kept socket would tell nothing about a service whose protocol the probe does not speak.
    """

    def _connected(self) -> bool:
        return False

    def _fileno(self) -> int | None:
        return None

    def _open(self, deadline: Deadline) -> None:
        open_socket(self.instance.host, self.instance.port, deadline).close()

    def _query(self, deadline: Deadline) -> dict:
        return {}

    def _drop(self) -> None:
        pass

"""Probes: one module per instance type behind one interface (base.Probe)."""

from __future__ import annotations

from dashapp.config import InstanceConfig
from dashapp.probes.base import Probe
from dashapp.probes.mysql import MySQLProbe
from dashapp.probes.postgresql import PostgreSQLProbe
from dashapp.probes.redis import RedisProbe
from dashapp.probes.tcp import TCPProbe

PROBE_TYPES: dict[str, type[Probe]] = {
    "mysql": MySQLProbe,
    "redis": RedisProbe,
    "postgresql": PostgreSQLProbe,
    "tcp": TCPProbe,
}


def create_probe(instance: InstanceConfig) -> Probe:
    """Return a new probe for the instance; raise ValueError for a type without a probe."""
    try:
        probe_type = PROBE_TYPES[instance.type]
    except KeyError:
        raise ValueError(f"instance {instance.name!r}: no probe for type {instance.type!r}, "
                         f"expected one of {', '.join(PROBE_TYPES)}") from None
    return probe_type(instance)


__all__ = ["Probe", "create_probe", "PROBE_TYPES"]

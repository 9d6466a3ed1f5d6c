"""Domain types shared by the probes, the state store, the scheduler and the pages.

Nothing here contains a credential: an InstanceState is built from the public fields of an
instance's configuration, so it can be sent to a browser as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone


class Status(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    ABNORMAL = "abnormal"
    MAINTENANCE = "maintenance"
    DEGRADED = "degraded"


class FailureKind(str, enum.Enum):
    """The kind of a probe failure, in the terms a DBA triages by."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    AUTHENTICATION = "authentication"
    DNS = "dns"
    TLS = "tls"
    PROTOCOL = "protocol"
    OTHER = "other"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_iso(moment: datetime | None) -> str | None:
    """Format a UTC time as ISO 8601 with millisecond precision, as the browser's Date parses it."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe of one instance.

    `details` holds what a DBA glances at (version, uptime, connections, role); a value that the
    probe could not read is None rather than missing, so the page can say "unavailable".
    `reason` is a short human sentence and never contains a password.
    """

    ok: bool
    checked_at: datetime
    latency_ms: float | None = None
    details: dict = field(default_factory=dict)
    failure: FailureKind | None = None
    reason: str | None = None

    @classmethod
    def success(cls, latency_ms: float, details: dict, checked_at: datetime | None = None) -> "ProbeResult":
        return cls(ok=True, checked_at=checked_at or utc_now(), latency_ms=latency_ms, details=details)

    @classmethod
    def failed(cls, failure: FailureKind, reason: str, latency_ms: float | None = None,
               checked_at: datetime | None = None) -> "ProbeResult":
        return cls(ok=False, checked_at=checked_at or utc_now(), latency_ms=latency_ms,
                   failure=failure, reason=reason)


@dataclass(frozen=True)
class Transition:
    """A stored status change of one instance: the record that pages, history and alerts use."""

    name: str
    previous: Status
    current: Status
    reason: str | None
    at: datetime
    failure: FailureKind | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "previous": self.previous.value,
            "current": self.current.value,
            "reason": self.reason,
            "failure": self.failure.value if self.failure else None,
            "at": to_iso(self.at),
        }


@dataclass
class InstanceState:
    """The current view of one instance, as the store keeps it and the pages show it."""

    key: str
    name: str
    type: str
    host: str
    port: int
    tags: list[str]
    status: Status = Status.PENDING
    since: datetime | None = None
    last_check: datetime | None = None
    latency_ms: float | None = None
    details: dict = field(default_factory=dict)
    reason: str | None = None
    failure: FailureKind | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    maintenance: bool = False

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "type": self.type,
            "host": self.host,
            "port": self.port,
            "tags": list(self.tags),
            "status": self.status.value,
            "since": to_iso(self.since),
            "last_check": to_iso(self.last_check),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
            "details": dict(self.details),
            "reason": self.reason,
            "failure": self.failure.value if self.failure else None,
        }

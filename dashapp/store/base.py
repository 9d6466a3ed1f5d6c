"""The state store interface: the current state of every instance, and the events it emits.

The in-memory store serves one process. A Redis-backed store can implement the same interface
so that several web processes share one view; every implementation runs the same scenario tests.
"""

from __future__ import annotations

import abc
from typing import Callable, Iterable

from dashapp.config import InstanceConfig
from dashapp.model import InstanceState, ProbeResult, Transition

# An event is a JSON-ready dict with at least "type" and "server_time"; see dashapp.events.
EventListener = Callable[[dict], None]


class StateStore(abc.ABC):
    @abc.abstractmethod
    def configure(self, instances: Iterable[InstanceConfig]) -> None:
        """Set the instances to track; keep the state of every instance whose settings did not change.

        Emits `instances_status_update` and `status_summary_update`.
        """

    @abc.abstractmethod
    def record(self, name: str, result: ProbeResult) -> Transition | None:
        """Apply one probe result; return the transition it caused, if any.

        The instance's fail and recover thresholds decide when consecutive results change its
        status. A transition emits `instance_status_change` then `status_summary_update`.
        A result for an instance that is no longer configured is ignored.
        """

    @abc.abstractmethod
    def set_maintenance(self, name: str, on: bool, reason: str | None = None) -> Transition | None:
        """Mute or unmute an instance: it is still probed and shown, never alerted."""

    @abc.abstractmethod
    def get(self, name: str) -> InstanceState | None:
        """Return a copy of one instance's state."""

    @abc.abstractmethod
    def snapshot(self) -> list[InstanceState]:
        """Return copies of every instance's state, in configuration order."""

    @abc.abstractmethod
    def summary(self) -> dict:
        """Return totals by status, by type and by tag."""

    @abc.abstractmethod
    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener` with every event from now on; return a function that unsubscribes.

        Listeners run on the thread that caused the event, after the store's lock is released,
        so a listener must be quick and must not call back into a blocking operation.
        """

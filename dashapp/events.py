"""The JSON messages pushed to browsers: one builder per event type.

Every message carries `type` and `server_time`. They are built from InstanceState and
Transition, which hold no credential, so no message can carry a password.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from dashapp.model import InstanceState, Status, Transition, to_iso, utc_now

INSTANCES_STATUS_UPDATE = "instances_status_update"
INSTANCE_STATUS_CHANGE = "instance_status_change"
STATUS_SUMMARY_UPDATE = "status_summary_update"


def _envelope(event_type: str, **fields) -> dict:
    return {"type": event_type, "server_time": to_iso(utc_now()), **fields}


class SummaryCounter:
    """Totals by status, by type and by tag, kept current one transition at a time.

    A store with thousands of instances updates these counts on each transition instead of
    walking every instance, so a burst of transitions costs the same per transition at any size.
    """

    def __init__(self, states: Iterable[InstanceState] = ()):
        self._total = 0
        self._by_status: Counter = Counter({status.value: 0 for status in Status})
        self._by_type: dict[str, Counter] = {}
        self._by_tag: dict[str, Counter] = {}
        for state in states:
            self.add(state.type, state.tags, state.status)

    def add(self, instance_type: str, tags: Iterable[str], status: Status, count: int = 1) -> None:
        self._total += count
        self._by_status[status.value] += count
        self._by_type.setdefault(instance_type, Counter())[status.value] += count
        for tag in tags:
            self._by_tag.setdefault(tag, Counter())[status.value] += count

    def move(self, instance_type: str, tags: Iterable[str], previous: Status, current: Status) -> None:
        tags = list(tags)
        self.add(instance_type, tags, previous, -1)
        self.add(instance_type, tags, current, 1)

    def as_dict(self) -> dict:
        return {
            "total": self._total,
            "by_status": dict(self._by_status),
            "by_type": _positive_counts(self._by_type),
            "by_tag": _positive_counts(self._by_tag),
        }


def _positive_counts(groups: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Drop statuses a group no longer has, and groups with no instance left."""
    result = {}
    for name in sorted(groups):
        counts = {status: count for status, count in groups[name].items() if count > 0}
        if counts:
            result[name] = counts
    return result


def summarize(states: Iterable[InstanceState]) -> dict:
    """Count instances by status, by type (split by status) and by tag (split by status)."""
    return SummaryCounter(states).as_dict()


def instances_status_update(states: list[InstanceState], summary: dict) -> dict:
    return _envelope(INSTANCES_STATUS_UPDATE,
                     instances=[state.to_dict() for state in states], summary=summary)


def instance_status_change(transition: Transition, state: InstanceState) -> dict:
    return _envelope(INSTANCE_STATUS_CHANGE, **transition.to_dict(), instance=state.to_dict())


def status_summary_update(summary: dict) -> dict:
    return _envelope(STATUS_SUMMARY_UPDATE, summary=summary)

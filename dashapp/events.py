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


def summarize(states: Iterable[InstanceState]) -> dict:
    """Count instances by status, by type (split by status) and by tag (split by status)."""
    totals = Counter({status.value: 0 for status in Status})
    by_type: dict[str, Counter] = {}
    by_tag: dict[str, Counter] = {}
    count = 0
    for state in states:
        count += 1
        totals[state.status.value] += 1
        by_type.setdefault(state.type, Counter())[state.status.value] += 1
        for tag in state.tags:
            by_tag.setdefault(tag, Counter())[state.status.value] += 1
    return {
        "total": count,
        "by_status": dict(totals),
        "by_type": {name: dict(counts) for name, counts in sorted(by_type.items())},
        "by_tag": {name: dict(counts) for name, counts in sorted(by_tag.items())},
    }


def instances_status_update(states: list[InstanceState], summary: dict) -> dict:
    return _envelope(INSTANCES_STATUS_UPDATE,
                     instances=[state.to_dict() for state in states], summary=summary)


def instance_status_change(transition: Transition, state: InstanceState) -> dict:
    return _envelope(INSTANCE_STATUS_CHANGE, **transition.to_dict(), instance=state.to_dict())


def status_summary_update(summary: dict) -> dict:
    return _envelope(STATUS_SUMMARY_UPDATE, summary=summary)

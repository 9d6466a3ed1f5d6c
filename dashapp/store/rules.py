"""Status rules shared by every store implementation: thresholds, maintenance, transitions."""

from __future__ import annotations

from datetime import datetime

from dashapp.config import InstanceConfig
from dashapp.model import InstanceState, ProbeResult, Status, Transition


def apply_result(state: InstanceState, instance: InstanceConfig, result: ProbeResult) -> Transition | None:
    """Update `state` in place with one probe result; return the transition, if the status changed.

    An instance turns abnormal after `fail_threshold` consecutive failures and running after
    `recover_threshold` consecutive successes. Its first result decides at once, so a monitor that
    starts while a server is down shows it abnormal on the first probe. An instance in maintenance
    keeps that status, but its latency, details and reason stay current.
    """
    state.last_check = result.checked_at
    state.latency_ms = result.latency_ms
    if result.ok:
        state.consecutive_successes += 1
        state.consecutive_failures = 0
        state.details = dict(result.details)
    else:
        state.consecutive_failures += 1
        state.consecutive_successes = 0

    if state.maintenance:
        state.reason = result.reason
        state.failure = result.failure
        return None

    target = _target_status(state, instance, result)
    if target is None or target == state.status:
        if target == Status.ABNORMAL:
            # Keep the newest reason while abnormal, so that "refused" becomes "timeout" when a
            # stopped host also stops responding, without a new transition.
            state.reason = result.reason
            state.failure = result.failure
        return None

    return _move(state, target, result.reason if not result.ok else None,
                 result.failure if not result.ok else None, result.checked_at)


def apply_maintenance(state: InstanceState, on: bool, reason: str | None, at: datetime) -> Transition | None:
    """Enter or leave maintenance; leaving it returns to the status the latest probe supports."""
    if on == state.maintenance:
        return None
    state.maintenance = on
    if on:
        return _move(state, Status.MAINTENANCE, reason, None, at)
    if state.last_check is None:
        target = Status.PENDING
    elif state.consecutive_failures > 0:
        target = Status.ABNORMAL
    else:
        target = Status.RUNNING
    return _move(state, target, state.reason if target == Status.ABNORMAL else None,
                 state.failure if target == Status.ABNORMAL else None, at)


def _target_status(state: InstanceState, instance: InstanceConfig, result: ProbeResult) -> Status | None:
    if state.status == Status.PENDING:
        return Status.RUNNING if result.ok else Status.ABNORMAL
    if result.ok:
        return Status.RUNNING if state.consecutive_successes >= instance.recover_threshold else None
    return Status.ABNORMAL if state.consecutive_failures >= instance.fail_threshold else None


def _move(state: InstanceState, target: Status, reason: str | None, failure, at: datetime) -> Transition:
    transition = Transition(name=state.name, previous=state.status, current=target, reason=reason,
                            at=at, failure=failure)
    state.status = target
    state.since = at
    state.reason = reason
    state.failure = failure
    return transition

"""The in-memory state store: one process's view, guarded by one lock."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Iterable

from dashapp import events
from dashapp.config import InstanceConfig
from dashapp.model import InstanceState, ProbeResult, Status, Transition, utc_now
from dashapp.store.base import EventListener, StateStore
from dashapp.store.rules import apply_result, apply_maintenance

log = logging.getLogger(__name__)


class MemoryStateStore(StateStore):
    def __init__(self, clock: Callable = utc_now):
        self._clock = clock
        self._lock = threading.Lock()
        self._configs: dict[str, InstanceConfig] = {}
        self._states: dict[str, InstanceState] = {}
        self._listeners: list[EventListener] = []
        self._summary = events.SummaryCounter()

    def configure(self, instances: Iterable[InstanceConfig]) -> None:
        with self._lock:
            configs: dict[str, InstanceConfig] = {}
            states: dict[str, InstanceState] = {}
            for instance in instances:
                previous = self._configs.get(instance.name)
                configs[instance.name] = instance
                if previous is not None and previous.same_target(instance):
                    states[instance.name] = self._states[instance.name]
                else:
                    states[instance.name] = _new_state(instance)
            self._configs = configs
            self._states = states
            self._summary = events.SummaryCounter(states.values())
            snapshot = self._copy_states()
            summary = self._summary.as_dict()
        self._emit(events.instances_status_update(snapshot, summary))
        self._emit(events.status_summary_update(summary))

    def record(self, name: str, result: ProbeResult) -> Transition | None:
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return None
            transition = apply_result(state, self._configs[name], result)
            if transition is None:
                return None
            changed, summary = self._count(state, transition)
        self._announce(transition, changed, summary)
        return transition

    def set_maintenance(self, name: str, on: bool, reason: str | None = None) -> Transition | None:
        with self._lock:
            state = self._states.get(name)
            if state is None:
                return None
            transition = apply_maintenance(state, on, reason, self._clock())
            if transition is None:
                return None
            changed, summary = self._count(state, transition)
        self._announce(transition, changed, summary)
        return transition

    def get(self, name: str) -> InstanceState | None:
        with self._lock:
            state = self._states.get(name)
            return _copy(state) if state else None

    def snapshot(self) -> list[InstanceState]:
        with self._lock:
            return self._copy_states()

    def summary(self) -> dict:
        with self._lock:
            return self._summary.as_dict()

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _copy_states(self) -> list[InstanceState]:
        return [_copy(state) for state in self._states.values()]

    def _count(self, state: InstanceState, transition: Transition) -> tuple[InstanceState, dict]:
        """Count a transition in the totals; return a copy of the state and the new totals (under the lock)."""
        self._summary.move(state.type, state.tags, transition.previous, transition.current)
        return _copy(state), self._summary.as_dict()

    def _announce(self, transition: Transition, state: InstanceState, summary: dict) -> None:
        log.info("instance=%s status %s -> %s reason=%s", transition.name, transition.previous.value,
                 transition.current.value, transition.reason or "-")
        self._emit(events.instance_status_change(transition, state))
        self._emit(events.status_summary_update(summary))

    def _emit(self, event: dict) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.get("type"))


def _copy(state: InstanceState) -> InstanceState:
    """Copy a state for a reader; a shallow copy plus its two mutable fields, much cheaper than deepcopy."""
    return dataclasses.replace(state, tags=list(state.tags), details=dict(state.details))


def _new_state(instance: InstanceConfig) -> InstanceState:
    return InstanceState(key=instance.key, name=instance.name, type=instance.type, host=instance.host,
                         port=instance.port, tags=list(instance.tags))

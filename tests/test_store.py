"""Scenario tests of the state store; every StateStore implementation runs the same scenarios."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from dashapp.config import InstanceConfig
from dashapp.model import FailureKind, ProbeResult, Status
from dashapp.store.memory import MemoryStateStore

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=timezone.utc)


class FrozenClock:
    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


STORES = [pytest.param(MemoryStateStore, id="memory")]


@pytest.fixture(params=STORES)
def store_and_clock(request):
    clock = FrozenClock()
    return request.param(clock=clock), clock


def make_instance(name="订单库-主", **overrides) -> InstanceConfig:
    fields = dict(name=name, type="redis", host="127.0.0.1", port=6379, password="s3cret-Pw",
                  tags=("prod", "订单"))
    fields.update(overrides)
    return InstanceConfig(**fields)


def ok(clock: FrozenClock, seconds: float = 5) -> ProbeResult:
    return ProbeResult.success(1.5, {"version": "7.0.15"}, checked_at=clock.advance(seconds))


def refused(clock: FrozenClock, seconds: float = 5) -> ProbeResult:
    return ProbeResult.failed(FailureKind.REFUSED, "connection refused", checked_at=clock.advance(seconds))


def collect(store) -> list[dict]:
    received: list[dict] = []
    store.subscribe(received.append)
    return received


def test_new_instance_is_pending(store_and_clock):
    store, _ = store_and_clock
    store.configure([make_instance()])
    assert store.get("订单库-主").status == Status.PENDING


def test_first_failure_turns_abnormal(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance()])
    transition = store.record("订单库-主", refused(clock))
    assert transition.previous == Status.PENDING
    assert transition.current == Status.ABNORMAL
    assert transition.reason == "connection refused"
    assert store.get("订单库-主").since == clock.now


def test_down_and_up_makes_exactly_two_transitions(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance()])
    store.record("订单库-主", ok(clock))
    events = collect(store)
    results = [ok(clock), refused(clock), refused(clock), refused(clock), ok(clock), ok(clock)]
    transitions = [t for t in (store.record("订单库-主", r) for r in results) if t]
    assert [(t.previous, t.current) for t in transitions] == [
        (Status.RUNNING, Status.ABNORMAL), (Status.ABNORMAL, Status.RUNNING)]
    assert [e["type"] for e in events] == [
        "instance_status_change", "status_summary_update",
        "instance_status_change", "status_summary_update"]


def test_fail_threshold_waits_for_consecutive_failures(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance(fail_threshold=3)])
    store.record("订单库-主", ok(clock))
    assert store.record("订单库-主", refused(clock)) is None
    assert store.record("订单库-主", refused(clock)) is None
    assert store.record("订单库-主", ok(clock)) is None
    assert store.record("订单库-主", refused(clock)) is None
    assert store.record("订单库-主", refused(clock)) is None
    transition = store.record("订单库-主", refused(clock))
    assert transition.current == Status.ABNORMAL


def test_recover_threshold_waits_for_consecutive_successes(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance(recover_threshold=2)])
    store.record("订单库-主", refused(clock))
    assert store.record("订单库-主", ok(clock)) is None
    assert store.get("订单库-主").status == Status.ABNORMAL
    assert store.record("订单库-主", ok(clock)).current == Status.RUNNING


def test_abnormal_keeps_newest_reason_without_transition(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance()])
    store.record("订单库-主", refused(clock))
    since = store.get("订单库-主").since
    timeout = ProbeResult.failed(FailureKind.TIMEOUT, "no answer within 3.0 s", checked_at=clock.advance(5))
    assert store.record("订单库-主", timeout) is None
    state = store.get("订单库-主")
    assert state.failure == FailureKind.TIMEOUT
    assert state.reason == "no answer within 3.0 s"
    assert state.since == since


def test_maintenance_mutes_and_restores(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance()])
    store.record("订单库-主", ok(clock))
    assert store.set_maintenance("订单库-主", True, "upgrade").current == Status.MAINTENANCE
    assert store.record("订单库-主", refused(clock)) is None
    assert store.get("订单库-主").status == Status.MAINTENANCE
    assert store.set_maintenance("订单库-主", False).current == Status.ABNORMAL


def test_reconfigure_keeps_unchanged_and_resets_changed(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance("a"), make_instance("b")])
    store.record("a", ok(clock))
    store.record("b", ok(clock))
    store.configure([make_instance("a"), make_instance("b", port=6380), make_instance("c")])
    statuses = {state.name: state.status for state in store.snapshot()}
    assert statuses == {"a": Status.RUNNING, "b": Status.PENDING, "c": Status.PENDING}


def test_reconfigure_emits_snapshot_event(store_and_clock):
    store, _ = store_and_clock
    events = collect(store)
    store.configure([make_instance("a"), make_instance("b")])
    assert events[0]["type"] == "instances_status_update"
    assert [item["name"] for item in events[0]["instances"]] == ["a", "b"]
    assert events[1]["type"] == "status_summary_update"


def test_result_for_removed_instance_is_ignored(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance("a")])
    store.configure([])
    assert store.record("a", refused(clock)) is None


def test_summary_counts_by_status_type_and_tag(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance("a"), make_instance("b", type="mysql", port=3306, tags=("prod",)),
                     make_instance("c", type="mysql", port=3307, tags=())])
    store.record("a", ok(clock))
    store.record("b", refused(clock))
    summary = store.summary()
    assert summary["total"] == 3
    assert summary["by_status"]["running"] == 1
    assert summary["by_status"]["abnormal"] == 1
    assert summary["by_status"]["pending"] == 1
    assert summary["by_type"]["mysql"] == {"abnormal": 1, "pending": 1}
    assert summary["by_tag"]["prod"] == {"running": 1, "abnormal": 1}
    assert summary["by_tag"]["订单"] == {"running": 1}


def test_events_have_envelope_without_password(store_and_clock):
    store, clock = store_and_clock
    events = collect(store)
    store.configure([make_instance()])
    store.record("订单库-主", refused(clock))
    assert len(events) == 4
    for event in events:
        assert event["type"]
        assert event["server_time"].endswith("Z")
        assert "s3cret-Pw" not in json.dumps(event, ensure_ascii=False)


def test_failing_listener_does_not_stop_others(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance()])

    def broken(event):
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    received = collect(store)
    store.record("订单库-主", refused(clock))
    assert [e["type"] for e in received] == ["instance_status_change", "status_summary_update"]


def test_unsubscribe_stops_delivery(store_and_clock):
    store, clock = store_and_clock
    store.configure([make_instance()])
    received: list[dict] = []
    unsubscribe = store.subscribe(received.append)
    unsubscribe()
    store.record("订单库-主", refused(clock))
    assert received == []


def test_concurrent_records_make_consistent_transitions(store_and_clock):
    store, clock = store_and_clock
    names = [f"inst-{i}" for i in range(20)]
    store.configure([make_instance(name, port=7000 + i) for i, name in enumerate(names)])
    transitions = []
    store.subscribe(lambda e: transitions.append(e) if e["type"] == "instance_status_change" else None)

    def flap(name):
        for step in range(50):
            result = ProbeResult.success(1.0, {}) if step % 2 else ProbeResult.failed(FailureKind.REFUSED, "x")
            store.record(name, result)

    threads = [threading.Thread(target=flap, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(transitions) == 20 * 50
    assert all(state.status == Status.RUNNING for state in store.snapshot())


def test_kept_summary_matches_recount(store_and_clock):
    from dashapp.events import summarize
    import random

    store, clock = store_and_clock
    types = ["redis", "mysql", "postgresql", "tcp"]
    tags = [(), ("prod",), ("prod", "订单"), ("报表",)]
    instances = [make_instance(f"n{i}", type=types[i % 4], port=7000 + i, tags=tags[i % 4]) for i in range(40)]
    store.configure(instances)
    chooser = random.Random(7)
    for step in range(400):
        name = f"n{chooser.randrange(40)}"
        if step % 37 == 0:
            store.set_maintenance(name, chooser.random() < 0.5)
        elif chooser.random() < 0.5:
            store.record(name, ok(clock, 1))
        else:
            store.record(name, refused(clock, 1))
    assert store.summary() == summarize(store.snapshot())

"""Tests of the push hub over a real uvicorn server and real WebSocket clients on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from websockets.exceptions import ConnectionClosed

from dashapp import events
from dashapp.config import InstanceConfig
from dashapp.model import FailureKind, InstanceState, ProbeResult, Status
from dashapp.push import PushHub, changed_metrics
from dashapp.server import create_asgi_app
from dashapp.store.memory import MemoryStateStore
from live_server import LiveServer, make_dash_app, open_socket, receive_message, receive_until, wait_for

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=timezone.utc)
PASSWORD = "p@ss:/#w?rd%"


def make_instance(name: str, **overrides) -> InstanceConfig:
    fields = dict(name=name, type="redis", host="127.0.0.1", port=6379, password=PASSWORD, tags=("prod",))
    fields.update(overrides)
    return InstanceConfig(**fields)


DEFAULT_INSTANCES = [make_instance("订单库-主"), make_instance("缓存·会话", type="mysql", port=3306),
                     make_instance("报表库 🐘", type="postgresql", port=5432, tags=("report",))]


def failed(reason: str = "connection refused", at: datetime | None = None) -> ProbeResult:
    return ProbeResult.failed(FailureKind.REFUSED, reason, checked_at=at)


def succeeded(latency_ms: float = 1.5, details: dict | None = None, at: datetime | None = None) -> ProbeResult:
    return ProbeResult.success(latency_ms, details if details is not None else {"version": "7.0.15"},
                               checked_at=at)


@dataclass
class Stack:
    store: MemoryStateStore
    hub: PushHub
    server: LiveServer


@pytest.fixture
def start_stack():
    """Start store, hub and server; `hub_options` go to PushHub. Everything stops after the test."""
    servers: list[LiveServer] = []

    def start(instances=None, **hub_options) -> Stack:
        store = MemoryStateStore()
        store.configure(instances if instances is not None else DEFAULT_INSTANCES)
        hub_options.setdefault("metrics_interval", 60.0)
        hub = PushHub(store, **hub_options)
        server = LiveServer(create_asgi_app(make_dash_app(), hub)).start()
        servers.append(server)
        return Stack(store, hub, server)

    yield start
    for server in servers:
        server.stop()


def run(coroutine):
    return asyncio.run(coroutine)


def is_type(event_type: str):
    return lambda message: message["type"] == event_type


# --- snapshot and transitions ---------------------------------------------------------------

def test_connect_sends_snapshot_first(start_stack):
    stack = start_stack()
    stack.store.record("订单库-主", failed())

    async def scenario():
        async with open_socket(stack.server) as websocket:
            return await receive_message(websocket)

    first = run(scenario())
    assert first["type"] == events.INSTANCES_STATUS_UPDATE
    assert [item["name"] for item in first["instances"]] == ["订单库-主", "缓存·会话", "报表库 🐘"]
    assert first["instances"][0]["status"] == "abnormal"
    assert first["summary"]["by_status"]["abnormal"] == 1


def test_transition_sends_change_then_summary(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            stack.store.record("缓存·会话", failed("timed out after 3.0 s"))
            return [await receive_message(websocket), await receive_message(websocket)]

    change, summary = run(scenario())
    assert change["type"] == events.INSTANCE_STATUS_CHANGE
    assert change["name"] == "缓存·会话"
    assert change["previous"] == "pending"
    assert change["current"] == "abnormal"
    assert change["reason"] == "timed out after 3.0 s"
    assert summary["type"] == events.STATUS_SUMMARY_UPDATE
    assert summary["summary"]["by_status"]["abnormal"] == 1


def test_transitions_arrive_in_order(start_stack):
    stack = start_stack()
    steps = 40

    def flap():
        for step in range(steps):
            at = T0 + timedelta(seconds=step)
            stack.store.record("订单库-主", failed(at=at) if step % 2 == 0 else succeeded(at=at))

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            thread = threading.Thread(target=flap)
            thread.start()
            received = []
            while len(received) < 2 * steps:
                received.append(await receive_message(websocket))
            thread.join()
            return received

    received = run(scenario())
    types = [message["type"] for message in received]
    changes = [message for message in received if message["type"] == events.INSTANCE_STATUS_CHANGE]
    assert types == [events.INSTANCE_STATUS_CHANGE, events.STATUS_SUMMARY_UPDATE] * steps
    assert [change["current"] for change in changes] == ["abnormal", "running"] * (steps // 2)
    assert [change["at"] for change in changes] == sorted(change["at"] for change in changes)


def test_configure_pushes_new_instance_list(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            stack.store.configure([make_instance("新实例")])
            return await receive_until(websocket, is_type(events.INSTANCES_STATUS_UPDATE))

    update = run(scenario())[-1]
    assert [item["name"] for item in update["instances"]] == ["新实例"]


# --- no event lost between the snapshot and the subscription --------------------------------

class PageView:
    """What a page shows: the snapshot, then each change applied.

    A change whose time is not after the `since` the view shows is a duplicate of the snapshot
    and skipped. Any other change must start from the status the view shows, or one was lost.
    """

    def __init__(self):
        self.instances: dict[str, dict] = {}
        self.summary: dict | None = None
        self.first_type: str | None = None
        self.gaps: list[str] = []

    def apply(self, message: dict) -> None:
        if self.first_type is None:
            self.first_type = message["type"]
        if message["type"] == events.INSTANCES_STATUS_UPDATE:
            self.instances = {item["key"]: item for item in message["instances"]}
            self.summary = message["summary"]
        elif message["type"] == events.STATUS_SUMMARY_UPDATE:
            self.summary = message["summary"]
        elif message["type"] == events.INSTANCE_STATUS_CHANGE:
            self._apply_change(message)

    def _apply_change(self, change: dict) -> None:
        displayed = self.instances[change["instance"]["key"]]
        if displayed["since"] is not None and change["at"] <= displayed["since"]:
            return
        if change["previous"] != displayed["status"]:
            self.gaps.append(f"{change['name']}: shown {displayed['status']}, change from {change['previous']}")
        self.instances[change["instance"]["key"]] = change["instance"]


def status_fields(instance: dict) -> tuple:
    return instance["status"], instance["since"], instance["reason"], instance["failure"]


def test_connect_during_changes_loses_nothing(start_stack):
    names = [f"db-{index}" for index in range(6)]
    stack = start_stack([make_instance(name) for name in names + ["marker"]], queue_size=100_000)
    page_count = 12
    stop = threading.Event()
    recorded = [0]

    def hammer():
        # Checked times increase by one second per result, so each change has its own time.
        # The short pause paces the producer near what a busy scheduler emits, so the loop
        # serving the pages is not starved of the GIL and handshakes still complete.
        chooser = random.Random(7)
        while not stop.is_set() and recorded[0] < 100_000:
            at = T0 + timedelta(seconds=recorded[0])
            name = chooser.choice(names)
            stack.store.record(name, failed(at=at) if chooser.random() < 0.5 else succeeded(at=at))
            recorded[0] += 1
            time.sleep(0.0005)

    async def follow(websocket, view: PageView):
        marker_seen = False
        while True:
            message = await receive_message(websocket)
            view.apply(message)
            if message["type"] == events.INSTANCE_STATUS_CHANGE and message["name"] == "marker":
                marker_seen = True
            elif marker_seen and message["type"] == events.STATUS_SUMMARY_UPDATE:
                return

    async def scenario():
        views = [PageView() for _ in range(page_count)]
        sockets = []
        readers = []
        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            for view in views:
                websocket = await open_socket(stack.server)
                sockets.append(websocket)
                readers.append(asyncio.create_task(follow(websocket, view)))
            # Keep changing state for a while after the last page connected.
            after_last = recorded[0]
            while recorded[0] < after_last + 500 and thread.is_alive():
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            thread.join()
        stack.store.record("marker", failed("marker", at=T0 + timedelta(days=30)))
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        for websocket in sockets:
            await websocket.close()
        return views

    views = run(scenario())
    expected = {state.key: status_fields(state.to_dict()) for state in stack.store.snapshot()}
    expected_summary = stack.store.summary()
    for index, view in enumerate(views):
        assert view.first_type == events.INSTANCES_STATUS_UPDATE, f"page {index}"
        assert view.gaps == [], f"page {index}"
        assert {key: status_fields(item) for key, item in view.instances.items()} == expected, f"page {index}"
        assert view.summary == expected_summary, f"page {index}"


# --- slow pages ----------------------------------------------------------------------------

def test_slow_page_closed_others_keep_up(start_stack):
    stack = start_stack([make_instance("big"), make_instance("other")], queue_size=16)
    # A large details value fills the socket buffers of a page that stopped reading quickly.
    blob = {"version": "7.0.15", "notes": "x" * 64 * 1024}

    async def scenario():
        async with open_socket(stack.server, max_size=None) as fast, \
                open_socket(stack.server, max_size=None, max_queue=1) as slow:
            await receive_message(fast)
            wait_for(lambda: stack.hub.client_count() == 2)
            changes_seen = []
            for step in range(2000):
                if stack.hub.client_count() < 2:
                    break
                stack.store.record("big", failed() if step % 2 == 0 else succeeded(details=blob))
                received = await receive_until(fast, is_type(events.STATUS_SUMMARY_UPDATE))
                changes_seen += [m["current"] for m in received if m["type"] == events.INSTANCE_STATUS_CHANGE]
            slow_dropped_after = step
            open_after_drop = stack.hub.client_count()
            fast_still_open = fast.state.name == "OPEN"

            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(slow.recv(), 10)
            return slow_dropped_after, open_after_drop, fast_still_open, changes_seen, closed.value

    slow_dropped_after, open_after_drop, fast_still_open, changes_seen, closed = run(scenario())
    assert slow_dropped_after < 2000
    assert open_after_drop == 1
    assert fast_still_open
    assert changes_seen == ["abnormal", "running"] * (slow_dropped_after // 2) + ["abnormal"] * (slow_dropped_after % 2)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1013


def test_reconnect_gets_fresh_snapshot(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as websocket:
            first = await receive_message(websocket)
        wait_for(lambda: stack.hub.client_count() == 0)
        stack.store.record("报表库 🐘", failed("authentication failed"))
        async with open_socket(stack.server) as websocket:
            second = await receive_message(websocket)
        return first, second

    first, second = run(scenario())
    assert second["type"] == events.INSTANCES_STATUS_UPDATE
    assert first["instances"][2]["status"] == "pending"
    assert second["instances"][2]["status"] == "abnormal"
    assert second["instances"][2]["reason"] == "authentication failed"


def test_client_count_follows_connections(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as first, open_socket(stack.server) as second:
            await receive_message(first)
            await receive_message(second)
            open_count = stack.hub.client_count()
        wait_for(lambda: stack.hub.client_count() == 0)
        return open_count

    assert run(scenario()) == 2
    assert stack.hub.client_count() == 0


def test_server_shutdown_closes_pages(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            await asyncio.to_thread(stack.server.stop)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(websocket.recv(), 10)
            return closed.value

    closed = run(scenario())
    assert closed.rcvd is not None
    assert closed.rcvd.code in (1001, 1012)


class UnreadableStore(MemoryStateStore):
    """A store whose snapshot fails, as a Redis-backed store does while Redis is down."""

    def snapshot(self):
        raise ConnectionError("store unreachable")


def test_snapshot_failure_closes_1011(caplog):
    store = UnreadableStore()
    store.configure(DEFAULT_INSTANCES)
    hub = PushHub(store, metrics_interval=60.0)
    server = LiveServer(create_asgi_app(make_dash_app(), hub)).start()

    async def scenario():
        async with open_socket(server) as websocket:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(websocket.recv(), 10)
            return closed.value

    try:
        closed = run(scenario())
    finally:
        server.stop()
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1011
    assert any("pushing to page" in record.getMessage() for record in caplog.records
               if record.name == "dashapp.push" and record.levelname == "ERROR")


# --- what pages send -----------------------------------------------------------------------

def test_ping_gets_pong(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            await websocket.send(json.dumps({"type": "ping"}))
            return await receive_message(websocket)

    pong = run(scenario())
    assert pong["type"] == "pong"
    assert "server_time" in pong


def test_other_page_text_ignored(start_stack):
    stack = start_stack()

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            for text in ["not json", "[1, 2]", json.dumps({"type": "subscribe"}), "{}"]:
                await websocket.send(text)
            await websocket.send(b"\x00\x01")
            await websocket.send(json.dumps({"type": "ping"}))
            return await receive_message(websocket)

    assert run(scenario())["type"] == "pong"


# --- heartbeat -----------------------------------------------------------------------------

def test_heartbeat_carries_changed_metrics(start_stack):
    stack = start_stack(metrics_interval=0.05)
    key = DEFAULT_INSTANCES[0].key

    async def scenario():
        async with open_socket(stack.server) as websocket:
            await receive_message(websocket)
            # The first heartbeat reports every instance; wait for a quiet one before the change.
            await receive_until(websocket, lambda m: m["type"] == "heartbeat" and not m["metrics"])
            stack.store.record("订单库-主", succeeded(latency_ms=12.345))
            changed = (await receive_until(websocket, lambda m: m["type"] == "heartbeat" and m["metrics"]))[-1]
            following = (await receive_until(websocket, is_type("heartbeat")))[-1]
            return changed, following

    changed, following = run(scenario())
    assert list(changed["metrics"]) == [key]
    assert changed["metrics"][key]["latency_ms"] == 12.35
    assert changed["metrics"][key]["last_check"] == stack.store.get("订单库-主").to_dict()["last_check"]
    assert following["metrics"] == {}


def test_changed_metrics_reports_only_changes():
    def state(key: str, latency: float | None, checked: datetime | None) -> InstanceState:
        return InstanceState(key=key, name=key, type="tcp", host="127.0.0.1", port=1, tags=[],
                             status=Status.RUNNING, latency_ms=latency, last_check=checked)

    first, baseline = changed_metrics([state("a", 1.0, T0), state("b", None, None)], {})
    second, _ = changed_metrics([state("a", 1.0, T0), state("b", 2.0, T0)], baseline)
    assert set(first) == {"a", "b"}
    assert second == {"b": {"latency_ms": 2.0, "last_check": "2026-12-04T12:00:00.000Z"}}


# --- every frame ---------------------------------------------------------------------------

def test_frames_typed_timed_and_password_free(start_stack):
    stack = start_stack(metrics_interval=0.05)

    async def scenario():
        async with open_socket(stack.server) as websocket:
            frames = [await asyncio.wait_for(websocket.recv(), 10)]
            stack.store.record("订单库-主", failed("authentication failed for user mon"))
            stack.store.record("缓存·会话", succeeded(latency_ms=3.0))
            await websocket.send(json.dumps({"type": "ping"}))
            seen_types = set()
            while not {events.INSTANCE_STATUS_CHANGE, events.STATUS_SUMMARY_UPDATE, "heartbeat",
                       "pong"} <= seen_types:
                frames.append(await asyncio.wait_for(websocket.recv(), 10))
                seen_types.add(json.loads(frames[-1])["type"])
            return frames

    frames = run(scenario())
    for frame in frames:
        message = json.loads(frame)
        assert PASSWORD not in frame
        assert isinstance(message.get("type"), str), frame[:200]
        assert isinstance(message.get("server_time"), str), frame[:200]

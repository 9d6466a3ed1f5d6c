"""The scheduler against real servers: rhythm, skips, the exit watch, the watchdog and reloads."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict

import pytest

from dashapp.model import FailureKind, ProbeResult, Status
from dashapp.scheduler import Monitor
from dashapp.store.memory import MemoryStateStore
from tests import servers


class RecordingStore(MemoryStateStore):
    """The real memory store, also keeping when each instance's results arrived."""

    def __init__(self):
        super().__init__()
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.transitions = []

    def record(self, name, result):
        self.arrivals[name].append(time.monotonic())
        transition = super().record(name, result)
        if transition:
            self.transitions.append(transition)
        return transition


@pytest.fixture
def store():
    return RecordingStore()


@pytest.fixture
def monitor(store):
    started = []

    def start(instances, **options):
        running = Monitor(store, **options)
        running.start(instances)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def status_of(store, name):
    state = store.get(name)
    return state.status if state else None


def wait_for_status(store, name, status, timeout):
    servers.wait_until(lambda: status_of(store, name) == status, timeout, f"{name} to become {status.value}")


def test_killed_redis_turns_abnormal_and_back(store, monitor, make_instance, redis_server):
    instance = make_instance("redis", port=redis_server.port, name="缓存·会话", interval=1, timeout=2)
    monitor([instance])
    wait_for_status(store, instance.name, Status.RUNNING, 10)

    redis_server.kill()
    wait_for_status(store, instance.name, Status.ABNORMAL, 5)
    assert store.get(instance.name).failure == FailureKind.REFUSED

    redis_server.start()
    wait_for_status(store, instance.name, Status.RUNNING, 5)
    changes = [(t.previous, t.current) for t in store.transitions]
    assert changes == [(Status.PENDING, Status.RUNNING), (Status.RUNNING, Status.ABNORMAL),
                       (Status.ABNORMAL, Status.RUNNING)]


def test_exit_watch_catches_killed_redis(store, monitor, make_instance, redis_server):
    instance = make_instance("redis", port=redis_server.port, interval=60, timeout=2)
    monitor([instance])
    wait_for_status(store, instance.name, Status.RUNNING, 10)

    redis_server.kill()
    # With a 60 s interval only the exit watch can report this within seconds.
    wait_for_status(store, instance.name, Status.ABNORMAL, 5)


def test_exit_watch_catches_killed_mariadb(store, monitor, make_instance, mariadb_server):
    instance = make_instance("mysql", port=mariadb_server.port, user="root", database=None,
                             interval=60, timeout=2)
    monitor([instance])
    wait_for_status(store, instance.name, Status.RUNNING, 10)

    mariadb_server.kill()
    wait_for_status(store, instance.name, Status.ABNORMAL, 5)


def test_stopped_mariadb_turns_abnormal_and_back(store, monitor, make_instance, mariadb_server):
    instance = make_instance("mysql", port=mariadb_server.port, user="root", database=None,
                             interval=1, timeout=2)
    monitor([instance])
    wait_for_status(store, instance.name, Status.RUNNING, 10)

    mariadb_server.stop()
    wait_for_status(store, instance.name, Status.ABNORMAL, 5)

    mariadb_server.start()
    wait_for_status(store, instance.name, Status.RUNNING, 10)


def test_steady_checks_run_on_the_probe_loop(store, monitor, make_instance):
    instances = [make_instance(type_name, interval=0.5) for type_name in ("mysql", "redis", "postgresql", "tcp")]
    running = monitor(instances)
    servers.wait_until(lambda: all(len(store.arrivals[instance.name]) >= 6 for instance in instances), 10,
                       "six results per instance")
    for instance in instances:
        assert status_of(store, instance.name) == Status.RUNNING, instance.name
    stats = running.stats()
    # One full check per database instance connects and reads details, and at most one more per
    # instance refreshes them if its 30 s refresh period turned meanwhile. The rest are quick
    # checks; a TCP check by IP address is always quick.
    assert 3 <= stats["full_checks"] <= 6, stats
    assert stats["quick_checks"] >= 4 * 5, stats


def test_maintenance_holds_status_while_probing(store, monitor, make_instance, redis_server):
    instance = make_instance("redis", port=redis_server.port, interval=0.5, maintenance=True)
    running = monitor([instance])
    servers.wait_until(lambda: len(store.arrivals[instance.name]) >= 2, 10, "two probes")
    assert status_of(store, instance.name) == Status.MAINTENANCE

    redis_server.kill()
    count = len(store.arrivals[instance.name])
    servers.wait_until(lambda: len(store.arrivals[instance.name]) >= count + 2, 10, "probes of the dead server")
    assert status_of(store, instance.name) == Status.MAINTENANCE
    assert store.get(instance.name).failure == FailureKind.REFUSED

    # Leaving maintenance shows what the latest probe found, without waiting for the next one.
    redis_server.start()
    wait_for_status(store, instance.name, Status.MAINTENANCE, 1)
    running.reload([dataclasses.replace(instance, maintenance=False)])
    assert status_of(store, instance.name) in (Status.ABNORMAL, Status.RUNNING)
    wait_for_status(store, instance.name, Status.RUNNING, 10)
    # Maintenance applied before the first result, so no probe ever moved it out of pending.
    assert all(t.previous != Status.PENDING for t in store.transitions), store.transitions


def test_stalled_probe_is_skipped_not_queued(store, monitor, make_instance):
    with servers.SilentListener() as listener:
        instance = make_instance("redis", port=listener.port, interval=0.5, timeout=2)
        monitor([instance])
        wait_for_status(store, instance.name, Status.ABNORMAL, 5)
        first = store.arrivals[instance.name][0]
        servers.wait_until(lambda: time.monotonic() - first > 4.1, 6, "4 s of probing")
        # A 2 s probe every 0.5 s: at most one result per 2 s, never a backlog of queued runs.
        assert len(store.arrivals[instance.name]) <= 4


def test_dead_instances_do_not_delay_living_ones(store, monitor, make_instance):
    """Twelve silent listeners beside the local MariaDB, Redis and PostgreSQL."""
    with servers_silent(12) as listeners:
        types = ["mysql", "redis", "postgresql"]
        living = [make_instance(type_name, interval=5, timeout=3) for type_name in types]
        dead = [make_instance(types[i % 3], port=listener.port, interval=5, timeout=3)
                for i, listener in enumerate(listeners)]
        monitor(living + dead)

        deadline = time.monotonic() + 21
        servers.wait_until(lambda: time.monotonic() > deadline, 25, "four rounds of probes")

        for instance in living:
            assert status_of(store, instance.name) == Status.RUNNING, instance.name
            # The start-up probe runs at once and the regular ones at the instance's stable phase
            # within the interval, so the rhythm is measured from the second probe on.
            arrivals = store.arrivals[instance.name][1:]
            gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
            assert len(gaps) >= 2, (instance.name, gaps)
            assert all(4.0 <= gap <= 6.0 for gap in gaps), (instance.name, gaps)
        for instance in dead:
            assert status_of(store, instance.name) == Status.ABNORMAL, instance.name
            assert store.get(instance.name).failure == FailureKind.TIMEOUT, instance.name


class servers_silent:
    """Open several silent listeners at once."""

    def __init__(self, count: int):
        self.listeners = [servers.SilentListener() for _ in range(count)]

    def __enter__(self):
        return [listener.__enter__() for listener in self.listeners]

    def __exit__(self, *exc_info):
        for listener in self.listeners:
            listener.__exit__(*exc_info)


class HangingProbe:
    """A probe whose driver ignores its timeout: it returns only when the test releases it."""

    def __init__(self, instance):
        self.instance = instance
        self.release = threading.Event()

    def check(self) -> ProbeResult:
        self.release.wait(30)
        return ProbeResult.success(1.0, {})

    def idle_fileno(self):
        return None

    def close(self) -> None:
        self.release.set()


def test_watchdog_reports_overrunning_probe(store, monitor, make_instance):
    probes = []

    def factory(instance):
        probes.append(HangingProbe(instance))
        return probes[-1]

    instance = make_instance("tcp", port=1, interval=60, timeout=0.5)
    monitor([instance], probe_factory=factory, probe_loop=False)
    wait_for_status(store, instance.name, Status.ABNORMAL, 5)
    assert store.get(instance.name).failure == FailureKind.TIMEOUT

    probes[0].release.set()
    servers.wait_until(lambda: len(store.arrivals[instance.name]) >= 1, 2, "the watchdog's result")
    # The late success of the abandoned probe must not overwrite the timeout.
    assert status_of(store, instance.name) == Status.ABNORMAL


def test_reload_adds_and_removes_instances(store, monitor, make_instance, redis_server):
    kept = make_instance("redis", name="kept", interval=1)
    removed = make_instance("redis", port=redis_server.port, name="removed", interval=1)
    running = monitor([kept, removed])
    wait_for_status(store, "removed", Status.RUNNING, 10)
    servers.wait_until(lambda: redis_server.connection_count() >= 1, 5, "a kept connection")

    added = make_instance("postgresql", name="added", interval=1)
    running.reload([kept, added])
    wait_for_status(store, "added", Status.RUNNING, 10)
    assert status_of(store, "removed") is None
    assert status_of(store, "kept") == Status.RUNNING
    servers.wait_until(lambda: redis_server.connection_count() == 0, 5, "the removed connection to close")


def test_stop_closes_kept_connections(store, monitor, make_instance, redis_server):
    instance = make_instance("redis", port=redis_server.port, interval=1)
    running = Monitor(store)
    running.start([instance])
    wait_for_status(store, instance.name, Status.RUNNING, 10)
    servers.wait_until(lambda: redis_server.connection_count() >= 1, 5, "a kept connection")
    running.stop()
    servers.wait_until(lambda: redis_server.connection_count() == 0, 5, "connections to close")


def test_phases_spread_probes_over_interval(make_instance):
    from dashapp.scheduler import _phase

    instances = [make_instance("tcp", port=1, name=f"实例-{i}", interval=5) for i in range(1000)]
    phases = [_phase(instance).total_seconds() for instance in instances]
    assert all(0 <= phase < 5 for phase in phases)
    per_second = [sum(1 for phase in phases if second <= phase < second + 1) for second in range(5)]
    assert min(per_second) > 150, per_second
    assert _phase(instances[0]) == _phase(make_instance("tcp", port=2, name="实例-0", interval=5))

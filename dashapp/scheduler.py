"""The scheduler: probe every instance on its interval, store the results, re-probe on a socket's exit.

A run reads as probe -> store: the store decides whether the result is a transition and emits the
events. APScheduler triggers the runs; probes run concurrently on its bounded thread pool, and a
run whose previous probe of the same instance is still in flight is skipped, not queued.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from dashapp.config import InstanceConfig
from dashapp.exitwatch import ExitWatch
from dashapp.model import FailureKind, ProbeResult
from dashapp.probes import create_probe
from dashapp.probes.base import Probe
from dashapp.store.base import StateStore

log = logging.getLogger(__name__)

# How long past its own timeout a probe may run before the watchdog reports it as timed out. Probes
# bound every step themselves; this catches a step a driver does not bound (a stuck DNS resolver).
WATCHDOG_GRACE_S = 1.0
WATCHDOG_PERIOD_S = 0.5
MAX_WORKERS_CAP = 2048


def _phase(instance: InstanceConfig) -> timedelta:
    """Offset an instance's probes within its interval, the same for the same name.

    Every instance probes at once on start-up; after that, instances whose probes all fell on the
    same instant would wake thousands of threads together every interval. A stable offset derived
    from the key spreads them evenly and keeps an instance's rhythm across reloads.
    """
    fraction = int(instance.key[1:], 16) % 1000 / 1000
    return timedelta(seconds=instance.interval * fraction)


class _SkipFilter(logging.Filter):
    """Drop APScheduler's per-skip warning: a skipped run is expected while a probe waits for its timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_apscheduler_log = logging.getLogger(__name__ + ".apscheduler")
_apscheduler_log.addFilter(_SkipFilter())
# APScheduler logs every job it adds at INFO: thousands of lines at start-up that say nothing new.
_apscheduler_log.setLevel(logging.WARNING)


@dataclass
class _Flight:
    """A probe in progress: when it started, and whether the watchdog already reported it."""

    started: float
    abandoned: bool = False


class Monitor:
    """Own the probes of the configured instances and keep the store current.

    `clock` is a monotonic clock in seconds, injectable for tests of the watchdog.
    """

    def __init__(self, store: StateStore, *, probe_factory: Callable[[InstanceConfig], Probe] = create_probe,
                 max_workers: int | None = None, exit_watch: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._probe_factory = probe_factory
        self._max_workers = max_workers
        self._clock = clock
        self._lock = threading.Lock()
        self._instances: dict[str, InstanceConfig] = {}
        self._probes: dict[str, Probe] = {}
        self._flights: dict[str, _Flight] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._watch = ExitWatch(self.probe_now) if exit_watch else None

    # Life cycle

    def start(self, instances: Iterable[InstanceConfig]) -> None:
        """Configure the store and start probing; every instance's first probe starts at once."""
        enabled = [instance for instance in instances if instance.enabled]
        workers = self._max_workers or min(MAX_WORKERS_CAP, max(16, len(enabled)))
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            logger=_apscheduler_log,
        )
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self._scheduler.add_job(self._check_overdue, "interval", seconds=WATCHDOG_PERIOD_S,
                                id="watchdog", max_instances=1)
        if self._watch:
            self._watch.start()
        self._scheduler.start()
        self.reload(enabled)
        log.info("scheduler started: instances=%d workers=%d", len(enabled), workers)

    def stop(self) -> None:
        """Stop scheduling, wait for running probes, and close every kept connection."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self._watch:
            self._watch.stop()
        with self._lock:
            probes = list(self._probes.values())
            self._probes.clear()
        for probe in probes:
            probe.close()
        log.info("scheduler stopped")

    def reload(self, instances: Iterable[InstanceConfig]) -> None:
        """Apply a new set of instances: keep unchanged ones running, replace changed, drop removed."""
        wanted = {instance.name: instance for instance in instances if instance.enabled}
        with self._lock:
            current = dict(self._instances)
        self._store.configure(wanted.values())

        for name, instance in current.items():
            if name not in wanted or not instance.same_target(wanted[name]):
                self._remove(instance)
        for name, instance in wanted.items():
            if name not in current or not current[name].same_target(instance):
                self._add(instance)

    def probe_now(self, name: str) -> None:
        """Run an instance's probe as soon as a worker is free, instead of at its next turn."""
        with self._lock:
            instance = self._instances.get(name)
        if instance is None or self._scheduler is None:
            return
        log.debug("instance=%s probing now", name)
        try:
            self._scheduler.modify_job(instance.key, next_run_time=datetime.now(self._scheduler.timezone))
        except Exception:
            log.exception("instance=%s failed to schedule an immediate probe", name)

    # Jobs

    def _add(self, instance: InstanceConfig) -> None:
        with self._lock:
            self._instances[instance.name] = instance
            self._probes[instance.name] = self._probe_factory(instance)
        now = datetime.now(self._scheduler.timezone)
        trigger = IntervalTrigger(seconds=instance.interval, start_date=now + _phase(instance),
                                  timezone=self._scheduler.timezone)
        self._scheduler.add_job(self._run, trigger, args=[instance.name], id=instance.key,
                                name=instance.name, replace_existing=True, next_run_time=now)

    def _remove(self, instance: InstanceConfig) -> None:
        try:
            self._scheduler.remove_job(instance.key)
        except Exception:
            log.debug("instance=%s had no job to remove", instance.name)
        if self._watch:
            self._watch.unwatch(instance.name)
        with self._lock:
            self._instances.pop(instance.name, None)
            probe = self._probes.pop(instance.name, None)
        if probe is not None:
            probe.close()

    def _run(self, name: str) -> None:
        """Probe one instance and store the result (a job: it must never raise)."""
        with self._lock:
            probe = self._probes.get(name)
            if probe is None:
                return
            flight = _Flight(started=self._clock())
            self._flights[name] = flight
        if self._watch:
            self._watch.unwatch(name)

        try:
            result = probe.check()
        except Exception as error:
            log.exception("instance=%s probe raised; recording it as failed", name)
            result = ProbeResult.failed(FailureKind.OTHER, f"probe error: {type(error).__name__}")

        with self._lock:
            if self._flights.get(name) is flight:
                del self._flights[name]
            still_current = self._probes.get(name) is probe
        if flight.abandoned or not still_current:
            return
        self._store.record(name, result)

        fileno = probe.idle_fileno() if self._watch else None
        if fileno is not None:
            self._watch.watch(name, fileno)

    def _check_overdue(self) -> None:
        """Report a probe that overran its timeout as timed out, once, without waiting for its thread."""
        now = self._clock()
        overdue: list[tuple[str, float]] = []
        with self._lock:
            for name, flight in self._flights.items():
                timeout = self._instances[name].timeout if name in self._instances else 0
                if not flight.abandoned and now - flight.started > timeout + WATCHDOG_GRACE_S:
                    flight.abandoned = True
                    overdue.append((name, now - flight.started))
        for name, elapsed in overdue:
            log.warning("instance=%s probe still running after %.1f s; reporting a timeout", name, elapsed)
            self._store.record(name, ProbeResult.failed(
                FailureKind.TIMEOUT, f"no answer within {elapsed:.1f} s", latency_ms=elapsed * 1000))

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        log.debug("job=%s skipped: the previous probe is still running", event.job_id)

    # Introspection for the pages and benchmarks

    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)

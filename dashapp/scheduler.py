"""The scheduler: probe every instance on its interval, store the results, re-probe on a socket's exit.

A run reads as probe -> store: the store decides whether the result is a transition and emits the
events. APScheduler triggers the runs, and probes run concurrently on its bounded thread pool. A
run whose previous probe of the same instance is still in flight is skipped, not queued.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
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
MAX_WORKERS = 1024
MIN_WORKERS = 32


def default_workers(instance_count: int) -> int:
    """Size the probe pool: a worker per four instances, between 32 and 1,024.

    A healthy probe occupies a worker for milliseconds, but a silent server occupies one for its
    whole timeout, so the pool must cover the silent share. More threads than about a thousand cost
    more in GIL contention than they add in concurrency on a 2-core machine (bench/RESULTS.md).
    """
    return min(MAX_WORKERS, max(MIN_WORKERS, instance_count // 4))


def _phase(instance: InstanceConfig) -> timedelta:
    """Offset an instance's probes within its interval, the same for the same name.

    Every instance probes at once on start-up. If later probes all fell on the same instant, each
    interval would wake thousands of threads together. A stable offset derived
    from the key spreads them evenly and keeps an instance's rhythm across reloads.
    """
    fraction = int(instance.key[1:], 16) % 1000 / 1000
    return timedelta(seconds=instance.interval * fraction)


class _SkipFilter(logging.Filter):
    """Drop APScheduler's per-skip warning: a skipped run is expected while a probe waits for its timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The format string, not the formatted message: formatting costs measurable CPU per skip.
        return "maximum number of running instances reached" not in str(record.msg)


_apscheduler_log = logging.getLogger(__name__ + ".apscheduler")
_apscheduler_log.addFilter(_SkipFilter())
# APScheduler logs every job it adds at INFO, which means thousands of uninformative lines at start-up.
_apscheduler_log.setLevel(logging.WARNING)


@dataclass
class _Flight:
    """A probe in progress: when it started, and whether the watchdog already reported it."""

    started: float
    abandoned: bool = False


@dataclass
class _Entry:
    """One configured instance, its probe, and the probe run in progress, if any.

    `guard` lets one run of the probe at a time: a scheduled run, the start-up run and a run
    requested by the exit watch may otherwise overlap.
    """

    instance: InstanceConfig
    probe: Probe
    guard: threading.Lock = field(default_factory=threading.Lock)
    flight: _Flight | None = None
    removed: bool = False


class Monitor:
    """Own the probes of the configured instances and keep the store current.

    `clock` is a monotonic clock in seconds, injectable for tests of the watchdog. The probe
    threads read `_entries` without a lock: a reload builds a new dict and swaps it in whole, so
    thousands of probe threads never queue on one lock.
    """

    def __init__(self, store: StateStore, *, probe_factory: Callable[[InstanceConfig], Probe] = create_probe,
                 max_workers: int | None = None, exit_watch: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._probe_factory = probe_factory
        self._max_workers = max_workers
        self._clock = clock
        self._reload_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._watch = ExitWatch(self.probe_now) if exit_watch else None

    # Life cycle

    def start(self, instances: Iterable[InstanceConfig]) -> None:
        """Configure the store and start probing; every instance's first probe starts at once."""
        enabled = [instance for instance in instances if instance.enabled]
        workers = self._max_workers or default_workers(len(enabled))
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
        # Each job added to a running scheduler wakes its thread. With thousands of instances that
        # thread would contend with this one for the job store until all jobs are added.
        self._scheduler.start(paused=True)
        self.reload(enabled)
        self._scheduler.resume()
        log.info("scheduler started: instances=%d workers=%d", len(enabled), workers)

    def stop(self) -> None:
        """Stop scheduling, wait for running probes, and close every kept connection."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self._watch:
            self._watch.stop()
        with self._reload_lock:
            entries, self._entries = self._entries, {}
        for entry in entries.values():
            entry.removed = True
            entry.probe.close()
        log.info("scheduler stopped")

    def reload(self, instances: Iterable[InstanceConfig]) -> None:
        """Apply a new set of instances: keep unchanged ones running, replace changed, drop removed."""
        wanted = {instance.name: instance for instance in instances if instance.enabled}
        with self._reload_lock:
            self._store.configure(wanted.values())
            current = self._entries
            entries = dict(current)
            removed = [entry for name, entry in current.items()
                       if name not in wanted or not entry.instance.same_target(wanted[name])]
            added = [instance for name, instance in wanted.items()
                     if name not in current or not current[name].instance.same_target(instance)]

            for entry in removed:
                del entries[entry.instance.name]
            for instance in added:
                entries[instance.name] = _Entry(instance, self._probe_factory(instance))
            self._entries = entries

            for entry in removed:
                self._unschedule(entry)
            for instance in added:
                self._schedule(instance)

    def probe_now(self, name: str) -> None:
        """Run an instance's probe as soon as a worker is free, without moving its regular turns."""
        if name not in self._entries or self._scheduler is None:
            return
        log.debug("instance=%s probing now", name)
        try:
            self._scheduler.add_job(self._run, "date", args=[name])
        except Exception:
            log.exception("instance=%s failed to schedule an immediate probe", name)

    def in_flight(self) -> int:
        """Count the probes running now."""
        return sum(1 for entry in list(self._entries.values()) if entry.flight is not None)

    # Jobs

    def _schedule(self, instance: InstanceConfig) -> None:
        now = datetime.now(self._scheduler.timezone)
        trigger = IntervalTrigger(seconds=instance.interval, start_date=now + _phase(instance),
                                  timezone=self._scheduler.timezone)
        self._scheduler.add_job(self._run, trigger, args=[instance.name], id=instance.key,
                                name=instance.name, replace_existing=True)
        # The regular turns start at the instance's phase; the first probe runs now.
        self._scheduler.add_job(self._run, "date", args=[instance.name])

    def _unschedule(self, entry: _Entry) -> None:
        entry.removed = True
        try:
            self._scheduler.remove_job(entry.instance.key)
        except Exception:
            log.debug("instance=%s had no job to remove", entry.instance.name)
        if self._watch:
            self._watch.unwatch(entry.instance.name)
        entry.probe.close()

    def _run(self, name: str) -> None:
        """Probe one instance and store the result; a run while another is in flight returns at once."""
        entry = self._entries.get(name)
        if entry is None or not entry.guard.acquire(blocking=False):
            return
        try:
            self._probe_and_record(entry)
        except Exception:
            # A job that raises only reaches APScheduler's log, so report it here with the instance.
            log.exception("instance=%s probe run failed", name)
        finally:
            entry.flight = None
            entry.guard.release()

    def _probe_and_record(self, entry: _Entry) -> None:
        name = entry.instance.name
        flight = _Flight(started=self._clock())
        entry.flight = flight
        if self._watch:
            self._watch.unwatch(name)

        try:
            result = entry.probe.check()
        except Exception as error:
            log.exception("instance=%s probe raised; recording it as failed", name)
            result = ProbeResult.failed(FailureKind.OTHER, f"probe error: {type(error).__name__}")

        if flight.abandoned or entry.removed:
            return
        self._store.record(name, result)

        fileno = entry.probe.idle_fileno() if self._watch else None
        if fileno is not None:
            self._watch.watch(name, fileno)

    def _check_overdue(self) -> None:
        """Report a probe that overran its timeout as timed out, once, without waiting for its thread."""
        now = self._clock()
        for entry in list(self._entries.values()):
            flight = entry.flight
            if flight is None or flight.abandoned:
                continue
            elapsed = now - flight.started
            if elapsed <= entry.instance.timeout + WATCHDOG_GRACE_S:
                continue
            flight.abandoned = True
            log.warning("instance=%s probe still running after %.1f s; reporting a timeout",
                        entry.instance.name, elapsed)
            self._store.record(entry.instance.name, ProbeResult.failed(
                FailureKind.TIMEOUT, f"no answer within {elapsed:.1f} s", latency_ms=elapsed * 1000))

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        log.debug("job=%s skipped: the previous probe is still running", event.job_id)

"""The scheduler: probe every instance on its interval, store the results, re-probe on a socket's exit.

A run reads as probe -> store: the store decides whether the result is a transition and emits the
events. APScheduler triggers the runs: one interval job per instance, run on APScheduler's own
thread, which only hands the instance to the probe loop. The loop (dashapp.probeloop) runs the
quick checks, the liveness command on a kept connection, without a thread each, and watches idle
kept sockets for a server's exit. Checks that need more (connecting, logging in, reading details,
a host name to look up) run on a bounded pool of worker threads. A run whose previous probe of
the same instance is still in flight is skipped, not queued.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from dashapp.config import InstanceConfig
from dashapp.model import FailureKind, ProbeResult
from dashapp.probeloop import ProbeLoop
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
PHASE_STEP_S = 0.05


def default_workers(instance_count: int) -> int:
    """Size the worker pool for full checks: a worker per four instances, between 32 and 1,024.

    Quick checks need no worker. A full check of a responding server takes milliseconds, but one
    of a silent server holds its worker for the whole timeout, so the pool must cover the silent
    share. More threads than about a thousand cost more in GIL contention than they add in
    concurrency on a 2-core machine (bench/RESULTS.md).
    """
    return min(MAX_WORKERS, max(MIN_WORKERS, instance_count // 4))


def _phase(instance: InstanceConfig) -> timedelta:
    """Offset an instance's probes within its interval, the same for the same name.

    Every instance probes at once on start-up. If later probes all fell on the same instant, each
    interval would start thousands of checks together. A stable offset derived from the key
    spreads them evenly and keeps an instance's rhythm across reloads. Offsets are whole steps of
    PHASE_STEP_S, so that APScheduler wakes up once per step for all the instances due then,
    rather than once per instance.
    """
    steps = max(1, int(instance.interval / PHASE_STEP_S))
    return timedelta(seconds=int(instance.key[1:], 16) % steps * PHASE_STEP_S)


_apscheduler_log = logging.getLogger(__name__ + ".apscheduler")
# APScheduler logs every job it adds and every run at INFO: thousands of uninformative lines.
_apscheduler_log.setLevel(logging.WARNING)


@dataclass
class _Flight:
    """A run in progress, and whether the watchdog already reported it.

    `started` is when its full check began on a worker. It stays None while the run waits for a
    worker, and for a quick check, which the probe loop itself ends at its deadline.
    """

    started: float | None = None
    abandoned: bool = False


@dataclass(eq=False)
class _Entry:
    """One configured instance, its probe, and the probe run in progress, if any.

    `guard` lets one run of the probe at a time: a scheduled run, the start-up run and a run
    requested by the exit watch may otherwise overlap. It is taken when a run starts and
    released where the run ends, which may be the probe loop or a worker thread.
    """

    instance: InstanceConfig
    probe: Probe
    guard: threading.Lock = field(default_factory=threading.Lock)
    flight: _Flight | None = None
    removed: bool = False
    first_run_ended: bool = False

    @property
    def name(self) -> str:
        return self.instance.name


class Monitor:
    """Own the probes of the configured instances and keep the store current.

    `clock` is a monotonic clock in seconds, injectable for tests of the watchdog. The probe
    loop and the workers read `_entries` without a lock: a reload builds a new dict and swaps it
    in whole, so thousands of runs never queue on one lock. `probe_loop=False` runs every check
    as a full check on a worker, without the probe loop and so without its exit watch.
    """

    def __init__(self, store: StateStore, *, probe_factory: Callable[[InstanceConfig], Probe] = create_probe,
                 max_workers: int | None = None, probe_loop: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._probe_factory = probe_factory
        self._max_workers = max_workers
        self._clock = clock
        self._reload_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._anchor: datetime | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop = ProbeLoop(self._quick_done, self._socket_readable) if probe_loop else None
        self.skipped = 0
        self.full_checks = 0
        self._first_runs_lock = threading.Lock()
        self._first_runs_pending = 0
        self._freeze_lock = threading.Lock()

    # Life cycle

    def start(self, instances: Iterable[InstanceConfig]) -> None:
        """Configure the store and start probing; every instance's first probe starts at once."""
        enabled = [instance for instance in instances if instance.enabled]
        workers = self._max_workers or default_workers(len(enabled))
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        # The jobs run on the scheduler's own thread ("debug" is APScheduler's name for an executor
        # that calls the job directly): a job only hands its instance on, in microseconds.
        # APScheduler's thread pool executor would add a Future and a contended lock to every run;
        # only full checks go to a pool, this monitor's own.
        self._scheduler = BackgroundScheduler(
            executors={"default": DebugExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            logger=_apscheduler_log,
        )
        self._scheduler.add_job(self._check_overdue, "interval", seconds=WATCHDOG_PERIOD_S,
                                id="watchdog", max_instances=1)
        if self._loop:
            self._loop.start()
        # Each job added to a running scheduler wakes its thread. With thousands of instances that
        # thread would contend with this one for the job store until all jobs are added.
        self._scheduler.start(paused=True)
        self._anchor = datetime.now(self._scheduler.timezone)
        self.reload(enabled)
        self._scheduler.resume()
        log.info("scheduler started: instances=%d workers=%d", len(enabled), workers)

    def stop(self) -> None:
        """Stop scheduling, wait for running probes, and close every kept connection."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self._loop:
            self._loop.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
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
            # An instance in maintenance is still probed, but the store keeps its status at
            # maintenance until the key is removed, then shows what the latest probe found.
            for instance in wanted.values():
                self._store.set_maintenance(instance.name, instance.maintenance)
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
            with self._first_runs_lock:
                self._first_runs_pending += len(added)
            self._entries = entries

            for entry in removed:
                self._unschedule(entry)
            for instance in added:
                self._schedule(instance)

    def probe_now(self, name: str) -> None:
        """Probe an instance now, without moving its regular turns; skipped if one is in flight."""
        log.debug("instance=%s probing now", name)
        self._dispatch(name)

    def stats(self) -> dict[str, int]:
        """Count runs since start: quick checks on the probe loop, full checks on workers, skips."""
        return {"quick_checks": self._loop.quick_checks if self._loop else 0,
                "full_checks": self.full_checks, "skipped": self.skipped}

    def in_flight(self) -> int:
        """Count the probes running now."""
        return sum(1 for entry in list(self._entries.values()) if entry.flight is not None)

    # Runs

    def _schedule(self, instance: InstanceConfig) -> None:
        # One anchor for every job, so that instances with the same interval and phase share their
        # due times. After a reload the start date is in the past, and APScheduler continues the
        # grid from the next due time.
        trigger = IntervalTrigger(seconds=instance.interval, start_date=self._anchor + _phase(instance),
                                  timezone=self._scheduler.timezone)
        self._scheduler.add_job(self._dispatch, trigger, args=[instance.name], id=instance.key,
                                name=instance.name, replace_existing=True)
        # The regular turns start at the instance's phase; the first probe runs now.
        self._dispatch(instance.name)

    def _unschedule(self, entry: _Entry) -> None:
        entry.removed = True
        try:
            self._scheduler.remove_job(entry.instance.key)
        except Exception:
            log.debug("instance=%s had no job to remove", entry.instance.name)
        if self._loop:
            self._loop.forget(entry)
        self._note_first_run_ended(entry)
        # Waits for a check in flight: the loop aborts a quick one, a full one ends by its timeout.
        entry.probe.close()

    def _dispatch(self, name: str) -> None:
        """Start a run of `name` unless one is in flight: a quick check if it can, else a full one."""
        entry = self._entries.get(name)
        if entry is None or entry.removed or self._pool is None:
            return
        if not entry.guard.acquire(blocking=False):
            self.skipped += 1
            log.debug("instance=%s run skipped: the previous probe is still running", name)
            return
        entry.flight = _Flight()
        if self._loop:
            self._loop.check(entry)
        else:
            self._submit_full(entry)

    def _quick_done(self, entry: _Entry, result: ProbeResult | None) -> None:
        """Store the result of a quick check, or start a full check when the loop returned None."""
        if result is None:
            self._submit_full(entry)
            return
        try:
            self._record(entry, result)
        finally:
            self._end_run(entry)

    def _socket_readable(self, entry: _Entry) -> None:
        if self._entries.get(entry.name) is entry:
            self.probe_now(entry.name)

    def _submit_full(self, entry: _Entry) -> None:
        try:
            self._pool.submit(self._run_full, entry)
        except (RuntimeError, AttributeError):
            # The pool shut down (stop() is under way): this run ends here.
            self._end_run(entry)

    def _run_full(self, entry: _Entry) -> None:
        """Run a full check on a worker thread, store it, and watch the kept connection again."""
        self.full_checks += 1
        try:
            entry.flight.started = self._clock()
            try:
                result = entry.probe.check()
            except Exception as error:
                log.exception("instance=%s probe raised; recording it as failed", entry.name)
                result = ProbeResult.failed(FailureKind.OTHER, f"probe error: {type(error).__name__}")
            self._record(entry, result)
            if self._loop and not entry.removed:
                self._loop.watch(entry)
        except Exception:
            log.exception("instance=%s probe run failed", entry.name)
        finally:
            self._end_run(entry)

    def _record(self, entry: _Entry, result: ProbeResult) -> None:
        flight = entry.flight
        if entry.removed or (flight is not None and flight.abandoned):
            return
        self._store.record(entry.name, result)

    def _end_run(self, entry: _Entry) -> None:
        entry.flight = None
        entry.guard.release()
        if not entry.first_run_ended:
            self._note_first_run_ended(entry)

    def _note_first_run_ended(self, entry: _Entry) -> None:
        with self._first_runs_lock:
            if entry.first_run_ended:
                return
            entry.first_run_ended = True
            self._first_runs_pending -= 1
            all_ended = self._first_runs_pending == 0
        if all_ended:
            # On a thread of its own: the collection takes about half a second at 10,000
            # instances, and the probe loop or worker that got here must not wait for it.
            threading.Thread(target=self._freeze_long_lived, name="gc-freeze", daemon=True).start()

    def _freeze_long_lived(self) -> None:
        """Exclude the objects that live as long as the instances from later full collections.

        Once every instance has run, its probe, kept connection and job exist for good. With
        10,000 instances a full collection of them took 400 to 500 ms of the GIL every few
        seconds (bench/probe_scale.py), which made probes late. gc.freeze() moves every object
        now alive out of the collector's view. Unfreezing and collecting first, once per start
        or reload, frees what a reload left behind in reference cycles.
        """
        started = time.perf_counter()
        with self._freeze_lock:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        log.info("first probes of every instance done: %d objects frozen out of garbage collection "
                 "in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1000)

    def _check_overdue(self) -> None:
        """Report a probe that overran its timeout as timed out, once, without waiting for its thread."""
        now = self._clock()
        for entry in list(self._entries.values()):
            flight = entry.flight
            if flight is None or flight.started is None or flight.abandoned:
                continue
            elapsed = now - flight.started
            if elapsed <= entry.instance.timeout + WATCHDOG_GRACE_S:
                continue
            flight.abandoned = True
            log.warning("instance=%s probe still running after %.1f s; reporting a timeout",
                        entry.instance.name, elapsed)
            self._store.record(entry.instance.name, ProbeResult.failed(
                FailureKind.TIMEOUT, f"no answer within {elapsed:.1f} s", latency_ms=elapsed * 1000))

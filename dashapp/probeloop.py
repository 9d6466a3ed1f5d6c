"""One thread for every check that only waits on a socket: quick checks and the exit watch.

A kept connection spends nearly all its time idle. The loop keeps every idle kept socket in one
selector. If one turns readable while no check uses it, the server sent an EOF or an error
before closing (the EOF arrives even after kill -9, because the kernel closes a dead process's
sockets), and `on_exit` requests a probe now. A quick check sends its command on that same socket
and the same registration waits for the reply, so a check in flight costs no thread. A check
that needs more than one command (connecting, reading details) goes back to the caller, which
runs it on a worker thread. The loop stops watching that socket until `watch` is called again.

Other threads talk to the loop through a queue of commands and wake it through a pipe. An
"owner" is the caller's object for one instance: it has `name` and `probe` (base.Probe).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections import deque
from typing import Any, Callable

from dashapp.model import ProbeResult
from dashapp.probes.base import QuickCheck
from dashapp.probes.errors import ProbeTimeout

log = logging.getLogger(__name__)


class CheckAborted(Exception):
    """The instance was removed, or the loop stopped, while its quick check was in flight."""


class _Slot:
    """One instance's socket in the selector: idle (watched for exit) or carrying a quick check."""

    __slots__ = ("owner", "fileno", "events", "quick", "registered")

    def __init__(self, owner: Any, fileno: int):
        self.owner = owner
        self.fileno = fileno
        self.events = 0
        self.quick: QuickCheck | None = None
        self.registered = False


class ProbeLoop:
    """Runs quick checks and watches idle kept sockets, on one thread.

    `on_done(owner, result)` reports the end of a quick check started with `check`. Its `result`
    is None when the instance needs a full check on a worker thread instead. `on_exit(owner)` reports
    an idle watched socket that turned readable. Both run on the loop thread, so they should
    only hand work on. A command queued for an owner that `forget` removed has no effect.
    """

    def __init__(self, on_done: Callable[[Any, ProbeResult | None], None],
                 on_exit: Callable[[Any], None], clock: Callable[[], float] = time.monotonic):
        self._on_done = on_done
        self._on_exit = on_exit
        self._clock = clock
        self._lock = threading.Lock()
        self._commands: deque = deque()
        self._slots: dict[str, _Slot] = {}
        # The registered slot of each descriptor: the selector's own lookup costs several calls.
        self._registered: dict[int, _Slot] = {}
        self._deadlines: list = []
        self._sequence = itertools.count()
        self._selector: selectors.BaseSelector | None = None
        self._wake_read = self._wake_write = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.quick_checks = 0
        self.handed_off = 0

    # Life cycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="probe-loop", daemon=True)
        self._thread.start()
        log.info("probe loop started")

    def stop(self) -> None:
        """Stop the thread; abort the quick checks in flight, which drops their connections."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join()
        self._thread = None
        for slot in list(self._slots.values()):
            self._abort(slot)
        self._deadlines.clear()
        self._selector.close()
        wake_read, wake_write = self._wake_read, self._wake_write
        self._wake_read = self._wake_write = -1
        os.close(wake_read)
        os.close(wake_write)
        with self._lock:
            self._commands.clear()
        log.info("probe loop stopped")

    # Commands, from any thread

    def check(self, owner: Any) -> None:
        """Run a quick check of `owner.probe` if it can; `on_done` reports the outcome."""
        self._queue("check", owner)

    def watch(self, owner: Any) -> None:
        """Watch the idle kept socket of `owner.probe`, if it has one, after a full check."""
        self._queue("watch", owner)

    def forget(self, owner: Any) -> None:
        """Stop watching `owner`; a quick check in flight ends without `on_done`."""
        self._queue("forget", owner)

    def watched(self) -> list[str]:
        """Names whose idle socket is watched now (read without the loop's lock, for tests)."""
        return sorted(name for name, slot in list(self._slots.items())
                      if slot.registered and slot.quick is None)

    def _queue(self, action: str, owner: Any) -> None:
        with self._lock:
            idle = not self._commands
            self._commands.append((action, owner))
        if idle:
            self._wake()

    def _wake(self) -> None:
        """Wake the loop. Callers skip it when commands were already queued: the loop then has a
        wake-up pending, or is still applying commands and will reach the new one."""
        if self._wake_write < 0:
            return
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so the loop is already due to wake up

    # The loop thread

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._apply_commands()
                for key, _events in self._selector.select(self._until_next_deadline()):
                    if key.data is None:
                        self._drain_wake_pipe()
                    else:
                        self._ready(key.data)
                # Only after reading what arrived: a reply that came in time but found the loop
                # busy (or starved of the GIL) still counts.
                self._expire()
            except Exception:
                log.exception("probe loop failed; continuing")

    def _apply_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                action, owner = self._commands.popleft()
            if action == "check":
                self._start_check(owner)
            elif action == "watch":
                self._start_watch(owner)
            else:
                slot = self._slots.get(owner.name)
                if slot is not None and slot.owner is owner:
                    self._abort(slot)

    def _start_check(self, owner: Any) -> None:
        slot = self._own_slot(owner)
        if slot is not None and slot.quick is not None:
            # The monitor's guard allows one run per instance, so this would be a bug in the caller.
            log.warning("probe loop: %s already has a check in flight; check request ignored", owner.name)
            return
        start = getattr(owner.probe, "start_quick", None)
        quick = None
        if start is not None:
            try:
                quick = start()
            except Exception:
                log.exception("probe loop: quick check of %s failed to start", owner.name)
        if quick is None:
            # The worker thread will use the socket: stop watching it.
            if slot is not None:
                self._remove(slot)
            self.handed_off += 1
            self._call(self._on_done, owner, None)
            return

        self.quick_checks += 1
        if slot is None or slot.fileno != quick.fileno:
            if slot is not None:
                self._remove(slot)
            slot = _Slot(owner, quick.fileno)
            self._slots[owner.name] = slot
        slot.quick = quick
        if quick.done:
            self._complete(slot)
            return
        if not self._register(slot, selectors.EVENT_WRITE if quick.wants_write else selectors.EVENT_READ):
            quick.error = ConnectionError("the connection's socket is closed")
            self._complete(slot)
            return
        heapq.heappush(self._deadlines, (quick.deadline_at, next(self._sequence), slot, quick))

    def _start_watch(self, owner: Any) -> None:
        slot = self._own_slot(owner)
        if slot is not None and slot.quick is not None:
            return
        fileno = owner.probe.idle_fileno()
        if slot is not None and slot.fileno == fileno and slot.registered:
            return
        if slot is not None:
            self._remove(slot)
        if fileno is None:
            return
        slot = _Slot(owner, fileno)
        self._slots[owner.name] = slot
        if not self._register(slot, selectors.EVENT_READ):
            # The socket closed before it was watched: the server may be gone, so probe now.
            self._call(self._on_exit, owner)

    def _own_slot(self, owner: Any) -> _Slot | None:
        """Return owner's slot; drop a slot left by an earlier owner of the same name."""
        slot = self._slots.get(owner.name)
        if slot is not None and slot.owner is not owner:
            self._abort(slot)
            return None
        return slot

    def _ready(self, slot: _Slot) -> None:
        quick = slot.quick
        if quick is None:
            # An idle kept socket turned readable: the server closed it or sent an error.
            log.debug("probe loop: kept connection of %s is readable", slot.owner.name)
            self._remove(slot)
            self._call(self._on_exit, slot.owner)
            return
        try:
            done = quick.advance()
        except Exception as exc:
            quick.error = exc
            done = True
        if done:
            self._complete(slot)
        elif (slot.events == selectors.EVENT_WRITE) != quick.wants_write:
            self._register(slot, selectors.EVENT_WRITE if quick.wants_write else selectors.EVENT_READ)

    def _until_next_deadline(self) -> float | None:
        """Return the seconds until the earliest quick check's deadline, or None if none is in flight."""
        if not self._deadlines:
            return None
        return max(0.0, self._deadlines[0][0] - self._clock())

    def _expire(self) -> None:
        """Fail the quick checks past their deadline."""
        deadlines = self._deadlines
        now = self._clock()
        while deadlines and deadlines[0][0] <= now:
            _at, _sequence, slot, quick = heapq.heappop(deadlines)
            if slot.quick is quick:
                quick.error = ProbeTimeout(quick.step)
                self._complete(slot)

    def _complete(self, slot: _Slot) -> None:
        quick, slot.quick = slot.quick, None
        if quick.error is None and not quick.owns_socket:
            # The kept connection is idle again: watch it for the server's exit. A failed
            # registration removes the slot, and the next scheduled probe finds out why.
            if slot.events != selectors.EVENT_READ:
                self._register(slot, selectors.EVENT_READ)
        else:
            # Unregister before the probe closes the socket, so a reused descriptor is not confused.
            self._remove(slot)
        try:
            result = slot.owner.probe.finish_quick(quick)
        except Exception:
            log.exception("probe loop: finishing the quick check of %s failed", slot.owner.name)
            result = None
        if result is None:
            self._remove(slot)
            self.handed_off += 1
        self._call(self._on_done, slot.owner, result)

    def _abort(self, slot: _Slot) -> None:
        self._remove(slot)
        quick, slot.quick = slot.quick, None
        if quick is not None:
            quick.error = CheckAborted()
            try:
                slot.owner.probe.finish_quick(quick)
            except Exception:
                log.exception("probe loop: aborting the quick check of %s failed", slot.owner.name)

    def _register(self, slot: _Slot, events: int) -> bool:
        """Register (or modify) the slot's socket for `events`; on failure remove the slot and return False."""
        selector = self._selector
        try:
            if slot.registered:
                selector.modify(slot.fileno, events, slot)
            else:
                stale = self._registered.get(slot.fileno)
                if stale is not None:
                    # The descriptor was closed and reused without a forget: drop the old owner.
                    log.debug("probe loop: descriptor %d reused, dropping %s", slot.fileno, stale.owner.name)
                    self._abort(stale)
                selector.register(slot.fileno, events, slot)
                slot.registered = True
                self._registered[slot.fileno] = slot
        except (OSError, ValueError, KeyError) as exc:
            log.debug("probe loop: cannot watch %s (%s)", slot.owner.name, exc)
            self._remove(slot)
            return False
        slot.events = events
        return True

    def _remove(self, slot: _Slot) -> None:
        if self._slots.get(slot.owner.name) is slot:
            del self._slots[slot.owner.name]
        if slot.registered:
            slot.registered = False
            slot.events = 0
            if self._registered.get(slot.fileno) is slot:
                del self._registered[slot.fileno]
            try:
                # EpollSelector ignores the OSError of a descriptor that was closed meanwhile.
                self._selector.unregister(slot.fileno)
            except (KeyError, ValueError):
                pass

    def _call(self, callback: Callable, *args) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("probe loop: callback %s failed", getattr(callback, "__name__", callback))

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

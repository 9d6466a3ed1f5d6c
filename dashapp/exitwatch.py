"""Notice at once when a server closes an idle kept connection, instead of at the next probe.

A kept connection that turns readable while no probe uses it carries an EOF or an error that the
server sent before closing (MySQL's wait_timeout, a Redis CLIENT KILL). The EOF arrives even
after kill -9, because the kernel closes the sockets of a dead process. Either way the instance
needs a probe now.
One thread waits on every watched socket with a selector; other threads register and unregister
sockets through a queue and wake the selector through a pipe.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)


class _Watch:
    """One registration: a name and a socket, valid until unwatched."""

    __slots__ = ("name", "fileno")

    def __init__(self, name: str, fileno: int):
        self.name = name
        self.fileno = fileno


class ExitWatch:
    """Calls `on_readable(name)` once when a watched idle socket becomes readable.

    The socket is unwatched before the call, so a probe may use it at once; the scheduler
    watches it again when the connection is idle. A registration replaced or removed before the
    watch thread reaches it is never reported, but a call already under way when `unwatch`
    runs still arrives, and at worst it causes one extra probe. `on_readable` runs on the watch
    thread, so it should only hand the work to the scheduler.
    """

    def __init__(self, on_readable: Callable[[str], None]):
        self._on_readable = on_readable
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._commands: deque = deque()
        self._selector: selectors.BaseSelector | None = None
        self._wake_read = self._wake_write = -1
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="exit-watch", daemon=True)
        self._thread.start()
        log.info("exit watch started")

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join()
        self._thread = None
        self._selector.close()
        wake_read, wake_write = self._wake_read, self._wake_write
        self._wake_read = self._wake_write = -1
        os.close(wake_read)
        os.close(wake_write)
        with self._lock:
            self._watches.clear()
            self._commands.clear()
        log.info("exit watch stopped")

    def watch(self, name: str, fileno: int) -> None:
        """Watch the idle kept socket `fileno` of instance `name`, replacing an earlier watch."""
        watch = _Watch(name, fileno)
        with self._lock:
            idle = not self._commands
            previous = self._watches.get(name)
            self._watches[name] = watch
            if previous is not None:
                self._commands.append(("remove", previous))
            self._commands.append(("add", watch))
        if idle:
            self._wake()

    def unwatch(self, name: str) -> None:
        """Stop watching `name`; call this before a probe uses or closes the socket."""
        with self._lock:
            previous = self._watches.pop(name, None)
            if previous is None:
                return
            idle = not self._commands
            self._commands.append(("remove", previous))
        if idle:
            self._wake()

    def watched(self) -> list[str]:
        with self._lock:
            return sorted(self._watches)

    def _wake(self) -> None:
        """Wake the watch thread. Callers skip it when commands were already queued: the thread
        then has a wake-up pending, or is still applying commands and will reach the new one."""
        if self._wake_write < 0:
            return
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so the watch thread is already due to wake up

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._apply_commands()
                for key, _events in self._selector.select():
                    if key.data is None:
                        self._drain_wake_pipe()
                    else:
                        self._fire(key.data)
            except Exception:
                log.exception("exit watch loop failed; continuing")

    def _apply_commands(self) -> None:
        """Apply queued registrations in order, on the watch thread that owns the selector."""
        while True:
            with self._lock:
                if not self._commands:
                    return
                action, watch = self._commands.popleft()
            if action == "remove":
                self._unregister(watch)
            else:
                self._register(watch)

    def _register(self, watch: _Watch) -> None:
        with self._lock:
            if self._watches.get(watch.name) is not watch:
                return  # unwatched or replaced before the thread got here
        try:
            stale = self._selector.get_key(watch.fileno)
        except KeyError:
            stale = None
        if stale is not None:
            # The descriptor number was closed and reused without an unwatch: forget the old owner.
            log.debug("exit watch: descriptor %d reused, dropping watch of %s",
                      watch.fileno, stale.data.name)
            self._selector.unregister(watch.fileno)
        try:
            self._selector.register(watch.fileno, selectors.EVENT_READ, watch)
        except (OSError, ValueError) as exc:
            # The socket was closed before registration: the server may be gone, so probe now.
            log.debug("exit watch: cannot watch %s (%s)", watch.name, exc)
            self._fire(watch)

    def _unregister(self, watch: _Watch) -> None:
        try:
            key = self._selector.get_key(watch.fileno)
        except KeyError:
            return
        if key.data is watch:
            # EpollSelector ignores the OSError of a descriptor that was closed meanwhile.
            self._selector.unregister(watch.fileno)

    def _fire(self, watch: _Watch) -> None:
        """Unwatch a readable socket and report it, unless it was unwatched meanwhile."""
        self._unregister(watch)
        with self._lock:
            if self._watches.get(watch.name) is not watch:
                return
            del self._watches[watch.name]
        log.debug("exit watch: kept connection of %s is readable", watch.name)
        try:
            self._on_readable(watch.name)
        except Exception:
            log.exception("exit watch: on_readable failed for %s", watch.name)

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

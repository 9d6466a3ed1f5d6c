"""The WebSocket push hub: fans store events out to every open page.

Store listeners run on scheduler threads. The hub serializes each event to JSON once on that
thread, hands the text to the asyncio loop with `call_soon_threadsafe` and puts it into every
client's bounded queue. One sender task per client drains its queue, so a slow page never
delays the others. A page whose queue is full is closed with code 1013 (try again later), and
it reconnects and starts over from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect

from dashapp import events
from dashapp.model import InstanceState, to_iso, utc_now
from dashapp.store.base import StateStore

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
PONG = "pong"

# WebSocket close codes (RFC 6455 section 7.4.1 and the IANA registry).
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class RateLimitedWarning:
    """Log a warning at most once per `interval` seconds per key, with the count of repeats."""

    def __init__(self, logger: logging.Logger, interval: float = 300.0, max_keys: int = 1000):
        self._logger = logger
        self._interval = interval
        self._max_keys = max_keys
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args) -> None:
        now = time.monotonic()
        last = self._last_logged.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return

        # Forget old keys rather than grow without bound when many distinct keys appear.
        if len(self._last_logged) >= self._max_keys:
            self._last_logged.clear()
            self._suppressed.clear()
        repeats = self._suppressed.pop(key, 0)
        self._last_logged[key] = now
        suffix = f" ({repeats} more since the last warning)" if repeats else ""
        self._logger.warning(message + suffix, *args)


@dataclass(eq=False)
class _Client:
    websocket: WebSocket
    queue: asyncio.Queue
    # Set when the hub drops the client, with the reason in `close_code`.
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None

    @property
    def address(self) -> str:
        client = self.websocket.client
        return f"{client.host}:{client.port}" if client else "unknown"


class PushHub:
    """Push the store's events to every connected page over its WebSocket.

    `queue_size` is the number of messages a page may fall behind before it is closed with
    code 1013. `close_timeout` bounds how long closing a page whose socket does not drain may
    take, in seconds.
    """

    def __init__(self, store: StateStore, *, metrics_interval: float = 5.0, queue_size: int = 256,
                 close_timeout: float = 5.0):
        if metrics_interval <= 0:
            raise ValueError(f"metrics_interval must be positive, got {metrics_interval!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size!r}")
        self._store = store
        self._metrics_interval = metrics_interval
        self._queue_size = queue_size
        self._close_timeout = close_timeout
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe = None
        self._heartbeat_task: asyncio.Task | None = None
        self._drop_warning = RateLimitedWarning(log, interval=60.0)

    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        """Subscribe to the store and start the heartbeat; call it on the loop that serves /ws."""
        if self._loop is not None:
            raise RuntimeError("PushHub.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self._store.subscribe(self._on_store_event)
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="push-heartbeat")
        log.info("push hub started, heartbeat every %.1f s", self._metrics_interval)

    async def stop(self) -> None:
        """Unsubscribe, stop the heartbeat and close every page with code 1001 (going away)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        for client in list(self._clients):
            self._drop(client, CLOSE_GOING_AWAY)
        self._loop = None
        log.info("push hub stopped")

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one page: a snapshot first, then every event, until either side closes."""
        await websocket.accept()
        client = _Client(websocket, asyncio.Queue(self._queue_size))

        # Register before reading the snapshot: an event emitted while the snapshot is read is
        # then queued behind it. The page may see a change twice (in the snapshot and as an
        # event), which is harmless because each change event carries the whole instance.
        self._clients.add(client)
        log.debug("page %s connected, %d open", client.address, len(self._clients))
        try:
            await self._serve(client)
        finally:
            self._clients.discard(client)
            log.debug("page %s disconnected, %d open", client.address, len(self._clients))

    async def _serve(self, client: _Client) -> None:
        sender = asyncio.create_task(self._send_loop(client))
        receiver = asyncio.create_task(self._receive_loop(client))
        dropped = asyncio.create_task(client.dropped.wait())
        tasks = {sender, receiver, dropped}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            client.close_code = client.close_code or CLOSE_INTERNAL_ERROR
            log.error("pushing to page %s failed; closing it with code %d", client.address,
                      client.close_code, exc_info=sender.exception())
        if client.close_code is not None:
            await self._close(client)

    async def _send_loop(self, client: _Client) -> None:
        try:
            await client.websocket.send_text(await self._snapshot_text())
            while True:
                text = await client.queue.get()
                await client.websocket.send_text(text)
        except WebSocketDisconnect:
            return

    async def _receive_loop(self, client: _Client) -> None:
        """Reply to pings and ignore any other message, because pages send nothing else."""
        while True:
            message = await client.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if _is_ping(message.get("text")):
                self._enqueue(client, _dumps({"type": PONG, "server_time": to_iso(utc_now())}))

    async def _close(self, client: _Client) -> None:
        # A close frame waits behind unsent data, and a page that stopped reading never drains
        # it. After the timeout the handler returns and uvicorn closes the transport instead.
        try:
            await asyncio.wait_for(client.websocket.close(code=client.close_code), self._close_timeout)
        except (asyncio.TimeoutError, WebSocketDisconnect, RuntimeError) as error:
            log.debug("closing page %s with code %s failed: %r", client.address, client.close_code, error)

    async def _snapshot_text(self) -> str:
        # A store may do network I/O (Redis), so read it off the event loop.
        states = await asyncio.to_thread(self._store.snapshot)
        # The summary comes from the same snapshot so that the two always agree.
        return _dumps(events.instances_status_update(states, events.summarize(states)))

    def _on_store_event(self, event: dict) -> None:
        """Serialize a store event on the caller's thread and hand it to the loop."""
        text = _dumps(event)
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._broadcast, text)
        except RuntimeError:
            # The loop closed between the check and the call: the server is shutting down.
            log.debug("event %s dropped: the event loop is closed", event.get("type"))

    def _broadcast(self, text: str) -> None:
        for client in list(self._clients):
            self._enqueue(client, text)

    def _enqueue(self, client: _Client, text: str) -> None:
        if client.dropped.is_set():
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop_warning.warning(
                "slow-page", "page %s fell %d messages behind; closing it with code %d so it resyncs",
                client.address, self._queue_size, CLOSE_TRY_AGAIN_LATER)
            self._drop(client, CLOSE_TRY_AGAIN_LATER)

    def _drop(self, client: _Client, code: int) -> None:
        self._clients.discard(client)
        client.close_code = code
        client.dropped.set()

    async def _heartbeat_loop(self) -> None:
        """Broadcast a heartbeat every interval with the metrics that changed since the last one."""
        loop = asyncio.get_running_loop()
        previous: dict[str, tuple] = {}
        next_beat = loop.time() + self._metrics_interval
        while True:
            await asyncio.sleep(max(0.0, next_beat - loop.time()))
            next_beat += self._metrics_interval
            try:
                states = await asyncio.to_thread(self._store.snapshot)
            except Exception:
                log.exception("heartbeat: reading the store snapshot failed")
                continue
            metrics, previous = changed_metrics(states, previous)
            self._broadcast(_dumps({"type": HEARTBEAT, "server_time": to_iso(utc_now()), "metrics": metrics}))


def changed_metrics(states: list[InstanceState], previous: dict[str, tuple]) -> tuple[dict, dict[str, tuple]]:
    """Return the metrics of instances whose latency or last check changed, and the new baseline."""
    metrics = {}
    current = {}
    for state in states:
        fields = state.to_dict()
        values = (fields["latency_ms"], fields["last_check"])
        current[state.key] = values
        if previous.get(state.key) != values:
            metrics[state.key] = {"latency_ms": values[0], "last_check": values[1]}
    return metrics, current


def _is_ping(text: str | None) -> bool:
    if not text:
        return False
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "ping"


def _dumps(message: dict) -> str:
    # default=str keeps one odd value in a probe's details (a Decimal, a datetime) from
    # losing the whole event.
    return json.dumps(message, ensure_ascii=False, default=str)

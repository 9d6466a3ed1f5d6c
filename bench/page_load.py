"""Measure the overview page with 1,000 instances: load time, and the JS heap under 10,000 changes.

    python bench/page_load.py [--instances 1000] [--loads 5] [--heap-instances 100] [--changes 10000]
                              [--parts load,heap]

Load: `python app.py` runs as a child process with a temporary instances file of 1,000
instances on 127.0.0.1. Most are redis and tcp probes of the shared Redis, because MariaDB and
PostgreSQL allow only 151 and 100 connections, so one instance each watches those. About a tenth
point at bound ports that do not listen, so their connections are refused. Once the server has probed every instance, headless Chromium loads
the page `--loads` times, each time in a new browser context (an empty cache) and once more
with a reload in the same context (a warm cache). A load ends when the page contains every card and
no badge reads 检测中 (pending). Its time is performance.now() at that moment, which counts
from the start of the navigation.

A load that has not drawn every card within --load-timeout seconds is recorded with the number of
cards and badges drawn by then, and its warm reload is skipped. `--instances 100,200,400` loads
pages of each size in turn, which shows how the load time grows with the number of cards.

Heap: the real serving stack (create_dash_app, PushHub, create_asgi_app under uvicorn, as in
tests/browser.py) runs in this process around a MemoryStateStore of --heap-instances instances,
with no scheduler. It uses fewer instances than the load by default, because every change costs
the page time that grows with the number of cards, and 10,000 changes on 1,000 cards would take
hours on a 2-core machine. The benchmark calls store.record() with failed and successful
ProbeResults alternately, so the real store emits real events over the real socket to the page.
Changes go in batches of --batch instances (each batch turns them all abnormal or all running
again), and the next batch starts when the page shows the previous one, which keeps every
page's queue (256 messages) from overflowing. Before the first change and after each quarter,
the benchmark forces a garbage collection over CDP (HeapProfiler.collectGarbage) and reads
Runtime.getHeapUsage, performance.memory.usedJSHeapSize, the number of DOM elements and the
number of toasts. A last reading follows after the toasts' 8 s lifetime has passed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from bench.detection import (ARTIFACTS, App, launch_chromium, machine, shared_database_instances,  # noqa: E402
                             summarize, write_config)
from dashapp.config import InstanceConfig  # noqa: E402
from dashapp.i18n import t  # noqa: E402
from dashapp.model import FailureKind, ProbeResult  # noqa: E402
from dashapp.store.memory import MemoryStateStore  # noqa: E402
from dashapp.ui import create_dash_app  # noqa: E402
from tests.browser import ServingThread  # noqa: E402
from tests.servers import RefusingPort  # noqa: E402

SHARED_REDIS_PORT = 6379
REFUSING_PORTS = 20
# A tenth of the instances point at refused ports, so the page shows some abnormal cards.
REFUSED_SHARE = 10
PROBED_TIMEOUT_S = 120.0
HEAP_LOAD_TIMEOUT_MS = 600_000
BATCH_TIMEOUT_MS = 60_000
SCREENSHOT_TIMEOUT_MS = 120_000
# overview.js removes a toast after 8 s (TOAST_MS); wait a little longer before the last reading.
TOAST_LIFETIME_S = 9.0

# Resolves to performance.now() once `count` cards are drawn and no badge reads `pending`.
CARDS_DRAWN_JS = """
([count, pending]) => {
    const badges = document.querySelectorAll('.instance-card .status-badge');
    if (badges.length !== count) {
        return false;
    }
    for (const badge of badges) {
        if (badge.textContent === pending) {
            return false;
        }
    }
    return performance.now();
}
"""

# How far a load got: cards drawn, and badges other than `pending`.
CARDS_PROGRESS_JS = """
(pending) => {
    const badges = Array.from(document.querySelectorAll('.instance-card .status-badge'));
    return {cards: badges.length, probed: badges.filter((badge) => badge.textContent !== pending).length};
}
"""

PAGE_COUNTS_JS = """
() => ({
    elements: document.getElementsByTagName('*').length,
    toasts: document.querySelectorAll('#toasts .toast-item').length,
    cards: document.querySelectorAll('.instance-card').length,
    usedJSHeapSize: performance.memory ? performance.memory.usedJSHeapSize : null,
})
"""


def instance_tables(count: int, refused_ports: list[int]) -> list[dict]:
    """Build `count` instances: the shared databases, refused ports, then redis and tcp on the shared Redis."""
    tables = shared_database_instances()
    refused = count // REFUSED_SHARE
    for index in range(refused):
        tables.append({"name": f"refused-{index:04d}", "type": "tcp" if index % 2 else "redis",
                       "host": "127.0.0.1", "port": refused_ports[index % len(refused_ports)],
                       "tags": ["refused"]})
    index = 0
    while len(tables) < count:
        kind = "redis" if index % 3 else "tcp"
        tables.append({"name": f"{kind}-{index:04d}", "type": kind, "host": "127.0.0.1",
                       "port": SHARED_REDIS_PORT, "tags": [kind, f"group-{index % 10}"]})
        index += 1
    return tables


# --- load ----------------------------------------------------------------------------------

def wait_until_probed(app: App, count: int) -> dict:
    """Read snapshots from /ws until all `count` instances have a status other than pending."""
    ws_url = f"ws://127.0.0.1:{app.port}/ws"
    deadline = time.monotonic() + PROBED_TIMEOUT_S
    while True:
        with connect(ws_url, proxy=None, compression=None, max_size=None) as websocket:
            snapshot = json.loads(websocket.recv(timeout=30))
        statuses: dict[str, int] = {}
        for instance in snapshot["instances"]:
            statuses[instance["status"]] = statuses.get(instance["status"], 0) + 1
        if len(snapshot["instances"]) == count and "pending" not in statuses:
            return statuses
        if time.monotonic() > deadline:
            raise RuntimeError(f"instances still pending after {PROBED_TIMEOUT_S} s: {statuses}")
        time.sleep(1.0)


def timed_load(page, url: str | None, count: int, timeout_s: float) -> dict:
    """Navigate (or reload when `url` is None) and time it until every card is drawn."""
    if url is None:
        page.reload(wait_until="commit")
    else:
        page.goto(url, wait_until="commit")
    try:
        drawn_ms = page.wait_for_function(CARDS_DRAWN_JS, arg=[count, t("status.pending")],
                                          timeout=timeout_s * 1000, polling=100).json_value()
    except PlaywrightTimeoutError:
        progress = page.evaluate(CARDS_PROGRESS_JS, t("status.pending"))
        return {"cards_drawn_s": None, "timed_out_after_s": timeout_s, **progress}
    navigation = page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
    return {"cards_drawn_s": round(drawn_ms / 1000, 3),
            "dom_content_loaded_s": round(navigation["domContentLoadedEventEnd"] / 1000, 3),
            "load_event_s": round(navigation["loadEventEnd"] / 1000, 3)}


def save_screenshot(page, path: Path) -> None:
    """Save a screenshot, or print why not: a page that is busy for minutes cannot paint one."""
    try:
        page.screenshot(path=str(path), timeout=SCREENSHOT_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        print(f"no screenshot {path.name}: the page painted no frame within "
              f"{SCREENSHOT_TIMEOUT_MS / 1000:g} s", flush=True)


def drawn_summary(loads: list[dict]) -> dict:
    times = [load["cards_drawn_s"] for load in loads if load["cards_drawn_s"] is not None]
    summary = summarize(times) if times else {"count": 0}
    summary["timed_out"] = len(loads) - len(times)
    return summary


def measure_loads(count: int, loads: int, timeout_s: float) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="bench-page-load-"))
    refusing = [RefusingPort() for _ in range(REFUSING_PORTS)]
    app = None
    try:
        config_path = directory / "instances.toml"
        write_config(config_path, instance_tables(count, [port.port for port in refusing]))
        app = App(config_path, directory)
        statuses = wait_until_probed(app, count)
        print(f"server probed all {count} instances: {statuses}", flush=True)

        cold, warm = [], []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                for number in range(1, loads + 1):
                    context = browser.new_context(viewport={"width": 1920, "height": 1080})
                    page = context.new_page()
                    cold.append(timed_load(page, app.url, count, timeout_s))
                    if cold[-1]["cards_drawn_s"] is not None:
                        warm.append(timed_load(page, None, count, timeout_s))
                    print(f"{count} cards, load {number}/{loads}: cold {cold[-1]}, "
                          f"warm {warm[-1] if len(warm) == len(cold) else 'skipped'}", flush=True)
                    if number == 1:
                        save_screenshot(page, ARTIFACTS / f"page-load-{count}.png")
                    context.close()
            finally:
                browser.close()
        return {"instances": count, "statuses": statuses, "cold": cold, "warm": warm,
                "cold_summary": drawn_summary(cold), "warm_summary": drawn_summary(warm)}
    finally:
        if app is not None:
            app.stop()
        for port in refusing:
            port.__exit__(None, None, None)
        shutil.rmtree(directory, ignore_errors=True)


# --- heap ----------------------------------------------------------------------------------

def read_page(page, cdp, changes: int, elapsed_s: float) -> dict:
    """Collect garbage twice, then read the heap, the DOM element count and the toast count."""
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.collectGarbage")
    usage = cdp.send("Runtime.getHeapUsage")
    counts = page.evaluate(PAGE_COUNTS_JS)
    return {"changes": changes, "elapsed_s": round(elapsed_s, 1),
            "heap_used_mib": round(usage["usedSize"] / 2**20, 2),
            "heap_total_mib": round(usage["totalSize"] / 2**20, 2),
            "used_js_heap_mib": round(counts["usedJSHeapSize"] / 2**20, 2) if counts["usedJSHeapSize"] else None,
            "dom_elements": counts["elements"], "toasts": counts["toasts"], "cards": counts["cards"]}


def flap_batch(store, names: list[str], abnormal: bool) -> None:
    for name in names:
        if abnormal:
            store.record(name, ProbeResult.failed(FailureKind.REFUSED, "connection refused", latency_ms=0.5))
        else:
            store.record(name, ProbeResult.success(1.0, {"version": "7.0.15"}))


def measure_heap(count: int, changes: int, batch: int) -> dict:
    instances = [InstanceConfig(name=f"heap-{index:04d}", type="redis" if index % 3 else "tcp",
                                host="127.0.0.1", port=SHARED_REDIS_PORT, tags=(f"group-{index % 10}",))
                 for index in range(count)]
    names = [instance.name for instance in instances]
    flapped = names[:batch]
    store = MemoryStateStore()
    store.configure(instances)
    flap_batch(store, names, abnormal=False)
    serving = ServingThread(create_dash_app(store), store).start()
    sockets_opened = []
    readings = []
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, ("--enable-precise-memory-info",))
            try:
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("websocket", lambda websocket: sockets_opened.append(websocket.url))
                page.goto(serving.url)
                page.wait_for_function(CARDS_DRAWN_JS, arg=[count, t("status.pending")], timeout=HEAP_LOAD_TIMEOUT_MS)
                cdp = page.context.new_cdp_session(page)
                started = time.monotonic()
                readings.append(read_page(page, cdp, 0, 0.0))
                print(f"heap: {readings[-1]}", flush=True)

                checkpoints = {changes * quarter // 4 for quarter in (1, 2, 3, 4)}
                done = 0
                abnormal = True
                last_badge = f"card-{instances[batch - 1].key}-status"
                while done < changes:
                    flap_batch(store, flapped, abnormal)
                    done += batch
                    expected = t("status.abnormal") if abnormal else t("status.running")
                    page.wait_for_function(
                        "([badge, text, tile, abnormal]) => "
                        "document.getElementById(badge)?.textContent === text && "
                        "document.getElementById(tile)?.textContent === abnormal",
                        arg=[last_badge, expected, "summary-abnormal", str(batch if abnormal else 0)],
                        timeout=BATCH_TIMEOUT_MS, polling=20)
                    abnormal = not abnormal
                    if done in checkpoints:
                        readings.append(read_page(page, cdp, done, time.monotonic() - started))
                        print(f"heap: {readings[-1]}", flush=True)

                time.sleep(TOAST_LIFETIME_S)
                readings.append(read_page(page, cdp, done, time.monotonic() - started))
                print(f"heap after {TOAST_LIFETIME_S:g} s idle: {readings[-1]}", flush=True)
                page.screenshot(path=str(ARTIFACTS / "page-heap-after-changes.png"))
            finally:
                browser.close()
    finally:
        serving.stop()
    return {"instances": count, "batch": batch, "changes": changes, "readings": readings,
            "sockets_opened": len(sockets_opened)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="1000", help="cards on the loaded page; a comma-separated list "
                        "loads pages of each size (default %(default)s)")
    parser.add_argument("--loads", type=int, default=5, help="cold loads per size, each followed by a warm "
                        "reload (default %(default)s)")
    parser.add_argument("--load-timeout", type=float, default=900, help="seconds a load may take before it is "
                        "recorded as not drawn (default %(default)s)")
    parser.add_argument("--heap-instances", type=int, default=100, help="cards on the page that receives the "
                        "changes (default %(default)s)")
    parser.add_argument("--changes", type=int, default=10000, help="status changes pushed to the page "
                        "(default %(default)s)")
    parser.add_argument("--batch", type=int, default=50, help="changes recorded before waiting for the page "
                        "to show them (default %(default)s)")
    parser.add_argument("--parts", default="load,heap", help="comma-separated parts: load, heap "
                        "(default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.instances.split(",") if size.strip()]
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if set(parts) - {"load", "heap"}:
        parser.error("--parts takes load, heap or both")
    if args.changes % (4 * args.batch):
        parser.error("--changes must be a multiple of 4 x --batch, so that each quarter ends on a batch")
    if args.batch > args.heap_instances:
        parser.error("--batch must not exceed --heap-instances")

    ARTIFACTS.mkdir(exist_ok=True)
    report = {"machine_before": machine()}
    if "load" in parts:
        report["load"] = [measure_loads(size, args.loads, args.load_timeout) for size in sizes]
        report["machine_after_load"] = machine()
    if "heap" in parts:
        report["heap"] = measure_heap(args.heap_instances, args.changes, args.batch)
        report["machine_after_heap"] = machine()

    print(json.dumps({key: value for key, value in report.items() if key.startswith("machine")}, indent=2))
    for result in report.get("load", []):
        for kind in ("cold", "warm"):
            print(f"{kind} loads of {result['instances']} cards: {result[f'{kind}_summary']}")
    if "heap" in report:
        for reading in report["heap"]["readings"]:
            print(f"after {reading['changes']:>6} changes: heap {reading['heap_used_mib']:.2f} MiB used, "
                  f"{reading['dom_elements']} elements, {reading['toasts']} toasts")
        print(f"sockets opened by the page: {report['heap']['sockets_opened']}")
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

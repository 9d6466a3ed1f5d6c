"""Measure push latency and the server's cost per open page, on loopback.

    python bench/push_latency.py [--instances 50] [--clients 1,100,500] [--changes 100]

The real stack (MemoryStateStore, PushHub, create_asgi_app, dashapp.server.run) runs in a
child process. This process opens plain `websockets` clients, sends the child one "trigger"
line per status change over a pipe, and takes the time from just before `store.record(...)`
to the arrival of the `instance_status_change` message at each client. Both processes read
time.perf_counter(), which on Linux is CLOCK_MONOTONIC and shared by every process, so the
two timestamps compare directly.

All clients run on one asyncio loop in this process, so at 500 clients the latency includes
the time this process takes to read 500 sockets in turn; on a 2-core machine the clients and
the server also share the CPUs. Treat the figures as an upper bound for one server.

With --thread-baseline (on by default) it also holds the same number of open requests on
Werkzeug's threaded server, the server flask-sock runs under, to show what one thread per
open page costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from websockets.asyncio.client import connect  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONNECT_BATCH = 50
ARRIVAL_TIMEOUT = 10.0
IDLE_SECONDS = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the server side (child process) -------------------------------------------------------

def serve_stack(port: int, instance_count: int) -> None:
    """Run the real stack on `port`; record one change per "trigger SEQ" line read from stdin."""
    import dash
    from dash import html

    from dashapp.config import InstanceConfig
    from dashapp.model import FailureKind, ProbeResult, Status, to_iso
    from dashapp.push import PushHub
    from dashapp.server import create_asgi_app, run
    from dashapp.store.memory import MemoryStateStore

    names = [f"bench-{index:03d}" for index in range(instance_count)]
    store = MemoryStateStore()
    store.configure([InstanceConfig(name=name, type="tcp", host="127.0.0.1", port=10000 + index,
                                    tags=("bench",)) for index, name in enumerate(names)])
    for name in names:
        store.record(name, ProbeResult.success(1.0, {}, checked_at=T0))

    def control_loop() -> None:
        for line in sys.stdin:
            sequence = int(line.split()[1])
            name = names[sequence % len(names)]
            at = T0 + timedelta(seconds=sequence + 1)
            if store.get(name).status == Status.RUNNING:
                result = ProbeResult.failed(FailureKind.REFUSED, "connection refused", checked_at=at)
            else:
                result = ProbeResult.success(1.0, {}, checked_at=at)
            sent = time.perf_counter()
            store.record(name, result)
            print(f"sent {sequence} {sent!r} {to_iso(at)}", flush=True)

    dash_app = dash.Dash(__name__)
    dash_app.layout = html.Div("bench")
    # A heartbeat an hour apart stays out of the measured window.
    hub = PushHub(store, metrics_interval=3600.0)
    threading.Thread(target=control_loop, name="bench-control", daemon=True).start()
    run(create_asgi_app(dash_app, hub), "127.0.0.1", port)


def serve_threaded_baseline(port: int) -> None:
    """Hold every request open on Werkzeug's threaded server, as one thread per open page does."""
    from werkzeug.serving import make_server

    release = threading.Event()

    def hold_open(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        release.wait()
        return [b""]

    make_server("127.0.0.1", port, hold_open, threaded=True).serve_forever()


# --- measurements of the child process -----------------------------------------------------

def process_stats(pid: int) -> dict:
    """Read resident and virtual memory (MiB), thread count and CPU seconds of a process from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name in parentheses may contain spaces, so split after its closing bracket.
    values = stat[stat.rindex(")") + 2:].split()
    cpu_seconds = (int(values[11]) + int(values[12])) / CLOCK_TICKS
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "vm_mib": int(fields["VmSize"].split()[0]) / 1024,
            "threads": int(fields["Threads"]), "cpu_s": cpu_seconds}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, child: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited with code {child.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout} s")


def start_child(mode: str, port: int, instance_count: int) -> subprocess.Popen:
    command = [sys.executable, __file__, mode, "--port", str(port), "--instances", str(instance_count)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_for_port(port, child)
    return child


def stop_child(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# --- clients -------------------------------------------------------------------------------

class Arrivals:
    """Arrival times of each change at each client, keyed by the change's `at`."""

    def __init__(self, client_count: int):
        self.client_count = client_count
        self.times: dict[str, list[float]] = defaultdict(list)
        self.complete: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def add(self, at: str, arrived: float) -> None:
        self.times[at].append(arrived)
        if len(self.times[at]) == self.client_count:
            self.complete[at].set()


async def read_changes(websocket, arrivals: Arrivals) -> None:
    async for text in websocket:
        arrived = time.perf_counter()
        if '"type": "instance_status_change"' in text[:64]:
            arrivals.add(json.loads(text)["at"], arrived)


async def open_client(port: int):
    websocket = await connect(f"ws://127.0.0.1:{port}/ws", proxy=None, compression=None,
                              max_size=None, open_timeout=30)
    snapshot = json.loads(await websocket.recv())
    if snapshot["type"] != "instances_status_update":
        raise RuntimeError(f"first message was {snapshot['type']}, not the snapshot")
    return websocket


async def open_clients(port: int, count: int) -> list:
    websockets = []
    for start in range(0, count, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, count - start)
        websockets += await asyncio.gather(*(open_client(port) for _ in range(batch)))
    return websockets


async def measure_client_count(child: subprocess.Popen, port: int, client_count: int, changes: int,
                               first_sequence: int) -> dict:
    """Connect `client_count` clients, push `changes` changes one at a time, and close them."""
    loop = asyncio.get_running_loop()
    before = process_stats(child.pid)
    websockets = await open_clients(port, client_count)
    arrivals = Arrivals(client_count)
    readers = [asyncio.create_task(read_changes(websocket, arrivals)) for websocket in websockets]

    idle_start = process_stats(child.pid)
    await asyncio.sleep(IDLE_SECONDS)
    idle_end = process_stats(child.pid)

    latencies = []
    delivered = 0
    for sequence in range(first_sequence, first_sequence + changes):
        child.stdin.write(f"trigger {sequence}\n")
        child.stdin.flush()
        _, _, sent, at = (await loop.run_in_executor(None, child.stdout.readline)).split()
        try:
            await asyncio.wait_for(arrivals.complete[at].wait(), ARRIVAL_TIMEOUT)
        except asyncio.TimeoutError:
            pass
        delivered += len(arrivals.times[at])
        latencies += [(arrived - float(sent)) * 1000 for arrived in arrivals.times[at]]
    pushed = process_stats(child.pid)

    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(websocket.close() for websocket in websockets), return_exceptions=True)
    return {
        "clients": client_count,
        "delivered": delivered,
        "expected": client_count * changes,
        "median_ms": statistics.median(latencies),
        "p99_ms": statistics.quantiles(latencies, n=100, method="inclusive")[98] if len(latencies) > 1 else latencies[0],
        "max_ms": max(latencies),
        "rss_before_mib": before["rss_mib"],
        "rss_open_mib": idle_start["rss_mib"],
        "vm_open_mib": idle_start["vm_mib"],
        "threads_open": idle_start["threads"],
        "idle_cpu_pct": 100 * (idle_end["cpu_s"] - idle_start["cpu_s"]) / IDLE_SECONDS,
        "cpu_per_change_ms": 1000 * (pushed["cpu_s"] - idle_end["cpu_s"]) / changes,
    }


def measure_thread_baseline(page_count: int) -> dict:
    """Hold `page_count` requests open on Werkzeug's threaded server; return its memory and threads."""
    port = free_port()
    child = start_child("--serve-threaded", port, 0)
    sockets = []
    try:
        before = process_stats(child.pid)
        for _ in range(page_count):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sockets.append(connection)
        deadline = time.monotonic() + 30
        while process_stats(child.pid)["threads"] < page_count and time.monotonic() < deadline:
            time.sleep(0.1)
        holding = process_stats(child.pid)
    finally:
        for connection in sockets:
            connection.close()
        stop_child(child)
    return {"pages": page_count, "rss_before_mib": before["rss_mib"], "rss_open_mib": holding["rss_mib"],
            "vm_open_mib": holding["vm_mib"], "threads_open": holding["threads"]}


# --- report --------------------------------------------------------------------------------

def machine_line() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({model}), "
            f"Python {platform.python_version()}")


def print_report(arguments, results: list[dict], baseline: dict | None) -> None:
    print(machine_line())
    print(f"server: uvicorn + Starlette + PushHub, MemoryStateStore with {arguments.instances} instances, "
          f"{arguments.changes} changes per row, one change in flight at a time")
    print()
    print(f"{'clients':>7} {'delivered':>12} {'median ms':>9} {'p99 ms':>7} {'max ms':>7} "
          f"{'RSS MiB':>15} {'KiB/page':>8} {'VM MiB':>7} {'threads':>7} {'idle CPU':>8} {'CPU ms/change':>13}")
    for row in results:
        per_page_kib = 1024 * (row["rss_open_mib"] - row["rss_before_mib"]) / row["clients"]
        print(f"{row['clients']:>7} {row['delivered']:>5}/{row['expected']:<6} {row['median_ms']:>9.2f} "
              f"{row['p99_ms']:>7.2f} {row['max_ms']:>7.2f} "
              f"{row['rss_before_mib']:>6.1f} -> {row['rss_open_mib']:>5.1f} {per_page_kib:>8.1f} {row['vm_open_mib']:>7.0f} "
              f"{row['threads_open']:>7} {row['idle_cpu_pct']:>7.1f}% {row['cpu_per_change_ms']:>13.2f}")
    if baseline:
        per_page_kib = 1024 * (baseline["rss_open_mib"] - baseline["rss_before_mib"]) / baseline["pages"]
        print()
        print(f"thread per page (Werkzeug threaded server, {baseline['pages']} requests held open): "
              f"RSS {baseline['rss_before_mib']:.1f} -> {baseline['rss_open_mib']:.1f} MiB "
              f"({per_page_kib:.1f} KiB/page), virtual {baseline['vm_open_mib']:.0f} MiB, {baseline['threads_open']} threads")


async def run_benchmark(arguments) -> list[dict]:
    port = free_port()
    child = start_child("--serve", port, arguments.instances)
    results = []
    sequence = 0
    try:
        for client_count in arguments.clients:
            results.append(await measure_client_count(child, port, client_count, arguments.changes, sequence))
            sequence += arguments.changes
    finally:
        stop_child(child)
    return results


def parse_arguments(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=50, help="instances in the store (default %(default)s)")
    parser.add_argument("--clients", default="1,100,500",
                        help="comma-separated client counts, one row each (default %(default)s)")
    parser.add_argument("--changes", type=int, default=100,
                        help="status changes pushed per row (default %(default)s)")
    parser.add_argument("--no-thread-baseline", dest="thread_baseline", action="store_false",
                        help="skip the thread-per-page comparison")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-threaded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    arguments.clients = [int(count) for count in arguments.clients.split(",")]
    return arguments


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    if arguments.serve:
        serve_stack(arguments.port, arguments.instances)
        return 0
    if arguments.serve_threaded:
        serve_threaded_baseline(arguments.port)
        return 0

    results = asyncio.run(run_benchmark(arguments))
    baseline = measure_thread_baseline(max(arguments.clients)) if arguments.thread_baseline else None
    print_report(arguments, results, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

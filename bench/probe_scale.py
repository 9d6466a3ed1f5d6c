"""Measure how the scheduler keeps up with 1,000 to 10,000 instances, on loopback.

    python bench/probe_scale.py [--instances 1000,5000,10000] [--ticks 6] [--interval 5]
    python bench/probe_scale.py --instances 10000 --py-spy /tmp/probe_scale.raw
    python bench/probe_scale.py --summarize-profile /tmp/probe_scale.raw

The real engine runs in this process: dashapp.scheduler.Monitor with its default worker count
and exit watch, over a MemoryStateStore subclass that only timestamps record(). The targets are
real servers that the benchmark starts and stops itself, as child processes, so that
time.process_time() counts only the monitor and this benchmark's small bookkeeping:

- a throwaway mariadbd, redis-server and postgres with their connection limits raised, because
  the shared servers allow 151 (MariaDB) and 100 (PostgreSQL) connections and other test suites
  use them at the same time;
- a "black hole" child process whose listeners accept connections and never send a byte;
- bound but not listening sockets in this process, so connections to them are refused.

Per instance the due time of a probe is APScheduler's grid, read from its job events: after
the first run, an interval job fires at the previous scheduled time plus the interval, however
late the run started (IntervalTrigger in APScheduler 3.11). Lateness is the probe's start minus
that time, and a tick is one interval of the grid.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from apscheduler.events import EVENT_JOB_SUBMITTED  # noqa: E402

from dashapp.config import InstanceConfig  # noqa: E402
from dashapp.model import ProbeResult, Status  # noqa: E402
from dashapp.probes import create_probe  # noqa: E402
from dashapp.scheduler import Monitor  # noqa: E402
from dashapp.store.memory import MemoryStateStore  # noqa: E402
from tests.servers import (  # noqa: E402
    LOOPBACK, MariaDBServer, PostgresServer, RedisServer, _descendants, make_mariadb_datadir,
    make_postgres_datadir,
)

SIZES = (1000, 5000, 10000)
TYPES = ("mysql", "redis", "postgresql", "tcp")
RUN_KINDS = ("quick", "full", "quick+full")
# PostgreSQL runs one server process per connection, so its share stays small.
POSTGRES_MAX_INSTANCES = 300
BLACK_HOLE_LISTENERS = 8
REFUSED_PORTS = 8
POSTGRES_PASSWORD = "bench-probe-scale"
LATENESS_TARGET_S = 1.0
SERVER_MARGIN = 50
FD_MARGIN = 1000
LOAD_CHECK_DELAY_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The black hole: a child process that accepts on several ports, reads and drops whatever the
# client sends (a MySQL client waits for the greeting, PostgreSQL sends SSLRequest, Redis PING),
# and closes a connection only when the client does. It prints its ports, then runs until killed.
BLACK_HOLE_SCRIPT = r"""
import selectors, socket, sys
count = int(sys.argv[1])
selector = selectors.DefaultSelector()
ports = []
for _ in range(count):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    server.setblocking(False)
    selector.register(server, selectors.EVENT_READ, "listener")
    ports.append(server.getsockname()[1])
print(" ".join(map(str, ports)), flush=True)
while True:
    for key, _ in selector.select():
        if key.data == "listener":
            while True:
                try:
                    connection, _ = key.fileobj.accept()
                except BlockingIOError:
                    break
                connection.setblocking(False)
                selector.register(connection, selectors.EVENT_READ, "peer")
        else:
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
"""


# --- the instance mix --------------------------------------------------------------------------

@dataclass
class Mix:
    """How many instances of each type point at a real server, a black hole or a refused port."""

    total: int
    reachable: dict[str, int]
    black_hole: dict[str, int]
    refused: dict[str, int]

    def per_type(self, kind: str) -> int:
        return self.reachable[kind] + self.black_hole[kind] + self.refused[kind]

    def describe(self) -> str:
        lines = [f"{'type':<11}{'reachable':>10}{'black hole':>12}{'refused':>9}{'total':>8}"]
        for kind in TYPES:
            lines.append(f"{kind:<11}{self.reachable[kind]:>10}{self.black_hole[kind]:>12}"
                         f"{self.refused[kind]:>9}{self.per_type(kind):>8}")
        lines.append(f"{'all':<11}{sum(self.reachable.values()):>10}{sum(self.black_hole.values()):>12}"
                     f"{sum(self.refused.values()):>9}{self.total:>8}")
        return "\n".join(lines)


def plan_mix(total: int) -> Mix:
    """Split `total` into 80 % reachable, 10 % black holes and 10 % refused ports.

    PostgreSQL gets at most POSTGRES_MAX_INSTANCES reachable instances; the rest of the reachable
    share is split evenly over mysql, redis and tcp. A tcp probe only opens a connection, which a
    black hole accepts, so black holes go to the three database types only.
    """
    black_holes = total // 10
    refused = total // 10
    reachable_total = total - black_holes - refused

    postgres = min(POSTGRES_MAX_INSTANCES, reachable_total // 10)
    reachable = {"postgresql": postgres, **_split(reachable_total - postgres, ("mysql", "redis", "tcp"))}
    return Mix(total=total, reachable=reachable,
               black_hole={"tcp": 0, **_split(black_holes, ("mysql", "redis", "postgresql"))},
               refused=_split(refused, TYPES))


def _split(count: int, kinds: tuple[str, ...]) -> dict[str, int]:
    share, rest = divmod(count, len(kinds))
    return {kind: share + (1 if index < rest else 0) for index, kind in enumerate(kinds)}


# --- the servers -------------------------------------------------------------------------------

class BenchMariaDB(MariaDBServer):
    def __init__(self, template_datadir: Path, max_connections: int):
        super().__init__(template_datadir)
        self.max_connections = max_connections

    def command(self) -> list[str]:
        # back_log sizes the listen queue for the first tick, when every probe connects at once.
        return [*super().command(), f"--max-connections={self.max_connections}", "--back-log=4096",
                f"--thread-cache-size={min(self.max_connections, 16384)}"]


class BenchPostgres(PostgresServer):
    def __init__(self, template_datadir: Path, max_connections: int):
        super().__init__(template_datadir)
        self.max_connections = max_connections

    def command(self) -> list[str]:
        return [*super().command(), "-c", f"max_connections={self.max_connections}"]


class BlackHole:
    """The black hole child process; `ports` are its listening ports."""

    def __init__(self, listeners: int):
        self.process = subprocess.Popen([sys.executable, "-c", BLACK_HOLE_SCRIPT, str(listeners)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.ports = [int(port) for port in self.process.stdout.readline().split()]
        if len(self.ports) != listeners:
            self.close()
            raise RuntimeError("the black hole process did not report its ports")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@dataclass
class Targets:
    """Every server and port the instances point at; close() stops and frees all of them."""

    mariadb: BenchMariaDB | None = None
    redis: RedisServer | None = None
    postgres: BenchPostgres | None = None
    black_hole: BlackHole | None = None
    refused_sockets: list[socket.socket] = field(default_factory=list)
    scratch: list[Path] = field(default_factory=list)

    def pids(self) -> list[int]:
        """Return the process ids of every server, with the postgres backends open now."""
        pids = [server.process.pid for server in (self.mariadb, self.redis, self.black_hole)]
        return pids + [self.postgres.process.pid, *_descendants(self.postgres.process.pid)]

    @property
    def refused_ports(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self.refused_sockets]

    def close(self) -> None:
        for server in (self.mariadb, self.redis, self.postgres):
            if server is not None:
                server.close()
        if self.black_hole is not None:
            self.black_hole.close()
        for sock in self.refused_sockets:
            sock.close()
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)


def start_targets(mix: Mix, fd_limit: int, targets: Targets) -> None:
    """Start the servers `mix` needs, filling `targets` as they start so close() can stop them."""
    directory = Path(tempfile.mkdtemp(prefix="dashapp-bench-mariadb-template-"))
    targets.scratch.append(directory)
    targets.mariadb = BenchMariaDB(make_mariadb_datadir(directory),
                                   mix.reachable["mysql"] + SERVER_MARGIN)
    targets.mariadb.start()

    # The tcp instances connect to Redis too; each connection lives for a moment only.
    maxclients = min(fd_limit - 64, mix.reachable["redis"] + mix.reachable["tcp"] + SERVER_MARGIN)
    targets.redis = RedisServer("--maxclients", str(maxclients), "--tcp-backlog", "4096")
    targets.redis.start()

    postgres_datadir = make_postgres_datadir(POSTGRES_PASSWORD)
    targets.scratch.append(postgres_datadir.parent)
    targets.postgres = BenchPostgres(postgres_datadir, mix.reachable["postgresql"] + SERVER_MARGIN)
    targets.postgres.start()

    targets.black_hole = BlackHole(BLACK_HOLE_LISTENERS)
    for _ in range(REFUSED_PORTS):
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        targets.refused_sockets.append(sock)


def build_instances(mix: Mix, targets: Targets, interval: float, timeout: float) -> list[InstanceConfig]:
    """Build the InstanceConfig objects, in an interleaved order so that no type goes first."""
    server_ports = {"mysql": targets.mariadb.port, "redis": targets.redis.port,
                    "postgresql": targets.postgres.port, "tcp": targets.redis.port}
    logins = {"mysql": {"user": "root"}, "postgresql": {"user": "postgres", "password": POSTGRES_PASSWORD,
                                                        "database": "postgres"}}
    groups = []
    for kind in TYPES:
        for role, count in (("ok", mix.reachable[kind]), ("hole", mix.black_hole[kind]),
                            ("refused", mix.refused[kind])):
            ports = {"ok": [server_ports[kind]], "hole": targets.black_hole.ports,
                     "refused": targets.refused_ports}[role]
            groups.append([InstanceConfig(name=f"{kind}-{role}-{index:05d}", type=kind, host=LOOPBACK,
                                          port=ports[index % len(ports)], interval=interval,
                                          timeout=timeout, tags=(kind, role), **logins.get(kind, {}))
                           for index in range(count)])

    # Interleave the groups, so the order of add_job (and so of the grid) mixes every kind.
    instances = []
    longest = max(len(group) for group in groups)
    for index in range(longest):
        instances.extend(group[index] for group in groups if index < len(group))
    return instances


# --- observing the engine ----------------------------------------------------------------------

class Run:
    """One probe of one instance: when it started, when its check ended and when it was stored.

    `kind` is "quick" (on the probe loop), "full" (on a worker) or "quick+full" (a quick check
    that found its kept connection broken and handed over to a full check, which reconnects).
    """

    __slots__ = ("start", "check_end", "stored", "check_cpu", "record_cpu", "kind")

    def __init__(self, start: float, kind: str):
        self.start = start
        self.check_end: float | None = None
        self.stored: float | None = None
        self.check_cpu = 0.0
        self.record_cpu = 0.0
        self.kind = kind


class Observations:
    """Every run per instance, and its first two scheduled times from APScheduler's events.

    Monitor runs an instance's first probe at once and the later ones on the trigger's grid.
    That grid may start at a phase within the interval, so the second scheduled time anchors it.

    Lists are only appended to, which is atomic in CPython, so worker threads need no lock.
    """

    def __init__(self, instances: list[InstanceConfig]):
        self.runs: dict[str, list[Run]] = {instance.name: [] for instance in instances}
        self.type_of = {instance.name: instance.type for instance in instances}
        self.name_of_job = {instance.key: instance.name for instance in instances}
        self.scheduled: dict[str, list[float]] = collections.defaultdict(list)
        self.watchdog_records = 0

    def grid_anchor(self, name: str) -> float | None:
        """Return one scheduled time on the instance's grid, or None if it never ran."""
        times = self.scheduled.get(name)
        return times[-1] if times else None

    def on_job_event(self, event) -> None:
        name = self.name_of_job.get(event.job_id)
        if name is None:
            return  # the monitor's own watchdog job
        if len(self.scheduled[name]) < 2:
            self.scheduled[name].append(event.scheduled_run_times[-1].timestamp())


class TimedProbe:
    """A probe wrapper that timestamps each run and measures the CPU time its calls take.

    A quick check's CPU counts start_quick and finish_quick on the probe loop, not the reads in
    between (QuickCheck.advance). The probe loop's thread group shows the whole loop.
    """

    def __init__(self, probe, runs: list[Run]):
        self._probe = probe
        self._runs = runs
        self._handed_over: Run | None = None

    def start_quick(self):
        start, cpu = time.time(), time.thread_time()
        quick = self._probe.start_quick()
        if quick is not None:
            run = Run(start, "quick")
            run.check_cpu = time.thread_time() - cpu
            self._runs.append(run)
        return quick

    def finish_quick(self, quick):
        cpu = time.thread_time()
        result = self._probe.finish_quick(quick)
        run = self._runs[-1]
        run.check_cpu += time.thread_time() - cpu
        run.check_end = time.time()
        if result is None:
            run.kind = "quick+full"
            self._handed_over = run
        return result

    def check(self) -> ProbeResult:
        run, self._handed_over = self._handed_over, None
        if run is None:
            run = Run(time.time(), "full")
            self._runs.append(run)
        cpu = time.thread_time()
        result = self._probe.check()
        run.check_cpu += time.thread_time() - cpu
        run.check_end = time.time()
        return result

    def idle_fileno(self):
        return self._probe.idle_fileno()

    def close(self) -> None:
        self._probe.close()


class StartTimeout(Exception):
    """Monitor.start() did not return within the start limit."""


class TimedStore(MemoryStateStore):
    """The real in-memory store; record() also notes when each result arrived."""

    def __init__(self, observations: Observations):
        super().__init__()
        self._observations = observations

    def record(self, name, result):
        stored = time.time()
        cpu = time.thread_time()
        transition = super().record(name, result)
        runs = self._observations.runs.get(name)
        if runs and runs[-1].stored is None:
            runs[-1].stored = stored
            runs[-1].record_cpu = time.thread_time() - cpu
        else:
            self._observations.watchdog_records += 1
        return transition


def transition_cost(size: int, samples: int = 20) -> float:
    """Return the seconds one pending -> running transition takes in a MemoryStateStore of `size`."""
    store = MemoryStateStore()
    store.configure([InstanceConfig(name=f"cost-{index}", type="tcp", host=LOOPBACK, port=1 + index % 65535)
                     for index in range(size)])
    started = time.perf_counter()
    for index in range(samples):
        store.record(f"cost-{index}", ProbeResult.success(1.0, {}))
    return (time.perf_counter() - started) / samples


# --- process figures ---------------------------------------------------------------------------

def thread_groups() -> dict[int, str]:
    """Map each live thread's native id to its component: scheduler, workers, exit watch, other."""
    groups = {}
    for thread in threading.enumerate():
        name = thread.name
        if name == "APScheduler":
            group = "apscheduler"
        elif name.startswith("probe_"):
            group = "workers"
        elif name == "probe-loop":
            group = "probe loop"
        elif name in ("MainThread", "bench-sampler"):
            group = "bench"
        else:
            group = "other"
        groups[thread.native_id] = group
    return groups


def cpu_by_group() -> dict[str, float]:
    """Return CPU seconds per thread group, read from each thread's schedstat (nanoseconds)."""
    totals: dict[str, float] = collections.defaultdict(float)
    for native_id, group in thread_groups().items():
        try:
            with open(f"/proc/self/task/{native_id}/schedstat") as stat:
                totals[group] += int(stat.read().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue
    return dict(totals)


def status_fields(*names: str) -> dict[str, int]:
    """Return fields of /proc/self/status, in kB for the memory ones."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in names:
                values[key] = int(rest.split()[0])
    return values


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards `needed`, within the hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine_cpu() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def process_cpu(pids: list[int]) -> float:
    """Return the CPU seconds (user + system) used so far by the processes `pids`."""
    seconds = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        seconds += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


@dataclass
class TickSample:
    at: float
    machine_busy: float
    machine_total: float
    servers_cpu: float
    process_cpu: float
    groups: dict[str, float]
    sampler_cpu: float
    rss_kb: int
    fds: int
    threads: int
    in_flight: int
    skipped: int
    quick_checks: int
    full_checks: int


class Sampler:
    """Sample CPU, memory, descriptors and threads at each tick boundary of the grid."""

    def __init__(self, monitor: Monitor, server_pids: Callable[[], list[int]]):
        self._monitor = monitor
        self.server_pids = server_pids
        self.samples: dict[int, TickSample] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, origin: float, interval: float, first_tick: int, last_tick: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(origin, interval, first_tick, last_tick),
                                        name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, origin: float, interval: float, first_tick: int, last_tick: int) -> None:
        for tick in range(first_tick, last_tick + 1):
            if self._stop.wait(max(0.0, origin + tick * interval - time.time())):
                return
            self.samples[tick] = self.sample()

    def sample(self) -> TickSample:
        at = time.time()
        busy, total = machine_cpu()
        servers = process_cpu(self.server_pids())
        process_cpu_seconds = time.process_time()
        own = time.thread_time()
        groups = cpu_by_group()
        status = status_fields("VmRSS", "Threads")
        fds = open_fds()
        stats = self._monitor.stats()
        sampler_cpu = time.thread_time() - own
        return TickSample(at=at, machine_busy=busy, machine_total=total, servers_cpu=servers,
                          process_cpu=process_cpu_seconds, groups=groups, sampler_cpu=sampler_cpu,
                          rss_kb=status["VmRSS"], fds=fds, threads=status["Threads"],
                          in_flight=self._monitor.in_flight(), skipped=stats["skipped"],
                          quick_checks=stats["quick_checks"], full_checks=stats["full_checks"])


# --- one size ----------------------------------------------------------------------------------

@dataclass
class Options:
    ticks: int
    warmup_ticks: int
    warmup_limit: float
    start_limit: float
    workers: int | None
    interval: float
    timeout: float
    py_spy: str | None


def run_size(size: int, options: Options) -> dict:
    """Start the servers, run the monitor over `size` instances, and return the figures."""
    mix = plan_mix(size)
    print(f"\n=== {size} instances (interval {options.interval:g} s, timeout {options.timeout:g} s, "
          f"{options.ticks} measured ticks, workers {options.workers or 'default'}) ===")
    print(mix.describe())

    soft, hard = raise_fd_limit(size + FD_MARGIN * 4)
    print(f"RLIMIT_NOFILE soft={soft} hard={hard}")
    cost = transition_cost(size)
    print(f"MemoryStateStore: one transition with {size} instances takes {cost * 1000:.3f} ms "
          f"(the first tick makes {size} transitions from pending)")

    targets = Targets()
    try:
        started = time.monotonic()
        start_targets(mix, soft, targets)
        print(f"servers started in {time.monotonic() - started:.1f} s: mariadb :{targets.mariadb.port} "
              f"(max_connections {targets.mariadb.max_connections}), redis :{targets.redis.port}, "
              f"postgres :{targets.postgres.port} (max_connections {targets.postgres.max_connections}), "
              f"black holes {targets.black_hole.ports}, refused {targets.refused_ports}")
        instances = build_instances(mix, targets, options.interval, options.timeout)
        figures = measure(instances, options, targets.pids)
        figures["mix"] = mix
        figures["transition_cost_s"] = cost
        return figures
    finally:
        targets.close()


def measure(instances: list[InstanceConfig], options: Options, server_pids: Callable[[], list[int]]) -> dict:
    observations = Observations(instances)
    store = TimedStore(observations)
    monitor = Monitor(store, max_workers=options.workers,
                      probe_factory=lambda instance: TimedProbe(create_probe(instance),
                                                                observations.runs[instance.name]))
    sampler = Sampler(monitor, server_pids)
    profiler = None
    baseline = sampler.sample()
    try:
        began = time.time()
        starter = threading.Thread(target=_start_with_listener, args=(monitor, observations, instances),
                                   name="bench-start", daemon=True)
        starter.start()
        starter.join(options.start_limit)
        if starter.is_alive():
            raise StartTimeout(f"Monitor.start() did not return within {options.start_limit:g} s; "
                               f"{monitor.in_flight()} probes in flight, "
                               f"{sum(1 for runs in observations.runs.values() if runs)} instances probed so far")
        start_seconds = time.time() - began
        print(f"Monitor.start took {start_seconds:.2f} s")

        first_results_at = _wait_first_results(observations, began + options.warmup_limit)
        anchors = [anchor for anchor in map(observations.grid_anchor, observations.runs) if anchor]
        origin = min(anchors)
        spread = max(anchors) - origin
        ready = first_results_at if first_results_at is not None else time.time()
        print(f"first result of every instance after {ready - began:.1f} s"
              if first_results_at is not None else
              f"NOT every instance had a result after the {options.warmup_limit:g} s warm-up limit")

        first_tick = math.ceil((ready - origin) / options.interval) + options.warmup_ticks
        last_tick = first_tick + options.ticks
        sampler.start(origin, options.interval, first_tick, last_tick)
        if options.py_spy:
            path = Path(options.py_spy)
            profiler = _start_py_spy(str(path.with_name(f"{path.stem}-{len(instances)}{path.suffix}")),
                                     origin + first_tick * options.interval,
                                     options.ticks * options.interval)
        # Wait for the last measured tick, plus the time its slowest probe may take to finish.
        end = origin + last_tick * options.interval + spread + options.timeout + 2.0
        while time.time() < end:
            time.sleep(min(1.0, max(0.0, end - time.time())))
        final = sampler.sample()
    finally:
        sampler.stop()
        # After a StartTimeout, Monitor.stop() would wait for the blocked start; the caller
        # stops the servers and exits instead.
        if not starter.is_alive():
            stopping = time.monotonic()
            monitor.stop()
            stop_seconds = time.monotonic() - stopping
        if profiler is not None:
            profiler.wait(timeout=120)

    print(f"Monitor.stop took {stop_seconds:.2f} s")
    figures = summarize(observations, sampler.samples, origin, first_tick, last_tick, options)
    figures.update(start_s=start_seconds, stop_s=stop_seconds, grid_spread_s=spread,
                   warmup_s=ready - began, warmed_up=first_results_at is not None,
                   skipped=final.skipped, watchdog_records=observations.watchdog_records,
                   baseline_fds=baseline.fds, final=final, hwm_kb=status_fields("VmHWM")["VmHWM"],
                   maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return figures


def _start_with_listener(monitor: Monitor, observations: Observations,
                         instances: list[InstanceConfig]) -> None:
    """Start the monitor with a job event listener added before any job runs.

    Monitor creates its scheduler inside start(), so the listener is attached by wrapping
    BackgroundScheduler.start for this one call.
    """
    from apscheduler.schedulers.background import BackgroundScheduler

    original_start = BackgroundScheduler.start

    def start_and_listen(scheduler, *args, **kwargs):
        scheduler.add_listener(observations.on_job_event, EVENT_JOB_SUBMITTED)
        return original_start(scheduler, *args, **kwargs)

    BackgroundScheduler.start = start_and_listen
    try:
        monitor.start(instances)
    finally:
        BackgroundScheduler.start = original_start


def _wait_first_results(observations: Observations, deadline: float) -> float | None:
    """Poll until every instance has a stored result; return that time, or None at the deadline.

    This reads the benchmark's own records: store.snapshot() would copy every state under the
    store's lock twice a second and slow the monitor down.
    """
    while time.time() < deadline:
        if all(any(run.stored is not None for run in runs) for runs in observations.runs.values()):
            return time.time()
        time.sleep(0.5)
    return None


def _start_py_spy(path: str, at: float, duration: float) -> subprocess.Popen:
    """Record this process with py-spy for `duration` seconds from `at`, in py-spy's raw format."""
    time.sleep(max(0.0, at - time.time()))
    return subprocess.Popen(["py-spy", "record", "--pid", str(os.getpid()), "--duration", str(int(duration)),
                             "--rate", "97", "--gil", "--nonblocking", "--format", "raw", "--output", path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


# --- figures -----------------------------------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile; NaN for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def summarize(observations: Observations, samples: dict[int, TickSample], origin: float,
              first_tick: int, last_tick: int, options: Options) -> dict:
    """Match runs to grid ticks and compute per-tick and overall figures."""
    interval = options.interval
    ticks = []
    lateness_all: list[float] = []
    check_cpu: dict[str, list[float]] = collections.defaultdict(list)
    record_cpu: list[float] = []
    lateness_by_kind: dict[str, list[float]] = collections.defaultdict(list)

    for tick in range(first_tick, last_tick):
        lateness, to_result, to_answer, missed = [], [], [], 0
        first_due = math.inf
        for name, runs in observations.runs.items():
            anchor = observations.grid_anchor(name) or origin
            # The instance's due time inside the window [origin + tick * interval, + interval).
            due = anchor + interval * (tick - math.floor((anchor - origin) / interval))
            first_due = min(first_due, due)
            run = next((run for run in runs if due - 0.001 <= run.start < due + interval), None)
            if run is None:
                missed += 1
                continue
            lateness.append(run.start - due)
            lateness_by_kind[run.kind].append(run.start - due)
            if run.stored is not None:
                to_result.append(run.stored - due)
                if "-hole-" not in name:
                    to_answer.append(run.stored - due)
            check_cpu[(observations.type_of[name], run.kind)].append(run.check_cpu)
            record_cpu.append(run.record_cpu)
        lateness_all.extend(lateness)
        ticks.append({
            "tick": tick,
            "missed": missed,
            "late_over_target": sum(1 for value in lateness if value > LATENESS_TARGET_S),
            "lateness_max": max(lateness, default=math.nan),
            "wall_all_s": max(to_result, default=math.nan),
            "wall_answered_s": max(to_answer, default=math.nan),
        })

    cpu_ticks = []
    for tick in range(first_tick, last_tick):
        before, after = samples.get(tick), samples.get(tick + 1)
        if before is None or after is None:
            continue
        groups = {group: after.groups.get(group, 0.0) - before.groups.get(group, 0.0)
                  for group in set(before.groups) | set(after.groups)}
        cpu_ticks.append({"tick": tick, "process": after.process_cpu - before.process_cpu - after.sampler_cpu,
                          "servers": after.servers_cpu - before.servers_cpu,
                          "machine_busy": after.machine_busy - before.machine_busy,
                          "machine_total": after.machine_total - before.machine_total,
                          "wall": after.at - before.at, "groups": groups, "rss_kb": after.rss_kb,
                          "fds": after.fds, "threads": after.threads, "in_flight": after.in_flight,
                          "skipped": after.skipped - before.skipped,
                          "quick_checks": after.quick_checks - before.quick_checks,
                          "full_checks": after.full_checks - before.full_checks})

    return {"ticks": ticks, "cpu_ticks": cpu_ticks, "lateness": lateness_all,
            "lateness_by_kind": lateness_by_kind,
            "check_cpu": {kind: statistics.fmean(values) for kind, values in check_cpu.items() if values},
            "checks_per_tick": {kind: len(values) / max(1, len(ticks)) for kind, values in check_cpu.items()},
            "record_cpu": statistics.fmean(record_cpu) if record_cpu else math.nan}


def report(size: int, figures: dict, options: Options) -> str:
    """Format the figures of one size as plain text lines."""
    ticks, cpu_ticks, lateness = figures["ticks"], figures["cpu_ticks"], figures["lateness"]
    missed = sum(tick["missed"] for tick in ticks)
    late = sum(tick["late_over_target"] for tick in ticks)
    probes = len(lateness)
    met = missed == 0 and late == 0 and probes > 0
    skipped_in = {tick["tick"]: tick["skipped"] for tick in cpu_ticks}
    cpu_in = {tick["tick"]: tick for tick in cpu_ticks}

    lines = [f"--- {size} instances: {len(ticks)} measured ticks after warm-up ---",
             f"start {figures['start_s']:.2f} s, first result of every instance after {figures['warmup_s']:.1f} s"
             f"{'' if figures['warmed_up'] else ' (warm-up limit reached)'}, "
             f"grid spread {figures['grid_spread_s']:.2f} s, stop {figures['stop_s']:.2f} s",
             f"probes: expected {size} per tick, {probes} measured over {len(ticks)} ticks; "
             f"missed {missed}; late > {LATENESS_TARGET_S:g} s: {late}; "
             f"runs skipped (previous probe still in flight): {sum(skipped_in.values())} "
             f"({figures['skipped']} in the whole run)",
             "lateness (probe start - grid due time): "
             f"median {_ms(statistics.median(lateness) if lateness else math.nan)}, "
             f"p99 {_ms(percentile(lateness, 0.99))}, max {_ms(max(lateness, default=math.nan))}; by run kind: "
             + "; ".join(f"{kind} p99 {_ms(percentile(values, 0.99))}, max {_ms(max(values))}"
                         for kind, values in sorted(figures["lateness_by_kind"].items())),
             "per tick, wall time until every instance's result was stored, counted from each "
             "instance's due time (max per tick): "
             f"all instances median {_s([t['wall_all_s'] for t in ticks], 0.5)}, p99 "
             f"{_s([t['wall_all_s'] for t in ticks], 0.99)} (black holes end at the {options.timeout:g} s timeout); "
             f"answering instances median {_s([t['wall_answered_s'] for t in ticks], 0.5)}, "
             f"p99 {_s([t['wall_answered_s'] for t in ticks], 0.99)}"]
    for tick in ticks:
        lines.append(f"  tick {tick['tick']}: missed {tick['missed']}, skipped {skipped_in.get(tick['tick'], '?')}, "
                     f"late>1s {tick['late_over_target']}, "
                     f"max lateness {_ms(tick['lateness_max'])}, wall all {tick['wall_all_s']:.2f} s, "
                     f"answered {tick['wall_answered_s']:.2f} s" + _tick_work(cpu_in.get(tick["tick"])))

    if cpu_ticks:
        process = [tick["process"] for tick in cpu_ticks]
        groups = sorted({group for tick in cpu_ticks for group in tick["groups"]})
        per_group = ", ".join(f"{group} {statistics.median([t['groups'].get(group, 0.0) for t in cpu_ticks]):.2f}"
                              for group in groups)
        lines.append(f"CPU seconds per {options.interval:g} s tick (process_time): median "
                     f"{statistics.median(process):.2f}, max {max(process):.2f} "
                     f"({statistics.median(process) / options.interval * 100:.0f} % of one core)")
        lines.append(f"  by thread group (median per tick): {per_group}")
        servers = statistics.median([tick["servers"] for tick in cpu_ticks])
        busy = statistics.median([tick["machine_busy"] / tick["machine_total"] for tick in cpu_ticks])
        lines.append(f"  the benchmark's servers (mariadbd, redis-server, postgres and its backends, black hole) "
                     f"{servers:.2f} s per tick; the whole machine was {busy * 100:.0f} % busy "
                     f"({os.cpu_count()} CPUs, other programs included)")
    if cpu_ticks:
        quick = statistics.median([tick["quick_checks"] for tick in cpu_ticks])
        full = statistics.median([tick["full_checks"] for tick in cpu_ticks])
        lines.append(f"  checks per tick (median): {quick:.0f} quick checks on the probe loop, {full:.0f} full checks on workers")
    check_cpu = ", ".join(f"{kind} {run_kind} {figures['check_cpu'][(kind, run_kind)] * 1000:.2f} ms x "
                          f"{figures['checks_per_tick'][(kind, run_kind)]:.0f}"
                          for kind in TYPES for run_kind in RUN_KINDS if (kind, run_kind) in figures["check_cpu"])
    lines.append(f"  CPU per check in the timed calls (thread time, mean x checks per tick): {check_cpu}; "
                 f"store.record {figures['record_cpu'] * 1000:.3f} ms")
    final = figures["final"]
    lines.append(f"memory: peak RSS {figures['hwm_kb'] / 1024:.0f} MiB (VmHWM), ru_maxrss "
                 f"{figures['maxrss_kb'] / 1024:.0f} MiB; open fds {max([t['fds'] for t in cpu_ticks], default=final.fds)} "
                 f"(before start {figures['baseline_fds']}); threads {max([t['threads'] for t in cpu_ticks], default=final.threads)}")
    lines.append(f"target (every instance probed within {LATENESS_TARGET_S:g} s of its due time on every tick): "
                 f"{'met' if met else 'NOT met'}")
    return "\n".join(lines)


def _tick_work(cpu_tick: dict | None) -> str:
    if cpu_tick is None:
        return ""
    return (f"; CPU {cpu_tick['process']:.2f} s, {cpu_tick['quick_checks']} quick + "
            f"{cpu_tick['full_checks']} full checks, {cpu_tick['in_flight']} in flight at its end")


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def _s(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction):.2f} s"


def describe_machine() -> str:
    memory_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    model = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    time.sleep(LOAD_CHECK_DELAY_S)
    load = os.getloadavg()
    return (f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({model}), "
            f"{memory_kb / 1024 / 1024:.1f} GiB memory, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


# --- profile summary ---------------------------------------------------------------------------

# Matched against every frame of a sample's stack, from the root to the leaf; the last match
# names the component, except that the shared probe code only counts without a type frame.
PROFILE_COMPONENTS = (
    ("apscheduler/", "APScheduler dispatch"),
    ("concurrent/futures/", "thread pool"),
    ("dashapp/scheduler.py", "Monitor._run and watchdog"),
    ("dashapp/probes/base.py", "probe: shared (socket, deadline)"),
    ("dashapp/probes/mysql.py", "probe: mysql"),
    ("dashapp/probes/redis.py", "probe: redis"),
    ("dashapp/probes/postgresql.py", "probe: postgresql"),
    ("dashapp/probes/tcp.py", "probe: tcp"),
    ("dashapp/store/", "store.record"),
    ("dashapp/events.py", "store.record"),
    ("dashapp/probeloop.py", "probe loop"),
)


def summarize_profile(path: str) -> str:
    """Group the samples of a py-spy raw (collapsed stacks) file by component."""
    totals: dict[str, int] = collections.Counter()
    leaves: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        component = "other"
        typed = False
        for frame in frames:
            for marker, name in PROFILE_COMPONENTS:
                if marker in frame:
                    if name == "probe: shared (socket, deadline)" and typed:
                        break
                    typed = typed or name.startswith("probe: ") and marker != "dashapp/probes/base.py"
                    component = name
                    break
        totals[component] += int(count)
        leaves[component][frames[-1]] += int(count)

    all_samples = sum(totals.values()) or 1
    lines = [f"{all_samples} samples holding the GIL"]
    for component, count in totals.most_common():
        top = "; ".join(f"{frame} {value * 100 / all_samples:.1f} %"
                        for frame, value in leaves[component].most_common(3))
        lines.append(f"{count * 100 / all_samples:5.1f} %  {component}  (top leaves: {top})")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", default=",".join(map(str, SIZES)),
                        help="comma-separated instance counts to run, one after another (default: %(default)s)")
    parser.add_argument("--ticks", type=int, default=6, help="measured ticks per size (default: %(default)s)")
    parser.add_argument("--warmup-ticks", type=int, default=2,
                        help="ticks to skip after every instance has its first result (default: %(default)s)")
    parser.add_argument("--warmup-limit", type=float, default=180.0,
                        help="seconds to wait for every instance's first result before measuring "
                             "anyway (default: %(default)s)")
    parser.add_argument("--start-limit", type=float, default=120.0,
                        help="seconds to wait for Monitor.start() to return before giving up on a "
                             "size (default: %(default)s)")
    parser.add_argument("--workers", type=int,
                        help="Monitor's max_workers (default: the Monitor's own, one per instance up to 2048)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="probe interval of every instance, in seconds (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="probe timeout of every instance, in seconds; a black hole holds a worker "
                             "this long (default: %(default)s)")
    parser.add_argument("--py-spy", metavar="FILE",
                        help="record the measured ticks with py-spy (--gil, raw format) into FILE, with the "
                             "size added to its name (FILE-10000.raw)")
    parser.add_argument("--summarize-profile", metavar="FILE",
                        help="print a py-spy raw file grouped by component, and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize_profile:
        print(summarize_profile(args.summarize_profile))
        return 0

    sizes = [int(value) for value in args.instances.split(",") if value.strip()]
    if any(size < 10 for size in sizes):
        raise SystemExit("--instances: every size must be at least 10")
    options = Options(ticks=args.ticks, warmup_ticks=args.warmup_ticks, warmup_limit=args.warmup_limit,
                      start_limit=args.start_limit, workers=args.workers,

                      interval=args.interval, timeout=args.timeout, py_spy=args.py_spy)
    print(describe_machine())
    print(f"command: python {' '.join(sys.argv)}")
    reports = []
    for size in sizes:
        try:
            figures = run_size(size, options)
        except StartTimeout as error:
            # The monitor's worker threads are not daemons and the blocked start holds them, so
            # a normal exit would wait for them; the servers were stopped by run_size already.
            reports.append(f"--- {size} instances ---\n{error}\ntarget: NOT met")
            print("\n=== summary ===\n" + "\n\n".join(reports), flush=True)
            os._exit(1)
        text = report(size, figures, options)
        print(text, flush=True)
        reports.append(text)
    print("\n=== summary ===")
    print("\n\n".join(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())

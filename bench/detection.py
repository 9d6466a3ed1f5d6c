"""Measure how soon a killed or frozen server shows as abnormal (异常) in a real browser page.

    python bench/detection.py [--tries 20] [--interval 5] [--timeout 3] [--cases kill,stop]

`python app.py` runs as a child process with a temporary instances file: a throwaway
redis-server (tests/servers.py) with the given interval and timeout, plus the shared MariaDB,
Redis and PostgreSQL on 127.0.0.1. Headless Chromium (Debian's package) opens the overview page.
A MutationObserver in the page notes the wall-clock time (Date.now()) of every change of the
throwaway instance's status badge. It also notes the time of the next animation frame, in which
the change is painted.

Each try of a case:
- kill: wait a random 0-1 s, note time.time(), kill -9 the redis-server, wait for 异常 on the
  page, start the server again on the same port and wait for 运行中.
- stop: wait a random 0-interval s, so the freeze lands anywhere in the probe cycle, note
  time.time(), kill -STOP it, wait for 异常, kill -CONT it and wait for 运行中.

The figure of a try is the painted frame's Date.now() minus the time.time() noted before the
signal. Both read CLOCK_REALTIME on this machine, so they compare directly, to about 1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from dashapp.config import InstanceConfig  # noqa: E402
from dashapp.i18n import t  # noqa: E402
from tests.servers import RedisServer, free_port  # noqa: E402

ARTIFACTS = REPO / "artifacts"
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
APP_START_TIMEOUT_S = 60.0
# Slack on top of interval + timeout before a wait for a status counts as failed.
WAIT_SLACK_S = 15.0
THROWAWAY_NAME = "bench-redis"

# Wall-clock log of the badge's text: one entry per change, with the time of the change and
# of the animation frame that follows it (the frame in which it is painted).
WATCH_BADGE_JS = """
(badgeId) => {
    const read = () => {
        const badge = document.getElementById(badgeId);
        return badge ? badge.textContent : null;
    };
    const log = [];
    let last = read();
    const note = (text) => {
        const entry = {text: text, at: Date.now(), frameAt: null};
        log.push(entry);
        requestAnimationFrame(() => { entry.frameAt = Date.now(); });
    };
    note(last);
    new MutationObserver(() => {
        const now = read();
        if (now !== last) {
            last = now;
            note(now);
        }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
    window.__badgeLog = log;
}
"""

# The first entry from index `mark` on with the wanted text, once its frame has been reached.
FIND_ENTRY_JS = """
([mark, text]) => {
    const entry = window.__badgeLog.slice(mark).find((e) => e.text === text && e.frameAt !== null);
    return entry || null;
}
"""


# --- machine and helpers shared with bench/page_load.py ------------------------------------

def machine() -> dict:
    """Describe the machine and its load now: os.getloadavg() over 1, 5 and 15 minutes."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    chromium = subprocess.run([CHROMIUM_PATH, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "chromium": chromium,
        "loadavg": [round(value, 2) for value in os.getloadavg()],
    }


def launch_chromium(playwright, extra_args: tuple[str, ...] = ()):
    return playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=[*CHROMIUM_ARGS, *extra_args])


def write_config(path: Path, instances: list[dict], interval: float = 5, timeout: float = 5) -> None:
    """Write an instances.toml; each dict contains the keys of one [[instances]] table."""
    lines = ["[defaults]", f"interval = {interval}", f"timeout = {timeout}", ""]
    for instance in instances:
        lines.append("[[instances]]")
        for key, value in instance.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def shared_database_instances() -> list[dict]:
    """Return instance tables for the shared MariaDB and PostgreSQL of this machine."""
    return [
        {"name": "bench-mariadb", "type": "mysql", "host": "127.0.0.1", "port": 3306, "user": "root"},
        {"name": "bench-postgresql", "type": "postgresql", "host": "127.0.0.1", "port": 5432,
         "user": "postgres", "database": "postgres"},
    ]


class App:
    """`python app.py` as a child process on a free port, its log in `directory`."""

    def __init__(self, config_path: Path, directory: Path):
        self.port = free_port()
        self.log_path = directory / "app.log"
        self._log_file = open(self.log_path, "ab")
        command = [sys.executable, str(REPO / "app.py"), "--config", str(config_path), "--port", str(self.port),
                   "--no-reload", "--log-level", "WARNING"]
        self.process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                        stderr=subprocess.STDOUT)
        self._wait_until_serving()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with code {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"app.py did not serve {self.url} within {APP_START_TIMEOUT_S} s")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def summarize(seconds: list[float]) -> dict:
    """Median, p99 by nearest rank (the maximum when there are fewer than 100 values), max, min."""
    ordered = sorted(seconds)
    rank = max(1, -(-99 * len(ordered) // 100))
    return {"count": len(ordered), "median_s": round(statistics.median(ordered), 3),
            "p99_s": round(ordered[rank - 1], 3), "max_s": round(ordered[-1], 3),
            "min_s": round(ordered[0], 3)}


# --- the two cases -------------------------------------------------------------------------

class BadgeWatch:
    """The status badge of one card, watched from the page."""

    def __init__(self, page, key: str, wait_s: float):
        self.page = page
        self.key = key
        self.wait_ms = wait_s * 1000
        page.evaluate(WATCH_BADGE_JS, f"card-{key}-status")

    def mark(self) -> int:
        return self.page.evaluate("window.__badgeLog.length")

    def wait_for(self, text: str, mark: int) -> dict:
        """Wait for the first change to `text` logged at or after `mark`; return its log entry."""
        handle = self.page.wait_for_function(FIND_ENTRY_JS, arg=[mark, text], timeout=self.wait_ms, polling=50)
        return handle.json_value()

    def reason(self) -> str:
        return self.page.inner_text(f"#card-{self.key}-reason")


def break_server(case: str, server: RedisServer) -> None:
    if case == "kill":
        server.kill()
    else:
        server.pause()


def restore_server(case: str, server: RedisServer) -> None:
    if case == "kill":
        server.start()
    else:
        server.resume()


def run_try(case: str, server: RedisServer, badge: BadgeWatch, interval: float) -> dict:
    """Break the server once, time 异常 on the page, then bring it back and wait for 运行中."""
    time.sleep(random.uniform(0, 1.0) if case == "kill" else random.uniform(0, interval))
    # The mark comes before the signal: the exit watch may report a kill before kill() returns.
    mark = badge.mark()
    signalled_at = time.time()
    break_server(case, server)
    entry = badge.wait_for(t("status.abnormal"), mark)
    result = {"seconds": round(entry["frameAt"] / 1000 - signalled_at, 4),
              "dom_seconds": round(entry["at"] / 1000 - signalled_at, 4),
              "reason": badge.reason()}

    mark = badge.mark()
    restored_at = time.time()
    restore_server(case, server)
    entry = badge.wait_for(t("status.running"), mark)
    result["recovery_seconds"] = round(entry["frameAt"] / 1000 - restored_at, 3)
    return result


def run_case(case: str, tries: int, server: RedisServer, badge: BadgeWatch, interval: float,
             screenshot: Path) -> list[dict]:
    """Run the tries of one case; after the first, break the server once more for a screenshot."""
    results = []
    for number in range(1, tries + 1):
        result = run_try(case, server, badge, interval)
        results.append(result)
        print(f"{case} try {number}/{tries}: {result['seconds']:.3f} s to 异常 ({result['reason']}), "
              f"{result['recovery_seconds']:.2f} s back to 运行中", flush=True)
        if number == 1:
            mark = badge.mark()
            break_server(case, server)
            badge.wait_for(t("status.abnormal"), mark)
            badge.page.screenshot(path=str(screenshot), full_page=True)
            mark = badge.mark()
            restore_server(case, server)
            badge.wait_for(t("status.running"), mark)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20, help="tries per case (default %(default)s)")
    parser.add_argument("--interval", type=float, default=5, help="probe interval of the throwaway redis-server, "
                        "in seconds (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=3, help="probe timeout of the throwaway redis-server, "
                        "in seconds (default %(default)s)")
    parser.add_argument("--cases", default="kill,stop", help="comma-separated cases: kill, stop (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = set(cases) - {"kill", "stop"}
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}: use kill, stop or both")

    report = {"machine_before": machine(), "interval_s": args.interval, "timeout_s": args.timeout,
              "tries": args.tries, "cases": {}}
    ARTIFACTS.mkdir(exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="bench-detection-"))
    server = RedisServer()
    app = None
    try:
        server.start()
        config_path = directory / "instances.toml"
        throwaway = {"name": THROWAWAY_NAME, "type": "redis", "host": "127.0.0.1", "port": server.port,
                     "interval": args.interval, "timeout": args.timeout}
        shared_redis = {"name": "bench-shared-redis", "type": "redis", "host": "127.0.0.1", "port": 6379}
        write_config(config_path, [throwaway, shared_redis, *shared_database_instances()])
        app = App(config_path, directory)
        key = InstanceConfig(name=THROWAWAY_NAME, type="redis", host="127.0.0.1", port=server.port).key

        wait_s = args.interval + args.timeout + WAIT_SLACK_S
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(app.url)
                page.wait_for_function(
                    "([id, text]) => document.getElementById(id)?.textContent === text",
                    arg=[f"card-{key}-status", t("status.running")], timeout=wait_s * 1000)
                badge = BadgeWatch(page, key, wait_s)
                for case in cases:
                    screenshot = ARTIFACTS / f"detection-{case}.png"
                    results = run_case(case, args.tries, server, badge, args.interval, screenshot)
                    report["cases"][case] = {
                        "summary": summarize([result["seconds"] for result in results]),
                        "dom_summary": summarize([result["dom_seconds"] for result in results]),
                        "recovery_summary": summarize([result["recovery_seconds"] for result in results]),
                        "reasons": sorted({result["reason"] for result in results}),
                        "tries": results,
                    }
            finally:
                browser.close()
    finally:
        if app is not None:
            app.stop()
        server.close()
        shutil.rmtree(directory, ignore_errors=True)

    report["machine_after"] = machine()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def print_report(report: dict) -> None:
    print(json.dumps({"machine_before": report["machine_before"], "machine_after": report["machine_after"]},
                     ensure_ascii=False, indent=2))
    budget = report["interval_s"] + report["timeout_s"] + 1
    for case, figures in report["cases"].items():
        summary = figures["summary"]
        target = "p99 < 0.5 s" if case == "kill" else f"max < interval + timeout + 1 = {budget:g} s"
        met = summary["p99_s"] < 0.5 if case == "kill" else summary["max_s"] < budget
        print(f"{case}: {summary['count']} tries, interval {report['interval_s']:g} s, "
              f"timeout {report['timeout_s']:g} s: median {summary['median_s']:.3f} s, "
              f"p99 {summary['p99_s']:.3f} s, max {summary['max_s']:.3f} s, min {summary['min_s']:.3f} s; "
              f"target {target}: {'met' if met else 'NOT met'}")
        print(f"  recovery to 运行中: median {figures['recovery_summary']['median_s']:.2f} s, "
              f"max {figures['recovery_summary']['max_s']:.2f} s; reasons shown: {figures['reasons']}")


if __name__ == "__main__":
    sys.exit(main())

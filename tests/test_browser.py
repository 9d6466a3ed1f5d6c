"""The overview page in headless Chromium against the real serving stack (Starlette, a2wsgi,
uvicorn, PushHub) and a MemoryStateStore whose state the tests change.

One browser and one server serve the whole module; each test opens its own page. Tests that
stop the server start it again on the same port before they end.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from dashapp.config import InstanceConfig
from dashapp.model import FailureKind
from dashapp.store.memory import MemoryStateStore
from dashapp.ui import create_dash_app
from tests.browser import CHROMIUM_ARGS, CHROMIUM_PATH, ServingThread, fail, succeed

SECRET = "p@ss:/#w?rd%-browser"
MARKUP_NAME = "<img src=x onerror=alert(1)>"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"

# Playwright timeouts in milliseconds: generous bounds for "it happened", not speed checks.
SHOWN_MS = 10_000
RECONNECT_MS = 20_000

INSTANCES = [
    InstanceConfig(name="订单库-主", type="mysql", host="127.0.0.1", port=3306, user="mon",
                   password=SECRET, tags=("prod", "order")),
    InstanceConfig(name="生产库-主", type="mysql", host="127.0.0.1", port=3307, tags=("prod",)),
    InstanceConfig(name="缓存·会话", type="redis", host="127.0.0.1", port=6379, password=SECRET,
                   tags=("prod", "cache")),
    InstanceConfig(name="报表库 🐘", type="postgresql", host="127.0.0.1", port=5432, tags=("report",)),
    InstanceConfig(name=MARKUP_NAME, type="tcp", host="127.0.0.1", port=9),
]
NAMES = [instance.name for instance in INSTANCES]
KEYS = {instance.name: instance.key for instance in INSTANCES}
C10_NAMES = ["生产库-主", "缓存·会话", "报表库 🐘"]


@pytest.fixture(scope="module")
def store():
    return MemoryStateStore()


@pytest.fixture(scope="module")
def server(store):
    store.configure(INSTANCES)
    serving = ServingThread(create_dash_app(store), store).start()
    yield serving
    serving.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def baseline(store, server):
    """Give every instance a known state: all running except the TCP one, which is abnormal."""
    if not server.running:
        server.start()
    store.configure([])
    store.configure(INSTANCES)
    for name in NAMES[:-1]:
        succeed(store, name, details={"version": "8.0.36", "uptime_s": 93784, "connections": 12,
                                      "read_only": False, "role": None})
    fail(store, MARKUP_NAME, FailureKind.REFUSED, "connection refused")
    return store


class PageRecorder:
    """A page with what the tests inspect: socket frames, socket openings, dialogs."""

    def __init__(self, page):
        self.page = page
        self.frames: list[str] = []
        self.socket_opened_at: list[float] = []
        self.socket_closed_at: list[float] = []
        self.dialogs: list[str] = []
        page.on("websocket", self._on_websocket)
        page.on("dialog", self._on_dialog)

    def _on_websocket(self, websocket):
        self.socket_opened_at.append(time.monotonic())
        websocket.on("framereceived", lambda payload: self.frames.append(
            payload if isinstance(payload, str) else payload.decode("utf-8")))
        websocket.on("close", lambda _: self.socket_closed_at.append(time.monotonic()))

    def _on_dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def recorder(browser, server, baseline):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    recorded = PageRecorder(page)
    yield recorded
    context.close()


def open_overview(recorder: PageRecorder, server: ServingThread, query: str = ""):
    page = recorder.page
    page.goto(server.url + query)
    expect(page.locator("#connection-label")).to_have_text(re.compile("实时连接|Live"), timeout=SHOWN_MS)
    return page


def card(page, name: str):
    return page.locator(f"#card-{KEYS[name]}-body")


def status_badge(page, name: str):
    return page.locator(f"#card-{KEYS[name]}-status")


def screenshot(page, filename: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / filename), full_page=True)


# ---- cards and transitions -----------------------------------------------------------------

def test_page_shows_cards_with_statuses(recorder, server):
    page = open_overview(recorder, server)
    expect(status_badge(page, "订单库-主")).to_have_text("运行中")
    expect(status_badge(page, MARKUP_NAME)).to_have_text("异常")
    expect(page.locator("#summary-total")).to_have_text("5")
    expect(page.locator("#summary-running")).to_have_text("4")
    expect(page.locator("#summary-abnormal")).to_have_text("1")
    screenshot(page, "overview-zh.png")


def test_page_title_counts_abnormal(recorder, server):
    page = open_overview(recorder, server)
    expect(page).to_have_title("(1) 实例概览")


def test_transition_turns_card_abnormal(recorder, server, store):
    page = open_overview(recorder, server)
    fail(store, "订单库-主", FailureKind.TIMEOUT, "timed out after 3 s")
    expect(status_badge(page, "订单库-主")).to_have_text("异常", timeout=SHOWN_MS)
    expect(card(page, "订单库-主")).to_have_class(re.compile("status-abnormal"))
    expect(page.locator(f"#card-{KEYS['订单库-主']}-failure")).to_have_text("超时")
    expect(page.locator(f"#card-{KEYS['订单库-主']}-reason")).to_have_text("timed out after 3 s")
    expect(page.locator(f"#card-{KEYS['订单库-主']}-since")).to_have_text(re.compile(r"自 \d\d:\d\d:\d\d 起"))
    expect(page.locator("#summary-abnormal")).to_have_text("2")
    expect(page).to_have_title("(2) 实例概览")
    screenshot(page, "overview-abnormal.png")


def test_transition_shows_toast(recorder, server, store):
    page = open_overview(recorder, server)
    fail(store, "订单库-主", FailureKind.TIMEOUT, "timed out after 3 s")
    expect(page.locator(".toast-item")).to_have_text("订单库-主 状态变为 异常", timeout=SHOWN_MS)


def test_transition_back_to_running(recorder, server, store):
    page = open_overview(recorder, server)
    fail(store, "订单库-主", FailureKind.TIMEOUT, "timed out after 3 s")
    expect(status_badge(page, "订单库-主")).to_have_text("异常", timeout=SHOWN_MS)
    succeed(store, "订单库-主")
    expect(status_badge(page, "订单库-主")).to_have_text("运行中", timeout=SHOWN_MS)
    expect(page.locator(f"#card-{KEYS['订单库-主']}-problem")).to_be_hidden()
    expect(page.locator(".toast-item").last).to_have_text("订单库-主 状态变为 运行中")
    expect(page).to_have_title("(1) 实例概览")


def test_transition_updates_charts(recorder, server, store):
    page = open_overview(recorder, server)
    fail(store, "缓存·会话", FailureKind.REFUSED, "connection refused")
    expect(page.locator("#summary-abnormal")).to_have_text("2", timeout=SHOWN_MS)
    # The donut lists non-empty statuses in the order abnormal, degraded, pending, maintenance, running.
    page.wait_for_function("""() => {
        const plot = document.querySelector('#chart-status-share .js-plotly-plot');
        return plot && plot.data && JSON.stringify(plot.data[0].values) === '[2,3]';
    }""", timeout=SHOWN_MS)
    bars = page.evaluate("""() => document.querySelector('#chart-by-type .js-plotly-plot').data
        .map(trace => [trace.name, trace.y])""")
    assert ["异常", [0, 0, 1, 1]] in bars


def test_burst_of_changes_shows_one_toast(recorder, server, store):
    page = open_overview(recorder, server)
    for name in NAMES[:-1]:
        fail(store, name, FailureKind.REFUSED, "connection refused")
    expect(page.locator("#summary-abnormal")).to_have_text("5", timeout=SHOWN_MS)
    for name in NAMES[:-1]:
        expect(status_badge(page, name)).to_have_text("异常")
    expect(page.locator(".toast-item")).to_have_count(1)
    expect(page.locator(".toast-item")).to_have_text("4 个实例状态发生变化")


def test_card_details_show_unavailable(recorder, server):
    page = open_overview(recorder, server)
    details = page.locator(f"#card-{KEYS['订单库-主']}-details")
    page.locator(f"#card-{KEYS['订单库-主']}-body summary").click()
    expect(details).to_contain_text("版本8.0.36")
    expect(details).to_contain_text("角色不可用")
    expect(details).to_contain_text("运行时长1 天 2 小时")
    expect(details).to_contain_text("只读否")


# ---- filters -------------------------------------------------------------------------------

def test_search_filters_cards_by_name(recorder, server):
    page = open_overview(recorder, server)
    page.locator("#filter-search").fill("缓存")
    expect(page.locator(f"#card-{KEYS['订单库-主']}")).to_be_hidden()
    expect(page.locator(f"#card-{KEYS['缓存·会话']}")).to_be_visible()
    expect(page.locator("#cards-count")).to_have_text("显示 1 / 5 个实例")


def test_abnormal_cards_sorted_first(recorder, server):
    page = open_overview(recorder, server)
    first = page.evaluate("""() => {
        const slots = Array.from(document.querySelectorAll('#cards > .card-slot'));
        slots.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top
                          || a.getBoundingClientRect().left - b.getBoundingClientRect().left);
        return slots[0].id;
    }""")
    assert first == f"card-{KEYS[MARKUP_NAME]}"


# ---- languages, theme, safety --------------------------------------------------------------

def test_english_page(recorder, server):
    page = open_overview(recorder, server, "?lang=en")
    expect(page.locator("#connection-label")).to_have_text("Live")
    expect(status_badge(page, "订单库-主")).to_have_text("Running")
    expect(status_badge(page, MARKUP_NAME)).to_have_text("Abnormal")
    expect(page.locator(".overview-title")).to_have_text("Instance overview")
    screenshot(page, "overview-en.png")


def test_language_switch_remembered(recorder, server):
    page = open_overview(recorder, server)
    page.locator("#lang-switch").click()
    expect(page.locator(".overview-title")).to_have_text("Instance overview", timeout=SHOWN_MS)
    page.goto(server.url)
    expect(page.locator(".overview-title")).to_have_text("Instance overview", timeout=SHOWN_MS)


def test_dark_theme_remembered(recorder, server):
    page = open_overview(recorder, server)
    page.locator("#theme-switch").check()
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    page.reload()
    expect(page.locator("#connection-label")).to_have_text("实时连接", timeout=SHOWN_MS)
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    expect(page.locator("#theme-switch")).to_be_checked()
    screenshot(page, "overview-dark.png")


def test_markup_name_renders_as_text(recorder, server):
    page = open_overview(recorder, server)
    expect(page.locator(f"#card-{KEYS[MARKUP_NAME]}-name")).to_have_text(MARKUP_NAME)
    assert page.locator("#cards img").count() == 0
    assert recorder.dialogs == []


def test_markup_name_toast_renders_as_text(recorder, server, store):
    page = open_overview(recorder, server)
    succeed(store, MARKUP_NAME)
    expect(page.locator(".toast-item")).to_have_text(f"{MARKUP_NAME} 状态变为 运行中", timeout=SHOWN_MS)
    assert page.locator("#toasts img").count() == 0
    assert recorder.dialogs == []


def test_no_password_in_page_or_frames(recorder, server, store):
    page = open_overview(recorder, server)
    fail(store, "缓存·会话", FailureKind.AUTHENTICATION, "authentication failed")
    expect(status_badge(page, "缓存·会话")).to_have_text("异常", timeout=SHOWN_MS)
    assert recorder.frames, "no socket frame was received"
    assert SECRET not in page.content()
    assert [frame for frame in recorder.frames if SECRET in frame] == []


def test_unicode_names_identical_in_page_and_frames(recorder, server):
    page = open_overview(recorder, server)
    expect(page.locator(".card-name")).to_have_count(len(NAMES))
    snapshot = json.loads(recorder.frames[0])
    framed = [instance["name"] for instance in snapshot["instances"]]
    for name in C10_NAMES:
        expect(page.locator(f"#card-{KEYS[name]}-name")).to_have_text(name)
        assert name in framed


def test_config_reload_reloads_page(recorder, server, store):
    page = open_overview(recorder, server)
    page.evaluate("window.loadedBeforeReload = true")
    added = InstanceConfig(name="新增实例", type="tcp", host="127.0.0.1", port=7)
    store.configure(INSTANCES + [added])
    expect(page.locator(f"#card-{added.key}-name")).to_have_text("新增实例", timeout=SHOWN_MS)
    assert page.evaluate("window.loadedBeforeReload === undefined")


# ---- outages (field cases C4, C5, C6) ------------------------------------------------------

def test_reconnect_schedule_grows_then_stays_at_30s(recorder, server):
    page = open_overview(recorder, server)
    delays = page.evaluate("[1, 2, 3, 4, 5, 6, 7, 50].map(window.dash_clientside.overview.reconnectDelay)")
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_stopped_server_shows_disconnected_then_reconnects(recorder, server):
    page = open_overview(recorder, server)
    page.evaluate("window.loadedOnce = 'still here'")
    opened_before = len(recorder.socket_opened_at)

    server.stop()
    expect(page.locator("#connection-label")).to_have_text("连接断开", timeout=2_000)
    expect(page.locator("#connection-indicator")).to_have_class(re.compile("connection-closed"))
    expect(page.locator("#connection-retry")).to_have_text("重连中 (第 2 次)", timeout=SHOWN_MS)

    # Wait for the third attempt so the gaps closed→1, 1→2 and 2→3 can be compared.
    deadline = time.monotonic() + RECONNECT_MS / 1000
    while len(recorder.socket_opened_at) < opened_before + 3:
        assert time.monotonic() < deadline, "the page did not retry three times"
        page.wait_for_timeout(100)
    server.start()

    attempts = recorder.socket_opened_at[opened_before:opened_before + 3]
    closed_at = recorder.socket_closed_at[0]
    gaps = [attempts[0] - closed_at, attempts[1] - attempts[0], attempts[2] - attempts[1]]
    assert gaps[0] < gaps[1] < gaps[2], f"retry gaps did not grow: {gaps}"
    expect(page.locator("#connection-label")).to_have_text("实时连接", timeout=RECONNECT_MS)
    assert page.evaluate("window.loadedOnce") == "still here"


def test_killed_server_shows_stale_banner(recorder, server):
    page = open_overview(recorder, server)
    server.stop()
    banner = page.locator("#stale-banner")
    expect(banner).to_have_text(re.compile(r"^数据已过期，最后更新于 \d\d:\d\d:\d\d$"), timeout=SHOWN_MS)
    expect(page.locator("#overview-root")).to_have_class(re.compile("is-stale"))
    expect(page.locator(f"#card-{KEYS['订单库-主']}-body .stale-badge")).to_be_visible()
    screenshot(page, "overview-stale.png")

    server.start()
    expect(banner).to_be_hidden(timeout=RECONNECT_MS)
    expect(page.locator(f"#card-{KEYS['订单库-主']}-body .stale-badge")).to_be_hidden()


def test_silent_socket_turns_stale(browser, server, baseline):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.clock.install()
        page.goto(server.url)
        expect(page.locator("#connection-label")).to_have_text("实时连接", timeout=SHOWN_MS)
        # The next heartbeat hides the banner again, possibly between two polls of expect(), so
        # an observer records that it was shown.
        page.evaluate("""() => {
            const banner = document.getElementById('stale-banner');
            window.staleBannerShown = false;
            new MutationObserver(() => {
                if (!banner.classList.contains('d-none')) window.staleBannerShown = true;
            }).observe(banner, {attributes: true, attributeFilter: ['class']});
        }""")
        # Jump past the 15 s limit faster than the 5 s heartbeat can arrive.
        page.clock.fast_forward("00:20")
        page.wait_for_function("() => window.staleBannerShown", timeout=SHOWN_MS)
        expect(page.locator("#stale-banner")).to_be_hidden(timeout=RECONNECT_MS)
    finally:
        context.close()


def test_changes_during_outage_shown_after_reconnect(recorder, server, store):
    page = open_overview(recorder, server)
    server.stop()
    expect(page.locator("#connection-label")).to_have_text("连接断开", timeout=SHOWN_MS)

    fail(store, "生产库-主", FailureKind.REFUSED, "connection refused")
    succeed(store, MARKUP_NAME)
    server.start()

    expect(page.locator("#connection-label")).to_have_text("实时连接", timeout=RECONNECT_MS)
    expect(page.locator("#stale-banner")).to_be_hidden(timeout=SHOWN_MS)
    assert status_badge(page, "生产库-主").inner_text() == "异常"
    assert status_badge(page, MARKUP_NAME).inner_text() == "运行中"
    assert page.locator("#summary-abnormal").inner_text() == "1"

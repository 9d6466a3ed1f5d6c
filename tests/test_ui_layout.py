"""The overview page's server-rendered layout: cards, ids, catalog and secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import plotly.utils
import pytest
from dash import dcc

from dashapp.config import InstanceConfig
from dashapp.i18n import CATALOG, LANGS
from dashapp.model import FailureKind, ProbeResult, Status
from dashapp.store.memory import MemoryStateStore
from dashapp.ui import create_dash_app
from dashapp.ui.layout import overview_page, page_shell, resolve_lang

SECRET = "p@ss:/#w?rd%-layout"
ASSETS = Path(__file__).resolve().parents[1] / "assets"

INSTANCES = [
    InstanceConfig(name="订单库-主", type="mysql", host="127.0.0.1", port=3306, user="mon",
                   password=SECRET, tags=("prod", "order")),
    InstanceConfig(name="缓存·会话", type="redis", host="127.0.0.1", port=6379, password=SECRET,
                   tags=("prod",)),
    InstanceConfig(name="<img src=x onerror=alert(1)>", type="tcp", host="127.0.0.1", port=9),
]


@pytest.fixture
def store() -> MemoryStateStore:
    store = MemoryStateStore()
    store.configure(INSTANCES)
    store.record("订单库-主", ProbeResult.success(2.5, {"version": "11.8.3-MariaDB"}))
    store.record("缓存·会话", ProbeResult.failed(FailureKind.AUTHENTICATION, "invalid username-password pair"))
    return store


def components(tree):
    """Yield every component of a layout tree, depth first."""
    yield tree
    children = getattr(tree, "children", None)
    if children is None or isinstance(children, (str, int, float)):
        return
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            yield from components(child)


def component_ids(tree) -> list[str]:
    return [item.id for item in components(tree) if getattr(item, "id", None)]


def find(tree, component_id: str):
    matches = [item for item in components(tree) if getattr(item, "id", None) == component_id]
    assert len(matches) == 1, f"expected one component with id {component_id!r}, found {len(matches)}"
    return matches[0]


def test_layout_has_card_per_instance(store):
    page = overview_page(store.snapshot(), "zh")
    cards = [cid for cid in component_ids(page) if re.fullmatch(r"card-i[0-9a-f]{12}", cid)]
    assert cards == [f"card-{instance.key}" for instance in INSTANCES]


def test_layout_card_shows_name_as_text(store):
    page = overview_page(store.snapshot(), "zh")
    name = find(page, f"card-{INSTANCES[2].key}-name")
    assert name.children == "<img src=x onerror=alert(1)>"


def test_layout_card_shows_status_label(store):
    page = overview_page(store.snapshot(), "zh")
    assert find(page, f"card-{INSTANCES[0].key}-status").children == "运行中"
    assert find(page, f"card-{INSTANCES[1].key}-status").children == "异常"
    assert find(page, f"card-{INSTANCES[2].key}-status").children == "检测中"


def test_layout_card_shows_failure_and_reason(store):
    page = overview_page(store.snapshot(), "zh")
    key = INSTANCES[1].key
    assert find(page, f"card-{key}-failure").children == "认证失败"
    assert find(page, f"card-{key}-reason").children == "invalid username-password pair"
    assert "d-none" not in find(page, f"card-{key}-problem").className


def test_layout_hides_problem_of_running_card(store):
    page = overview_page(store.snapshot(), "zh")
    assert "d-none" in find(page, f"card-{INSTANCES[0].key}-problem").className


def test_layout_english_labels(store):
    page = overview_page(store.snapshot(), "en")
    assert find(page, f"card-{INSTANCES[1].key}-status").children == "Abnormal"
    assert find(page, "summary-abnormal").children == "1"


def test_layout_summary_counts(store):
    page = overview_page(store.snapshot(), "zh")
    assert find(page, "summary-total").children == "3"
    assert find(page, "summary-running").children == "1"
    assert find(page, "summary-abnormal").children == "1"
    assert find(page, "summary-pending").children == "1"
    assert find(page, "summary-maintenance").children == "0"


def test_layout_ids_use_keys_not_names(store):
    ids = component_ids(overview_page(store.snapshot(), "zh"))
    for cid in ids:
        assert cid.isascii(), f"id {cid!r} is not ASCII"
        for instance in INSTANCES:
            assert instance.name not in cid


def test_layout_ids_unique(store):
    ids = component_ids(overview_page(store.snapshot(), "zh"))
    assert len(ids) == len(set(ids))


def test_layout_without_password(store):
    page = overview_page(store.snapshot(), "zh")
    rendered = json.dumps(page, cls=plotly.utils.PlotlyJSONEncoder, ensure_ascii=False)
    assert SECRET not in rendered


def test_layout_passes_catalog_of_language(store):
    config = find(overview_page(store.snapshot(), "en"), "overview-config").data
    assert config["catalog"]["ui.connection.open"] == "Live"
    assert config["lang"] == "en"


def test_layout_catalog_without_cli_strings(store):
    config = find(overview_page(store.snapshot(), "zh"), "overview-config").data
    assert not [key for key in config["catalog"] if key.startswith("cli.")]


def test_layout_has_no_interval_polling(store):
    page = overview_page(store.snapshot(), "zh")
    assert not [item for item in components(page) if isinstance(item, dcc.Interval)]


def test_layout_empty_store_says_so():
    page = overview_page([], "zh")
    assert find(page, "cards-empty").children == "尚未配置任何实例"


def test_shell_has_page_container():
    assert "overview-page" in component_ids(page_shell())


@pytest.mark.parametrize("search, preference, expected", [
    pytest.param("?lang=en", None, "en", id="query-en"),
    pytest.param("?lang=zh", "en", "zh", id="query-wins-over-preference"),
    pytest.param("", "en", "en", id="preference"),
    pytest.param(None, None, "zh", id="default"),
    pytest.param("?lang=fr", None, "zh", id="unknown-language"),
    pytest.param("?x=1&lang=en", "zh", "en", id="among-other-parameters"),
])
def test_resolve_lang(search, preference, expected):
    assert resolve_lang(search, preference) == expected


def test_catalog_ui_keys_have_both_languages():
    for key, entry in CATALOG.items():
        if key.startswith("ui."):
            for lang in LANGS:
                assert entry.get(lang), f"{key} has no {lang} text"


def test_catalog_covers_every_status_and_failure():
    for status in Status:
        assert f"status.{status.value}" in CATALOG
    for failure in FailureKind:
        assert f"failure.{failure.value}" in CATALOG


def test_catalog_covers_keys_used_in_browser_code():
    script = (ASSETS / "overview.js").read_text(encoding="utf-8")
    # Keys built by concatenation ('status.' + status) end with a dot and are checked above.
    used = {key for key in re.findall(r"text\('((?:ui|status|failure)\.[a-z_.]+)'", script)
            if not key.endswith(".")}
    assert used, "no catalog key found in overview.js: the pattern is out of date"
    missing = sorted(key for key in used if key not in CATALOG)
    assert missing == []


def test_browser_code_has_no_chinese_text():
    script = (ASSETS / "overview.js").read_text(encoding="utf-8")
    literals = re.findall(r"'[^'\n]*'", script)
    assert [literal for literal in literals if re.search(r"[\u4e00-\u9fff]", literal)] == []


def test_create_dash_app_serves_assets(store):
    app = create_dash_app(store)
    client = app.server.test_client()
    response = client.get("/assets/overview.js")
    assert response.status_code == 200


def test_create_dash_app_renders_page_callback(store):
    app = create_dash_app(store)
    client = app.server.test_client()
    client.get("/")  # the first request finishes Dash's setup
    response = client.post("/_dash-update-component", json={
        "output": "overview-page.children",
        "outputs": {"id": "overview-page", "property": "children"},
        "inputs": [{"id": "url", "property": "search", "value": "?lang=en"}],
        "state": [{"id": "lang-pref", "property": "data", "value": None}],
        "changedPropIds": ["url.search"],
    })
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Instance overview" in body
    assert SECRET not in body

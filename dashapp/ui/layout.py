"""The overview page (实例概览): the page shell and the page built for one language.

The shell holds only a location, the stored language preference and an empty container. The
`render_overview` callback fills the container on every page load, with the language from
`?lang=` or the preference, and with the store's snapshot of that moment, so a reload is current.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import dash_bootstrap_components as dbc
from dash import dcc, html
from dash_extensions import WebSocket

from dashapp import events
from dashapp.i18n import DEFAULT_LANG, LANGS, catalog_for, t
from dashapp.model import InstanceState, to_iso, utc_now
from dashapp.ui.cards import instance_card
from dashapp.ui.charts import STATUS_COLORS, STATUS_ORDER, status_by_type_graph, status_share_graph

# Catalog sections the browser needs; the command line's strings stay on the server.
BROWSER_CATALOG_PREFIXES = ("ui.", "status.", "failure.")

SUMMARY_STATUSES = ["running", "abnormal", "pending", "maintenance"]


def page_shell() -> html.Div:
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="lang-pref", storage_type="local"),
        html.Div(id="overview-page"),
    ])


def resolve_lang(search: str | None, preference: str | None) -> str:
    """Pick the page language: `?lang=` first, then the stored preference, then Chinese."""
    requested = parse_qs((search or "").lstrip("?")).get("lang", [None])[0]
    for candidate in (requested, preference):
        if candidate in LANGS:
            return candidate
    return DEFAULT_LANG


def browser_config(states: list[InstanceState], lang: str, *, requests_pathname_prefix: str,
                   ws_path: str) -> dict:
    """Collect what assets/overview.js needs: texts, the snapshot, colors and the socket path."""
    catalog = {key: text for key, text in catalog_for(lang).items()
               if key.startswith(BROWSER_CATALOG_PREFIXES)}
    return {
        "lang": lang,
        "catalog": catalog,
        "instances": [state.to_dict() for state in states],
        "summary": events.summarize(states),
        "status_order": STATUS_ORDER,
        "status_colors": STATUS_COLORS,
        "path_prefix": requests_pathname_prefix,
        "ws_path": ws_path,
        "rendered_at": to_iso(utc_now()),
    }


def overview_page(states: list[InstanceState], lang: str, *, requests_pathname_prefix: str = "/",
                  ws_path: str = "ws") -> html.Div:
    config = browser_config(states, lang, requests_pathname_prefix=requests_pathname_prefix,
                            ws_path=ws_path)
    instances = config["instances"]
    return html.Div([
        _header(lang),
        html.Div(id="stale-banner", className="stale-banner d-none", role="alert"),
        dbc.Container([
            _summary_tiles(config["summary"], lang),
            _charts(lang),
            _filters(instances, lang),
            html.Div([instance_card(instance, lang) for instance in instances], id="cards",
                     className="cards-grid"),
            html.Div(t("ui.empty", lang) if not instances else "", id="cards-empty",
                     className="cards-empty"),
        ], fluid=True, className="overview-body"),
        html.Div(id="toasts", className="toast-stack", **{"aria-live": "polite"}),
        WebSocket(id="ws"),
        dcc.Store(id="overview-config", data=config),
    ], id="overview-root", className="overview-root", lang="zh-CN" if lang == "zh" else "en")


def _header(lang: str) -> html.Div:
    return html.Div([
        html.Div([
            html.H1(t("ui.title", lang), className="overview-title"),
            html.Span(t("ui.app_name", lang), className="overview-subtitle"),
        ], className="overview-heading"),
        html.Div([
            html.Span([
                html.Span(className="connection-dot"),
                html.Span(t("ui.connection.connecting", lang), id="connection-label"),
                html.Span("", id="connection-retry", className="connection-retry"),
            ], id="connection-indicator", className="connection connection-connecting", role="status"),
            # No value here: the browser sets it from the theme stored in localStorage.
            dbc.Switch(id="theme-switch", label=t("ui.theme.dark", lang), className="theme-switch"),
            dbc.Button(t("ui.lang.switch", lang), id="lang-switch", size="sm", outline=True,
                       color="secondary", className="lang-switch"),
        ], className="overview-controls"),
    ], className="overview-header")


def _summary_tiles(summary: dict, lang: str) -> dbc.Row:
    tiles = [_tile("summary-total", t("ui.summary.total", lang), summary["total"], "total")]
    for status in SUMMARY_STATUSES:
        tiles.append(_tile(f"summary-{status}", t(f"status.{status}", lang),
                           summary["by_status"].get(status, 0), status))
    return dbc.Row([dbc.Col(tile, xs=6, md=4, xl=True) for tile in tiles], className="g-3 summary-row")


def _tile(tile_id: str, label: str, count: int, status: str) -> html.Div:
    return html.Div([
        html.Div(str(count), id=tile_id, className="summary-count"),
        html.Div(label, className="summary-label"),
    ], className=f"summary-tile summary-{status}")


def _charts(lang: str) -> dbc.Row:
    return dbc.Row([
        dbc.Col(html.Div([html.H2(t("ui.chart.status_share", lang), className="chart-title"),
                          status_share_graph()], className="chart-box"), md=5),
        dbc.Col(html.Div([html.H2(t("ui.chart.by_type", lang), className="chart-title"),
                          status_by_type_graph()], className="chart-box"), md=7),
    ], className="g-3 charts-row")


def _filters(instances: list[dict], lang: str) -> html.Div:
    types = sorted({instance["type"] for instance in instances})
    tags = sorted({tag for instance in instances for tag in instance["tags"]})
    type_options = [{"label": t(f"ui.type.{name}", lang), "value": name} for name in types]
    tag_options = [{"label": tag, "value": tag} for tag in tags]
    status_options = [{"label": t(f"status.{status}", lang), "value": status} for status in STATUS_ORDER]

    return html.Div([
        dbc.Input(id="filter-search", type="search", placeholder=t("ui.filter.search", lang),
                  debounce=False, className="filter-search"),
        dcc.Dropdown(id="filter-type", options=type_options, multi=True,
                     placeholder=t("ui.filter.type", lang), className="filter-dropdown"),
        dcc.Dropdown(id="filter-tag", options=tag_options, multi=True,
                     placeholder=t("ui.filter.tag", lang), className="filter-dropdown"),
        dcc.Dropdown(id="filter-status", options=status_options, multi=True,
                     placeholder=t("ui.filter.status", lang), className="filter-dropdown"),
        dbc.Switch(id="filter-abnormal-first", label=t("ui.filter.abnormal_first", lang), value=True,
                   className="filter-switch"),
        html.Span("", id="cards-count", className="cards-count"),
    ], className="filter-bar")

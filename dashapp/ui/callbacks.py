"""Callbacks of the overview page.

One server callback renders the page at load. Everything after that runs in the browser
(assets/overview.js): pushes, the connection indicator, filters, theme and language switch.
"""

from __future__ import annotations

import dash
from dash import ClientsideFunction, Input, Output, State

from dashapp.store.base import StateStore
from dashapp.ui.layout import overview_page, resolve_lang


def _browser(function_name: str) -> ClientsideFunction:
    return ClientsideFunction(namespace="overview", function_name=function_name)


def register_callbacks(app: dash.Dash, store: StateStore, *, ws_path: str) -> None:
    prefix = app.config.requests_pathname_prefix

    @app.callback(Output("overview-page", "children"), Input("url", "search"), State("lang-pref", "data"))
    def render_overview(search, preference):
        return overview_page(store.snapshot(), resolve_lang(search, preference),
                             requests_pathname_prefix=prefix, ws_path=ws_path)

    # Start the page's browser side when its config arrives; the result opens the socket.
    app.clientside_callback(_browser("start"), Output("ws", "url"), Input("overview-config", "data"))
    app.clientside_callback(_browser("onMessage"), Input("ws", "message"), prevent_initial_call=True)
    app.clientside_callback(_browser("onSocketState"), Input("ws", "state"), prevent_initial_call=True)
    app.clientside_callback(
        _browser("onFilters"),
        Input("filter-type", "value"), Input("filter-tag", "value"), Input("filter-status", "value"),
        Input("filter-search", "value"), Input("filter-abnormal-first", "value"),
        prevent_initial_call=True)
    app.clientside_callback(_browser("onTheme"), Input("theme-switch", "value"), prevent_initial_call=True)
    app.clientside_callback(
        _browser("onLanguageSwitch"),
        Output("lang-pref", "data"), Output("url", "search"),
        Input("lang-switch", "n_clicks"), State("overview-config", "data"),
        prevent_initial_call=True)

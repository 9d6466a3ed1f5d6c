"""The Dash pages of the monitor; `create_dash_app` is the one entry point."""

from __future__ import annotations

from pathlib import Path

import dash

from dashapp.i18n import t
from dashapp.store.base import StateStore
from dashapp.ui.callbacks import register_callbacks
from dashapp.ui.layout import page_shell

ASSETS_FOLDER = Path(__file__).resolve().parents[2] / "assets"

__all__ = ["create_dash_app"]


def create_dash_app(store: StateStore, *, requests_pathname_prefix: str = "/",
                    ws_path: str = "ws") -> dash.Dash:
    """Build the overview page's Dash app; the socket URL is `requests_pathname_prefix + ws_path`.

    The page is served by the caller (dashapp/server.py mounts `app.server`); the browser opens
    the socket itself, so the app needs no server-side WebSocket code.
    """
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS_FOLDER),
        requests_pathname_prefix=requests_pathname_prefix,
        title=t("ui.title"),
        # The page keeps document.title itself (abnormal count), so Dash must not touch it.
        update_title=None,
        serve_locally=True,
        suppress_callback_exceptions=True,
    )
    app.layout = page_shell
    register_callbacks(app, store, ws_path=ws_path)
    return app

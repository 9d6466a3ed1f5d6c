"""Tests of the serving layer: one uvicorn port for the Dash pages and /ws, and the origin check."""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus

from dashapp import events
from dashapp.config import InstanceConfig
from dashapp.push import PushHub
from dashapp.server import OriginPolicy, create_asgi_app
from dashapp.store.memory import MemoryStateStore
from live_server import LiveServer, make_dash_app, open_socket, receive_message

INSTANCES = [InstanceConfig(name="订单库-主", type="redis", host="127.0.0.1", port=6379)]


@pytest.fixture
def start_server():
    """Start the app on a free port; keyword arguments go to create_asgi_app."""
    servers: list[LiveServer] = []

    def start(dash_app=None, root_path: str = "", **app_options) -> LiveServer:
        store = MemoryStateStore()
        store.configure(INSTANCES)
        hub = PushHub(store, metrics_interval=60.0)
        app = create_asgi_app(dash_app or make_dash_app(), hub, **app_options)
        server = LiveServer(app, root_path=root_path).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def first_message(server: LiveServer, **connect_options) -> dict:
    async def scenario():
        async with open_socket(server, **connect_options) as websocket:
            return await receive_message(websocket)

    return asyncio.run(scenario())


def rejection_status(server: LiveServer, **connect_options) -> int:
    with pytest.raises(InvalidStatus) as rejected:
        first_message(server, **connect_options)
    return rejected.value.response.status_code


def http_get(url: str) -> tuple[int, str]:
    # An empty ProxyHandler keeps the request on loopback even when the environment sets a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


# --- origin check over a real socket -----------------------------------------------------

def test_same_origin_socket_accepted(start_server):
    server = start_server()
    assert first_message(server)["type"] == events.INSTANCES_STATUS_UPDATE


def test_socket_without_origin_accepted(start_server):
    server = start_server()
    assert first_message(server, origin=None)["type"] == events.INSTANCES_STATUS_UPDATE


def test_cross_origin_socket_rejected(start_server):
    server = start_server()
    assert rejection_status(server, origin="http://other.invalid") == 403


def test_same_host_other_port_rejected(start_server):
    server = start_server()
    assert rejection_status(server, origin=f"http://127.0.0.1:{server.port + 1}") == 403


def test_allowed_origin_accepted(start_server):
    server = start_server(allowed_origins=["https://noc.invalid"])
    message = first_message(server, origin="https://noc.invalid")
    assert message["type"] == events.INSTANCES_STATUS_UPDATE


def test_allowed_origins_keep_same_origin(start_server):
    server = start_server(allowed_origins=["https://noc.invalid"])
    assert first_message(server)["type"] == events.INSTANCES_STATUS_UPDATE


def test_unlisted_origin_still_rejected(start_server):
    server = start_server(allowed_origins=["https://noc.invalid"])
    assert rejection_status(server, origin="http://noc.invalid") == 403


def test_wildcard_accepts_any_origin(start_server):
    server = start_server(allowed_origins=["*"])
    assert first_message(server, origin="http://other.invalid")["type"] == events.INSTANCES_STATUS_UPDATE


def test_rejected_origin_warned_once(start_server, caplog):
    server = start_server()
    caplog.set_level(logging.WARNING, logger="dashapp.server")
    for _ in range(3):
        rejection_status(server, origin="http://other.invalid")
    rejection_status(server, origin="http://second.invalid")
    warnings = [record.getMessage() for record in caplog.records if record.name == "dashapp.server"]
    assert len(warnings) == 2
    assert "http://other.invalid" in warnings[0]
    assert "http://second.invalid" in warnings[1]


# --- origin policy rules ----------------------------------------------------------------

@pytest.mark.parametrize("origin, host", [
    pytest.param("http://127.0.0.1:5001", "127.0.0.1:5001", id="ip-and-port"),
    pytest.param("https://NOC.example", "noc.example", id="case-and-default-port"),
    pytest.param("https://noc.example", "noc.example:443", id="explicit-default-port"),
    pytest.param("http://[::1]:5001", "[::1]:5001", id="ipv6"),
    pytest.param("http://localhost", "localhost:80", id="http-default-port"),
])
def test_policy_accepts_same_origin(origin, host):
    assert OriginPolicy().accepts(origin, host)


@pytest.mark.parametrize("origin, host", [
    pytest.param("http://other.invalid", "127.0.0.1:5001", id="other-host"),
    pytest.param("http://127.0.0.1:5002", "127.0.0.1:5001", id="other-port"),
    pytest.param("https://noc.example", "noc.example:80", id="https-page-plain-port"),
    pytest.param("null", "127.0.0.1:5001", id="opaque-origin"),
    pytest.param("http://127.0.0.1:5001", None, id="no-host-header"),
    pytest.param("http://127.0.0.1:99999", "127.0.0.1:99999", id="invalid-port"),
])
def test_policy_rejects_other_origin(origin, host):
    assert not OriginPolicy().accepts(origin, host)


@pytest.mark.parametrize("entry", ["noc.example", "ftp://noc.example", "https://noc.example/path", ""])
def test_policy_rejects_invalid_allowed_origin(entry):
    with pytest.raises(ValueError, match="scheme://host"):
        OriginPolicy([entry])


# --- one port for pages and socket --------------------------------------------------------

def test_dash_page_served_on_same_port(start_server):
    server = start_server()
    status, page = http_get(server.http_url("/"))
    layout_status, layout = http_get(server.http_url("/_dash-layout"))
    assert status == 200
    assert "_dash-config" in page
    assert layout_status == 200
    assert "monitor test page" in layout
    assert first_message(server)["type"] == events.INSTANCES_STATUS_UPDATE


@pytest.mark.parametrize("root_path", [pytest.param("", id="no-root-path"),
                                       pytest.param("/monitor", id="root-path")])
def test_prefixed_dash_behind_stripping_proxy(start_server, root_path):
    # A proxy serving /monitor/ strips the prefix; Dash still writes /monitor/ into its URLs.
    dash_app = make_dash_app(requests_pathname_prefix="/monitor/", routes_pathname_prefix="/")
    server = start_server(dash_app=dash_app, root_path=root_path)
    status, page = http_get(server.http_url("/"))
    scripts = re.findall(r'<script src="([^"]+)"', page)
    # What the browser requests under /monitor/ reaches the server with the prefix stripped.
    script_status, _ = http_get(server.http_url(scripts[0].removeprefix("/monitor")))
    _, layout = http_get(server.http_url("/_dash-layout"))
    assert status == 200
    assert scripts[0].startswith("/monitor/_dash-component-suites/")
    assert script_status == 200
    assert "monitor test page" in layout
    assert first_message(server)["type"] == events.INSTANCES_STATUS_UPDATE


def test_lifespan_runs_startup_and_shutdown(start_server):
    calls = []
    server = start_server(on_startup=lambda: calls.append("startup"), on_shutdown=lambda: calls.append("shutdown"))
    started_calls = list(calls)
    server.stop()
    assert started_calls == ["startup"]
    assert calls == ["startup", "shutdown"]

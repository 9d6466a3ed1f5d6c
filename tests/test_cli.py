"""Tests of `python -m dashapp check | probe`, run as subprocesses against the local servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dashapp.cli import _probe_once, display_width, format_address, probe_all
from dashapp.config import InstanceConfig
from dashapp.model import FailureKind, ProbeResult

REPO_ROOT = Path(__file__).resolve().parent.parent
WRONG_PASSWORD = "Wr0ng-p@ss:/#w?rd%"

LOCAL_SERVERS = """
[[instances]]
name = "生产库-主"
type = "mysql"
host = "127.0.0.1"
port = 3306
user = "root"
database = "test"
tags = ["prod"]

[[instances]]
name = "缓存·会话"
type = "redis"
host = "127.0.0.1"
port = 6379

[[instances]]
name = "报表库 🐘"
type = "postgresql"
host = "127.0.0.1"
port = 5432
user = "postgres"
database = "postgres"
"""

JSON_KEYS = {"name", "key", "type", "host", "port", "address", "tags", "status", "failure", "reason",
             "latency_ms", "checked_at", "details"}


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command line in a fresh interpreter; stdout and stderr are decoded as UTF-8."""
    full_env = {key: value for key, value in os.environ.items() if key != "DBMON_CONFIG"}
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    full_env.update(env or {})
    completed = subprocess.run([sys.executable, "-m", "dashapp", *args], cwd=cwd, env=full_env,
                               capture_output=True, timeout=120)
    return subprocess.CompletedProcess(completed.args, completed.returncode,
                                       completed.stdout.decode("utf-8"), completed.stderr.decode("utf-8"))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "instances.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refused_port() -> int:
    """Return a loopback port that nothing listens on: bound once, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_instance(name: str = "closed-port") -> str:
    return f'\n[[instances]]\nname = "{name}"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {refused_port()}\n'


def probe_json(tmp_path: Path, text: str, *args: str, env: dict | None = None):
    path = write_config(tmp_path, text)
    completed = run_cli("probe", "--json", "--config", str(path), *args, cwd=tmp_path, env=env)
    return completed, json.loads(completed.stdout)


# check

def test_check_valid_file_exits_zero(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS)

    completed = run_cli("check", "--config", str(path), "--lang", "en", cwd=tmp_path)

    assert completed.returncode == 0
    assert completed.stdout == f"OK: 3 instances in {path} (3 enabled).\n"
    assert completed.stderr == ""


def test_check_prints_chinese_by_default(tmp_path):
    write_config(tmp_path, LOCAL_SERVERS)

    completed = run_cli("check", cwd=tmp_path)

    assert completed.stdout == "正常：instances.toml 中共 3 个实例（启用 3 个）。\n"


def test_check_reads_dbmon_config(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    completed = run_cli("check", "--lang", "en", cwd=elsewhere, env={"DBMON_CONFIG": str(path)})

    assert completed.returncode == 0
    assert completed.stdout.startswith(f"OK: 3 instances in {path}")


def test_check_shipped_file_from_repository(shipped_config):
    completed = run_cli("check", "--lang", "en", cwd=shipped_config.parent)

    assert completed.returncode == 0
    assert completed.stdout == "OK: 4 instances in instances.toml (4 enabled).\n"


def test_check_invalid_file_exits_two(tmp_path):
    text = LOCAL_SERVERS.replace("port = 6379", 'port = "abc"').replace("port = 5432", "port = 99999")
    path = write_config(tmp_path, text)

    completed = run_cli("check", "--config", str(path), "--lang", "en", cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [
        f'{path}:15: instance "缓存·会话": port = "abc" is a string, but an integer from 1 to 65535 '
        "is required; write it like port = 6379.",
        f'{path}:21: instance "报表库 🐘": port = 99999 is out of range; use an integer from 1 to 65535.',
        f"{path}: 2 problem(s) found; nothing was started.",
    ]


def test_check_reports_problems_in_chinese(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS.replace("port = 5432", "port = 99999"))

    completed = run_cli("check", "--config", str(path), cwd=tmp_path)

    assert completed.stderr.splitlines()[0] == (
        f'{path}:21: 实例 "报表库 🐘": port = 99999 超出范围；请使用 1 到 65535 之间的整数。')


def test_check_missing_file_exits_two(tmp_path):
    completed = run_cli("check", "--lang", "en", cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stderr.startswith("instances.toml: cannot read the configuration file")


# probe

def test_probe_local_servers_exits_zero(tmp_path):
    completed, results = probe_json(tmp_path, LOCAL_SERVERS)

    assert completed.returncode == 0, completed.stderr
    assert [result["status"] for result in results] == ["running", "running", "running"]


def test_probe_shipped_file_exits_zero(shipped_config):
    completed = run_cli("probe", "--json", cwd=shipped_config.parent)
    results = json.loads(completed.stdout)

    assert completed.returncode == 0, completed.stdout
    assert len(results) == 4
    assert all(result["status"] == "running" for result in results)


def test_probe_refused_port_exits_one(tmp_path):
    completed, results = probe_json(tmp_path, LOCAL_SERVERS + refused_instance())

    assert completed.returncode == 1
    assert [result["status"] for result in results] == ["running", "running", "running", "abnormal"]
    assert results[3]["failure"] == "refused"


def test_probe_invalid_config_exits_two(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS.replace("port = 6379", "port = 0"))

    completed = run_cli("probe", "--config", str(path), cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "port = 0" in completed.stderr


def test_probe_json_shape(tmp_path):
    completed, results = probe_json(tmp_path, LOCAL_SERVERS + refused_instance())
    running, abnormal = results[0], results[3]

    assert [set(result) for result in results] == [JSON_KEYS] * 4
    assert [result["name"] for result in results] == ["生产库-主", "缓存·会话", "报表库 🐘", "closed-port"]
    assert running["type"] == "mysql"
    assert running["address"] == "127.0.0.1:3306"
    assert running["tags"] == ["prod"]
    assert running["failure"] is None
    assert running["reason"] is None
    assert isinstance(running["latency_ms"], float)
    assert isinstance(running["details"], dict)
    assert running["details"]
    assert running["checked_at"].endswith("Z")
    assert abnormal["status"] == "abnormal"
    assert isinstance(abnormal["reason"], str)
    assert abnormal["reason"]


def test_probe_skips_disabled_instances(tmp_path):
    text = LOCAL_SERVERS + refused_instance() + "enabled = false\n"

    completed, results = probe_json(tmp_path, text)

    assert completed.returncode == 0
    assert len(results) == 3


def test_probe_none_enabled_exits_zero(tmp_path):
    path = write_config(tmp_path, refused_instance() + "enabled = false\n")

    completed = run_cli("probe", "--config", str(path), "--lang", "en", cwd=tmp_path)

    assert completed.returncode == 0
    assert completed.stdout == "No instance is enabled; nothing was probed.\n"


def test_probe_table_in_english(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS + refused_instance())

    completed = run_cli("probe", "--config", str(path), "--lang", "en", cwd=tmp_path)
    lines = completed.stdout.splitlines()

    assert lines[0].split() == ["Name", "Type", "Address", "Status", "Latency", "Reason"]
    assert "Running" in lines[1]
    assert "Abnormal" in lines[4]
    assert "Connection refused: " in lines[4]
    assert lines[-1] == "3 running, 1 abnormal, 0 in maintenance, 0 disabled and not probed."


def test_probe_table_in_chinese_by_default(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS + refused_instance())

    completed = run_cli("probe", "--config", str(path), cwd=tmp_path)
    lines = completed.stdout.splitlines()

    assert lines[0].split() == ["名称", "类型", "地址", "状态", "延迟", "原因"]
    assert "运行中" in lines[1]
    assert "连接被拒绝: " in lines[4]
    assert lines[-1] == "运行中 3 个，异常 1 个，维护中 0 个，已停用未检测 0 个。"


def test_probe_table_aligns_wide_names(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS)

    completed = run_cli("probe", "--config", str(path), "--lang", "en", cwd=tmp_path)
    rows = completed.stdout.splitlines()[1:4]
    type_columns = [display_width(row[:row.index(kind)]) for row, kind in
                    zip(rows, ["mysql", "redis", "postgresql"])]

    assert type_columns[0] == type_columns[1] == type_columns[2]


def test_probe_under_c_locale_prints_names(tmp_path):
    """Field case C10: Chinese and emoji names print unchanged when the locale is C."""
    path = write_config(tmp_path, LOCAL_SERVERS)
    # PYTHONUTF8=0 turns off the UTF-8 mode that Python 3.7+ enables by itself under the C locale,
    # so stdout starts as ASCII, as it does for a service started with a C locale and no UTF-8 mode.
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}

    table = run_cli("probe", "--config", str(path), cwd=tmp_path, env=env)
    as_json = run_cli("probe", "--json", "--config", str(path), cwd=tmp_path, env=env)

    assert table.returncode == 0, table.stderr
    assert table.stderr == ""
    assert "生产库-主" in table.stdout
    assert "缓存·会话" in table.stdout
    assert "报表库 🐘" in table.stdout
    assert [result["name"] for result in json.loads(as_json.stdout)] == ["生产库-主", "缓存·会话", "报表库 🐘"]


def test_check_under_c_locale_prints_names(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS.replace("port = 5432", "port = 99999"))
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}

    completed = run_cli("check", "--config", str(path), "--lang", "en", cwd=tmp_path, env=env)

    assert completed.returncode == 2
    assert 'instance "报表库 🐘": port = 99999' in completed.stderr


@pytest.mark.parametrize("how", ["password", "password_env"])
def test_probe_wrong_password_never_printed(tmp_path, how):
    key_line = (f'password = "{WRONG_PASSWORD}"' if how == "password"
                else 'password_env = "DBMON_TEST_WRONG_PASSWORD"')
    text = f"""
        [[instances]]
        name = "wrong-password"
        type = "mysql"
        host = "127.0.0.1"
        port = 3306
        user = "root"
        {key_line}
    """
    env = {"DBMON_TEST_WRONG_PASSWORD": WRONG_PASSWORD}
    path = write_config(tmp_path, text)

    as_json = run_cli("probe", "--json", "--config", str(path), cwd=tmp_path, env=env)
    table = run_cli("probe", "--config", str(path), "--lang", "en", cwd=tmp_path, env=env)

    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)[0]["failure"] == "authentication"
    assert table.returncode == 1
    for output in (as_json.stdout, as_json.stderr, table.stdout, table.stderr):
        assert WRONG_PASSWORD not in output
        assert "Wr0ng" not in output


def test_probe_c8_missing_database_only_that_instance(tmp_path):
    """Field case C8: a database that does not exist fails that instance only, as authentication."""
    text = LOCAL_SERVERS + """
[[instances]]
name = "no-such-db"
type = "mysql"
host = "127.0.0.1"
port = 3306
user = "root"
database = "no_such_db"
"""

    completed, results = probe_json(tmp_path, text)

    assert completed.returncode == 1
    assert [result["status"] for result in results] == ["running", "running", "running", "abnormal"]
    assert results[3]["failure"] == "authentication"
    assert "no_such_db" in results[3]["reason"]


# Helpers that need no server.

class _RaisingProbe:
    def __init__(self, message: str):
        self.message = message
        self.closed = False

    def check(self):
        raise RuntimeError(self.message)

    def close(self):
        self.closed = True


def test_probe_exception_becomes_redacted_failure():
    secret = "Secret-9x"
    instance = InstanceConfig(name="x", type="mysql", host="127.0.0.1", port=3306, password=secret)
    probe = _RaisingProbe(f"login with {secret} failed")

    result = _probe_once(lambda _: probe, instance, "en")

    assert result.ok is False
    assert result.failure == FailureKind.OTHER
    assert result.reason == "the probe raised an error: RuntimeError: login with *** failed"
    assert probe.closed is True


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", "127.0.0.1:5432"),
    ("localhost", "localhost:5432"),
    ("::1", "[::1]:5432"),
])
def test_format_address_brackets_ipv6(host, expected):
    assert format_address(host, 5432) == expected


@pytest.mark.parametrize("text, width", [("abc", 3), ("报表库", 6), ("报表库 🐘", 9), ("缓存·会话", 9)])
def test_display_width_counts_wide_characters(text, width):
    assert display_width(text) == width


class _BlockedProbe:
    """A probe that ignores its timeout and returns only when the test releases it."""

    def __init__(self, release: threading.Event):
        self.release = release

    def check(self):
        self.release.wait(60)
        return ProbeResult.success(1.0, {})

    def close(self):
        pass


def test_probe_all_reports_probe_that_never_returns():
    release = threading.Event()
    instance = InstanceConfig(name="stuck", type="tcp", host="127.0.0.1", port=1, timeout=0.1)

    try:
        outcomes, unfinished = probe_all([instance], "en", create_probe=lambda _: _BlockedProbe(release),
                                         grace=0.2)
    finally:
        release.set()
    result = outcomes[0][1]

    assert unfinished == 1
    assert result.ok is False
    assert result.failure == FailureKind.TIMEOUT
    assert result.reason == "the probe did not return within 0.3 s"


def test_probe_stalled_mysql_handshake_times_out(tmp_path):
    """Field case C2: a listener that accepts and never writes, configured as mysql."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        text = LOCAL_SERVERS + (f'\n[[instances]]\nname = "stalled"\ntype = "mysql"\nhost = "127.0.0.1"\n'
                                f"port = {port}\ntimeout = 1\n")

        completed, results = probe_json(tmp_path, text)

    assert completed.returncode == 1
    assert [result["status"] for result in results] == ["running", "running", "running", "abnormal"]
    assert results[3]["failure"] == "timeout"


def test_probe_into_closed_pipe_exits_quietly(tmp_path):
    path = write_config(tmp_path, LOCAL_SERVERS)
    read_end, write_end = os.pipe()
    # The reader is gone before the probe writes, as with `probe --json | head` once head exits.
    os.close(read_end)
    env = {key: value for key, value in os.environ.items() if key != "DBMON_CONFIG"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    try:
        completed = subprocess.run([sys.executable, "-m", "dashapp", "probe", "--json", "--config", str(path)],
                                   cwd=tmp_path, env=env, stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)

    assert completed.returncode == 1
    assert completed.stderr.decode("utf-8") == ""


def test_probe_instance_in_maintenance_does_not_fail(tmp_path):
    text = LOCAL_SERVERS + refused_instance() + "maintenance = true\n"

    completed, results = probe_json(tmp_path, text)

    assert completed.returncode == 0
    assert results[3]["status"] == "maintenance"
    # The probe still ran, so its failure is reported.
    assert results[3]["failure"] == "refused"

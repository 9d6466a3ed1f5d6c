"""Tests of load_config: a good file, the shipped instances.toml and every kind of problem."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from dashapp.config import ConfigError, load_config


GOOD_MYSQL = """
[[instances]]
name = "订单库-主"
type = "mysql"
host = "127.0.0.1"
port = 3306
user = "root"
database = "test"
"""


def write(tmp_path: Path, text: str, name: str = "instances.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    """Load `text` as a configuration file and return its problems; fail if it loads."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def instance(body: str, name: str = "x", kind: str = "mysql") -> str:
    """Return one [[instances]] table with a name, a type, a host and the extra `body` lines."""
    return f'[[instances]]\nname = "{name}"\ntype = "{kind}"\nhost = "127.0.0.1"\n{textwrap.dedent(body)}\n'


def single_problem(tmp_path: Path, text: str) -> str:
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


# A good file.

def test_good_file_loads_every_field(tmp_path, monkeypatch):
    monkeypatch.setenv("DBMON_TEST_PASSWORD", "s3cret")
    ca = tmp_path / "certs" / "ca.pem"
    ca.parent.mkdir()
    ca.write_text("not checked here\n")
    path = write(tmp_path, """
        [defaults]
        interval = 7
        timeout = 2.5
        fail_threshold = 3
        recover_threshold = 2

        [[instances]]
        name = "缓存·会话"
        type = "redis"
        host = "127.0.0.1"
        port = 6380
        user = "mon"
        password_env = "DBMON_TEST_PASSWORD"
        database = 2
        tags = ["prod", "缓存"]
        interval = 1
        enabled = false
        recover_threshold = 5
        tls = true
        ca_file = "certs/ca.pem"
    """)

    config = load_config(path)
    loaded = config.instances[0]

    assert config.path == str(path.resolve())
    assert config.interval == 7.0
    assert config.timeout == 2.5
    assert loaded.name == "缓存·会话"
    assert loaded.type == "redis"
    assert loaded.port == 6380
    assert loaded.user == "mon"
    assert loaded.password == "s3cret"
    assert loaded.database == "2"
    assert loaded.tags == ("prod", "缓存")
    assert loaded.interval == 1.0
    assert loaded.timeout == 2.5
    assert loaded.enabled is False
    assert loaded.fail_threshold == 3
    assert loaded.recover_threshold == 5
    assert loaded.tls is True
    assert loaded.ca_file == str(ca)
    assert loaded.line == 8
    assert config.enabled_instances() == []


def test_relative_path_is_made_absolute(tmp_path, monkeypatch):
    write(tmp_path, GOOD_MYSQL)
    monkeypatch.chdir(tmp_path)

    config = load_config("instances.toml")

    assert config.path == str(tmp_path / "instances.toml")


@pytest.mark.parametrize("kind, port", [("mysql", 3306), ("redis", 6379), ("postgresql", 5432)])
def test_omitted_port_defaults_by_type(tmp_path, kind, port):
    config = load_config(write(tmp_path, instance("", kind=kind)))

    assert config.instances[0].port == port


def test_omitted_optional_keys_use_defaults(tmp_path):
    loaded = load_config(write(tmp_path, GOOD_MYSQL)).instances[0]

    assert loaded.interval == 5.0
    assert loaded.timeout == 5.0
    assert loaded.enabled is True
    assert loaded.fail_threshold == 1
    assert loaded.recover_threshold == 1
    assert loaded.password is None
    assert loaded.ssl_mode is None
    assert loaded.tags == ()


def test_password_is_not_in_repr(tmp_path):
    loaded = load_config(write(tmp_path, instance('password = "p@ss:/#w?rd%"'))).instances[0]

    assert loaded.password == "p@ss:/#w?rd%"
    assert "p@ss" not in repr(loaded)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "instances.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_MYSQL.encode("utf-8"))

    assert load_config(path).instances[0].name == "订单库-主"


def test_shipped_file_loads(shipped_config):
    config = load_config(str(shipped_config))
    types = sorted(loaded.type for loaded in config.instances)

    assert types == ["mysql", "postgresql", "redis", "tcp"]
    assert any(any("\u4e00" <= char <= "\u9fff" for char in loaded.name) for loaded in config.instances)
    assert all(loaded.tags for loaded in config.instances)
    assert all(loaded.host == "127.0.0.1" for loaded in config.instances)


def test_shipped_file_comments_show_every_key(shipped_config):
    from dashapp.config import DEFAULTS_KEYS, INSTANCE_KEYS

    text = shipped_config.read_text(encoding="utf-8")

    for key in (*DEFAULTS_KEYS, *INSTANCE_KEYS):
        assert f"\n#   {key} " in text or f"\n# {key} = " in text or f"\n{key} = " in text, key


# Syntax and file errors.

def test_syntax_error_names_file_and_line(tmp_path):
    message = single_problem(tmp_path, 'a = 1\n[[instances]]\nname = "x\n')

    assert message.startswith(f"{tmp_path / 'instances.toml'}:3: invalid TOML:")
    assert "at line 3" in message


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")

    assert caught.value.problems == [
        f"{tmp_path / 'absent.toml'}: cannot read the configuration file (No such file or directory); "
        "check the path, or set --config or $DBMON_CONFIG."]


def test_invalid_utf8_is_reported(tmp_path):
    path = tmp_path / "instances.toml"
    path.write_bytes(b'[[instances]]\nname = "\xff"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.problems == [f"{path}:2: the file is not valid UTF-8 (byte 22); save it as UTF-8."]


def test_empty_file_needs_an_instance(tmp_path):
    message = single_problem(tmp_path, "[defaults]\ninterval = 5\n")

    assert message.endswith("no instances are configured; add at least one [[instances]] table.")


def test_instances_as_single_table_is_reported(tmp_path):
    message = single_problem(tmp_path, '[instances]\nname = "x"\n')

    assert message.startswith(f"{tmp_path / 'instances.toml'}:1: instances = ")
    assert "is not a list of instances" in message


# Unknown keys.

def test_unclosed_array_names_its_opening_line(tmp_path):
    text = instance('tags = ["本机", "缓存"\nport = 6379', name="a", kind="redis") + "\n" + instance("", name="b")

    message = single_problem(tmp_path, text)

    # tomllib notices it at line 6 (port = ...); the bracket was opened on line 5.
    assert message.startswith(f"{tmp_path / 'instances.toml'}:5: invalid TOML: the [ on this line is never "
                              "closed with ] (the parser noticed at line 6: ")


def test_unknown_top_level_key_names_its_line(tmp_path):
    message = single_problem(tmp_path, GOOD_MYSQL + "\n[alerts]\nurl = 'x'\n")

    assert message == (f"{tmp_path / 'instances.toml'}:10: unknown key 'alerts'; remove it or use one "
                       "of: defaults, instances.")


def test_unknown_defaults_key_suggests_spelling(tmp_path):
    message = single_problem(tmp_path, "[defaults]\ntimout = 3\n" + GOOD_MYSQL)

    assert message == (f"{tmp_path / 'instances.toml'}:2: [defaults]: unknown key 'timout'; "
                       "did you mean 'timeout'? Correct it or remove it.")


def test_unknown_instance_key_suggests_spelling(tmp_path):
    message = single_problem(tmp_path, instance('pasword_env = "X"'))

    assert message == (f"{tmp_path / 'instances.toml'}:5: instance \"x\": unknown key 'pasword_env'; "
                       "did you mean 'password_env'? Correct it or remove it.")


def test_unknown_key_never_shows_its_value(tmp_path):
    message = single_problem(tmp_path, instance('passwd = "TopSecret-42"'))

    assert "TopSecret-42" not in message
    assert "'passwd'" in message


# Required keys and names.

@pytest.mark.parametrize("key", ["name", "type", "host"])
def test_missing_required_key_is_reported(tmp_path, key):
    lines = {"name": 'name = "x"', "type": 'type = "mysql"', "host": 'host = "127.0.0.1"'}
    body = "\n".join(line for name, line in lines.items() if name != key)

    message = single_problem(tmp_path, f"[[instances]]\n{body}\nport = 3306\n")

    assert f": {key} is missing; add it, e.g. {key} = " in message


def test_missing_tcp_port_is_reported(tmp_path):
    message = single_problem(tmp_path, instance("", name="pg-port", kind="tcp"))

    assert message == (f'{tmp_path / "instances.toml"}:1: instance "pg-port": port is missing; '
                       "add it, e.g. port = 8080.")


def test_nameless_instance_is_numbered(tmp_path):
    text = GOOD_MYSQL + '\n[[instances]]\ntype = "redis"\nhost = "127.0.0.1"\n'

    message = single_problem(tmp_path, text)

    assert message.startswith(f"{tmp_path / 'instances.toml'}:10: instance #2: name is missing")


@pytest.mark.parametrize("name", ["", "   "], ids=["empty", "blank"])
def test_empty_name_is_reported(tmp_path, name):
    message = single_problem(tmp_path, instance("", name=name))

    assert f'name = "{name}" is empty' in message


def test_name_with_newline_is_reported(tmp_path):
    message = single_problem(tmp_path, instance("", name="a\\nb"))

    assert 'name = "a\\nb" contains a control character' in message


def test_duplicate_name_points_to_first(tmp_path):
    text = instance("", name="订单库") + "\n" + instance("", name="订单库", kind="redis")

    message = single_problem(tmp_path, text)

    # Both lines are those of the name keys.
    assert message == (f'{tmp_path / "instances.toml"}:8: instance "订单库": name = "订单库" is already '
                       "used by the instance at line 2; give each instance a unique name.")


def test_port_example_uses_the_type_port(tmp_path):
    message = single_problem(tmp_path, instance('port = "5432"', kind="postgresql"))

    assert message.endswith("write it like port = 5432.")


def test_maintenance_is_a_boolean(tmp_path):
    message = single_problem(tmp_path, instance('maintenance = "yes"'))

    assert 'maintenance = "yes" is a string' in message


def test_maintenance_keeps_the_target(tmp_path):
    path = write(tmp_path, instance("maintenance = true"))
    in_maintenance = load_config(path).instances[0]
    path.write_text(instance(""), encoding="utf-8")
    back = load_config(path).instances[0]

    assert in_maintenance.maintenance
    assert not back.maintenance
    # A reload that only toggles maintenance keeps the connection and the state.
    assert in_maintenance.same_target(back)


def test_duplicate_name_reported_with_other_problems(tmp_path):
    text = instance("") + "\n" + instance("port = 0")

    problems = problems_of(tmp_path, text)

    assert len(problems) == 2
    assert any("already used" in problem for problem in problems)


# Types and values of single keys.

@pytest.mark.parametrize("value, shown", [
    ('"abc"', '"abc" is a string'),
    ('"3306"', '"3306" is a string'),
    ("3306.0", "3306.0 is a float"),
    ("true", "true is a boolean"),
], ids=["letters", "quoted-digits", "float", "boolean"])
def test_port_not_integer_is_reported(tmp_path, value, shown):
    message = single_problem(tmp_path, instance(f"port = {value}"))

    # The line of the key itself, not of the [[instances]] header.
    assert message == (f'{tmp_path / "instances.toml"}:5: instance "x": port = {shown}, but an '
                       "integer from 1 to 65535 is required; write it like port = 3306.")


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_port_out_of_range_is_reported(tmp_path, port):
    message = single_problem(tmp_path, instance(f"port = {port}"))

    assert message == (f'{tmp_path / "instances.toml"}:5: instance "x": port = {port} is out of range; '
                       "use an integer from 1 to 65535.")


def test_unknown_type_suggests_spelling(tmp_path):
    message = single_problem(tmp_path, instance("", kind="postgres"))

    assert message.endswith('type = "postgres" is not supported; use one of: mysql, redis, postgresql, '
                            "tcp. Did you mean 'postgresql'?")


@pytest.mark.parametrize("key, value, expected", [
    ("name", "42", "name = 42 is an integer, but a string is required"),
    ("host", "[1, 2]", "host = [1, 2] is an array, but a string is required"),
    ("user", "7", "user = 7 is an integer, but a string is required"),
    ("database", "true", "database = true is a boolean, but a string is required"),
    ("enabled", '"yes"', 'enabled = "yes" is a string, but true or false is required'),
    ("tls", "1", "tls = 1 is an integer, but true or false is required"),
    ("interval", '"5"', 'interval = "5" is a string, but a positive number of seconds is required'),
    ("timeout", "false", "timeout = false is a boolean, but a positive number of seconds is required"),
    ("fail_threshold", "1.5", "fail_threshold = 1.5 is a float, but an integer of at least 1 is required"),
    ("recover_threshold", '"2"', 'recover_threshold = "2" is a string, but an integer of at least 1'),
    ("tags", '"prod"', 'tags = "prod" is a string, but a list of strings is required'),
    ("ssl_mode", "1", "ssl_mode = 1 is an integer, but a string is required"),
    ("ca_file", "{a = 1}", "ca_file = {a = 1} is a table, but a string is required"),
    ("password_env", "5", "password_env = 5 is an integer, but a string is required"),
])
def test_wrong_type_is_reported(tmp_path, key, value, expected):
    text = f'[[instances]]\nname = "x"\ntype = "mysql"\nhost = "127.0.0.1"\n{key} = {value}\n'
    if key == "name":
        text = text.replace('name = "x"\n', "", 1)
    if key == "host":
        text = text.replace('host = "127.0.0.1"\n', "", 1)
    if key == "tls":
        text = text.replace('type = "mysql"', 'type = "redis"')

    message = single_problem(tmp_path, text)

    assert expected in message


def test_wrong_type_in_defaults_is_reported(tmp_path):
    message = single_problem(tmp_path, '[defaults]\ninterval = "5"\n' + GOOD_MYSQL)

    assert message.startswith(f'{tmp_path / "instances.toml"}:2: [defaults]: interval = "5" is a string')


@pytest.mark.parametrize("key", ["interval", "timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_seconds_not_positive_is_reported(tmp_path, key, value):
    message = single_problem(tmp_path, instance(f"{key} = {value}"))

    assert f"{key} = {value} is not a positive number; use seconds greater than 0" in message


@pytest.mark.parametrize("key", ["fail_threshold", "recover_threshold"])
def test_threshold_below_one_is_reported(tmp_path, key):
    message = single_problem(tmp_path, f"[defaults]\n{key} = 0\n" + GOOD_MYSQL)

    assert message.endswith(f"[defaults]: {key} = 0 is less than 1; use an integer of at least 1, "
                            f"e.g. {key} = {3 if key == 'fail_threshold' else 2}.")


def test_tags_with_non_string_is_reported(tmp_path):
    message = single_problem(tmp_path, instance('tags = ["prod", 3]'))

    assert 'tags = ["prod", 3] must contain only non-empty strings' in message


def test_redis_database_must_be_number(tmp_path):
    message = single_problem(tmp_path, instance('database = "sessions"', kind="redis"))

    assert 'database = "sessions" is not a Redis database number' in message


# Passwords.

def test_password_and_env_both_set_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("DBMON_TEST_PASSWORD", "x")

    message = single_problem(tmp_path, instance('password = "a"\npassword_env = "DBMON_TEST_PASSWORD"'))

    assert message.endswith("password and password_env are both set; keep only one of them.")


def test_password_env_unset_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("DBMON_TEST_UNSET", raising=False)

    message = single_problem(tmp_path, instance('password_env = "DBMON_TEST_UNSET"'))

    assert message.endswith('password_env = "DBMON_TEST_UNSET" names an environment variable that is '
                            "not set; set DBMON_TEST_UNSET before starting, or correct the name.")


def test_password_env_set_but_empty_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("DBMON_TEST_EMPTY", "")

    loaded = load_config(write(tmp_path, instance('password_env = "DBMON_TEST_EMPTY"'))).instances[0]

    assert loaded.password == ""


@pytest.mark.parametrize("value, kind", [("123456789", "an integer"), ('["Hunter2-x"]', "an array")])
def test_wrong_typed_password_hides_value(tmp_path, value, kind):
    message = single_problem(tmp_path, instance(f"password = {value}"))

    assert message.endswith(f"password is {kind}, but a string is required; put it in quotes, "
                            "or use password_env.")
    assert "123456789" not in message
    assert "Hunter2-x" not in message


# Encryption keys.

@pytest.mark.parametrize("kind", ["mysql", "postgresql"])
def test_tls_on_sql_type_points_to_ssl_mode(tmp_path, kind):
    message = single_problem(tmp_path, instance("tls = true", kind=kind))

    assert message.endswith(f'tls applies only to type "redis"; for type "{kind}" remove it, '
                            "and set ssl_mode to encrypt the connection.")


def test_tls_on_tcp_is_reported(tmp_path):
    message = single_problem(tmp_path, instance("port = 5432\ntls = false", kind="tcp"))

    assert message.endswith('tls does not apply to type "tcp" (only to redis); remove it.')


def test_ssl_mode_on_redis_is_reported(tmp_path):
    message = single_problem(tmp_path, instance('ssl_mode = "require"', kind="redis"))

    assert message.endswith('ssl_mode does not apply to type "redis" (only to mysql, postgresql); '
                            "remove it.")


def test_ssl_mode_not_allowed_is_reported(tmp_path):
    message = single_problem(tmp_path, instance('ssl_mode = "verify_full"'))

    assert message.endswith('ssl_mode = "verify_full" is not allowed; use one of: disable, prefer, '
                            "require, verify-ca, verify-full. Did you mean 'verify-full'?")


def test_ca_file_unreadable_is_reported(tmp_path):
    message = single_problem(tmp_path, instance('ssl_mode = "verify-ca"\nca_file = "missing/ca.pem"'))

    assert f'ca_file = "missing/ca.pem" cannot be read ({tmp_path / "missing" / "ca.pem"}: ' in message


def test_ca_file_resolves_against_config_directory(tmp_path, monkeypatch):
    (tmp_path / "ca.pem").write_text("x")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)

    loaded = load_config(write(tmp_path, instance('ssl_mode = "verify-ca"\nca_file = "ca.pem"')))

    assert loaded.instances[0].ca_file == str(tmp_path / "ca.pem")


def test_ca_file_without_tls_is_reported(tmp_path):
    (tmp_path / "ca.pem").write_text("x")

    message = single_problem(tmp_path, instance('ca_file = "ca.pem"', kind="redis"))

    assert message.endswith("ca_file is set but tls is not enabled; set tls = true or remove ca_file.")


def test_ca_file_with_ssl_disabled_is_reported(tmp_path):
    (tmp_path / "ca.pem").write_text("x")

    message = single_problem(tmp_path, instance('ssl_mode = "disable"\nca_file = "ca.pem"'))

    assert 'ca_file is set but ssl_mode = "disable"' in message


@pytest.mark.parametrize("key, value", [("user", '"u"'), ("database", '"d"'), ("password", '"p"')])
def test_credentials_on_tcp_are_reported(tmp_path, key, value):
    message = single_problem(tmp_path, instance(f"port = 1\n{key} = {value}", kind="tcp"))

    assert message.endswith(f'{key} does not apply to type "tcp" (only to mysql, redis, postgresql); '
                            "remove it.")


# The whole file at once.

def test_every_problem_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("DBMON_TEST_UNSET", raising=False)
    text = (
        "[defaults]\ninterval = -5\n\n"
        + instance("port = 99999", name="a") + "\n"
        + instance('password_env = "DBMON_TEST_UNSET"', name="b") + "\n"
        + instance('ssl_mode = "strict"', name="c") + "\n"
        + instance("", name="d", kind="oracle")
    )

    problems = problems_of(tmp_path, text)

    assert len(problems) == 5
    assert problems[0].startswith(f"{tmp_path / 'instances.toml'}:2: [defaults]: interval = -5")
    assert problems[1].startswith(f'{tmp_path / "instances.toml"}:8: instance "a": port = 99999')
    assert problems[2].startswith(f'{tmp_path / "instances.toml"}:14: instance "b": password_env')
    assert problems[3].startswith(f'{tmp_path / "instances.toml"}:20: instance "c": ssl_mode')
    assert problems[4].startswith(f'{tmp_path / "instances.toml"}:24: instance "d": type = "oracle"')


def test_problems_render_in_chinese(tmp_path):
    path = write(tmp_path, instance("port = 99999", name="订单库-主"))

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.messages("zh") == [
        f'{path}:5: 实例 "订单库-主": port = 99999 超出范围；请使用 1 到 65535 之间的整数。']


def test_c8_bad_entries_among_good_ones(tmp_path):
    """Field case C8: one message per bad entry; a missing database is valid configuration."""
    text = textwrap.dedent("""
        [[instances]]
        name = "mariadb"
        type = "mysql"
        host = "127.0.0.1"
        port = 3306
        user = "root"
        database = "test"

        [[instances]]
        name = "redis"
        type = "redis"
        host = "127.0.0.1"
        port = 6379

        [[instances]]
        name = "postgresql"
        type = "postgresql"
        host = "127.0.0.1"
        port = 5432
        user = "postgres"

        [[instances]]
        name = "missing-db"
        type = "mysql"
        host = "127.0.0.1"
        port = 3306
        user = "root"
        database = "no_such_db"

        [[instances]]
        name = "port-letters"
        type = "mysql"
        host = "127.0.0.1"
        port = "abc"

        [[instances]]
        name = "port-too-big"
        type = "redis"
        host = "127.0.0.1"
        port = 99999
    """)
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems

    assert problems == [
        f'{path}:35: instance "port-letters": port = "abc" is a string, but an integer from 1 to 65535 '
        "is required; write it like port = 3306.",
        f'{path}:41: instance "port-too-big": port = 99999 is out of range; use an integer from 1 to '
        "65535.",
    ]
    assert not any("no_such_db" in problem for problem in problems)

    write(tmp_path, text.split("[[instances]]\nname = \"port-letters\"")[0])
    loaded = load_config(path)
    assert [item.database for item in loaded.instances][-1] == "no_such_db"


def test_problem_names_the_line_of_its_key(tmp_path):
    text = instance("port = 3306", name="a") + "\n" + instance("user = 'root'\nport = 0", name="b")

    message = single_problem(tmp_path, text)

    # Instance b starts on line 7; its own port line, not a's, is line 12.
    assert message.startswith(f'{tmp_path / "instances.toml"}:12: instance "b": port = 0')


def test_missing_key_names_the_header_line(tmp_path):
    text = GOOD_MYSQL + "\n[[instances]]\nname = \"b\"\ntype = \"redis\"\n"
    header = GOOD_MYSQL.count("\n") + 2

    message = single_problem(tmp_path, text)

    assert message.startswith(f'{tmp_path / "instances.toml"}:{header}: instance "b": host')


def test_error_text_lists_problems(tmp_path):
    path = write(tmp_path, instance("port = 0"))

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value).startswith(f"{path}: 1 problem(s)\n{path}:5: instance")
    assert caught.value.path == os.fspath(path)


def test_same_target_ignores_line(tmp_path):
    before = load_config(write(tmp_path, GOOD_MYSQL)).instances[0]
    after = load_config(write(tmp_path, "# a new comment line\n" + GOOD_MYSQL)).instances[0]
    moved_port = load_config(write(tmp_path, GOOD_MYSQL.replace("3306", "3307"))).instances[0]

    assert before.line != after.line
    assert before.same_target(after)
    assert not before.same_target(moved_port)

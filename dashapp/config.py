"""Configuration: the instances to watch, read from instances.toml.

The whole file is validated before anything starts or reloads, and every problem is reported at
once, each naming the file, the line, the instance and the key. A problem is kept as catalog keys
(`cli.config.*` in dashapp/i18n.py), so the command line prints it in the user's language while
`ConfigError.problems` and the logs carry English.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time

from dashapp.i18n import t

INSTANCE_TYPES = ("mysql", "redis", "postgresql", "tcp")
SSL_MODES = ("disable", "prefer", "require", "verify-ca", "verify-full")

# A tcp instance has no standard port, so its port is always required.
DEFAULT_PORTS = {"mysql": 3306, "redis": 6379, "postgresql": 5432}
# The port in the examples of messages about a tcp instance, which has no usual port.
TCP_EXAMPLE_PORT = 8080

DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 5.0

TOP_LEVEL_KEYS = ("defaults", "instances")
DEFAULTS_KEYS = ("interval", "timeout", "fail_threshold", "recover_threshold")
INSTANCE_KEYS = (
    "name", "type", "host", "port", "user", "password", "password_env", "database", "tags",
    "interval", "timeout", "enabled", "maintenance", "fail_threshold", "recover_threshold", "tls",
    "ssl_mode", "ca_file",
)

# Optional keys that only some instance types use. A key set on another type would be silently
# ignored by its probe, so it is reported instead.
_KEY_TYPES = {
    "user": ("mysql", "redis", "postgresql"),
    "password": ("mysql", "redis", "postgresql"),
    "password_env": ("mysql", "redis", "postgresql"),
    "database": ("mysql", "redis", "postgresql"),
    "tls": ("redis",),
    "ssl_mode": ("mysql", "postgresql"),
    "ca_file": ("mysql", "redis", "postgresql"),
}

# One example per key, shown in messages as the shape to copy.
_EXAMPLES = {
    "name": 'name = "orders-primary"',
    "type": 'type = "mysql"',
    "host": 'host = "127.0.0.1"',
    "port": "port = 3306",
    "user": 'user = "monitor"',
    "password": 'password_env = "DBMON_ORDERS_PASSWORD"',
    "password_env": 'password_env = "DBMON_ORDERS_PASSWORD"',
    "database": 'database = "test"',
    "redis_database": "database = 0",
    "tags": 'tags = ["prod", "orders"]',
    "interval": "interval = 5",
    "timeout": "timeout = 5",
    "enabled": "enabled = true",
    "maintenance": "maintenance = true",
    "fail_threshold": "fail_threshold = 3",
    "recover_threshold": "recover_threshold = 2",
    "tls": "tls = true",
    "ssl_mode": 'ssl_mode = "prefer"',
    "ca_file": 'ca_file = "certs/ca.pem"',
    "defaults": "[defaults]",
    "instances": "[[instances]]",
}

_INSTANCES_HEADER = re.compile(r"""^\s*\[\[\s*(instances|"instances"|'instances')\s*\]\]""")
_TABLE_HEADER = re.compile(r"^\s*\[")
# tomllib messages about a bracket that is never closed, and the brackets concerned.
_UNCLOSED = {"Unclosed array": ("[", "]"), "Unclosed inline table": ("{", "}")}
_TOML_ERROR_LINE = re.compile(r"at line (\d+), column \d+")
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
_MAX_SHOWN_VALUE = 80


@dataclass(frozen=True)
class InstanceConfig:
    """One `[[instances]]` table, with defaults applied and `password_env` resolved.

    `password` is the only secret: it is excluded from repr and never copied into an
    InstanceState, an event or a log line.
    """

    name: str
    type: str
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    tags: tuple[str, ...] = ()
    interval: float = 5.0
    timeout: float = 5.0
    enabled: bool = True
    maintenance: bool = False
    fail_threshold: int = 1
    recover_threshold: int = 1
    tls: bool = False
    ssl_mode: str | None = None
    ca_file: str | None = None
    line: int | None = None

    @property
    def key(self) -> str:
        """A stable ASCII id derived from the name, safe in DOM ids and URLs."""
        return "i" + hashlib.sha1(self.name.encode("utf-8")).hexdigest()[:12]

    def same_target(self, other: "InstanceConfig") -> bool:
        """Tell whether a reload may keep this instance's connection and state.

        The line is ignored, so that an edit above an instance does not reset it, and so is
        `maintenance`, which changes the status but not the probing.
        """
        return self == replace(other, line=self.line, maintenance=self.maintenance)


@dataclass(frozen=True)
class Config:
    path: str
    interval: float
    timeout: float
    instances: tuple[InstanceConfig, ...]

    def enabled_instances(self) -> list[InstanceConfig]:
        return [instance for instance in self.instances if instance.enabled]


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file, as catalog keys with their values.

    `subject` names what the problem is in (an instance, `[defaults]`) and `sentences` are
    (catalog key, values) pairs joined with a space, so a suggestion can follow the message.
    """

    file: str
    line: int | None
    subject: tuple[str, dict] | None
    sentences: tuple[tuple[str, dict], ...]

    def render(self, lang: str = "en") -> str:
        location = self.file if self.line is None else f"{self.file}:{self.line}"
        gap = t("cli.config.sentence_gap", lang)
        text = gap.join(t(key, lang, **_translate_terms(values, lang)) for key, values in self.sentences)
        if self.subject is None:
            return f"{location}: {text}"
        subject_key, subject_values = self.subject
        return f"{location}: {t(subject_key, lang, **subject_values)}: {text}"


def _translate_terms(values: dict, lang: str) -> dict:
    return {name: t(value, lang) if isinstance(value, _Term) else value for name, value in values.items()}


class ConfigError(Exception):
    """The configuration file is invalid; `problems` holds one message per problem found."""

    def __init__(self, path: str, problems: list[str], details: list[ConfigProblem] | None = None):
        self.path = path
        self.problems = problems
        self.details = details or []
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(problems))

    @classmethod
    def from_details(cls, path: str, details: list[ConfigProblem]) -> "ConfigError":
        return cls(path, [problem.render("en") for problem in details], details)

    def messages(self, lang: str) -> list[str]:
        """Return the problems in `lang`; an error built from plain strings keeps them as they are."""
        if not self.details:
            return list(self.problems)
        return [problem.render(lang) for problem in self.details]


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a configuration file; raise ConfigError listing every problem."""
    shown_path = os.fspath(path)
    text = _read_text(shown_path)
    data = _parse_toml(shown_path, text)

    collector = _Collector(shown_path, text)
    defaults = _check_defaults(collector, data)
    collector.check_unknown_keys(data, TOP_LEVEL_KEYS, line=None, subject=None, line_of_key=True)
    instances = _check_instances(collector, data, defaults)
    if collector.problems:
        raise ConfigError.from_details(shown_path, collector.problems)

    return Config(path=os.path.abspath(shown_path), interval=defaults["interval"],
                  timeout=defaults["timeout"], instances=tuple(instances))


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise _single_problem(path, None, "cli.config.unreadable", reason=reason) from error

    try:
        # utf-8-sig drops the byte order mark that some Windows editors write, which tomllib
        # would otherwise reject as an invalid statement on line 1.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise _single_problem(path, line, "cli.config.not_utf8", position=error.start) from error


def _parse_toml(path: str, text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib (Python 3.11) ends its message with "(at line N, column M)" or
        # "(at end of document)" and has no attribute for the position.
        message = str(error)
        match = _TOML_ERROR_LINE.search(message)
        line = int(match.group(1)) if match else max(1, text.count("\n"))
        brackets = next((pair for prefix, pair in _UNCLOSED.items() if message.startswith(prefix)), None)
        opening = _opening_line(text.splitlines(), line, *brackets) if brackets else None
        if opening is not None:
            raise _single_problem(path, opening, "cli.config.syntax_unclosed", error=message,
                                  opener=brackets[0], closer=brackets[1], found=line) from error
        raise _single_problem(path, line, "cli.config.syntax", error=message) from error


def _opening_line(lines: list[str], found: int, opener: str, closer: str) -> int | None:
    """Find the `key = [` (or `{`) line above `found` whose bracket is never closed.

    tomllib notices an unclosed array only where the next statement starts, which can be many
    lines further down. This scan counts brackets per line and ignores strings that contain
    brackets, so it can miss; then the caller keeps the parser's line.
    """
    for number in range(min(found, len(lines)), 0, -1):
        text = lines[number - 1].split("#", 1)[0]
        if number != found and _TABLE_HEADER.match(text) and "=" not in text:
            return None
        key, equals, value = text.partition("=")
        if equals and key.strip() and value.count(opener) > value.count(closer):
            return number
    return None


def _single_problem(path: str, line: int | None, key: str, **values) -> ConfigError:
    return ConfigError.from_details(path, [ConfigProblem(path, line, None, ((key, values),))])


class _Collector:
    """Problems found so far in one file, and the line numbers they point at."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[ConfigProblem] = []
        self.instance_lines = _instance_header_lines(self.lines)

    def add(self, line: int | None, subject: tuple[str, dict] | None, message_key: str,
            suggestion: str | None = None, **values) -> None:
        sentences = [(message_key, values)]
        if suggestion is not None:
            sentences.append(("cli.config.did_you_mean", {"candidate": suggestion}))
        self.problems.append(ConfigProblem(self.path, line, subject, tuple(sentences)))

    def line_in_table(self, header_line: int | None, key: str | None) -> int | None:
        """Find the line of `key` in the table whose header is on `header_line`; else the header's.

        The table runs to the next `[` header. A key written as a dotted or quoted key, or in an
        inline table, is not found, and the problem points at the header instead.
        """
        if header_line is None or key is None:
            return header_line
        pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for number in range(header_line + 1, len(self.lines) + 1):
            text = self.lines[number - 1]
            if _TABLE_HEADER.match(text):
                break
            if pattern.match(text):
                return number
        return header_line

    def line_of_key(self, key: str) -> int | None:
        """Find where a top-level key or table starts; None when it is written in another form."""
        pattern = re.compile(r"^\s*(\[{1,2}\s*)?" + re.escape(key) + r"\s*(=|\]|\.)")
        for number, text in enumerate(self.lines, start=1):
            if pattern.match(text):
                return number
        return None

    def check_unknown_keys(self, table: dict, allowed: tuple[str, ...], line: int | None,
                           subject: tuple[str, dict] | None, line_of_key: bool = False) -> None:
        # The value of an unknown key is never shown: a misspelled "pasword" holds a secret.
        for key in table:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            where = self.line_of_key(key) if line_of_key else self.line_in_table(line, key)
            if close:
                self.add(where, subject, "cli.config.unknown_key_suggested", option=key,
                         candidate=close[0])
            else:
                self.add(where, subject, "cli.config.unknown_key", option=key,
                         allowed=", ".join(allowed))


def _port_example(kind: str | None) -> str:
    """Return a `port = N` example with the type's usual port, so that the fix for a PostgreSQL instance shows 5432."""
    return f"port = {DEFAULT_PORTS.get(kind, TCP_EXAMPLE_PORT) if kind else DEFAULT_PORTS['mysql']}"


def _instance_header_lines(lines: list[str]) -> list[int]:
    """Return the line number of each `[[instances]]` header, in order.

    NOTE: a header-like line inside a multi-line string would be counted too, which shifts the
    line numbers of later instances; instances written as an inline array get no line at all.
    """
    return [number for number, text in enumerate(lines, start=1) if _INSTANCES_HEADER.match(text)]


def _check_defaults(collector: _Collector, data: dict) -> dict:
    """Validate `[defaults]` and return it with every key filled in."""
    defaults = {"interval": DEFAULT_INTERVAL, "timeout": DEFAULT_TIMEOUT,
                "fail_threshold": 1, "recover_threshold": 1}
    table = data.get("defaults", {})
    line = collector.line_of_key("defaults")
    subject = ("cli.config.subject.defaults", {})
    if not isinstance(table, dict):
        collector.add(line, None, "cli.config.wrong_type", option="defaults", value=_literal(table),
                      actual=_type_name(table), expected=_expected("table"),
                      example=_EXAMPLES["defaults"])
        return defaults

    collector.check_unknown_keys(table, DEFAULTS_KEYS, line, subject)
    checks = _KeyChecks(collector, line, subject)
    for key in ("interval", "timeout"):
        if key in table:
            defaults[key] = checks.seconds(key, table[key], defaults[key])
    for key in ("fail_threshold", "recover_threshold"):
        if key in table:
            defaults[key] = checks.threshold(key, table[key], defaults[key])
    return defaults


def _check_instances(collector: _Collector, data: dict, defaults: dict) -> list[InstanceConfig]:
    entries = data.get("instances")
    line = collector.line_of_key("instances")
    if entries is None or entries == []:
        collector.add(None, None, "cli.config.no_instances")
        return []
    if not isinstance(entries, list):
        collector.add(line, None, "cli.config.instances_not_list", value=_literal(entries))
        return []

    instances = []
    first_line_of_name: dict[str, int | None] = {}
    for index, entry in enumerate(entries):
        header_line = collector.instance_lines[index] if index < len(collector.instance_lines) else line
        instance = _check_instance(collector, entry, index + 1, header_line, defaults)
        _check_unique_name(collector, entry, header_line, first_line_of_name)
        if instance is not None:
            instances.append(instance)
    return instances


def _check_unique_name(collector: _Collector, entry, line: int | None,
                       first_line_of_name: dict[str, int | None]) -> None:
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name.strip():
        return

    # Names are compared in NFC, because two spellings of "é" look the same on a page.
    normalized = unicodedata.normalize("NFC", name)
    line = collector.line_in_table(line, "name")
    if normalized not in first_line_of_name:
        first_line_of_name[normalized] = line
        return
    first_line = first_line_of_name[normalized]
    collector.add(line, ("cli.config.subject.named", {"name": name}), "cli.config.duplicate_name",
                  value=_literal(name), first_line="?" if first_line is None else first_line)


def _check_instance(collector: _Collector, entry, number: int, line: int | None,
                    defaults: dict) -> InstanceConfig | None:
    """Validate one `[[instances]]` table; return it, or None when any of its keys is invalid."""
    subject = ("cli.config.subject.numbered", {"number": number})
    if not isinstance(entry, dict):
        collector.add(line, subject, "cli.config.wrong_type", option="instances", value=_literal(entry),
                      actual=_type_name(entry), expected=_expected("table"),
                      example=_EXAMPLES["instances"])
        return None

    before = len(collector.problems)
    name = entry.get("name")
    if isinstance(name, str) and name.strip():
        subject = ("cli.config.subject.named", {"name": name})
    checks = _KeyChecks(collector, line, subject)
    collector.check_unknown_keys(entry, INSTANCE_KEYS, line, subject)

    name = checks.name(entry)
    kind = checks.instance_type(entry)
    fields = {
        "name": name,
        "type": kind,
        "host": checks.host(entry),
        "port": checks.port(entry, kind),
        "user": checks.optional_text(entry, "user"),
        "password": checks.password(entry),
        "database": checks.database(entry, kind),
        "tags": checks.tags(entry),
        "interval": checks.seconds("interval", entry.get("interval"), defaults["interval"]),
        "timeout": checks.seconds("timeout", entry.get("timeout"), defaults["timeout"]),
        "enabled": checks.boolean("enabled", entry.get("enabled"), True),
        "maintenance": checks.boolean("maintenance", entry.get("maintenance"), False),
        "fail_threshold": checks.threshold("fail_threshold", entry.get("fail_threshold"),
                                           defaults["fail_threshold"]),
        "recover_threshold": checks.threshold("recover_threshold", entry.get("recover_threshold"),
                                              defaults["recover_threshold"]),
        "tls": checks.boolean("tls", entry.get("tls"), False),
        "ssl_mode": checks.ssl_mode(entry),
        "ca_file": checks.ca_file(entry),
    }
    if kind is not None:
        checks.applicable_keys(entry, kind)
        checks.ca_file_needs_encryption(entry, kind, fields)

    if len(collector.problems) > before:
        return None
    return InstanceConfig(line=line, **fields)


class _KeyChecks:
    """Checks of single keys, each reporting to the collector and returning the value to use."""

    def __init__(self, collector: _Collector, line: int | None, subject: tuple[str, dict] | None):
        self.collector = collector
        self.line = line
        self.subject = subject

    def report(self, message_key: str, suggestion: str | None = None, at_key: str | None = None,
               **values) -> None:
        """Add a problem at the line of `at_key` (default: the `option` it names) in this table."""
        line = self.collector.line_in_table(self.line, at_key or values.get("option"))
        self.collector.add(line, self.subject, message_key, suggestion=suggestion, **values)

    def wrong_type(self, key: str, value, expected: str, example_key: str | None = None,
                   example: str | None = None) -> None:
        self.report("cli.config.wrong_type", option=key, value=_literal(value), actual=_type_name(value),
                    expected=_expected(expected), example=example or _EXAMPLES[example_key or key])

    def missing(self, key: str, example: str | None = None) -> None:
        self.report("cli.config.missing", option=key, example=example or _EXAMPLES[key])

    def text(self, key: str, value, required: bool) -> str | None:
        """Check a string key: present when required, a string, not blank, no control characters."""
        if value is None:
            if required:
                self.missing(key)
            return None
        if not isinstance(value, str):
            self.wrong_type(key, value, "string")
            return None
        if not value.strip():
            self.report("cli.config.blank", option=key, value=_literal(value), example=_EXAMPLES[key])
            return None
        if any(unicodedata.category(char) in _CONTROL_CATEGORIES for char in value):
            self.report("cli.config.control_character", option=key, value=_literal(value))
            return None
        return value

    def name(self, entry: dict) -> str | None:
        return self.text("name", entry.get("name"), required=True)

    def host(self, entry: dict) -> str | None:
        host = self.text("host", entry.get("host"), required=True)
        if host is not None and any(char.isspace() for char in host):
            self.report("cli.config.host_whitespace", at_key="host", value=_literal(host))
            return None
        return host

    def optional_text(self, entry: dict, key: str) -> str | None:
        return self.text(key, entry.get(key), required=False)

    def instance_type(self, entry: dict) -> str | None:
        kind = self.text("type", entry.get("type"), required=True)
        return self.one_of("type", kind, INSTANCE_TYPES, "cli.config.unknown_type")

    def one_of(self, key: str, value: str | None, allowed: tuple[str, ...], message_key: str) -> str | None:
        """Return `value` if it is one of `allowed` (or None); else report it with the closest match."""
        if value is None or value in allowed:
            return value
        close = difflib.get_close_matches(value.lower(), allowed, n=1)
        self.report(message_key, at_key=key, suggestion=close[0] if close else None,
                    value=_literal(value), allowed=", ".join(allowed))
        return None

    def port(self, entry: dict, kind: str | None) -> int | None:
        value = entry.get("port")
        if value is None:
            if kind in DEFAULT_PORTS:
                return DEFAULT_PORTS[kind]
            if kind is not None:
                self.missing("port", example=_port_example(kind))
            return None
        if not _is_integer(value):
            self.wrong_type("port", value, "port", example=_port_example(kind))
            return None
        if not 1 <= value <= 65535:
            self.report("cli.config.port_range", at_key="port", value=_literal(value))
            return None
        return value

    def password(self, entry: dict) -> str | None:
        """Return the password, read from the environment when `password_env` names a variable."""
        password = entry.get("password")
        variable = entry.get("password_env")
        if password is not None and variable is not None:
            self.report("cli.config.password_both", at_key="password")
            return None
        if password is not None:
            if not isinstance(password, str):
                # The value itself is never shown, only its type.
                self.report("cli.config.password_type", at_key="password", actual=_type_name(password))
                return None
            return password
        variable = self.text("password_env", variable, required=False)
        if variable is None:
            return None
        if variable not in os.environ:
            self.report("cli.config.env_unset", at_key="password_env", value=_literal(variable), variable=variable)
            return None
        return os.environ[variable]

    def database(self, entry: dict, kind: str | None) -> str | None:
        value = entry.get("database")
        if kind != "redis" or value is None:
            return self.text("database", value, required=False)

        # Redis selects a database by number; a string of digits is accepted as that number.
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not _is_integer(value) or value < 0:
            self.report("cli.config.redis_database", at_key="database", value=_literal(value),
                        example=_EXAMPLES["redis_database"])
            return None
        return str(value)

    def tags(self, entry: dict) -> tuple[str, ...]:
        value = entry.get("tags", [])
        if not isinstance(value, list):
            self.wrong_type("tags", value, "string_list")
            return ()
        if not all(isinstance(tag, str) and tag.strip() for tag in value):
            self.report("cli.config.tags_items", at_key="tags", value=_literal(value), example=_EXAMPLES["tags"])
            return ()
        return tuple(value)

    def seconds(self, key: str, value, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.wrong_type(key, value, "seconds")
            return default
        if not math.isfinite(value) or value <= 0:
            self.report("cli.config.not_positive", option=key, value=_literal(value),
                        example=_EXAMPLES[key])
            return default
        return float(value)

    def threshold(self, key: str, value, default: int) -> int:
        if value is None:
            return default
        if not _is_integer(value):
            self.wrong_type(key, value, "threshold")
            return default
        if value < 1:
            self.report("cli.config.threshold_range", option=key, value=_literal(value),
                        example=_EXAMPLES[key])
            return default
        return value

    def boolean(self, key: str, value, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.wrong_type(key, value, "boolean")
            return default
        return value

    def ssl_mode(self, entry: dict) -> str | None:
        mode = self.text("ssl_mode", entry.get("ssl_mode"), required=False)
        return self.one_of("ssl_mode", mode, SSL_MODES, "cli.config.ssl_mode")

    def ca_file(self, entry: dict) -> str | None:
        """Resolve `ca_file` against the configuration file's directory and check it is readable."""
        value = self.text("ca_file", entry.get("ca_file"), required=False)
        if value is None:
            return None
        base = os.path.dirname(os.path.abspath(self.collector.path))
        resolved = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        try:
            with open(resolved, "rb"):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            self.report("cli.config.ca_file_unreadable", at_key="ca_file", value=_literal(value), path=resolved,
                        reason=reason)
            return None
        return resolved

    def applicable_keys(self, entry: dict, kind: str) -> None:
        for key, kinds in _KEY_TYPES.items():
            if key not in entry or kind in kinds:
                continue
            if key == "tls" and kind in ("mysql", "postgresql"):
                self.report("cli.config.tls_not_redis", at_key="tls", type=kind)
            else:
                self.report("cli.config.not_applicable", option=key, type=kind,
                            allowed=", ".join(kinds))

    def ca_file_needs_encryption(self, entry: dict, kind: str, fields: dict) -> None:
        # A CA file on an unencrypted connection would be ignored, and the user would believe
        # the server certificate is checked.
        if "ca_file" not in entry or fields["ca_file"] is None:
            return
        if kind == "redis" and not fields["tls"]:
            self.report("cli.config.ca_file_without_tls", at_key="ca_file")
        elif kind in ("mysql", "postgresql") and fields["ssl_mode"] == "disable":
            self.report("cli.config.ca_file_ssl_disabled", at_key="ca_file")


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _literal(value) -> str:
    """Format a value as it would be written in TOML, shortened when long."""
    text = _toml_literal(value)
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[:_MAX_SHOWN_VALUE - 1] + "…"
    return text


def _toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_literal(item)}" for key, item in value.items()) + "}"
    return repr(value)


def _type_name(value) -> "_Term":
    """Name a TOML value's type for a message, as a catalog key the renderer translates."""
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    elif isinstance(value, dict):
        kind = "table"
    else:
        kind = "datetime"
    return _Term(f"cli.config.type.{kind}")


def _expected(kind: str) -> "_Term":
    return _Term(f"cli.config.expect.{kind}")


class _Term(str):
    """A catalog key passed as a message value, translated when the message is rendered."""

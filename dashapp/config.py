"""Configuration: the instances to watch, read from instances.toml.

The whole file is validated before anything starts or reloads, and every problem is reported at
once, each naming the file, the line, the instance and the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

INSTANCE_TYPES = ("mysql", "redis", "postgresql", "tcp")
SSL_MODES = ("disable", "prefer", "require", "verify-ca", "verify-full")


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
        """Tell whether a reload may keep this instance's connection and state."""
        return self == other


@dataclass(frozen=True)
class Config:
    path: str
    interval: float
    timeout: float
    instances: tuple[InstanceConfig, ...]

    def enabled_instances(self) -> list[InstanceConfig]:
        return [instance for instance in self.instances if instance.enabled]


class ConfigError(Exception):
    """The configuration file is invalid; `problems` holds one message per problem found."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(problems))


def load_config(path: str) -> Config:
    """Read and validate a configuration file; raise ConfigError listing every problem."""
    raise NotImplementedError

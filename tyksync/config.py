"""`tyksync.toml`: the Dashboards of a team's environments (SPEC section 13), read strictly.

    [environments.staging]
    dashboard = "https://dash.staging.example.com"
    secret_env = "TYK_STAGING_SECRET"   # or secret_file = "/run/secrets/staging"
    manifests = ["manifests"]

Every problem of the file is reported at once, each naming the file and the key
(`tyksync.toml: environments.prod.secret_env: ...`; tomllib gives no line numbers for
values), and never quoting a value: someone will one day paste a secret where a variable
name belongs. Relative paths in the file are relative to the file's folder, so that
`--config elsewhere/tyksync.toml` means what it says. Nothing here reads a secret or makes
a call: that is `tyksync.environments.preflight`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tyksync.errors import ConfigError, ConfigProblems
from tyksync.escape import printable
from tyksync.fileutil import read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tomli dependency is for Python 3.10 only
    import tomli as tomllib

CONFIG_NAME = "tyksync.toml"
MAX_CONFIG_BYTES = 1024 * 1024
# Names go into headings, file names (.tyksync/sandbox-NAME.json) and Markdown: keep
# them to characters that are safe in all three.
ENV_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

_KEYS = (
    "dashboard",
    "secret_env",
    "secret_file",
    "ca_bundle",
    "insecure",
    "timeout",
    "manifests",
    "sandbox",
)


@dataclass(frozen=True)
class EnvironmentConfig:
    """One `[environments.NAME]` table, checked."""

    name: str
    dashboard: str | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    ca_bundle: Path | None = None
    insecure: bool = False
    timeout: float | None = None
    manifests: tuple[Path, ...] = ()
    sandbox: bool = False  # the embedded sandbox, state in .tyksync/sandbox-NAME.json

    def where(self, key: str, config: Config) -> str:
        """`tyksync.toml: environments.NAME.KEY`, for messages."""
        return f"{config.shown}: environments.{self.name}.{key}"


@dataclass(frozen=True)
class Config:
    path: Path
    environments: Mapping[str, EnvironmentConfig]  # in the file's order

    @property
    def shown(self) -> str:
        return printable(str(self.path))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.environments)


def find_config(explicit: Path | None, cwd: Path | None = None) -> Path | None:
    """`--config PATH`, else `tyksync.toml` in the current directory if there is one."""
    if explicit is not None:
        return explicit
    default = (cwd or Path()) / CONFIG_NAME
    return default if default.is_file() else None


def load_config(path: Path) -> Config:
    """The checked config, or ConfigProblems listing every problem of the file."""
    shown = printable(str(path))
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read it: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown}: larger than 1 MiB; not a tyksync config")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib's message says what and where ("... (at line 3, column 9)"), not the value.
        raise ConfigError(f"{shown}: not valid TOML: {e}") from None
    return _Checker(path).config(data)


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = printable(str(path))
        self.base = path.parent
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        where = f"{self.shown}: {key}: " if key else f"{self.shown}: "
        self.problems.append(where + message)

    def config(self, data: dict[str, Any]) -> Config:
        for key in data:
            if key != "environments":
                self.problem(_key(key), "unknown key (allowed: environments)")
        tables = data.get("environments")
        environments: dict[str, EnvironmentConfig] = {}
        if tables is None:
            self.problem("", "no [environments.NAME] table; see examples/tyksync.toml")
        elif not isinstance(tables, dict):
            self.problem("environments", f"must be a table of environments, got {_kind(tables)}")
        elif not tables:
            self.problem("environments", "defines no environment")
        else:
            for name, table in tables.items():
                env = self.environment(name, table)
                if env is not None:
                    environments[name] = env
        if self.problems:
            raise ConfigProblems(self.problems)
        return Config(self.path, environments)

    def environment(self, name: str, table: Any) -> EnvironmentConfig | None:
        at = f"environments.{_key(name)}"
        if not _ENV_NAME.fullmatch(name):
            self.problem(
                at,
                "an environment name is 1 to 64 letters, digits, '_' or '-' (a letter or "
                "digit first)",
            )
            return None
        if not isinstance(table, dict):
            self.problem(at, f"must be a table, got {_kind(table)}")
            return None
        before = len(self.problems)
        for key in table:
            if key not in _KEYS:
                self.problem(f"{at}.{_key(key)}", f"unknown key (allowed: {', '.join(_KEYS)})")
        dashboard = self.string(table, at, "dashboard")
        if dashboard is not None:
            self.url(dashboard, f"{at}.dashboard")
        secret_env = self.string(table, at, "secret_env")
        if secret_env is not None and not _VARIABLE.fullmatch(secret_env):
            self.problem(
                f"{at}.secret_env",
                "must be the NAME of the environment variable that holds the secret "
                "(letters, digits and '_'), not the secret itself",
            )
        secret_file = self.path_value(table, at, "secret_file")
        ca_bundle = self.path_value(table, at, "ca_bundle")
        insecure = self.boolean(table, at, "insecure")
        sandbox = self.boolean(table, at, "sandbox")
        timeout = self.timeout(table, at)
        manifests = self.manifests(table, at)
        if sandbox:
            for key in ("dashboard", "secret_env", "secret_file", "ca_bundle", "insecure"):
                if key in table:
                    self.problem(
                        f"{at}.{key}",
                        "not for a sandbox environment (sandbox = true runs the embedded "
                        "sandbox; remove one or the other)",
                    )
        else:
            if "dashboard" not in table:
                self.problem(
                    at,
                    "missing key 'dashboard' (the Dashboard's URL; or sandbox = true to try "
                    "tyksync on the embedded sandbox)",
                )
            if ("secret_env" in table) == ("secret_file" in table):
                self.problem(
                    at,
                    "needs exactly one of 'secret_env' (the variable holding the Dashboard "
                    "secret) or 'secret_file' (a file holding it)",
                )
        if len(self.problems) > before:
            return None
        return EnvironmentConfig(
            name=name,
            dashboard=dashboard,
            secret_env=secret_env,
            secret_file=secret_file,
            ca_bundle=ca_bundle,
            insecure=insecure,
            timeout=timeout,
            manifests=manifests,
            sandbox=sandbox,
        )

    def string(self, table: dict[str, Any], at: str, key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(f"{at}.{key}", f"must be a string, got {_kind(value)}")
            return None
        if not value:
            self.problem(f"{at}.{key}", "must not be empty")
            return None
        return value

    def path_value(self, table: dict[str, Any], at: str, key: str) -> Path | None:
        value = self.string(table, at, key)
        return None if value is None else self.base / value

    def boolean(self, table: dict[str, Any], at: str, key: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            self.problem(f"{at}.{key}", f"must be true or false, got {_kind(value)}")
            return False
        return value

    def timeout(self, table: dict[str, Any], at: str) -> float | None:
        value = table.get("timeout")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(f"{at}.timeout", f"must be a number of seconds, got {_kind(value)}")
            return None
        if not 0.1 <= value <= 3600:
            self.problem(f"{at}.timeout", "must be between 0.1 and 3600 seconds")
            return None
        return float(value)

    def manifests(self, table: dict[str, Any], at: str) -> tuple[Path, ...]:
        value = table.get("manifests")
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            self.problem(
                f"{at}.manifests", f"must be a non-empty list of paths, got {_kind(value)}"
            )
            return ()
        paths: list[Path] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.problem(
                    f"{at}.manifests[{index}]", f"must be a non-empty string, got {_kind(item)}"
                )
                continue
            paths.append(self.base / item)
        return tuple(paths)

    def url(self, url: str, key: str) -> None:
        """The checks the client makes, made now: a bad URL must fail before any call to
        any environment's Dashboard. The URL is never quoted (it may carry a password)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            self.problem(key, "not a valid http(s)://host[:port] URL")
            return
        if parts.username is not None or parts.password is not None:
            self.problem(
                key,
                "carries credentials (user:password@); remove them: the secret comes from "
                "secret_env or secret_file",
            )
        elif parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(key, "must be an http(s)://host[:port] URL")


def _key(key: str) -> str:
    """A TOML key as a message shows it: bare when it can be, quoted otherwise."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    return '"' + printable(key.replace("\\", "\\\\").replace('"', '\\"'), ascii_only=True) + '"'


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"

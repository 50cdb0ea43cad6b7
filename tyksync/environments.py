"""Which Dashboards a command runs against (SPEC section 13).

Without `--env`, `--all-envs` or `TYKSYNC_ENV`, one target with no name: the Dashboard of
section 2's options, exactly as before environments existed. With them, one target per
environment of tyksync.toml, in the order asked (`--all-envs`: the file's order), each
with its own connection settings: the file's, with the options given on the command line
winning. Everything that can be checked before a call is checked for every target before
the first call to any of them (`manifest_views`, `preflight`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tyksync.config import Config, EnvironmentConfig, find_config, load_config
from tyksync.connection import ConnectionSettings, read_secret
from tyksync.errors import ConfigError, ConfigProblems, TyksyncError
from tyksync.escape import printable
from tyksync.fileutil import STATE_DIR
from tyksync.manifest import (
    Manifests,
    check_environment_names,
    check_no_environments,
    for_environment,
    load_manifests,
)
from tyksync.urls import is_loopback

ENV_VARIABLE = "TYKSYNC_ENV"
DEFAULT_TIMEOUT = 30.0


def sandbox_state(name: str) -> Path:
    """Where `--sandbox` keeps environment NAME's sandbox: one state file each, so that
    two environments never share (and confuse) their ids."""
    return STATE_DIR / f"sandbox-{name}.json"


@dataclass(frozen=True)
class Overrides:
    """The connection options given on the command line: they win over tyksync.toml.
    None (or False) for an option not given there; a value from a variable of section 2
    (TYK_DASHBOARD_URL, TYK_DASHBOARD_SECRET_FILE) is not an override of an environment."""

    dashboard: str | None = None
    secret_file: Path | None = None
    ca_bundle: Path | None = None
    insecure: bool = False
    sandbox: bool = False
    sandbox_state: Path | None = None
    timeout: float | None = None
    max_response_mb: int = 512  # not in tyksync.toml: the command line's, for every one


@dataclass(frozen=True)
class Target:
    """One Dashboard to run against: environment `name`, or (None) section 2's one."""

    name: str | None
    settings: ConnectionSettings
    config: Config | None = None
    manifest_paths: tuple[Path, ...] = ()  # the environment's default PATHS

    @property
    def environment(self) -> EnvironmentConfig | None:
        return (
            None
            if self.config is None or self.name is None
            else self.config.environments[self.name]
        )


def select(
    *,
    config_path: Path | None,
    names: Sequence[str],
    all_envs: bool,
    environ: Mapping[str, str],
    overrides: Overrides,
) -> list[Target] | None:
    """The environments selected, or None when none is (section 2's single Dashboard).

    Raises ConfigError for a selection that cannot run: no config, a bad config, an
    unknown name, or an option that names one Dashboard given with several environments.
    """
    if names and all_envs:
        raise ConfigError("--env and --all-envs: choose one")
    from_variable = False
    if not names and not all_envs:
        default = environ.get(ENV_VARIABLE, "").strip()
        if not default:
            return None
        names, from_variable = [default], True
    found = find_config(config_path)
    if found is None:
        how = f"{ENV_VARIABLE}={names[0]}" if from_variable else "--env/--all-envs"
        raise ConfigError(
            f"{how}: no tyksync.toml in the current directory; create one (see "
            "examples/tyksync.toml) or pass --config PATH"
        )
    config = load_config(found)
    chosen = list(config.names) if all_envs else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in config.environments]
    if unknown:
        how = f"{ENV_VARIABLE}=" if from_variable else "--env "
        raise ConfigError(
            f"{how}{unknown[0]}: unknown environment ({config.shown} defines: "
            f"{', '.join(config.names)})"
        )
    if len(chosen) > 1:
        one_only = [
            ("--dashboard", overrides.dashboard is not None),
            ("--secret-file", overrides.secret_file is not None),
            ("--sandbox-state", overrides.sandbox_state is not None),
        ]
        for option, given in one_only:
            if given:
                raise ConfigError(
                    f"{option} names one Dashboard and {len(chosen)} environments are "
                    "selected; select one with --env NAME"
                )
    return [_target(config, config.environments[name], overrides) for name in chosen]


def _target(config: Config, env: EnvironmentConfig, given: Overrides) -> Target:
    sandbox = given.sandbox or (env.sandbox and given.dashboard is None)
    dashboard = given.dashboard if given.dashboard or sandbox else env.dashboard
    secret_env = None if given.secret_file else env.secret_env
    settings = ConnectionSettings(
        dashboard=dashboard,
        secret_file=given.secret_file or env.secret_file,
        secret_env=secret_env,
        ca_bundle=given.ca_bundle or env.ca_bundle,
        insecure=given.insecure or env.insecure,
        sandbox=sandbox,
        sandbox_state=given.sandbox_state or sandbox_state(env.name),
        timeout=given.timeout or env.timeout or DEFAULT_TIMEOUT,
        max_response_mb=given.max_response_mb,
    )
    return Target(env.name, settings, config, env.manifests)


def single(settings: ConnectionSettings) -> Target:
    """Section 2's one Dashboard."""
    return Target(None, settings)


def manifest_views(
    targets: Sequence[Target],
    paths: Sequence[Path],
    *,
    config: Config | None = None,
    offline: bool = False,
) -> list[Manifests]:
    """The manifests each target sees: PATHS, else its environment's `manifests`, loaded
    and checked offline for every target before any call.

    With no environment selected, a manifest limited to some is an error, unless
    `offline` (validate checks the files, not what a Dashboard gets); `config` then checks
    the `environments:` names against a tyksync.toml found all the same."""
    loaded: dict[tuple[Path, ...], Manifests] = {}
    views: list[Manifests] = []
    for target in targets:
        key = tuple(paths) or target.manifest_paths
        if not key:
            raise ConfigError(
                f"give manifest PATHS, or set `manifests` for environment {target.name} "
                f"in {target.config.shown if target.config else 'tyksync.toml'}"
            )
        if key not in loaded:
            manifests = load_manifests(key)
            known = target.config or config
            if known is not None:
                check_environment_names(manifests, known.names, known.shown)
            loaded[key] = manifests
        if target.name is None:
            if not offline:
                check_no_environments(loaded[key])
            views.append(loaded[key])
        else:
            views.append(for_environment(loaded[key], target.name))
    return views


def preflight(targets: Sequence[Target], environ: Mapping[str, str]) -> None:
    """What connecting to each environment needs and can be checked without a call: its
    secret (named by its variable or file), its CA bundle, and no plain http:// to another
    machine without `insecure`. Every problem of every target is reported at once, before
    the first call to any Dashboard."""
    problems: list[str] = []
    for target in targets:
        if target.name is None or target.settings.sandbox:
            continue
        settings = target.settings
        try:
            read_secret(settings.secret_file, environ, secret_env=settings.secret_env)
        except TyksyncError as e:
            problems.append(f"environment {target.name}: {printable(str(e))}{_source(target)}")
        url = urlsplit(settings.dashboard or "")
        cleartext = url.scheme.lower() == "http" and not is_loopback(url.hostname or "")
        if cleartext and not settings.insecure:
            problems.append(
                f"environment {target.name}: the Dashboard is plain http:// to a host "
                "other than this machine: its secret and any issued key would travel in "
                "clear; use https:// (or insecure = true / --insecure)"
            )
        bundle = settings.ca_bundle
        if bundle is not None and not settings.insecure and not bundle.is_file():
            shown = printable(str(bundle))
            problems.append(f"environment {target.name}: ca_bundle {shown}: no such file")
    if problems:
        raise ConfigProblems(problems)


def _source(target: Target) -> str:
    """Where the secret's variable or file is named, for a missing-secret message."""
    env, config = target.environment, target.config
    if env is None or config is None:
        return ""
    if target.settings.secret_env is not None:
        return f" ({env.where('secret_env', config)})"
    if target.settings.secret_file is not None and target.settings.secret_file == env.secret_file:
        return f" ({env.where('secret_file', config)})"
    return ""


def named(targets: Sequence[Target]) -> bool:
    """Environments are in use (even one): outputs name them."""
    return any(t.name is not None for t in targets)


def with_environment(error: TyksyncError, target: Target) -> TyksyncError:
    """`error`, marked as raised while running `target` (the CLI names it)."""
    if target.name is not None and error.environment is None:
        error.environment = target.name
    return error


__all__ = [
    "ENV_VARIABLE",
    "Overrides",
    "Target",
    "manifest_views",
    "named",
    "preflight",
    "sandbox_state",
    "select",
    "single",
    "with_environment",
]

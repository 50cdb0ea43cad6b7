"""From connection settings to a client: the Dashboard, or the embedded sandbox.

The secret is read from the environment or a file, never from an option's value, so it
never shows in a process list or a shell history.
"""

from __future__ import annotations

import logging
import stat
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tyksync import redact
from tyksync.errors import ConfigError
from tyksync.escape import printable
from tyksync.fileutil import DEFAULT_SANDBOX_STATE
from tyksync.urls import is_loopback, url_label

if TYPE_CHECKING:
    from tyksync.client import DashboardClient

log = logging.getLogger("tyksync")

MIB = 1024 * 1024


@dataclass(frozen=True)
class ConnectionSettings:
    dashboard: str | None = None
    secret_file: Path | None = None
    ca_bundle: Path | None = None
    insecure: bool = False
    sandbox: bool = False
    sandbox_state: Path = DEFAULT_SANDBOX_STATE
    timeout: float = 30.0  # seconds for a whole answer, connect to last byte
    max_response_mb: int = 512
    # The variable holding the secret (an environment's `secret_env`, tyksync.toml); None:
    # TYK_DASHBOARD_SECRET, or the file TYK_DASHBOARD_SECRET_FILE names (section 2).
    secret_env: str | None = None


@dataclass(frozen=True)
class Connection:
    client: DashboardClient
    label: str  # what plans record as `dashboard`: the URL, or the sandbox's state file


@contextmanager
def connect(settings: ConnectionSettings, env: Mapping[str, str]) -> Iterator[Connection]:
    # Here, not at the top: `validate` and `schema` import this module and make no call.
    from tyksync.client import DashboardClient

    if settings.sandbox:
        if settings.dashboard:
            raise ConfigError("--sandbox and --dashboard/TYK_DASHBOARD_URL: choose one")
        from tyksync.sandbox import embedded_sandbox

        with embedded_sandbox(settings.sandbox_state) as sandbox:
            client = DashboardClient(
                sandbox.url,
                sandbox.secret,
                timeout=(5.0, settings.timeout),
                max_response_bytes=settings.max_response_mb * MIB,
            )
            try:
                yield Connection(client, f"sandbox:{settings.sandbox_state}")
            finally:
                client.close()
        return

    url = settings.dashboard
    if not url:
        raise ConfigError(
            "no Dashboard: set TYK_DASHBOARD_URL or pass --dashboard URL "
            "(or try tyksync on the embedded sandbox with --sandbox)"
        )
    secret = read_secret(settings.secret_file, env, secret_env=settings.secret_env)
    verify: bool | str = True
    if settings.insecure:
        log.warning(
            "--insecure: TLS certificates are NOT verified; anyone on the path can read "
            "the Dashboard secret and the keys issued"
        )
        verify = False
        import urllib3

        # We said it once, loudly; urllib3 would otherwise repeat it on every call.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    elif settings.ca_bundle is not None:
        if not settings.ca_bundle.is_file():
            raise ConfigError(f"--ca-bundle {settings.ca_bundle}: no such file")
        verify = str(settings.ca_bundle)
    client = DashboardClient(
        url,
        secret,
        verify=verify,
        timeout=(5.0, settings.timeout),
        max_response_bytes=settings.max_response_mb * MIB,
    )
    # After the client accepted the URL as one, before any call.
    if settings.insecure:
        _warn_cleartext(url)
    elif _cleartext(url):
        client.close()
        raise ConfigError(
            f"{url_label(url)} is plain http:// to a host other than this machine: the "
            "Dashboard secret and any issued key would travel in clear; use https:// (or "
            "--insecure to send them in clear anyway)"
        )
    try:
        yield Connection(client, url_label(url))
    finally:
        client.close()


def read_secret(
    secret_file: Path | None, env: Mapping[str, str], *, secret_env: str | None = None
) -> str:
    if secret_env is not None and secret_file is None:
        # An environment's own variable: no fallback to the single-Dashboard ones, which
        # may hold another Dashboard's secret.
        named = env.get(secret_env, "")
        if not named:
            raise ConfigError(
                f"no Dashboard secret: the variable {secret_env} is not set (or empty)"
            )
        return _checked(named.rstrip("\r\n"), secret_env)
    path = secret_file or (
        Path(env["TYK_DASHBOARD_SECRET_FILE"]) if env.get("TYK_DASHBOARD_SECRET_FILE") else None
    )
    if path is not None:
        try:
            mode = path.stat().st_mode
            raw = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                f"secret file {printable(str(path))}: cannot read it: {e.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"secret file {printable(str(path))}: not UTF-8 text") from None
        # Writable matters too: whoever can change the file chooses which Dashboard user
        # tyksync acts as.
        exposed = [
            word
            for word, bits in (("read", stat.S_IRGRP | stat.S_IROTH), ("changed", _WRITABLE))
            if mode & bits
        ]
        if exposed:
            log.warning(
                "secret file %s can be %s by other users (mode %o); run chmod 600 %s",
                path,
                " and ".join(exposed),
                stat.S_IMODE(mode),
                path,
            )
        return _checked(raw.rstrip("\r\n"), f"secret file {printable(str(path))}")
    secret = env.get("TYK_DASHBOARD_SECRET", "")
    if not secret:
        raise ConfigError(
            "no Dashboard secret: set TYK_DASHBOARD_SECRET, or TYK_DASHBOARD_SECRET_FILE / "
            "--secret-file to a file holding it"
        )
    # CI secret stores often keep the newline pasted with the value.
    return _checked(secret.rstrip("\r\n"), "TYK_DASHBOARD_SECRET")


def _checked(secret: str, source: str) -> str:
    """The secret, registered for redaction; refused (never quoted) if a header cannot
    carry it."""
    redact.register(secret)
    if not secret:
        raise ConfigError(f"{source} is empty")
    if not secret.isprintable():
        raise ConfigError(f"{source} holds a line break or other control character")
    try:
        secret.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{source} holds characters an HTTP header cannot carry (not Latin-1; a "
            "byte-order mark?)"
        ) from None
    return secret


_WRITABLE = stat.S_IWGRP | stat.S_IWOTH


def _cleartext(url: str) -> bool:
    """Plain http:// to another machine."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback(parts.hostname or "")


def _warn_cleartext(url: str) -> None:
    if _cleartext(url):
        log.warning(
            "%s is plain http:// to a host other than this machine: the Dashboard secret and "
            "any issued key travel in clear; use https://",
            url_label(url),
        )

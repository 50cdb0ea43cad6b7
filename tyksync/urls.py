"""URLs as tyksync shows and judges them: no credentials in a label, and which hosts are
this machine. Kept apart from the client so that commands that make no call (`validate`,
`schema`) do not import an HTTP library to print or check a URL."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    """This machine: 127.0.0.0/8, ::1 or localhost."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_label(url: str) -> str:
    """The URL without credentials, query or fragment, for plans and messages."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def proxy_label(proxy: str) -> str:
    """A proxy URL without its credentials; requests reads one without a scheme as http."""
    return url_label(proxy if "://" in proxy else f"http://{proxy}")

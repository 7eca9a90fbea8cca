"""URL helpers shared by the server drivers."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, safe for errors and logs.

    Query parameters named like a secret (``password``, ``sslpassword``, ...) are masked too.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if has_password else f"{user}@{hostport}"
    query = "&".join(
        f"{name}=***" if "password" in name.lower() or "secret" in name.lower() else pair
        for pair in parts.query.split("&")
        if pair
        for name in [pair.partition("=")[0]]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

"""URL helpers shared by the drivers and the command line."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["redact_url"]

_SECRET_WORDS = ("password", "secret", "token")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, safe for errors and logs.

    Query parameters named like a secret (``password``, ``sslpassword``, ``token``, ...) are
    masked too. Everything else is left exactly as written (``sqlite:////abs.db`` stays so).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    redacted = url
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            redacted = redacted.replace(parts.netloc, f"{user}:***@{hostport}", 1)
    if parts.query:
        masked = "&".join(
            f"{pair.partition('=')[0]}=***"
            if any(word in pair.partition("=")[0].lower() for word in _SECRET_WORDS)
            else pair
            for pair in parts.query.split("&")
        )
        if masked != parts.query:
            head, _, tail = redacted.partition("?")
            redacted = f"{head}?{tail.replace(parts.query, masked, 1)}"
    return redacted

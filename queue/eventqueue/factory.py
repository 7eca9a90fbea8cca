"""``create_queue``: pick a backend from a path or URL and wrap it in :class:`EventQueue`.

URLs:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``;
  query ``synchronous=FULL|NORMAL`` (default FULL) and ``poll_interval_ms`` (default 20).
- ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``); query ``namespace``
  (default ``eventqueue``) prefixes every key.
- ``postgresql://user@host:port/dbname`` (or ``postgres://``); query ``namespace`` (default
  ``eventqueue``, letters, digits and ``_``) prefixes the tables and the NOTIFY channel. Other
  query parameters go to libpq.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventqueue.backends.base import QueueBackend
from eventqueue.backends.sqlite import SQLiteBackend
from eventqueue.entry import Clock, system_clock
from eventqueue.errors import ValidationError
from eventqueue.front import EventQueue

__all__ = ["create_queue"]

_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def _positive_int(name: str, value: object) -> int:
    if type(value) is not int or value <= 0:
        raise ValidationError(f"{name} must be a positive int of milliseconds, not {value!r}")
    return value


def _split_query(query: str, ours: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """Return (our options, the remaining query string)."""
    mine: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in ours:
            mine[name] = value
        else:
            rest.append((name, value))
    return mine, urlencode(rest)


def _namespace(options: dict[str, str]) -> str:
    namespace = options.get("namespace", "eventqueue")
    if _NAMESPACE.fullmatch(namespace) is None:
        raise ValidationError(
            f"namespace {namespace!r} must be 1-40 letters, digits or '_',"
            " not starting with a digit"
        )
    return namespace


def _sqlite_from_url(url: str) -> SQLiteBackend:
    parts = urlsplit(url)
    options, rest = _split_query(parts.query, ("synchronous", "poll_interval_ms"))
    if rest:
        raise ValidationError(f"unknown sqlite:// option(s): {rest}")
    if parts.netloc:
        raise ValidationError(
            "a sqlite:// URL has no host: use sqlite:///relative or sqlite:////absolute"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ValidationError("the sqlite:// URL names no file")
    poll_ms = options.get("poll_interval_ms", "20")
    if not poll_ms.isdigit() or int(poll_ms) == 0:
        raise ValidationError(f"poll_interval_ms must be a positive integer, not {poll_ms!r}")
    return SQLiteBackend(
        path, synchronous=options.get("synchronous", "FULL"), poll_interval=int(poll_ms) / 1000
    )


def backend_from_url(url: str) -> QueueBackend:
    """Return the (unopened) backend a queue URL names."""
    if type(url) is not str:
        raise ValidationError(f"url must be a str, not {type(url).__name__}")
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        return _sqlite_from_url(url)
    if scheme in ("redis", "rediss", "unix"):
        from eventqueue.backends.redis import RedisBackend

        parts = urlsplit(url)
        options, rest = _split_query(parts.query, ("namespace",))
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        return RedisBackend(plain, namespace=_namespace(options))
    if scheme in ("postgresql", "postgres"):
        from eventqueue.backends.postgresql import PostgreSQLBackend

        parts = urlsplit(url)
        options, rest = _split_query(parts.query, ("namespace",))
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        return PostgreSQLBackend(plain, namespace=_namespace(options))
    raise ValidationError(
        f"unknown queue URL scheme {scheme!r}: use sqlite://, redis:// or postgresql://"
    )


def create_queue(
    path: str = "./data/queue.db",
    *,
    url: str | None = None,
    retention_ms: int = 86_400_000,
    cleanup_interval_ms: int = 300_000,
    clock: Clock | None = None,
) -> EventQueue:
    """Return an unopened :class:`EventQueue`; it connects on first use or in ``async with``.

    ``path`` is a SQLite file (its folder is created) or ``":memory:"``; ``url`` (which wins
    over ``path``) picks a backend: ``sqlite:///...``, ``redis://...`` or ``postgresql://...``.
    Events older than ``retention_ms`` are deleted every ``cleanup_interval_ms`` and by
    ``cleanup()``. ``clock`` returns int milliseconds; it stamps events and acks (inject a fake
    one in tests). No I/O happens here.
    """
    retention_ms = _positive_int("retention_ms", retention_ms)
    cleanup_interval_ms = _positive_int("cleanup_interval_ms", cleanup_interval_ms)
    if clock is not None and not callable(clock):
        raise ValidationError("clock must be a callable returning int milliseconds")
    if url is not None:
        backend = backend_from_url(url)
    else:
        if type(path) is not str or not path:
            raise ValidationError(f"path must be a non-empty str, not {path!r}")
        backend = SQLiteBackend(path)
    return EventQueue(
        backend,
        retention_ms=retention_ms,
        cleanup_interval_ms=cleanup_interval_ms,
        clock=clock or system_clock,
    )

"""``create_queue``: pick a backend from a path or URL and wrap it in :class:`EventQueue`.

URLs are read by :mod:`kvstore.urls`, the one URL module, and a ``sqlite://`` URL means what it
means to the kvstore SQLite driver (:func:`kvstore.sqlite_common.parse_sqlite_url`, same
defaults):

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``, and
  ``sqlite://`` alone for an in-memory database; ``sqlite:///`` with an empty path is refused.
  The path is percent-decoded. Options: ``synchronous`` (default ``NORMAL``, as for kvstore),
  ``busy_timeout`` (seconds, default 30, as for kvstore) and ``poll_interval_ms`` (default 20).
- ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``): option ``namespace``
  (default ``eventqueue``) prefixes every key; other options go to redis-py.
- ``redis+cluster://host:port,host:port/``: a Redis Cluster (any reachable nodes; the rest are
  discovered), option ``namespace`` as for ``redis://``; no other options.
- ``postgresql://user@host:port/dbname`` (or ``postgres://``): option ``namespace`` (default
  ``eventqueue``, letters, digits and ``_``) prefixes the tables and the NOTIFY channel; other
  options go to libpq.

A bad URL, option or argument raises :class:`kvstore.errors.ConfigurationError` (no secret in
its message); bad *data* (a topic, an event) raises :class:`eventqueue.ValidationError` later.
"""

from __future__ import annotations

import re
from pathlib import Path

from eventqueue.backends.base import QueueBackend
from eventqueue.backends.sqlite import SQLiteBackend
from eventqueue.entry import Clock, system_clock
from eventqueue.front import EventQueue

# One distribution: kvstore is always installed beside eventqueue.
from kvstore.errors import ConfigurationError
from kvstore.home import data_file
from kvstore.sqlite_common import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_SYNCHRONOUS,
    URL_OPTIONS,
    parse_sqlite_url,
)
from kvstore.urls import (
    ParsedURL,
    parse_url,
    positive_int,
    redact_url,
    refuse_url_as_path,
    split_options,
)

__all__ = ["backend_from_url", "create_queue", "default_queue_path"]

_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_SQLITE_OPTIONS = {**URL_OPTIONS, "poll_interval_ms": positive_int}
_DEFAULT_POLL_MS = 20


def default_queue_path() -> Path:
    """Return the default queue file: ``$AGENTX_DIR/data/queue.db`` or ``~/.agentx/data/queue.db``.

    The same AgentX home as the storage's default file (:mod:`kvstore.home`).
    """
    return data_file("queue.db")


def _positive_int(name: str, value: object) -> int:
    if type(value) is not int or value <= 0:
        raise ConfigurationError(f"{name} must be a positive int of milliseconds, not {value!r}")
    return value


def _namespace(url: str, parsed: ParsedURL) -> str:
    namespace = parsed.options.get("namespace", "eventqueue")
    if _NAMESPACE.fullmatch(namespace) is None:
        raise ConfigurationError(
            f"{redact_url(url)!r}: namespace {namespace!r} must be 1-40 letters, digits or '_',"
            " not starting with a digit"
        )
    return namespace


def _without_namespace(url: str) -> str:
    """Return ``url`` with its ``namespace`` option removed, for the client library."""
    return split_options(url, ("namespace",))[0]


def _sqlite_from_url(url: str) -> SQLiteBackend:
    read = parse_sqlite_url(url, _SQLITE_OPTIONS, where="eventqueue sqlite")
    options = read.options
    return SQLiteBackend(
        read.path,
        synchronous=options.get("synchronous", DEFAULT_SYNCHRONOUS),
        busy_timeout=options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT),
        poll_interval=options.get("poll_interval_ms", _DEFAULT_POLL_MS) / 1000,
    )


def backend_from_url(url: str) -> QueueBackend:
    """Return the (unopened) backend a queue URL names; see the module docstring."""
    if type(url) is not str:
        raise ConfigurationError(f"url must be a str, not {type(url).__name__}")
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        return _sqlite_from_url(url)
    if scheme in ("redis", "rediss", "unix"):
        parsed = parse_url(url, schemes=("redis", "rediss", "unix"))
        namespace = _namespace(url, parsed)
        from eventqueue.backends.redis import RedisBackend

        return RedisBackend(_without_namespace(url), namespace=namespace)
    if scheme == "redis+cluster":
        parsed = parse_url(url, schemes=("redis+cluster",), multi_host=True)
        namespace = _namespace(url, parsed)
        from eventqueue.backends.redis import RedisBackend

        return RedisBackend(_without_namespace(url), namespace=namespace)
    if scheme in ("postgresql", "postgres"):
        parsed = parse_url(url, schemes=("postgresql", "postgres"), multi_host=True)
        namespace = _namespace(url, parsed)
        from eventqueue.backends.postgresql import PostgreSQLBackend

        return PostgreSQLBackend(_without_namespace(url), namespace=namespace)
    raise ConfigurationError(
        f"{redact_url(url)!r}: unknown queue URL scheme {scheme!r}: use sqlite://, redis:// or "
        "postgresql://"
    )


def create_queue(
    path: str | None = None,
    *,
    url: str | None = None,
    retention_ms: int = 86_400_000,
    cleanup_interval_ms: int = 300_000,
    clock: Clock | None = None,
) -> EventQueue:
    """Return an unopened :class:`EventQueue`; it connects on first use or in ``async with``.

    ``path`` is a SQLite file or ``":memory:"``; without it (and without ``url``) the queue
    lives in ``$AGENTX_DIR/data/queue.db`` (``~/.agentx/data/queue.db`` when ``AGENTX_DIR`` is
    unset), beside the storage's default file. The file's folder is created when the queue
    opens. ``url`` (which wins over ``path``) picks a backend: ``sqlite://...``, ``redis://...``
    or ``postgresql://...`` (see the module docstring). Events older than ``retention_ms`` are
    deleted every ``cleanup_interval_ms`` and by ``cleanup()``. ``clock`` returns int
    milliseconds; it stamps events and acks (inject a fake one in tests). A bad argument, URL
    or option raises :class:`kvstore.errors.ConfigurationError`. No I/O happens here.
    """
    retention_ms = _positive_int("retention_ms", retention_ms)
    cleanup_interval_ms = _positive_int("cleanup_interval_ms", cleanup_interval_ms)
    if clock is not None and not callable(clock):
        raise ConfigurationError("clock must be a callable returning int milliseconds")
    if url is not None:
        backend = backend_from_url(url)
    elif path is None:
        backend = SQLiteBackend(str(default_queue_path()))
    else:
        if type(path) is not str or not path:
            raise ConfigurationError(f"path must be a non-empty str, not {path!r}")
        refuse_url_as_path(path, "path", "pass it as create_queue(url=...)")
        backend = SQLiteBackend(path)
    return EventQueue(
        backend,
        retention_ms=retention_ms,
        cleanup_interval_ms=cleanup_interval_ms,
        clock=clock or system_clock,
    )

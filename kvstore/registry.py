"""URL schemes mapped to drivers, built in or registered by third parties.

A scheme maps to a factory ``from_url(url) -> Driver``, named by a dotted path so that a driver's
module (and its optional client library) is imported only when a URL asks for it. Third-party
packages add schemes through the ``kvstore.drivers`` entry point group::

    [project.entry-points."kvstore.drivers"]
    dynamo = "kvstore_dynamo:from_url"

or at run time with :func:`register_driver`.

Installed plugins are listed once per process (reading every distribution's metadata costs
milliseconds), and each scheme's factory is looked up once: a URL after the first costs a dict
lookup. :func:`register_driver` still adds or overrides a scheme at any time, since schemes
registered at run time are consulted before the cache.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from kvstore.driver import Driver
from kvstore.errors import MissingDependency, UnknownScheme
from kvstore.urls import redact_url

__all__ = ["DriverFactory", "driver_from_url", "register_driver", "registered_schemes"]

DriverFactory = Callable[[str], Driver]

ENTRY_POINT_GROUP = "kvstore.drivers"
DISTRIBUTION = "agentx-persistence"


@dataclass(frozen=True, slots=True)
class _Builtin:
    target: str
    extra: str | None


_BUILTINS: dict[str, _Builtin] = {
    "memory": _Builtin("kvstore.drivers.memory:from_url", None),
    "sqlite": _Builtin("kvstore.drivers.sqlite:from_url", None),
    "file": _Builtin("kvstore.drivers.fs:from_url", None),
    "redis": _Builtin("kvstore.drivers.redis:from_url", "redis"),
    "rediss": _Builtin("kvstore.drivers.redis:from_url", "redis"),
    "redis+cluster": _Builtin("kvstore.drivers.redis_cluster:from_url", "redis"),
    "mongodb": _Builtin("kvstore.drivers.mongodb:from_url", "mongodb"),
    "mongodb+srv": _Builtin("kvstore.drivers.mongodb:from_url", "mongodb"),
    "postgresql": _Builtin("kvstore.drivers.postgresql:from_url", "postgresql"),
    "postgres": _Builtin("kvstore.drivers.postgresql:from_url", "postgresql"),
    "mysql": _Builtin("kvstore.drivers.mysql:from_url", "mysql"),
    "mariadb": _Builtin("kvstore.drivers.mysql:from_url", "mysql"),
}

_registered: dict[str, DriverFactory] = {}
# The installed plugins' entry points by scheme, read once (None until first needed), and the
# factory found for each scheme so far (built in, plugin or fsspec; never a registered one).
_plugins: dict[str, EntryPoint] | None = None
_resolved: dict[str, DriverFactory] = {}


def register_driver(scheme: str, factory: DriverFactory) -> None:
    """Make ``create_storage`` hand URLs with ``scheme`` to ``factory``; replaces any earlier."""
    _registered[scheme.lower()] = factory


def registered_schemes() -> list[str]:
    """Return every scheme a URL may use, built in, registered or from entry points, sorted."""
    schemes = set(_BUILTINS) | set(_registered)
    schemes.update(_plugin_points())
    return sorted(schemes)


def _scan_plugins() -> dict[str, EntryPoint]:
    """Read the installed distributions' ``kvstore.drivers`` entry points (slow: all metadata)."""
    points: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        points.setdefault(point.name.lower(), point)  # the first one wins, as before
    return points


def _plugin_points() -> dict[str, EntryPoint]:
    """The installed plugins' entry points by scheme, scanned once per process."""
    global _plugins
    if _plugins is None:
        _plugins = _scan_plugins()
    return _plugins


def _scheme_of(url: str) -> str:
    scheme, separator, _ = url.partition("://")
    if not separator or not scheme:
        raise UnknownScheme(
            f"{redact_url(url)!r} is not a URL: expected scheme://..., one of "
            f"{', '.join(registered_schemes())}"
        )
    return scheme.lower()


def _load(target: str) -> DriverFactory:
    module_name, _, attribute = target.partition(":")
    factory: DriverFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def _resolve(scheme: str) -> DriverFactory:
    registered = _registered.get(scheme)
    if registered is not None:
        return registered
    factory = _resolved.get(scheme)
    if factory is None:
        # Failures are not cached: installing the missing extra in a running process works.
        factory = _resolved[scheme] = _find(scheme)
    return factory


def _find(scheme: str) -> DriverFactory:
    point = _plugin_points().get(scheme)
    if point is not None:
        plugin: DriverFactory = point.load()
        return plugin
    builtin = _BUILTINS.get(scheme)
    if builtin is not None:
        try:
            return _load(builtin.target)
        except MissingDependency:
            raise
        except ImportError as error:  # pragma: no cover - depends on what is installed
            hint = f"pip install '{DISTRIBUTION}[{builtin.extra}]'" if builtin.extra else ""
            raise MissingDependency(
                f"the {scheme}:// driver cannot be imported ({error}); {hint}".rstrip("; ")
            ) from error
    fs_factory = _fsspec_factory(scheme)
    if fs_factory is not None:
        return fs_factory
    raise UnknownScheme(
        f"no driver handles {scheme}:// URLs; known schemes: {', '.join(registered_schemes())}"
        " (plus any fsspec protocol, or fs+PROTOCOL:// for fsspec's own)"
    )


def _fsspec_factory(scheme: str) -> DriverFactory | None:
    """Hand ``fs+PROTO://`` and other fsspec protocols (``s3://``, ...) to the fs driver."""
    from fsspec.registry import known_implementations, registry

    protocol = scheme.removeprefix("fs+")
    if protocol not in known_implementations and protocol not in registry:
        return None
    return _load("kvstore.drivers.fs:from_url")


def driver_from_url(url: str) -> Driver:
    """Return a new, unopened driver for ``url``.

    Raises :class:`UnknownScheme` for a scheme nothing handles and :class:`MissingDependency`,
    naming the ``pip install`` to run, when the driver's optional client library is missing.
    """
    if not isinstance(url, str):
        raise UnknownScheme(f"a storage URL must be a str, not {type(url).__name__}")
    return _resolve(_scheme_of(url))(url)

"""Reading a PostgreSQL connection string the way libpq reads it, with no secret in any error.

Two spellings reach the PostgreSQL driver: a URL (``postgresql://`` or ``postgres://``) and a
libpq ``key=value`` string (``host=db port=5432 password='it\\'s'``). Both become one mapping of
libpq keywords plus the driver's own options, checked against the keywords the installed libpq
knows, before libpq sees any of it: libpq's own parser quotes fragments of the text in its
errors (``missing "=" after "ret"``, where ``ret`` may be the end of a password), while
:mod:`kvstore.urls` reads both spellings with the same rules and never shows a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kvstore.errors import ConfigurationError
from kvstore.urls import is_secret_option, parse_conninfo, parse_url, take_options

try:
    from psycopg import pq
except ImportError:  # pragma: no cover - the driver module reports the missing extra
    pq = None  # type: ignore[assignment]

__all__ = ["ConnectionSettings", "read_connection_string"]

URL_SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
# libpq keywords that the URL's own parts set: giving one again as an option is ambiguous.
_URL_PARTS = {"host", "port", "user", "password", "dbname"}


def _libpq_keywords() -> frozenset[str]:
    """The connection keywords of the libpq psycopg runs on (they grow between versions)."""
    if pq is None:  # pragma: no cover
        return frozenset()
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


LIBPQ_KEYWORDS = _libpq_keywords()


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """A connection string, read: libpq keywords, the driver's options, and where it points."""

    libpq: dict[str, str]
    options: dict[str, Any]
    where: str


def read_connection_string(
    text: str, own_options: Mapping[str, Callable[[str], Any]], *, where: str
) -> ConnectionSettings:
    """Split ``text`` (a URL or a ``key=value`` string) into libpq keywords and our options.

    ``own_options`` maps each of the driver's option names to its value parser; a name that
    is neither one of them nor a libpq keyword raises :class:`ConfigurationError`, as does any
    malformed text. No message holds a value from ``text`` other than option names.
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"{where}: the connection string must be a str")
    # libpq's rule: a URL when it starts with a scheme, else key=value pairs.
    pairs = _url_pairs(text) if "://" in text.split("=", 1)[0] else parse_conninfo(text)
    known = LIBPQ_KEYWORDS | own_options.keys()
    unknown = sorted(name for name in pairs if name not in known)
    if unknown:
        # With a secret in the text, an unknown name may be a piece of that secret (one that
        # held a raw space or '&'): name only the unknown names that look like secrets.
        carries_secret = any(is_secret_option(name) for name in pairs)
        shown = [repr(name) for name in unknown if not carries_secret or is_secret_option(name)]
        if len(shown) < len(unknown):
            shown.append(
                f"{len(unknown) - len(shown)} not named because the text holds a password "
                "(quote a value holding spaces as 'a b', percent-encode '&' in a URL as %26)"
            )
        raise ConfigurationError(
            f"{where}: unknown connection option(s) {', '.join(shown)}; known: "
            f"{', '.join(sorted(own_options))} and libpq's ({', '.join(sorted(LIBPQ_KEYWORDS))})"
        )
    ours = {name: pairs.pop(name) for name in list(pairs) if name in own_options}
    options = take_options(ours, own_options, where=where)
    return ConnectionSettings(pairs, options, _location(pairs))


def _url_pairs(url: str) -> dict[str, str]:
    parsed = parse_url(url, schemes=URL_SCHEMES, multi_host=True, default_port=DEFAULT_PORT)
    pairs: dict[str, str] = {}
    if parsed.hosts:
        pairs["host"] = ",".join(host for host, _ in parsed.hosts)
        if any(port is not None for _, port in parsed.hosts):
            pairs["port"] = ",".join(str(port or DEFAULT_PORT) for _, port in parsed.hosts)
    if parsed.username:
        pairs["user"] = parsed.username
    if parsed.password is not None:
        pairs["password"] = parsed.password
    if parsed.path:
        pairs["dbname"] = parsed.path
    for name, value in parsed.options.items():
        if name in _URL_PARTS and name in pairs:
            raise ConfigurationError(
                f"postgresql: {name!r} is set both by the URL itself and by ?{name}=; give it once"
            )
        pairs[name] = value
    return pairs


def _location(pairs: Mapping[str, str]) -> str:
    """``host:port/dbname`` (hosts joined by commas), for errors and repr: never a secret."""
    hosts = (pairs.get("host") or pairs.get("hostaddr") or "localhost").split(",")
    ports = (pairs.get("port") or str(DEFAULT_PORT)).split(",")
    if len(ports) < len(hosts):
        ports += [ports[-1]] * (len(hosts) - len(ports))
    shown = ",".join(
        f"{f'[{host}]' if ':' in host else host}:{port or DEFAULT_PORT}"
        for host, port in zip(hosts, ports, strict=False)
    )
    return f"{shown}/{pairs.get('dbname') or pairs.get('user') or ''}"

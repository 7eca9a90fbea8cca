"""Reading a PostgreSQL connection string the way libpq reads it, with no secret in any error.

Two spellings reach the PostgreSQL driver: a URL (``postgresql://`` or ``postgres://``) and a
libpq ``key=value`` string (``host=db port=5432 password='it''s'``). Both become one mapping of
libpq keywords plus the driver's own options, checked against the keywords the installed libpq
knows. libpq's own parser quotes fragments of the text in its errors (``missing "=" after
"ret"``, where ``ret`` may be the end of a password), so the ``key=value`` grammar is read here,
following libpq's ``conninfo_parse`` rule for rule, and errors name positions, never values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kvstore.errors import ConfigurationError
from kvstore.urls import parse_url, take_options

try:
    from psycopg import pq
except ImportError:  # pragma: no cover - the driver module reports the missing extra
    pq = None  # type: ignore[assignment]

__all__ = ["ConnectionSettings", "read_connection_string"]

URL_SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
# libpq keywords that the URL's own parts set: giving one again as an option is ambiguous.
_URL_PARTS = {"host", "port", "user", "password", "dbname"}
# libpq keywords whose value is a secret (never shown); the rest are names, paths and modes.
SECRET_KEYWORDS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)


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
    if "://" in text.split("=", 1)[0]:
        pairs = _url_pairs(text)
    else:
        pairs = _keyword_pairs(text, where=where)
    unknown = sorted(name for name in pairs if name not in LIBPQ_KEYWORDS and name not in own_options)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown connection option(s) {', '.join(map(repr, unknown))}; known: "
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


def _keyword_pairs(text: str, *, where: str) -> dict[str, str]:
    """Read libpq's ``key = value`` grammar: values bare or single-quoted, ``\\`` escapes."""
    pairs: dict[str, str] = {}
    position, end = 0, len(text)
    while True:
        while position < end and text[position].isspace():
            position += 1
        if position == end:
            return pairs
        start = position
        while position < end and text[position] != "=" and not text[position].isspace():
            position += 1
        name = text[start:position]
        while position < end and text[position].isspace():
            position += 1
        if position == end or text[position] != "=":
            raise ConfigurationError(
                f"{where}: the connection string has no '=' after the word at character "
                f"{start + 1}; write key=value pairs, quoting values with spaces ('...')"
            )
        position += 1
        while position < end and text[position].isspace():
            position += 1
        value: list[str] = []
        if position < end and text[position] == "'":
            position += 1
            while True:
                if position == end:
                    raise ConfigurationError(
                        f"{where}: the connection string has an unterminated quoted value "
                        f"for {name!r}"
                    )
                character = text[position]
                if character == "\\" and position + 1 < end:
                    value.append(text[position + 1])
                    position += 2
                elif character == "'":
                    position += 1
                    break
                else:
                    value.append(character)
                    position += 1
        else:
            while position < end and not text[position].isspace():
                if text[position] == "\\":
                    position += 1  # the next character, whatever it is, is data
                    if position == end:
                        break
                value.append(text[position])
                position += 1
        if not name:
            raise ConfigurationError(f"{where}: the connection string has a value with no name")
        if name in pairs:
            # libpq would keep the last one silently; two spellings of one setting is ambiguous.
            raise ConfigurationError(f"{where}: {name!r} is given twice in the connection string")
        pairs[name] = "".join(value)


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

"""Storage URLs split the way their client libraries split them, checked, and redacted.

One module for every driver and the command line, so that a URL means the same thing and is
masked the same way everywhere:

- :func:`parse_url` splits a server URL as ``urllib.parse`` does (which redis-py, psycopg,
  PyMySQL users and PyMongo follow), and refuses what a client library would read differently
  from what the user meant: an unencoded ``@``, ``/``, ``?`` or ``#`` in a password, a port out
  of range, a bad IPv6 literal, an option given twice. Every refusal is a
  :class:`~kvstore.errors.ConfigurationError` whose message holds no secret.
- :func:`take_options` converts the query options a driver knows and refuses the others.
- :func:`split_options` takes a layer's own options (wrappers, the queue's namespace) off a
  URL's text, leaving the rest exactly as written for the driver or client library.
- :func:`redact_url` masks the secrets in a URL, a libpq ``key=value`` string or text that does
  not parse, by structure: the parsed password and secret-named values are replaced whole, and
  nothing else is touched.
- :func:`parse_conninfo` reads a libpq ``key=value`` connection string as libpq does.
- :func:`refuse_url_as_path` stops a URL given where a file path belongs.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote, unquote_plus

from kvstore.errors import ConfigurationError

__all__ = [
    "MASK",
    "ParsedURL",
    "boolean",
    "is_secret_option",
    "parse_conninfo",
    "parse_url",
    "positive_float",
    "positive_int",
    "redact_url",
    "refuse_url_as_path",
    "split_options",
    "take_options",
]

MASK: Final = "***"
"""What stands in for a secret in redacted text."""

_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# RFC 3986 reg-name characters (unreserved, sub-delimiters, percent-encodings), except ','
# which separates the hosts of a multi-host URL; letters beyond ASCII too (IDNA host names,
# which the clients encode when they resolve them).
_HOST_NAME: Final = re.compile(r"[\w.~!$&'()*+;=%\-]*")
_PORT: Final = re.compile(r"[0-9]+")
_CONNINFO_START: Final = re.compile(r"\s*[^\s=]+\s*=")
_OPTION_START: Final = re.compile(r"[?&]([^=&?#]*)=")

# Option and connection-string names whose value is a secret, compared case-insensitively
# with '-' read as '_': exact names, then parts of names. A name ending in "key" is a secret
# too (api_key, access_key, sslkey): masking a harmless value costs nothing.
_SECRET_NAMES: Final = frozenset(
    {"pass", "pwd", "sig", "auth", "sas", "credential", "credentials"}
)
_SECRET_PARTS: Final = (
    "signature",  # X-Amz-Signature, X-Goog-Signature: presigned URLs
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "authmechanismproperties",
)


def is_secret_option(name: str) -> bool:
    """Say whether a query option or connection-string keyword named ``name`` holds a secret.

    True for ``password``, ``sslpassword``, ``passwd``, ``pwd``, ``pass``, anything holding
    ``secret``, ``token``, ``passphrase``, ``credential`` or ``signature`` (signed storage
    URLs: ``X-Amz-Signature``), names ending in ``key`` (``api_key``, ``access_key``,
    ``sslkey``), ``sig`` and ``sas``, ``auth`` and PyMongo's ``authMechanismProperties``;
    case-insensitive.
    """
    folded = name.strip().lower().replace("-", "_")
    return (
        folded in _SECRET_NAMES
        or folded.endswith("key")
        or any(part in folded for part in _SECRET_PARTS)
    )


@dataclass(frozen=True, slots=True, repr=False)
class ParsedURL:
    """A server URL split the way the client libraries split it, percent-decoded.

    ``hosts`` holds ``(host, port)`` pairs in the order written: IPv6 addresses without their
    brackets, ports within 1..65535 or ``None`` when neither the URL nor ``default_port`` gave
    one; it is empty when the URL names no host (the client's default then applies), and a
    host is ``""`` when the URL gives only a port (``redis://:6380``). ``path`` is decoded and
    has no leading ``/``. ``options`` are the query parameters, decoded (``+`` reads as a
    space, as in ``urllib.parse.parse_qsl``). ``repr()`` shows the redacted URL only.
    """

    scheme: str
    username: str | None
    password: str | None
    hosts: tuple[tuple[str, int | None], ...]
    path: str
    options: dict[str, str]

    def redacted(self) -> str:
        """Return the URL rebuilt with the password and secret options as ``***``.

        Options are shown as parsed: call it after the driver has accepted them (an option a
        driver refuses may be a piece of a secret that held an unencoded ``&``).
        """
        userinfo = ""
        if self.username is not None or self.password is not None:
            userinfo = quote(self.username or "", safe="")
            if self.password is not None:
                userinfo += f":{MASK}"
            userinfo += "@"
        query = "&".join(
            f"{quote(name, safe='')}={MASK if is_secret_option(name) else quote(value, safe='')}"
            for name, value in self.options.items()
        )
        path = quote(self.path, safe="/:")
        tail = f"/{path}" if path or query else ""
        return f"{self.scheme}://{userinfo}{self.where_hosts()}{tail}{'?' if query else ''}{query}"

    def where_hosts(self) -> str:
        """Return the hosts as written in a URL (``a:1,[::1]:2``): no user name, no password.

        Drivers name this as the ``where`` of a :class:`~kvstore.errors.BackendError`.
        """
        return ",".join(_host_text(host, port) for host, port in self.hosts)

    def __repr__(self) -> str:
        return f"ParsedURL({self.redacted()!r})"


def _host_text(host: str, port: int | None) -> str:
    # Written back as parse_url reads it: percent-encoded, an IPv6 zone's '%' as %25.
    shown = f"[{host.replace('%', '%25')}]" if ":" in host else quote(host, safe="!$&'()*+;=~")
    return shown if port is None else f"{shown}:{port}"


def parse_url(
    url: str,
    *,
    schemes: Collection[str],
    multi_host: bool = False,
    default_port: int | None = None,
) -> ParsedURL:
    """Split ``url`` as the client libraries do, refusing what they would misread.

    Raises :class:`~kvstore.errors.ConfigurationError`, whose message never holds a secret, for
    a scheme not in ``schemes`` (compared case-insensitively), text that is not
    ``SCHEME://...``, a control character, a ``%`` that starts no percent-encoding, a port that
    is not 1..65535, a bad IPv6 literal or one without brackets, several hosts when
    ``multi_host`` is false (or an empty one when it is true), an unencoded ``@`` in the user
    information or any ``@`` after a host or user (a password holding an unencoded ``/``,
    ``?`` or ``#``; a URL with nothing between ``//`` and the path may hold ``@`` in its path),
    a fragment, and a query option without ``=`` or given twice. A host written without
    a port gets ``default_port``.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a storage URL must be a str, not {type(url).__name__}")
    match = _SCHEME.match(url)
    if match is None:
        raise ConfigurationError(f"{_shown(url)} is not a URL: expected SCHEME://...")
    scheme = match.group(1).lower()
    allowed = sorted({name.lower() for name in schemes})
    if scheme not in allowed:
        expected = " or ".join(f"{name}://" for name in allowed)
        raise ConfigurationError(f"{_shown(url)}: expected a {expected} URL")
    if _CONTROL.search(url):
        raise ConfigurationError(f"{_shown(url)}: a URL cannot hold control characters")
    rest = url[match.end() :]
    authority, tail = _split_authority(rest)
    # With no authority there is no password to split ('sqlite:////home/me@corp/x.db').
    if authority and "@" in tail:
        raise ConfigurationError(
            f"{_shown(url)}: an '@' after the host; percent-encode '@', '/', '?' and '#' in a "
            "user name or password (%40, %2F, %3F, %23)"
        )
    if "#" in tail:
        raise ConfigurationError(
            f"{_shown(url)}: a URL fragment ('#...') means nothing here; write '#' as %23"
        )
    if _BAD_PERCENT.search(rest):
        raise ConfigurationError(
            f"{_shown(url)}: a '%' that starts no percent-encoding; write '%' itself as %25"
        )
    userinfo, at, hostinfo = authority.rpartition("@")
    if "@" in userinfo:
        raise ConfigurationError(
            f"{_shown(url)}: more than one '@' before the host; percent-encode '@' in a user "
            "name or password as %40"
        )
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = _parse_hosts(hostinfo, url, multi_host=multi_host, default_port=default_port)
    path, _, query = tail.partition("?")
    return ParsedURL(
        scheme=scheme,
        username=username,
        password=password,
        hosts=hosts,
        path=unquote(path[1:]),
        options=_parse_query(query, url),
    )


def _split_authority(rest: str) -> tuple[str, str]:
    """Split after ``scheme://`` where urllib does: at the first ``/``, ``?`` or ``#``."""
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    return rest[:end], rest[end:]


def _parse_hosts(
    hostinfo: str, url: str, *, multi_host: bool, default_port: int | None
) -> tuple[tuple[str, int | None], ...]:
    if not hostinfo:
        return ()
    pieces = hostinfo.split(",")
    if len(pieces) > 1 and not multi_host:
        raise ConfigurationError(f"{_shown(url)}: this URL takes one host, not {len(pieces)}")
    hosts = []
    for piece in pieces:
        if not piece:
            raise ConfigurationError(f"{_shown(url)}: an empty host in the host list")
        host, port = _parse_host(piece, url)
        hosts.append((host, default_port if port is None else port))
    return tuple(hosts)


def _parse_host(piece: str, url: str) -> tuple[str, int | None]:
    """Read ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; never echo the port text."""
    port_text: str | None
    if piece.startswith("["):
        close = piece.find("]")
        if close == -1:
            raise ConfigurationError(f"{_shown(url)}: an IPv6 address opened with '[' never closes")
        literal, after = unquote(piece[1:close]), piece[close + 1 :]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise ConfigurationError(
                f"{_shown(url)}: {literal!r} in brackets is not an IPv6 address"
            ) from None
        if after and not after.startswith(":"):
            raise ConfigurationError(
                f"{_shown(url)}: only ':PORT' may follow an IPv6 address in brackets"
            )
        host, port_text = literal, (after[1:] if after else None)
    else:
        name, colon, port_part = piece.partition(":")
        if ":" in port_part:
            raise ConfigurationError(
                f"{_shown(url)}: write an IPv6 address in brackets, like [::1]:6379"
            )
        if "[" in name or "]" in name or not _HOST_NAME.fullmatch(name):
            raise ConfigurationError(
                f"{_shown(url)}: {name!r} is not a host name (characters a host cannot hold)"
            )
        host, port_text = unquote(name), (port_part if colon else None)
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(
            f"{_shown(url)}: the port of host {host!r} must be a number from 1 to 65535"
        )
    return host, int(port_text)


def _parse_query(query: str, url: str) -> dict[str, str]:
    options: dict[str, str] = {}
    secret_seen = False
    for pair in query.split("&"):
        if not pair:
            continue  # "a=1&&b=2" and a trailing "&", as parse_qsl reads them
        raw_name, equals, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        # After a secret option, a name may be a piece of a secret that held a raw '&'.
        shown = repr(name) if not secret_seen or is_secret_option(name) else "an option"
        if not equals or not name:
            what = "an option without a name" if not name else f"option {shown} has no value"
            raise ConfigurationError(f"{_shown(url)}: {what} (write NAME=VALUE)")
        if name in options:
            raise ConfigurationError(f"{_shown(url)}: option {shown} is given twice")
        options[name] = unquote_plus(raw_value)
        secret_seen = secret_seen or is_secret_option(name)
    return options


def _shown(url: str) -> str:
    return repr(redact_url(url))


# -- options --------------------------------------------------------------------------------


def split_options(url: str, names: Collection[str]) -> tuple[str, dict[str, str]]:
    """Return ``url`` without the query options named in ``names``, and those options' values.

    Values are percent-decoded, not converted. Every other byte of the URL stays as written, so
    the driver or client library parses the rest as if the options had never been there. One of
    ``names`` given twice or without a value raises :class:`ConfigurationError`.
    """
    head, question, query = url.partition("?")
    if not question:
        return url, {}
    query, hash_mark, fragment = query.partition("#")
    kept: list[str] = []
    taken: dict[str, str] = {}
    for pair in query.split("&"):
        raw_name, equals, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        if name not in names:
            kept.append(pair)
            continue
        if not equals:
            raise ConfigurationError(
                f"{redact_url(url)!r}: option {name!r} has no value (write NAME=VALUE)"
            )
        if name in taken:
            raise ConfigurationError(f"{redact_url(url)!r}: option {name!r} is given twice")
        taken[name] = unquote_plus(raw_value)
    rest = "&".join(kept)
    return f"{head}{'?' if rest else ''}{rest}{hash_mark}{fragment}", taken


def take_options(
    options: Mapping[str, str],
    parsers: Mapping[str, Callable[[str], Any]],
    *,
    where: str,
) -> dict[str, Any]:
    """Convert each option with its parser, refusing options not in ``parsers``.

    Returns ``{name: parsed value}`` for the options given. A parser's ``ValueError`` or
    ``TypeError`` becomes a :class:`~kvstore.errors.ConfigurationError` naming the option; an
    option not in ``parsers`` raises one naming it and listing the known ones. ``where`` names
    the driver in messages. No message holds a secret value: when the options carry a secret,
    values and the names of unknown non-secret options (possible pieces of a secret that held an
    unencoded ``&``) are left out.
    """
    carries_secret = any(is_secret_option(name) for name in options)
    unknown = [name for name in options if name not in parsers]
    if unknown:
        shown = [repr(n) for n in unknown if not carries_secret or is_secret_option(n)]
        hidden = len(unknown) - len(shown)
        if hidden:
            shown.append(
                f"{hidden} not named because the URL holds a secret option (percent-encode "
                "'&' as %26 in a secret value)"
            )
        known = ", ".join(sorted(parsers)) or "none"
        raise ConfigurationError(
            f"unknown {where} URL option {', '.join(shown)}; known options: {known}"
        )
    taken: dict[str, Any] = {}
    for name, text in options.items():
        try:
            taken[name] = parsers[name](text)
        except (ValueError, TypeError) as error:
            detail = "" if carries_secret else f": {error}"
            raise ConfigurationError(f"bad {where} URL option {name!r}{detail}") from None
    return taken


def positive_float(text: str) -> float:
    """Parse a finite number greater than 0 (seconds); raise ``ValueError`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number greater than 0, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """Parse a whole number of at least 1; raise ``ValueError`` otherwise."""
    if not _PORT.fullmatch(text.strip()):
        raise ValueError(f"not a whole number: {text!r}")
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


def boolean(text: str) -> bool:
    """Parse ``true/false``, ``1/0``, ``yes/no`` or ``on/off`` (any case)."""
    folded = text.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError(f"not true or false: {text!r}")


# -- libpq key=value strings -----------------------------------------------------------------


class _Malformed(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


def _conninfo_values(text: str) -> Iterator[tuple[str, str, int, int]]:
    """Yield ``(keyword, value, start, end)`` as libpq's ``conninfo_parse`` reads them.

    ``start:end`` is the value's span in ``text``, quotes included. Raises :class:`_Malformed`
    at the position where libpq would give up.
    """
    position, length = 0, len(text)
    while True:
        while position < length and text[position].isspace():
            position += 1
        if position == length:
            return
        start = position
        while position < length and not text[position].isspace() and text[position] != "=":
            position += 1
        keyword = text[start:position]
        while position < length and text[position].isspace():
            position += 1
        if position == length or text[position] != "=":
            raise _Malformed(start, f'missing "=" after keyword {keyword!r}')
        position += 1
        while position < length and text[position].isspace():
            position += 1
        value_start = position
        chars: list[str] = []
        quoted = position < length and text[position] == "'"
        if quoted:
            position += 1
        while True:
            if position == length:
                if quoted:
                    raise _Malformed(value_start, "unterminated quoted value")
                break
            char = text[position]
            if char == "\\" and position + 1 < length:
                chars.append(text[position + 1])
                position += 2
                continue
            if quoted and char == "'":
                position += 1
                break
            if not quoted and char.isspace():
                break
            chars.append(char)
            position += 1
        yield keyword, "".join(chars), value_start, position


def parse_conninfo(text: str) -> dict[str, str]:
    """Read a libpq ``key=value`` connection string (``host=db password='a b'``) as libpq does.

    Values are unquoted and unescaped. Raises :class:`~kvstore.errors.ConfigurationError`,
    naming no value, for a keyword without ``=``, an unterminated quoted value or a keyword
    given twice.
    """
    values: dict[str, str] = {}
    try:
        for keyword, value, _, _ in _conninfo_values(text):
            if keyword in values:
                raise ConfigurationError(
                    f"connection string {redact_url(text)!r}: {keyword!r} is given twice"
                )
            values[keyword] = value
    except _Malformed as error:
        reason = "cannot be read" if error.reason.startswith("missing") else error.reason
        raise ConfigurationError(
            f"connection string {redact_url(text)!r}: {reason} (write key=value pairs "
            "separated by spaces, quoting a value that holds spaces as 'a b')"
        ) from None
    return values


# libpq's connection keywords (PostgreSQL 17). After a secret value, a keyword libpq does not
# know may be a piece of that secret (a raw space in it): such pairs are masked whole.
_LIBPQ_KEYWORDS: Final = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "sslnegotiation",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    }
)


def _redact_conninfo(text: str) -> str:
    pieces: list[str] = []
    kept = 0
    secret_seen = False
    try:
        for keyword, _, start, end in _conninfo_values(text):
            if secret_seen and keyword not in _LIBPQ_KEYWORDS:
                keyword_start = text.rindex(keyword, kept, start)
                pieces += [text[kept:keyword_start], MASK]
                kept = end
            elif is_secret_option(keyword):
                pieces += [text[kept:start], MASK]
                kept = end
                secret_seen = True
    except _Malformed as error:
        # Whatever libpq could not read may be part of a password: hide all of it.
        return "".join(pieces) + text[kept : error.position] + MASK
    return "".join(pieces) + text[kept:]


# -- redaction -------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Return ``url`` (any text) with every secret it may hold replaced by ``***``; never raises.

    It may be a URL of any scheme: its password, a port that is not a port (a password
    whose ``@HOST`` was left out), a fragment, and the value of the first secret-named query
    option are masked, everything after that option too (an unencoded ``&``, ``#`` or ``@``
    may have split the secret). It may be a libpq ``key=value`` string: values of secret
    keywords are masked, quoted ones included, then any keyword libpq does not know, and
    everything from where libpq could not read it. A URL whose password holds an unencoded
    ``/``, ``?`` or ``#`` has everything between ``://`` and the last ``@`` masked; text with a
    ``://`` after something that is not a scheme has everything after ``://`` masked. Only whole
    values are masked, never parts of other words; text with nothing to hide comes back
    unchanged (``sqlite:////abs.db`` stays so).
    """
    try:
        return _redact(url)
    except Exception:  # a redactor that raised would leave the caller to print the text
        return f"<text hidden: it may hold a secret ({MASK})>"


def _redact(text: str) -> str:
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    match = _SCHEME.match(text)
    if match is None:
        if _CONNINFO_START.match(text):
            return _redact_conninfo(text)
        if "://" in text:
            # Not a URL anything reads, yet shaped like one: nothing after '://' is safe.
            return text[: text.index("://") + 3] + MASK
        return text
    text = _cut_at_secret_option(text, match.end())
    head = text[: match.end()]
    authority, tail = _split_authority(text[match.end() :])
    if authority and "@" in tail:
        # An unencoded '/', '?' or '#' in a password ends the authority early: hide it all.
        return _redact(head + MASK + text[text.rindex("@") :])
    userinfo, at, hostinfo = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if colon:
            userinfo = f"{user}:{MASK}"
    authority = f"{userinfo}{at}{_redact_ports(hostinfo)}"
    before_fragment, hash_mark, fragment = tail.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    if question_mark:
        query = _redact_query(query)
    if hash_mark and fragment:
        fragment = MASK
    return f"{head}{authority}{path}{question_mark}{query}{hash_mark}{fragment}"


def _cut_at_secret_option(text: str, start: int) -> str:
    """Mask the value of the first secret-named query option and everything after it.

    Done before anything else is split, because an unencoded '@', '&' or '#' in that value
    would otherwise move where the host or the next option seems to start.
    """
    for found in _OPTION_START.finditer(text, start):
        if is_secret_option(unquote_plus(found.group(1))):
            return text[: found.end()] + MASK
    return text


def _redact_ports(hostinfo: str) -> str:
    """Mask a port that is not one: it may be a password whose '@HOST' was left out."""
    pieces = hostinfo.split(",")
    for index, piece in enumerate(pieces):
        head, colon, port = piece.rpartition(":")
        if head.startswith("[") and not head.endswith("]"):
            continue  # a colon inside an IPv6 address
        if colon and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
            pieces[index] = f"{head}:{MASK}"
    return ",".join(pieces)


def _redact_query(query: str) -> str:
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, equals, _ = pair.partition("=")
        if equals and is_secret_option(unquote_plus(name)):
            pairs[index] = f"{name}={MASK}"
    return "&".join(pairs)


# ``scheme://``: what starts every URL of a store, and no file path anyone means to write.
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def refuse_url_as_path(path: object, what: str, instead: str) -> None:
    """Raise :class:`ConfigurationError` when ``path``, a file path, is written as a URL.

    Taken as a path, ``postgresql://host/db`` is a SQLite file in a folder named
    ``postgresql:`` under the current directory: the data would go to the wrong place without
    a word. ``what`` names the argument, ``instead`` says what takes a URL. The URL is shown
    redacted.
    """
    if isinstance(path, str) and _URL_START.match(path):
        raise ConfigurationError(
            f"{what} {redact_url(path)!r} is a URL, not a file path: {instead}"
        )

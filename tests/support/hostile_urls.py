"""Hostile passwords, spelled as users write them, in URLs and DSNs of every supported scheme.

A drawn password is ``a + MARK + b + MARK + c`` where ``a``, ``b`` and ``c`` are drawn from
characters that mean something in a URL or DSN. Wherever a parser splits the password (at an
``@``, ``/``, ``?``, ``#``, ``&``, space or quote), each piece still holds a whole ``MARK`` on
one side of the split: so ``MARK`` absent from a text proves that no piece of the password
is in it, not only that the whole password is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

__all__ = [
    "ALL_SPELLINGS",
    "LOCAL_SCHEMES",
    "MARK",
    "SCHEMES",
    "SECRET_OPTIONS",
    "SERVER_SCHEMES",
    "HostileURL",
    "conninfo_with",
    "hostile_passwords",
    "hostile_urls",
    "secret_option_url",
    "spell",
    "url_with",
]

MARK = "Zq9SEKRIT"

# Every character with a meaning in a URL, a query string or a libpq DSN.
SPECIALS = " @/:%#?&=+;,\"'\\[]{}()<>!$*^`|~"

SERVER_SCHEMES = (
    "redis",
    "rediss",
    "postgresql",
    "postgres",
    "mysql",
    "mariadb",
    "mongodb",
    "mongodb+srv",
)
LOCAL_SCHEMES = ("memory", "sqlite", "file", "fs+memory")
SCHEMES = SERVER_SCHEMES + LOCAL_SCHEMES
# Every scheme, plus a PostgreSQL password in the query and a libpq key=value string.
ALL_SPELLINGS = (*SCHEMES, "postgresql-query", "libpq")

_piece = st.text(
    alphabet=st.sampled_from(SPECIALS)
    | st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
    max_size=6,
)


@st.composite
def hostile_passwords(draw: st.DrawFn) -> str:
    """A password of printable characters holding two ``MARK`` between hostile pieces."""
    return draw(_piece) + MARK + draw(_piece) + MARK + draw(_piece)


# How a user writes a password into a URL: encoded, as typed, or half encoded (the '@' fixed
# after a first error, the rest left as typed).
SPELLINGS = ("encoded", "raw", "at-only")


def spell(password: str, spelling: str) -> str:
    """Write ``password`` into a URL's user information the way ``spelling`` says."""
    if spelling == "encoded":
        return quote(password, safe="")
    if spelling == "at-only":
        return password.replace("@", "%40")
    return password


def url_with(scheme: str, written: str, *, probe: bool = False) -> str:
    """A URL of ``scheme`` with user ``user`` and the password as ``written``.

    Server URLs point at 127.0.0.1 port 1, where nothing listens. With ``probe`` they also
    carry an option no driver knows, so that a driver that checks its options refuses the URL
    before any I/O. The pseudo-scheme ``postgresql-query`` puts the password in the query.
    """
    query = "?kvstore_probe=1" if probe else ""
    if scheme == "postgresql-query":
        return f"postgresql://user@127.0.0.1:1/db?password={written}" + query.replace("?", "&")
    if scheme == "mongodb+srv":  # SRV URLs take no port
        return f"{scheme}://user:{written}@cluster.invalid/db{query}"
    if scheme in SERVER_SCHEMES:
        path = "0" if scheme.startswith("redis") else "db"
        return f"{scheme}://user:{written}@127.0.0.1:1/{path}{query}"
    if scheme == "sqlite":
        return f"sqlite://user:{written}@/x.db"
    if scheme == "file":
        return f"file://user:{written}@host/dir"
    return f"{scheme}://user:{written}@name"


# Query options whose value is a secret although no driver takes them: signed-URL and API
# tokens that users paste along with a URL. Each must be masked wherever the URL is shown.
SECRET_OPTIONS = ("token", "api_key", "access_token", "X-Amz-Signature")


def secret_option_url(scheme: str, option: str, secret: str) -> str:
    """A URL of ``scheme`` (no password in its user information) carrying ``?option=secret``.

    ``secret`` is percent-encoded, so that the option reaches every parser whole.
    """
    written = quote(secret, safe="")
    if scheme == "libpq":
        return f"host=127.0.0.1 port=1 dbname=db {option}='{secret}'"
    if scheme == "postgresql-query":
        return f"postgresql://user@127.0.0.1:1/db?application_name=x&{option}={written}"
    local = {"memory": "memory://", "sqlite": "sqlite:///x.db", "file": "file:///kvstore-dir"}
    base = local.get(scheme) or url_with(scheme, "").replace("user:@", "user@")
    base = base.replace("fs+memory://user@", "fs+memory://")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}{option}={written}"


def conninfo_with(password: str, spelling: str) -> str:
    """A libpq ``key=value`` string whose password is quoted as libpq wants, or as typed."""
    if spelling == "raw":
        value = password
    else:
        value = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"host=127.0.0.1 port=1 user=user password={value} dbname=db connect_timeout=2"


@dataclass(frozen=True, slots=True)
class HostileURL:
    """A drawn URL (or DSN), with the password it holds and how it was spelled."""

    scheme: str
    password: str
    spelling: str
    url: str


@st.composite
def hostile_urls(
    draw: st.DrawFn, schemes: tuple[str, ...] = ALL_SPELLINGS, *, probe: bool = False
) -> HostileURL:
    """A URL (or DSN, for ``libpq``) of one of ``schemes`` holding a hostile password."""
    scheme = draw(st.sampled_from(schemes))
    password = draw(hostile_passwords())
    spelling = draw(st.sampled_from(SPELLINGS))
    if scheme == "libpq":
        return HostileURL(scheme, password, spelling, conninfo_with(password, spelling))
    written = spell(password, spelling)
    return HostileURL(scheme, password, spelling, url_with(scheme, written, probe=probe))


def probed_hostile_urls(schemes: tuple[str, ...]) -> st.SearchStrategy[tuple[HostileURL, bool]]:
    """A hostile URL, and whether it also carries an option no driver knows."""
    return st.booleans().flatmap(
        lambda probe: hostile_urls(schemes, probe=probe).map(lambda case: (case, probe))
    )

"""kvstore.urls: URLs split as the client libraries split them, and secrets never shown.

The parser's promises (what it accepts, what it refuses and that no refusal quotes a secret),
the option helpers', and redaction's: structural (whole values, never parts of other words),
never raising, and hiding every piece of a hostile password in every spelling of every scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.errors import ConfigurationError
from kvstore.urls import (
    MASK,
    ParsedURL,
    boolean,
    is_secret_option,
    parse_conninfo,
    parse_url,
    positive_float,
    positive_int,
    redact_url,
    take_options,
)
from tests.support.hostile_urls import (
    MARK,
    SERVER_SCHEMES,
    HostileURL,
    conninfo_with,
    hostile_passwords,
    hostile_urls,
    url_with,
)

SERVERS = ["redis", "rediss", "postgresql", "postgres", "mysql", "mariadb", "mongodb"]


# -- parse_url: what it reads --------------------------------------------------------------------


def test_a_full_url_is_split_and_decoded() -> None:
    parsed = parse_url(
        "PostgreSQL://us%40er:p%40ss%2Fw%3Ard@db.example:6543/my%20db?sslmode=require&x=a+b",
        schemes=["postgresql"],
    )
    assert parsed.scheme == "postgresql"
    assert parsed.username == "us@er"
    assert parsed.password == "p@ss/w:rd"
    assert parsed.hosts == (("db.example", 6543),)
    assert parsed.path == "my db"
    assert parsed.options == {"sslmode": "require", "x": "a b"}


def test_a_colon_in_the_password_needs_no_encoding() -> None:
    # urllib (and so redis-py and psycopg) split the user information at the first ':'.
    parsed = parse_url("redis://user:pa:ss@h/0", schemes=["redis"])
    assert (parsed.username, parsed.password) == ("user", "pa:ss")


def test_a_raw_space_and_quotes_in_the_password_are_kept() -> None:
    parsed = parse_url("""mysql://u:a b'"c@h/db""", schemes=["mysql"])
    assert parsed.password == """a b'"c"""


@pytest.mark.parametrize(
    ("url", "username", "password"),
    [
        ("redis://h", None, None),
        ("redis://:pw@h", None, "pw"),
        ("redis://user@h", "user", None),
        ("redis://user:@h", "user", ""),
    ],
)
def test_user_and_password_are_none_when_absent(
    url: str, username: str | None, password: str | None
) -> None:
    parsed = parse_url(url, schemes=["redis"])
    assert (parsed.username, parsed.password) == (username, password)


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("redis://", ()),
        ("redis:///0", ()),
        ("redis://h", (("h", 6379),)),
        ("redis://h:1", (("h", 1),)),
        ("redis://h:65535", (("h", 65535),)),
        ("redis://[::1]", (("::1", 6379),)),
        ("redis://[::1]:7000/0", (("::1", 7000),)),
        ("redis://[fe80::1%25eth0]:7000", (("fe80::1%eth0", 7000),)),
        ("redis://:6380", (("", 6380),)),
        ("redis://%2Ftmp%2Fredis.sock", (("/tmp/redis.sock", 6379),)),
        ("redis://bücher.example:1", (("bücher.example", 1),)),
        ("redis://my_host", (("my_host", 6379),)),
    ],
)
def test_hosts_ports_and_ipv6(url: str, hosts: tuple[tuple[str, int | None], ...]) -> None:
    assert parse_url(url, schemes=["redis"], default_port=6379).hosts == hosts


def test_a_port_is_none_without_a_default() -> None:
    assert parse_url("mysql://h/db", schemes=["mysql"]).hosts == (("h", None),)


def test_multi_host_urls_keep_their_order() -> None:
    parsed = parse_url(
        "mongodb://u:p@a:1,b,[::1]:3/db?replicaSet=rs",
        schemes=["mongodb"],
        multi_host=True,
        default_port=27017,
    )
    assert parsed.hosts == (("a", 1), ("b", 27017), ("::1", 3))
    assert parsed.where_hosts() == "a:1,b:27017,[::1]:3"


def test_an_at_sign_in_the_path_is_data_when_no_host_is_given() -> None:
    assert (
        parse_url("sqlite:////home/me@corp/x.db", schemes=["sqlite"]).path == "/home/me@corp/x.db"
    )


def test_scheme_match_ignores_case_and_empty_query_pairs_are_skipped() -> None:
    parsed = parse_url("REDIS://h/0?a=1&&b=&", schemes=["Redis"])
    assert parsed.options == {"a": "1", "b": ""}


# -- parse_url: what it refuses ------------------------------------------------------------------

REFUSED = [
    # (url, kwargs, words the message must hold)
    ("redis://h:0", {}, "1 to 65535"),
    ("redis://h:65536", {}, "1 to 65535"),
    ("redis://h:-1", {}, "1 to 65535"),
    ("redis://h:6379x", {}, "1 to 65535"),
    ("redis://h:", {}, "1 to 65535"),
    ("redis://[::1", {}, "never closes"),
    ("redis://[::zz]:1", {}, "not an IPv6 address"),
    ("redis://[1.2.3.4]", {}, "not an IPv6 address"),
    ("redis://[::1]x", {}, "only ':PORT'"),
    ("redis://::1:6379", {}, "in brackets"),
    ("redis://fe80::1/0", {}, "in brackets"),
    ("redis://a,b/0", {}, "one host"),
    ("mongodb://a,,b/db", {"multi_host": True}, "empty host"),
    ("redis://ho st/0", {}, "not a host name"),
    ("redis://h/0#frag", {}, "fragment"),
    ("redis://h/0?a=1&a=2", {}, "given twice"),
    ("redis://h/0?novalue", {}, "no value"),
    ("redis://h/0?=1", {}, "without a name"),
    ("redis://h/50%", {}, "%25"),
    ("redis://u:p%zz@h/0", {}, "%25"),
    ("redis://h/0\n", {}, "control characters"),
    ("http://h/0", {}, "redis://"),
    ("redis:/h/0", {}, "not a URL"),
    ("h:6379", {}, "not a URL"),
    ("", {}, "not a URL"),
]


@pytest.mark.parametrize(("url", "kwargs", "words"), REFUSED)
def test_malformed_urls_are_refused(url: str, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url, schemes=["redis", "mongodb"], **kwargs)
    assert words in str(caught.value)


def test_a_url_that_is_not_a_str_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a str"):
        parse_url(b"redis://h", schemes=["redis"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:hun@ter2@h/0",  # '@' in the password
        "redis://user:hun/ter2@h/0",  # '/' in the password
        "redis://user:hun?ter2@h/0",  # '?' in the password
        "redis://user:hun#ter2@h/0",  # '#' in the password
        "redis://user:hunter2@h/0?x=a@b",  # '@' in an option
    ],
)
def test_ambiguous_at_signs_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="percent-encode") as caught:
        parse_url(url, schemes=["redis"])
    for piece in ("hun", "ter2"):
        assert piece not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://user:hunter2", "hunter2"),  # '@HOST' left out: the password reads as a port
        ("redis://:hunter2/0", "hunter2"),
        ("redis://h:99999999/0", "99999999"),
    ],
)
def test_a_bad_port_is_never_echoed(url: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url, schemes=["redis"])
    assert secret not in str(caught.value)


def test_names_after_a_secret_option_are_not_echoed() -> None:
    # "password=hunter&2" typed raw: the '2' is a piece of the password.
    with pytest.raises(ConfigurationError) as caught:
        parse_url("postgresql://h/db?password=hun&ter2", schemes=["postgresql"])
    assert "ter2" not in str(caught.value)
    assert "hun" not in str(caught.value)


# -- ParsedURL -----------------------------------------------------------------------------------


def test_redacted_rebuilds_the_url_without_secrets() -> None:
    parsed = parse_url(
        "mongodb://u%40x:hunter2@a:1,[::1]:2/db?authSource=admin&token=t0k3n",
        schemes=["mongodb"],
        multi_host=True,
    )
    assert parsed.redacted() == "mongodb://u%40x:***@a:1,[::1]:2/db?authSource=admin&token=***"
    assert repr(parsed) == f"ParsedURL({parsed.redacted()!r})"
    assert "hunter2" not in repr(parsed)
    assert "t0k3n" not in repr(parsed)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://me:pw@[::1]:5433/my%20db?sslmode=require&application_name=a%26b",
        "postgresql://me:pw@[fe80::1%25eth0]:5433/db",
        "postgresql://me:pw@%2Fvar%2Frun%2Fpostgresql/db",
        "postgresql://me%40corp:pw@h/db%2Fx?options=-c%20a%3Db",
    ],
)
def test_redacted_parses_back_to_the_same_url_but_the_secrets(url: str) -> None:
    parsed = parse_url(url, schemes=["postgresql"])
    again = parse_url(parsed.redacted(), schemes=["postgresql"])
    assert again == ParsedURL(
        scheme=parsed.scheme,
        username=parsed.username,
        password=MASK,
        hosts=parsed.hosts,
        path=parsed.path,
        options=parsed.options,
    )


# -- options -------------------------------------------------------------------------------------

PARSERS: dict[str, Callable[[str], Any]] = {
    "pool_size": positive_int,
    "connect_timeout": positive_float,
    "ssl": boolean,
}


def test_take_options_converts_the_known_ones() -> None:
    taken = take_options(
        {"pool_size": "4", "connect_timeout": "2.5", "ssl": "On"}, PARSERS, where="redis"
    )
    assert taken == {"pool_size": 4, "connect_timeout": 2.5, "ssl": True}


def test_an_unknown_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        take_options({"pool_sise": "4"}, PARSERS, where="redis")
    message = str(caught.value)
    assert "'pool_sise'" in message
    assert "redis" in message
    assert "connect_timeout, pool_size, ssl" in message


def test_a_bad_value_names_the_option() -> None:
    with pytest.raises(ConfigurationError, match=r"'pool_size'.*whole number"):
        take_options({"pool_size": "many"}, PARSERS, where="redis")


def test_with_a_secret_option_no_value_and_no_unknown_name_is_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        take_options({"password": "hun", "ter2": ""}, PARSERS, where="postgresql")
    assert "ter2" not in str(caught.value)
    assert "'password'" in str(caught.value)
    parsers: dict[str, Callable[[str], Any]] = {**PARSERS, "password": str}
    with pytest.raises(ConfigurationError) as caught:
        take_options({"password": "hunter2", "pool_size": "hunter2"}, parsers, where="x")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("parser", "text", "value"),
    [
        (positive_float, "0.5", 0.5),
        (positive_float, "3", 3.0),
        (positive_int, "1", 1),
        (positive_int, " 12 ", 12),
        (boolean, "TRUE", True),
        (boolean, "yes", True),
        (boolean, "1", True),
        (boolean, "off", False),
        (boolean, "No", False),
        (boolean, "0", False),
    ],
)
def test_option_parsers_accept(parser: Any, text: str, value: object) -> None:
    assert parser(text) == value


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        (positive_float, "0"),
        (positive_float, "-1"),
        (positive_float, "nan"),
        (positive_float, "inf"),
        (positive_float, "soon"),
        (positive_float, ""),
        (positive_int, "0"),
        (positive_int, "-3"),
        (positive_int, "1.5"),
        (positive_int, "1e3"),
        (positive_int, ""),
        (boolean, "maybe"),
        (boolean, ""),
    ],
)
def test_option_parsers_refuse(parser: Any, text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parser(text)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("PASSWORD", True),
        ("sslpassword", True),
        ("passwd", True),
        ("pwd", True),
        ("pass", True),
        ("client_secret", True),
        ("token", True),
        ("access-token", True),
        ("api_key", True),
        ("sslkey", True),
        ("sig", True),
        ("X-Amz-Signature", True),
        ("x-goog-signature", True),
        ("authMechanismProperties", True),
        ("tlsCertificateKeyFilePassword", True),
        ("user", False),
        ("sslmode", False),
        ("passfile", False),
        ("authSource", False),
        ("base", False),
        ("table", False),
        ("keepalives", False),
    ],
)
def test_secret_option_names(name: str, secret: bool) -> None:
    assert is_secret_option(name) is secret


# -- libpq key=value strings ---------------------------------------------------------------------


def test_parse_conninfo_reads_as_libpq_does() -> None:
    text = r"host=db  port = 5432 password='it''s' user=me dbname='my db' options=a\ b"
    # libpq has no '' escape inside quotes: 'it' ends the value and "'s'" starts a keyword.
    with pytest.raises(ConfigurationError):
        parse_conninfo(text)
    text = r"host=db  port = 5432 password='it\'s \\ x' user=me dbname='my db' options=a\ b"
    assert parse_conninfo(text) == {
        "host": "db",
        "port": "5432",
        "password": "it's \\ x",
        "user": "me",
        "dbname": "my db",
        "options": "a b",
    }


def test_parse_conninfo_skips_spaces_after_the_equals_sign_as_libpq_does() -> None:
    assert parse_conninfo("password= host=x") == {"password": "host=x"}
    assert parse_conninfo("password=") == {"password": ""}
    assert parse_conninfo("") == {}


@pytest.mark.parametrize(
    "text",
    [
        "host=db password=hunter 2",  # a space in an unquoted value
        "host=db password='hunter 2",  # unterminated quote
        "host=db password hunter2",  # no '='
        "password=hunter2 password=hunter2",  # given twice
    ],
)
def test_bad_conninfo_is_refused_without_the_password(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_conninfo(text)
    assert "hunter" not in str(caught.value)


# -- redact_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://root:hunter2@db:5432/app", "postgresql://root:***@db:5432/app"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mysql://user@db/app", "mysql://user@db/app"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
        ("sqlite:////home/me@corp/x.db", "sqlite:////home/me@corp/x.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("memory://", "memory://"),
        (
            "postgresql://db/app?sslmode=require&password=hunter2",
            "postgresql://db/app?sslmode=require&password=***",
        ),
        # After a secret option, the rest may be pieces of it (a raw '&' in the secret).
        ("postgresql://db/app?password=hun&ter2=x", "postgresql://db/app?password=***"),
        ("mongodb://u:p%40ss@h/?authSource=admin", "mongodb://u:***@h/?authSource=admin"),
        # Structural: a word that happens to contain the password is left alone.
        (
            "postgresql://u:pt@h/db?application_name=attempt",
            "postgresql://u:***@h/db?application_name=attempt",
        ),
        ("redis://u:hun@ter2@h/0", "redis://u:***@h/0"),
        ("redis://u:hun/ter2@h/0", "redis://***@h/0"),
        ("redis://u:hun?ter2@h/0", "redis://***@h/0"),
        ("redis://u:hun#ter2@h/0", "redis://***@h/0"),
        ("redis://h/0#hunter2", "redis://h/0#***"),
        ("redis://u:hunter2", "redis://u:***"),  # '@HOST' left out: not a port
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("mongodb://u:pw@a:1,b:x/db", "mongodb://u:***@a:1,b:***/db"),
        ("redis://u:pw@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
        ("s3://bucket/path?x=1&sig=abc&y=2", "s3://bucket/path?x=1&sig=***"),
        ("bad scheme://u:pw@h", "bad scheme://***"),
        (" redis://u:hunter2", " redis://***"),
        ("password='a://b' host=h", "password=*** host=h"),
        ("host=db password=hunter2 user=me", "host=db password=*** user=me"),
        ("host=db password='hun ter2' user=me", "host=db password=*** user=me"),
        (r"password='hun\'ter2' sslpassword=x", "password=*** sslpassword=***"),
        ("host=db password=hun ter2", "host=db password=*** ***"),
        ("host=db password='hunter2", "host=db password=***"),
        ("host=db user=me", "host=db user=me"),
        ("/var/data/agentx.db", "/var/data/agentx.db"),
        ("", ""),
    ],
)
def test_redact_url_masks_only_whole_secrets(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "hunter2" not in redact_url(url)


def test_redact_url_of_something_not_a_str_does_not_raise() -> None:
    assert redact_url(None) == "<NoneType>"  # type: ignore[arg-type]


@given(st.text())
def test_redact_url_never_raises(text: str) -> None:
    assert isinstance(redact_url(text), str)


_PLAIN = st.text(alphabet="abcdefghij0123456789-._", min_size=1, max_size=8)


@given(
    scheme=st.sampled_from(SERVERS),
    user=st.none() | _PLAIN,
    host=_PLAIN,
    port=st.none() | st.integers(1, 65535),
    path=st.text(alphabet="abc/%20", max_size=8),
    options=st.dictionaries(st.sampled_from(["sslmode", "x", "base", "table"]), _PLAIN),
)
def test_a_url_without_secrets_comes_back_unchanged(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    path: str,
    options: dict[str, str],
) -> None:
    url = f"{scheme}://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{path}"
    if options:
        url += "?" + "&".join(f"{name}={value}" for name, value in options.items())
    assert redact_url(url) == url


# -- hostile passwords over every scheme ---------------------------------------------------------

_T = TypeVar("_T")


def outcome(call: Callable[[], _T]) -> _T | ConfigurationError:
    """Return what ``call`` returns, or the ConfigurationError it raises."""
    try:
        return call()
    except ConfigurationError as error:
        return error


@given(hostile_urls())
def test_redact_url_hides_every_piece_of_a_hostile_password(case: HostileURL) -> None:
    shown = redact_url(case.url)
    assert MARK not in shown, (case, shown)


@given(hostile_urls(SERVER_SCHEMES), st.booleans())
def test_parse_url_never_shows_a_hostile_password(case: HostileURL, multi_host: bool) -> None:
    parsed = outcome(lambda: parse_url(case.url, schemes=[case.scheme], multi_host=multi_host))
    if isinstance(parsed, ConfigurationError):
        assert MARK not in str(parsed), (case, str(parsed))
        assert case.spelling != "encoded", (case, str(parsed))  # a well-written URL parses
        return
    assert MARK not in repr(parsed)
    assert MARK not in parsed.redacted()
    assert MARK not in parsed.where_hosts()
    if case.spelling == "encoded":
        assert parsed.password == case.password
        assert parsed.username == "user"


@given(hostile_passwords(), st.sampled_from(["encoded", "raw"]))
def test_a_hostile_password_in_the_query_is_hidden(password: str, spelling: str) -> None:
    written = quote(password, safe="") if spelling == "encoded" else password
    url = url_with("postgresql-query", written, probe=True)
    assert MARK not in redact_url(url)
    parsed = outcome(lambda: parse_url(url, schemes=["postgresql"]))
    if isinstance(parsed, ConfigurationError):
        assert MARK not in str(parsed)
        assert spelling == "raw"
        return
    assert MARK not in repr(parsed)
    with pytest.raises(ConfigurationError) as caught:  # the driver knows no such option
        take_options(parsed.options, {"password": str}, where="postgresql")
    assert MARK not in str(caught.value)
    if spelling == "encoded":
        assert parsed.options["password"] == password


@given(hostile_passwords(), st.sampled_from(["quoted", "raw"]))
def test_a_hostile_password_in_a_conninfo_string_is_hidden(password: str, spelling: str) -> None:
    text = conninfo_with(password, spelling)
    assert MARK not in redact_url(text)
    values = outcome(lambda: parse_conninfo(text))
    if isinstance(values, ConfigurationError):
        assert MARK not in str(values)
        assert spelling == "raw"
        return
    if spelling == "quoted":
        assert values["password"] == password


# -- the same reading as urllib (and so redis-py, psycopg, SQLAlchemy, PyMySQL users) ------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12)
_HOST = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True) | st.sampled_from(
    ["::1", "fe80::1", "2001:db8::8:800:200c:417a"]
)


@given(
    username=_TEXT,
    password=_TEXT,
    host=_HOST,
    port=st.none() | st.integers(1, 65535),
    path=_TEXT,
    options=st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), _TEXT, max_size=3),
)
def test_an_encoded_url_reads_back_as_urllib_reads_it(
    username: str,
    password: str,
    host: str,
    port: int | None,
    path: str,
    options: dict[str, str],
) -> None:
    written_host = f"[{host}]" if ":" in host else host
    url = (
        f"postgresql://{quote(username, safe='')}:{quote(password, safe='')}@{written_host}"
        f"{'' if port is None else f':{port}'}/{quote(path, safe='')}"
    )
    if options:
        url += "?" + urlencode(options)
    parsed = parse_url(url, schemes=["postgresql"])
    split = urlsplit(url)
    assert parsed.username == (unquote(split.username or "") or None) == (username or None)
    assert parsed.password == unquote(split.password or "") == password
    assert parsed.hosts == ((split.hostname, split.port),)
    assert parsed.path == unquote(split.path[1:]) == path
    assert parsed.options == dict(parse_qsl(split.query, keep_blank_values=True)) == options
    again = parse_url(parsed.redacted(), schemes=["postgresql"])
    assert (again.password, again.hosts, again.path) == (MASK, parsed.hosts, parsed.path)

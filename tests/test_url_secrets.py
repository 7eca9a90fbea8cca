"""No secret of a hostile URL reaches an error, a repr, a log record or a warning.

Every supported scheme and the libpq ``key=value`` form, with Hypothesis-drawn passwords spelled
as users write them (encoded, raw, half encoded). ``create_storage`` does no I/O, so every case
runs without servers; whatever it raises is checked whole, with its chained causes, as a
traceback would print it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import traceback
import warnings
from collections.abc import Iterator

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore import Storage, create_storage
from kvstore.errors import ConfigurationError, KVStoreError
from tests.support.hostile_urls import (
    ALL_SPELLINGS,
    LOCAL_SCHEMES,
    MARK,
    SECRET_OPTIONS,
    HostileURL,
    conninfo_with,
    hostile_urls,
    secret_option_url,
    spell,
    url_with,
)

# A secret that needs no encoding anywhere, so that any copy of it, whole, is found.
SECRET = f"{MARK}-{MARK}"
# Queue URL schemes (eventqueue), and the storage schemes whose redaction the CLI repeats.
QUEUE_SCHEMES = ("sqlite", "redis", "rediss", "postgresql", "postgres", "postgresql-query")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured() -> Iterator[list[str]]:
    """Collect every log record's message and every warning's, at every level, meanwhile."""
    handler = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield handler.messages
        handler.messages += [str(warning.message) for warning in caught]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _printed(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


def _build(case: HostileURL) -> str:
    """Build a storage from ``case.url``; return every text it produced, for a leak check."""
    shown: list[str] = []
    error: Exception | None = None
    with captured() as messages:
        try:
            storage = create_storage(case.url)
        except Exception as raised:
            error = raised
        else:
            shown += [repr(storage), repr(storage.driver), str(storage.driver)]
            shown.append(str(getattr(storage.driver, "where", "")))
            _close(storage)
    if error is not None:
        shown.append(_printed(error))
        # Credentials in a local URL are refused, never made part of a path.
        expected = ConfigurationError if case.scheme in LOCAL_SCHEMES else KVStoreError
        assert isinstance(error, expected), _printed(error)
    return "\n".join(shown + messages)


def _close(storage: Storage) -> None:
    async def close() -> None:
        await storage.close()

    anyio.run(close)


@pytest.mark.parametrize("scheme", ALL_SPELLINGS)
@given(data=st.data())
def test_create_storage_never_shows_a_hostile_password(scheme: str, data: st.DataObject) -> None:
    case = data.draw(hostile_urls((scheme,)))
    shown = _build(case)
    assert MARK not in shown, (case, shown)


@pytest.mark.parametrize("scheme", ALL_SPELLINGS)
@given(data=st.data())
def test_an_unknown_option_is_refused_without_the_password(
    scheme: str, data: st.DataObject
) -> None:
    """Every driver refuses an option it does not know, before any I/O, showing no secret."""
    case = data.draw(hostile_urls((scheme,), probe=True))
    with captured() as messages, pytest.raises(KVStoreError) as caught:
        create_storage(case.url)
    assert MARK not in _printed(caught.value), case
    assert not any(MARK in message for message in messages), case


@pytest.mark.parametrize("option", SECRET_OPTIONS)
@pytest.mark.parametrize("scheme", ALL_SPELLINGS)
def test_a_secret_query_option_is_never_shown(scheme: str, option: str) -> None:
    """``?token=``, ``?api_key=`` and the like: refused by every driver, their value masked."""
    shown = _build(HostileURL(scheme, SECRET, "encoded", secret_option_url(scheme, option, SECRET)))
    assert MARK not in shown, shown


def _cli_output(argv: list[str]) -> str:
    from kvstore.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status in (1, 2), (argv, err.getvalue())
    return out.getvalue() + err.getvalue()


def _every_secret_url(scheme: str) -> list[str]:
    """A secret option of each name, a user information password, and (libpq) a conninfo one."""
    urls = [secret_option_url(scheme, option, SECRET) for option in SECRET_OPTIONS]
    if scheme == "libpq":
        urls.append(conninfo_with(SECRET, "quoted"))
    else:
        urls.append(url_with(scheme, spell(SECRET, "encoded"), probe=True))
    return urls


@pytest.mark.parametrize("scheme", ALL_SPELLINGS)
def test_the_cli_never_shows_a_secret_option_or_password(scheme: str) -> None:
    for url in _every_secret_url(scheme):
        for argv in (["--url", url, "keys"], ["migrate", "memory://", url]):
            shown = _cli_output(argv)
            assert MARK not in shown, (argv, shown)


@pytest.mark.parametrize("scheme", QUEUE_SCHEMES)
def test_a_queue_url_never_shows_a_secret_option_or_password(scheme: str) -> None:
    """The queue takes the same URLs: a refused or accepted one shows no secret either."""
    from eventqueue.factory import backend_from_url

    for url in _every_secret_url(scheme):
        with captured() as messages:
            try:
                backend = backend_from_url(url)
            except Exception as error:
                shown = _printed(error)
            else:
                shown = f"{backend.description} {backend!r}"
        assert MARK not in shown + "".join(messages), (url, shown)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the PostgreSQL driver's event loop
@pytest.mark.parametrize("form", ["url", "conninfo"])
async def test_an_accepted_secret_option_is_not_shown_when_the_server_is_unreachable(
    form: str,
) -> None:
    """``sslpassword`` is a libpq keyword the driver passes on: first use fails without it."""
    from kvstore.drivers.postgresql import postgresql_driver
    from kvstore.errors import BackendUnavailable
    from tests.support.servers import free_port

    port = free_port()
    connection_string = {
        "url": f"postgresql://user@127.0.0.1:{port}/db?sslpassword={SECRET}&connect_timeout=2",
        "conninfo": f"host=127.0.0.1 port={port} dbname=db sslpassword='{SECRET}' "
        "connect_timeout=2",
    }[form]
    with captured() as messages:
        storage = Storage(postgresql_driver(connection_string))
        shown = [repr(storage), repr(storage.driver)]
        try:
            with pytest.raises(BackendUnavailable) as raised:
                await storage.get("k")
            shown.append(_printed(raised.value))
        finally:
            await storage.close()
    assert not any(MARK in text for text in shown + messages), shown + messages

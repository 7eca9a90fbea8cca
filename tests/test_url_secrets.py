"""No secret of a hostile URL reaches an error, a repr, a log record or a warning.

Every supported scheme and the libpq ``key=value`` form, with Hypothesis-drawn passwords spelled
as users write them (encoded, raw, half encoded). ``create_storage`` does no I/O, so every case
runs without servers; whatever it raises is checked whole, with its chained causes, as a
traceback would print it.
"""

from __future__ import annotations

import contextlib
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
    HostileURL,
    hostile_urls,
)


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

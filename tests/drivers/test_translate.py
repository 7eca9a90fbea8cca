"""The one translation of client exceptions into typed errors that every driver uses."""

from __future__ import annotations

import pytest

from kvstore.drivers._translate import ErrorTable, Translator
from kvstore.errors import BackendError, BackendUnavailable


class _Refused(Exception):
    pass


class _Lost(Exception):
    pass


TABLE = ErrorTable(unavailable=(_Lost, OSError))


def test_the_table_decides_the_kind_and_the_error_names_driver_and_place() -> None:
    translator = Translator(TABLE, driver="demo", where="h:1/db")
    lost = translator.error(_Lost("connection reset"))
    refused = translator.error(_Refused("syntax error"), "writing")
    assert type(lost) is BackendUnavailable
    assert type(refused) is BackendError
    assert str(lost) == "demo at h:1/db: _Lost: connection reset"
    assert str(refused) == "demo at h:1/db: writing: _Refused: syntax error"
    assert (refused.driver, refused.where) == ("demo", "h:1/db")


def test_a_code_decides_when_the_table_has_a_predicate() -> None:
    table = ErrorTable(is_unavailable=lambda error: "busy" in str(error), describe=str)
    translator = Translator(table, driver="demo", where="/tmp/x.db")
    assert type(translator.error(OSError("busy"))) is BackendUnavailable
    assert type(translator.error(_Lost("corrupt"))) is BackendError
    failure = translator.error(_Lost("corrupt"), "reading")
    assert str(failure) == "demo at /tmp/x.db: reading: corrupt"


@pytest.mark.parametrize("secret", ["hunter2", "p@ss word"])
def test_a_message_quoting_the_password_is_never_shown(secret: str) -> None:
    translator = Translator(TABLE, driver="demo", where="h:1/db", secret=secret)
    error = translator.error(_Lost(f"auth failed for mongodb://u:{secret}@h:1"))
    assert secret not in str(error)
    assert str(error) == "demo at h:1/db: _Lost (details hidden: they held the password)"
    assert type(error) is BackendUnavailable

"""Data the library did not write is never returned as if it had.

Rows inserted into the SQLite table by hand, symbolic links and stray files in an fs tree, and
mutable buffers handed to the memory driver: drivers return only ``bytes`` values and only valid
keys; anything else is a typed error (a point read) or a skip logged under ``kvstore.``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.drivers import _fs_local
from kvstore.drivers import sqlite as sqlite_module
from kvstore.drivers.fs import FSDriver, fs_driver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import DEFAULT_TABLE, SQLiteDriver, sqlite_driver
from kvstore.errors import BackendError, InvalidKey
from kvstore.keys import all_valid_keys, validate_key
from kvstore.storage import Storage

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _keys(storage: Storage, prefix: str = "") -> list[str]:
    return [key async for key in storage.keys(prefix)]


async def _items(storage: Storage, prefix: str = "") -> list[tuple[str, bytes]]:
    return [pair async for pair in storage.items_raw(prefix)]


# -- the page check scans use ----------------------------------------------------------------


def _valid(key: object) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


_KEY_TEXT = st.text(alphabet=st.sampled_from(["a", "b", ":", "\n", "\x00", "\x7f", "é", "\ud800"]))


@given(
    st.lists(
        st.one_of(_KEY_TEXT, st.just("x" * 1025), st.just("é" * 513), st.binary(max_size=3)),
        max_size=6,
    )
)
def test_the_page_check_agrees_with_validate_key(keys: list[object]) -> None:
    assert all_valid_keys(keys) == all(_valid(key) for key in keys)


# -- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_file(tmp_path: Path) -> Path:
    """A database the driver created, holding the valid keys ``a`` and ``c``."""
    path = tmp_path / "kv.db"
    async with Storage(sqlite_driver(path)) as storage:
        await storage.set_many_raw([("a", b"A"), ("c", b"C")])
    return path


def _insert(path: Path, key: object, value: object, *, raw_sql: str | None = None) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        if raw_sql is not None:
            conn.execute(raw_sql)
        else:
            conn.execute(f'INSERT INTO "{DEFAULT_TABLE}" (key, value) VALUES (?, ?)', (key, value))


@pytest.mark.parametrize(
    ("value", "kind"),
    [("text value", "TEXT"), (42, "INTEGER"), (1.5, "REAL")],
    ids=["text", "integer", "real"],
)
async def test_a_hand_made_value_that_is_not_a_blob_is_a_typed_error_naming_the_key(
    sqlite_file: Path, value: object, kind: str
) -> None:
    _insert(sqlite_file, "b", value)
    async with Storage(sqlite_driver(sqlite_file)) as storage:
        for read in (
            lambda: storage.get_raw("b"),
            lambda: storage.get("b"),
            lambda: storage.has("b"),
            lambda: storage.get_many_raw(["a", "b"]),
            lambda: _items(storage),
        ):
            with pytest.raises(BackendError) as raised:
                await read()
            assert "'b'" in str(raised.value)
            assert kind in str(raised.value)
            # The content is never shown. The message names the database file, whose
            # temporary path may hold any digits ("pytest-42"), so look past it.
            shown = str(raised.value).replace(str(sqlite_file), "<file>")
            assert str(value) not in shown
        # The row's key is valid: it is listed, and can be deleted or overwritten.
        assert await _keys(storage) == ["a", "b", "c"]
        await storage.set_raw("b", b"B")
        assert await storage.get_many_raw(["c", "b", "a"]) == [b"C", b"B", b"A"]


async def test_a_text_value_that_is_not_utf8_is_a_typed_error_without_its_content(
    sqlite_file: Path,
) -> None:
    _insert(
        sqlite_file,
        None,
        None,
        raw_sql=f'INSERT INTO "{DEFAULT_TABLE}" (key, value) '
        "VALUES ('b', CAST(x'ff736563726574' AS TEXT))",
    )
    async with Storage(sqlite_driver(sqlite_file)) as storage:
        with pytest.raises(BackendError) as raised:
            await storage.get_raw("b")
        assert "'b'" in str(raised.value)
        assert "secret" not in str(raised.value)
        with pytest.raises(BackendError) as raised:
            await _items(storage)
        assert "secret" not in str(raised.value)
        assert await _keys(storage) == ["a", "b", "c"]


HAND_MADE_KEYS = {
    "empty segment": "a::b",
    "leading separator": ":a",
    "trailing separator": "b:",
    "control character": "b\x00c",
    "newline": "b\nc",
    "too long": "b" * 1025,
    "empty": "",
    "blob key": b"b-blob",
}


@pytest.mark.parametrize("key", list(HAND_MADE_KEYS.values()), ids=list(HAND_MADE_KEYS))
async def test_a_hand_made_key_breaking_the_rules_is_skipped_and_logged(
    sqlite_file: Path, key: object, caplog: pytest.LogCaptureFixture
) -> None:
    _insert(sqlite_file, key, b"foreign")
    with caplog.at_level(logging.WARNING, logger="kvstore"):
        async with Storage(sqlite_driver(sqlite_file)) as storage:
            assert await _keys(storage) == ["a", "c"]
            assert await _keys(storage, "a") == ["a"]
            assert await _items(storage) == [("a", b"A"), ("c", b"C")]
            assert await storage.get_many_raw(["c", "a", "zz"]) == [b"C", b"A", None]
            await storage.clear()
    assert any(
        record.name.startswith("kvstore.") and "did not write" in record.getMessage()
        for record in caplog.records
    )


async def test_a_key_that_is_not_utf8_is_skipped_and_the_scan_goes_on(
    sqlite_file: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _insert(
        sqlite_file,
        None,
        None,
        raw_sql=f'INSERT INTO "{DEFAULT_TABLE}" (key, value) '
        "VALUES (CAST(x'62ff' AS TEXT), x'00')",
    )
    driver = sqlite_driver(sqlite_file)
    # Small pages, so that the scan continues past the bad row across several queries.
    monkeypatch.setattr(sqlite_module, "_KEY_PAGE", 2)
    monkeypatch.setattr(sqlite_module, "_ITEM_PAGE", 2)
    with caplog.at_level(logging.WARNING, logger="kvstore"):
        async with Storage(driver) as storage:
            await storage.set_many_raw([(f"d{index}", b"D") for index in range(5)])
            expected = ["a", "c", *(f"d{index}" for index in range(5))]
            assert await _keys(storage) == expected
            assert [key for key, _ in await _items(storage)] == expected
    assert any("did not write" in record.getMessage() for record in caplog.records)


# -- filesystem ---------------------------------------------------------------------------------


@pytest.fixture(params=["openat2", "walk"])
def opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with Linux's openat2 (where the kernel has it) and with the portable walk."""
    if request.param == "openat2" and _fs_local._OPENAT2 is None:
        pytest.skip("this kernel (or sandbox) has no openat2")
    if request.param == "walk":
        monkeypatch.setattr(_fs_local, "_OPENAT2", None)
    return str(request.param)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the base, holding a file that looks like a value."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.kv").write_bytes(b'"outside"')
    return directory


async def _fs(tmp_path: Path) -> FSDriver:
    driver = fs_driver(str(tmp_path / "base"))
    await driver.open()
    await driver.set("real", b"1")
    return driver


@pytest.mark.usefixtures("opener")
async def test_a_symlinked_file_is_never_read_and_never_listed(
    tmp_path: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = await _fs(tmp_path)
    os.symlink(outside / "secret.kv", tmp_path / "base" / "linked.kv")
    with caplog.at_level(logging.WARNING, logger="kvstore"):
        with pytest.raises(BackendError, match="symbolic link"):
            await driver.get("linked")
        assert [key async for key in driver.keys()] == ["real"]
        assert [pair async for pair in driver.items()] == [("real", b"1")]
    assert any("symbolic link" in record.getMessage() for record in caplog.records)
    # Writing the key replaces the link itself; the file it pointed to is untouched.
    await driver.set("linked", b"2")
    assert (outside / "secret.kv").read_bytes() == b'"outside"'
    assert not (tmp_path / "base" / "linked.kv").is_symlink()
    assert await driver.get("linked") == b"2"
    await driver.close()


@pytest.mark.usefixtures("opener")
@pytest.mark.parametrize("depth", [1, 2], ids=["top", "nested"])
async def test_a_symlinked_directory_is_never_entered(
    tmp_path: Path, outside: Path, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    driver = await _fs(tmp_path)
    parent = tmp_path / "base"
    if depth == 2:
        parent = parent / "deep"
        await driver.set("deep:real", b"1")
    os.symlink(outside, parent / "users")
    head = "deep:" if depth == 2 else ""
    with caplog.at_level(logging.WARNING, logger="kvstore"):
        with pytest.raises(BackendError, match="symbolic link"):
            await driver.get(f"{head}users:secret")
        assert "users" not in "".join([key async for key in driver.keys()])
        assert [key async for key in driver.keys(f"{head}users:")] == []
    writes: list[Callable[[], Awaitable[None]]] = [
        lambda: driver.set(f"{head}users:new", b"x"),
        lambda: driver.set_many([(f"{head}users:new", b"x")]),
        lambda: driver.delete(f"{head}users:secret"),
    ]
    for write in writes:
        with pytest.raises(BackendError, match="symbolic link"):
            await write()
    assert sorted(os.listdir(outside)) == ["secret.kv"]
    assert (outside / "secret.kv").read_bytes() == b'"outside"'
    await driver.close()


@pytest.mark.usefixtures("opener")
async def test_a_symlinked_temp_directory_is_refused(tmp_path: Path, outside: Path) -> None:
    driver = await _fs(tmp_path)
    temp = tmp_path / "base" / ".tmp"
    shutil.rmtree(temp)  # it holds the writers' lock file
    os.symlink(outside, temp)
    with pytest.raises(BackendError, match="symbolic link"):
        await driver.set("k", b"1")
    assert sorted(os.listdir(outside)) == ["secret.kv"]
    await driver.close()


@pytest.mark.usefixtures("opener")
async def test_a_fifo_or_directory_where_a_value_should_be_is_an_error_not_a_hang(
    tmp_path: Path,
) -> None:
    driver = await _fs(tmp_path)
    os.mkfifo(tmp_path / "base" / "pipe.kv")
    with pytest.raises(BackendError):
        await driver.get("pipe")
    assert [key async for key in driver.keys()] == ["real"]
    await driver.close()


async def test_names_that_are_no_key_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = await _fs(tmp_path)
    base = tmp_path / "base"
    for name in ["README.txt", "%ZZ.kv", "con.kv", "%3A.kv", "UPPER.kv"]:
        (base / name).write_bytes(b"x")
    # A key longer than the 1024-byte limit, spelled the way the driver would have spelled it.
    long_dir = base / ("a" * 120 + "~")
    long_dir.mkdir()
    (long_dir / ("a" * 120 + "~")).mkdir()
    deep = long_dir / ("a" * 120 + "~")
    for _ in range(7):
        deep = deep / ("b" * 120 + "~")
        deep.mkdir()
    (deep / "c.kv").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="kvstore"):
        assert [key async for key in driver.keys()] == ["real"]
    messages = " ".join(record.getMessage() for record in caplog.records)
    for name in ["README.txt", "%ZZ.kv", "con.kv", "%3A.kv", "UPPER.kv", "longer than"]:
        assert name in messages
    await driver.close()


# -- memory -------------------------------------------------------------------------------------


async def test_memory_never_keeps_a_reference_to_a_callers_buffer() -> None:
    driver = memory_driver()
    buffer = bytearray(b"before")
    view_source = bytearray(b"viewed")
    await driver.set("a", buffer)  # type: ignore[arg-type]
    await driver.set_many([("b", memoryview(view_source)), ("c", bytearray(b"c"))])  # type: ignore[list-item]
    buffer[:] = b"after!"
    view_source[:] = b"change"
    values = await driver.get_many(["a", "b", "c"])
    assert values == [b"before", b"viewed", b"c"]
    assert all(type(value) is bytes for value in values)
    assert type(await driver.get("a")) is bytes
    await driver.close()


async def test_sqlite_returns_exact_bytes_for_buffers(tmp_path: Path) -> None:
    driver: SQLiteDriver = sqlite_driver(tmp_path / "kv.db")
    await driver.set("a", bytearray(b"x"))  # type: ignore[arg-type]
    await driver.set_many([("b", memoryview(b"y"))])  # type: ignore[list-item]
    assert [type(value) for value in await driver.get_many(["a", "b"])] == [bytes, bytes]
    await driver.close()

"""Compression: large JSON shrinks, earlier values still read, the header cannot be mistaken."""

from __future__ import annotations

import random
import sys

import pytest

from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.errors import MissingDependency
from kvstore.serialization import encode
from kvstore.storage import Storage
from kvstore.wrappers import Compression, UnreadableValue
from kvstore.wrappers.compression import COMPRESSED, ESCAPED

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _document(size: int) -> list[dict[str, object]]:
    """A JSON document of at least ``size`` bytes, as compressible as typical records are."""
    row_size = len(encode(_row(0)))
    rows = [_row(index) for index in range(size // row_size + 1)]
    assert len(encode(rows)) >= size
    return rows


def _row(index: int) -> dict[str, object]:
    return {"id": index, "name": f"user {index}", "active": index % 3 == 0, "tags": ["a"]}


async def test_a_mebibyte_of_json_stores_in_under_a_tenth_of_its_size() -> None:
    inner = memory_driver()
    document = _document(1024 * 1024)
    async with Storage(Compression(inner)) as storage:
        await storage.set("doc", document)
        stored = await inner.get("doc")
        assert stored is not None
        assert len(stored) < len(encode(document)) // 10
        assert stored.startswith(COMPRESSED)
        assert await storage.get("doc") == document
        meta = await storage.get_meta("doc")
        assert meta is not None
        assert meta.size == len(encode(document))


async def test_values_written_before_the_wrapper_still_read(tmp_path: object) -> None:
    path = f"{tmp_path}/kv.db"
    document = _document(10_000)
    async with Storage(sqlite_driver(path)) as plain:
        await plain.set("old", document)
        await plain.set_raw("raw", b"\x00\x01 raw bytes that happen to start with NUL")
    async with Storage(Compression(sqlite_driver(path))) as storage:
        assert await storage.get("old") == document
        assert await storage.get_raw("raw") == b"\x00\x01 raw bytes that happen to start with NUL"
        assert await storage.get_many(["old", "missing"]) == [document, None]
        assert [key async for key, _ in storage.items_raw()] == ["old", "raw"]


async def test_small_values_are_stored_as_they_are_and_nul_values_escaped() -> None:
    inner = memory_driver()
    async with Storage(Compression(inner, min_size=100)) as storage:
        await storage.set("small", {"a": 1})
        assert await inner.get("small") == b'{"a":1}'
        await storage.set_raw("nul", b"\x00z looks like a header")
        assert await inner.get("nul") == ESCAPED + b"\x00z looks like a header"
        assert await storage.get_raw("nul") == b"\x00z looks like a header"
        # Incompressible bytes above the threshold are stored as they are too.
        noise = random.Random(11).randbytes(300)
        await storage.set_raw("noise", noise)
        assert await inner.get("noise") in (noise, ESCAPED + noise)
        assert await storage.get_raw("noise") == noise


async def test_every_write_path_compresses() -> None:
    inner = memory_driver()
    value = encode(_document(5_000))
    async with Storage(Compression(inner)) as storage:
        await storage.set_many([("m1", _document(5_000)), ("m2", _document(5_000))])
        await storage.set("ttl", _document(5_000), ttl=60)
        await storage.create("created", _document(5_000))  # a conditional write
        for key in ("m1", "m2", "ttl", "created"):
            stored = await inner.get(key)
            assert stored is not None
            assert stored.startswith(COMPRESSED), key
            assert await storage.get_raw(key) == value


async def test_a_corrupt_frame_raises_a_typed_error() -> None:
    inner = memory_driver()
    await inner.set("bad", COMPRESSED + b"not a zstandard frame")
    async with Storage(Compression(inner)) as storage:
        with pytest.raises(UnreadableValue) as caught:
            await storage.get_raw("bad")
        assert caught.value.key == "bad"


def test_without_zstandard_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(MissingDependency, match=r"agentx-persistence\[compression\]"):
        Compression(memory_driver())

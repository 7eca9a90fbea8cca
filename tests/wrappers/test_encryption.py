"""Encryption: no stored value holds the plaintext, a wrong key fails typed, rotation reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kvstore.conditional import Change
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.errors import ConfigurationError, KVStoreError, MissingDependency
from kvstore.storage import Storage
from kvstore.wrappers import Compression, DecryptionError, Encryption, parse_keyring
from tests.wrappers.support import KEY_A, KEY_B, keyring_text

pytestmark = pytest.mark.anyio

SECRET = "the launch code is 0451"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _stored(inner: MemoryDriver) -> dict[str, bytes]:
    return {key: value async for key, value in inner.items("")}


async def test_no_write_path_stores_the_plaintext() -> None:
    inner = memory_driver()
    async with Storage(Encryption(inner, keys={"k1": KEY_A}, current="k1")) as storage:
        await storage.set("one", {"note": SECRET})
        await storage.set_many([("many:1", SECRET), ("many:2", [SECRET])])
        await storage.set("ttl", SECRET, ttl=60)
        await storage.set_many([("ttl:many", SECRET)], ttl=60)
        await storage.create("created", SECRET)
        version = await storage.create("replaced", "first")
        await storage.replace("replaced", SECRET, version)
        await storage.commit([Change.put("committed", SECRET)])
        stored = await _stored(inner)
        assert len(stored) == 8
        for key, value in stored.items():
            assert SECRET.encode() not in value, key
            assert b"launch" not in value, key
        assert await storage.get("one") == {"note": SECRET}
        assert await storage.get_many(["many:1", "committed"]) == [SECRET, SECRET]
        assert dict([pair async for pair in storage.items("many")]) == {
            "many:1": SECRET,
            "many:2": [SECRET],
        }
        meta = await storage.get_meta("one")
        assert meta is not None
        assert meta.size == len(b'{"note":"the launch code is 0451"}')


async def test_a_wrong_or_unknown_key_raises_a_typed_error_naming_no_key(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with Storage(Encryption(sqlite_driver(path), keys={"k1": KEY_A}, current="k1")) as db:
        await db.set("secret", SECRET)
    async with Storage(Encryption(sqlite_driver(path), keys={"k1": KEY_B}, current="k1")) as db:
        with pytest.raises(DecryptionError) as caught:
            await db.get("secret")
    assert isinstance(caught.value, KVStoreError)
    assert caught.value.key_id == "k1"
    assert caught.value.key == "secret"
    assert KEY_B.hex() not in str(caught.value)
    assert repr(KEY_B) not in str(caught.value)
    async with Storage(Encryption(sqlite_driver(path), keys={"k2": KEY_B}, current="k2")) as db:
        with pytest.raises(DecryptionError, match="key id 'k1', which is not in the keyring"):
            await db.get("secret")


async def test_after_rotation_old_values_still_read_and_new_ones_use_the_new_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kv.db"
    async with Storage(Encryption(sqlite_driver(path), keys={"2025": KEY_A}, current="2025")) as db:
        await db.set("old", SECRET)
    rotated = Encryption(sqlite_driver(path), keys={"2025": KEY_A, "2026": KEY_B}, current="2026")
    async with Storage(rotated) as storage:
        assert await storage.get("old") == SECRET
        await storage.set("new", SECRET)
        stored = await rotated.inner.get("new")
        assert stored is not None
        assert stored.startswith(b"\x00e\x042026")
    # Without the old key, the new value reads and the old one fails, typed.
    only_new = Encryption(sqlite_driver(path), keys={"2026": KEY_B}, current="2026")
    async with Storage(only_new) as storage:
        assert await storage.get("new") == SECRET
        with pytest.raises(DecryptionError):
            await storage.get("old")


async def test_a_value_copied_to_another_key_does_not_decrypt() -> None:
    inner = memory_driver()
    async with Storage(Encryption(inner, keys={"k1": KEY_A}, current="k1")) as storage:
        await storage.set("alice:balance", 10)
        await storage.set("bob:balance", 1_000_000)
        stolen = await inner.get("bob:balance")
        assert stolen is not None
        await inner.set("alice:balance", stolen)
        with pytest.raises(DecryptionError, match="copied from another key"):
            await storage.get("alice:balance")


async def test_a_value_written_without_encryption_is_refused() -> None:
    inner = memory_driver()
    await inner.set("plain", b'"hello"')
    async with Storage(Encryption(inner, keys={"k1": KEY_A}, current="k1")) as storage:
        with pytest.raises(DecryptionError, match="not encrypted"):
            await storage.get("plain")


async def test_compression_outside_encryption_still_shrinks_values() -> None:
    inner = memory_driver()
    driver = Compression(Encryption(inner, keys={"k1": KEY_A}, current="k1"))
    async with Storage(driver) as storage:
        await storage.set("big", "abc" * 10_000)
        stored = await inner.get("big")
        assert stored is not None
        assert len(stored) < 1_000
        assert await storage.get("big") == "abc" * 10_000


@pytest.mark.parametrize(
    ("keys", "current", "message"),
    [
        ({}, "k1", "at least one key"),
        ({"k1": b"short"}, "k1", "16, 24 or 32 bytes"),
        ({"k1": "text" * 8}, "k1", "16, 24 or 32 bytes"),
        ({"bad id": KEY_A}, "bad id", "key id"),
        ({"k1": KEY_A}, "k2", "not in the keyring"),
    ],
)
def test_a_bad_keyring_is_a_configuration_error(
    keys: dict[str, bytes], current: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Encryption(memory_driver(), keys=keys, current=current)


def test_the_keyring_text_format() -> None:
    keys, current = parse_keyring(keyring_text(("new", KEY_B), ("old", KEY_A)))
    assert keys == {"new": KEY_B, "old": KEY_A}
    assert current == "new"
    with pytest.raises(ConfigurationError) as caught:
        parse_keyring("k1:not base64!")
    assert "not base64" not in str(caught.value)  # the message never holds key material


def test_without_cryptography_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(MissingDependency, match=r"agentx-persistence\[encryption\]"):
        Encryption(memory_driver(), keys={"k1": KEY_A}, current="k1")

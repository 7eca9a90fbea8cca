"""Installing wrappers by URL options and by create_storage's argument, in the recommended order."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvstore import create_storage
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.drivers.sqlite import SQLiteDriver
from kvstore.errors import ConfigurationError, NotSupported
from kvstore.wrappers import (
    Compression,
    Encryption,
    Layer,
    ReadOnly,
    Retry,
    Statistics,
    StorageReadOnly,
    Tracing,
    ValueSizeLimit,
    ValueTooLarge,
    Wrapper,
    apply_layers,
)
from kvstore.wrappers.install import split_wrapper_options
from tests.wrappers.support import KEY_A, KEY_B, keyring_text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _chain(driver: object) -> list[type]:
    kinds: list[type] = []
    while isinstance(driver, Wrapper):
        kinds.append(type(driver))
        driver = driver.inner
    kinds.append(type(driver))
    return kinds


async def test_url_options_install_wrappers_in_the_recommended_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_KEYS", keyring_text(("k2", KEY_B), ("k1", KEY_A)))
    url = (
        f"sqlite:///{tmp_path}/kv.db?retry=3&encryption_keys_env=APP_KEYS&trace=1&stats=yes"
        "&max_value_size=100000&compress=zstd&compress_min_size=64&synchronous=FULL"
    )
    async with create_storage(url) as storage:
        assert _chain(storage.driver) == [
            Tracing,
            Statistics,
            ValueSizeLimit,
            Compression,
            Encryption,
            Retry,
            SQLiteDriver,
        ]
        encryption = storage.driver
        while not isinstance(encryption, Encryption):
            encryption = encryption.inner  # type: ignore[attr-defined]
        assert encryption.current == "k2"
        await storage.set("a", "x" * 1000)
        assert await storage.get("a") == "x" * 1000
        with pytest.raises(ValueTooLarge):
            await storage.set("big", "x" * 200_000)


async def test_the_argument_form_applies_the_same_order() -> None:
    given: list[Layer | type[Wrapper]] = [
        Retry,
        ReadOnly,
        Compression.using(level=9),
        Encryption.using(keys={"k1": KEY_A}, current="k1"),
    ]
    async with create_storage("memory://", wrappers=given) as storage:
        assert _chain(storage.driver) == [ReadOnly, Compression, Encryption, Retry, MemoryDriver]
        with pytest.raises(StorageReadOnly):
            await storage.set("a", 1)


def test_without_wrappers_the_driver_is_not_wrapped() -> None:
    assert type(create_storage("memory://").driver) is MemoryDriver
    assert type(create_storage("memory://", wrappers=[]).driver) is MemoryDriver


def test_the_driver_never_sees_wrapper_options_and_keeps_its_own() -> None:
    url, options = split_wrapper_options(
        "postgresql://u:p%26w@h/db?sslmode=require&read_only=true&application_name=x+y"
    )
    assert url == "postgresql://u:p%26w@h/db?sslmode=require&application_name=x+y"
    assert options == {"read_only": "true"}
    assert split_wrapper_options("sqlite:///x.db?stats=1") == ("sqlite:///x.db", {"stats": "1"})
    assert split_wrapper_options("memory://") == ("memory://", {})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("compress=lz4", "compress"),
        ("max_value_size=0", "max_value_size"),
        ("read_only=maybe", "read_only"),
        ("compress_level=3", "needs 'compress'"),
        ("retry_deadline=5", "needs 'retry'"),
        ("stats=1&stats=1", "given twice"),
        ("encryption_keys_env=NOT_SET_ANYWHERE", "NOT_SET_ANYWHERE"),
    ],
)
def test_bad_wrapper_options_are_configuration_errors(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_storage(f"memory://?{query}")


def test_a_keyring_variable_error_never_shows_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_KEYS", "k1:c2VjcmV0LXNob3J0")  # 12 bytes: not an AES key
    with pytest.raises(ConfigurationError) as caught:
        create_storage("memory://?encryption_keys_env=APP_KEYS")
    assert "c2VjcmV0" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_wrapper_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice: Statistics"):
        create_storage("memory://?stats=1", wrappers=[Statistics])
    with pytest.raises(ConfigurationError):
        create_storage("memory://", wrappers=[object])  # type: ignore[list-item]


class _Plain(BaseDriver):
    """A driver with none of the optional capabilities."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes) -> None:
        pass

    async def delete(self, key: str) -> None:
        pass

    async def keys(self, prefix: str = ""):  # type: ignore[no-untyped-def]
        return
        yield

    async def close(self) -> None:
        pass


async def test_capabilities_pass_through_exactly_when_the_driver_has_them() -> None:
    everything: list[Layer | type[Wrapper]] = [
        Tracing,
        Statistics,
        ValueSizeLimit.using(limit=10),
        Compression,
        Retry,
    ]
    everything.append(Encryption.using(keys={"k1": KEY_A}, current="k1"))
    rich = apply_layers(memory_driver(), everything)
    plain = apply_layers(_Plain(), everything)
    assert isinstance(rich, BaseDriver)
    assert isinstance(plain, BaseDriver)
    flags = ("conditional_writes", "expiry", "atomic_batches", "supports_trio")
    assert [getattr(rich, flag) for flag in flags] == [True, True, True, True]
    assert [getattr(plain, flag) for flag in flags] == [False, False, False, False]
    with pytest.raises(NotSupported):
        await plain.get_versioned("a")
    with pytest.raises(NotSupported):
        await plain.set_expiring("a", b"1", 5)
